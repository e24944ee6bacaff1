/**
 * DESIGN §3: store errors on the callback path ⇒ 503 so the gateway retries (fail
 * closed); on the page path ⇒ the page tracks (fail open). A private redis-server
 * is stopped in the middle of the test and started again on the same port.
 */
import KeyvRedis from '@keyv/redis';
import Keyv from 'keyv';
import { createHarness, paid, type Harness } from '../helpers/harness';
import { startRedisServer, type RedisServer } from '../helpers/redis-server';

describe('the Redis store goes down and comes back', () => {
  let redis: RedisServer;
  let keyv: Keyv;
  let shop: Harness;

  beforeEach(async () => {
    redis = await startRedisServer();
    keyv = new Keyv({
      store: new KeyvRedis({ url: redis.url, socket: { reconnectStrategy: () => 50 } }, { throwOnErrors: true }),
    });
    keyv.on('error', () => {});
    shop = await createHarness({
      kind: 'redis',
      keyv,
      options: { storeTimeoutMs: 300, lockWaitMs: 200, checkoutCookie: { secret: 'a-checkout-secret-for-tests' } },
    });
  });

  afterEach(async () => {
    await shop.close();
    await keyv.disconnect().catch(() => {});
    await redis.stop();
  });

  test('callbacks answer 503 and change nothing; the page fails open; the gateway’s retry completes the order', async () => {
    const order = shop.orders.add({ id: 'DOWN-1' });
    shop.orders.add({ id: 'DOWN-2' });
    const cookie = await shop.checkout('DOWN-2');
    await shop.checkout('DOWN-1');
    await redis.stop();

    const during = await shop.notify(paid(order));
    expect(during.status).toBe(503);
    expect(during.headers['retry-after']).toBeDefined();
    expect(shop.orders.paid.has('DOWN-1')).toBe(false);
    expect(shop.matomo.received).toHaveLength(0);

    const view = await shop.page('DOWN-2', cookie);
    expect(view.trackOrder).toBe(true); // fail open: Matomo's unique order id is the backstop
    expect(view.script).toContain('trackEcommerceOrder');
    expect(shop.events).toContainEqual({ name: 'error', payload: expect.objectContaining({ code: 'ERR_MST_STORE', orderId: 'DOWN-2' }) });

    // captureCheckout during the outage reports, never throws into the shop's checkout
    shop.orders.add({ id: 'DOWN-3' });
    await expect(shop.checkout('DOWN-3')).resolves.toEqual(expect.any(String));

    redis = await startRedisServer(redis.port);
    let status = 0;
    for (const deadline = Date.now() + 10_000; Date.now() < deadline && status !== 200; ) {
      status = (await shop.notify(paid(order))).status;
      if (status !== 200) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(status).toBe(200);
    await shop.settled();
    expect(shop.orders.paid.get('DOWN-1')).toBe(1);
    expect(shop.matomo.requestsFor('DOWN-1')).toHaveLength(1);
  });

  test('ownership never fails open: with the store down, a stranger gets no order and claims nothing', async () => {
    // an instance started while the store is down: its generated checkout secret cannot be loaded
    await redis.stop();
    const fresh = await createHarness({ kind: 'redis', keyv, options: { storeTimeoutMs: 300, lockWaitMs: 200 } });
    try {
      fresh.orders.add({ id: 'VICTIM-1', userId: 'customer-42' });
      expect(await fresh.page('VICTIM-1')).toMatchObject({ trackOrder: false, script: '', orderId: null });
      expect(fresh.events).toContainEqual({ name: 'order:skipped', payload: { orderId: 'VICTIM-1', channel: 'client', reason: 'not-owner' } });
      expect(fresh.events).toContainEqual({ name: 'error', payload: expect.objectContaining({ code: 'ERR_MST_STORE', orderId: 'VICTIM-1' }) });
    } finally {
      await fresh.close();
    }
  });
});
