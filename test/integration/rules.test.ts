/**
 * The rules table of DESIGN §2, one named test per row, against the in-memory
 * store and a real redis-server.
 */
import { createServer, type AddressInfo, type Socket } from 'node:net';
import express from 'express';
import request from 'supertest';
import { signHmacPayload } from '../../src';
import { GATEWAY_SECRET, STORE_KINDS, createHarness, paid, type Harness } from '../helpers/harness';

describe.each(STORE_KINDS)('rules (%s store)', (kind) => {
  let shop: Harness;

  afterEach(async () => {
    await shop?.close();
  });

  async function start(options: Parameters<typeof createHarness>[0]['options'] = {}) {
    shop = await createHarness({ kind, options });
    return shop;
  }

  function eventNames(name: string) {
    return shop.events.filter((event) => event.name === name).map((event) => event.payload as Record<string, unknown>);
  }

  test('verified paid callback, amount matches, not yet tracked: markPaid once, the server sends the order, 2xx', async () => {
    await start();
    const order = shop.orders.add({ id: 'A-1', revenue: 25 });
    const response = await shop.notify(paid(order));
    expect(response.status).toBe(200);
    expect(response.body).toEqual({ received: true, duplicate: false });
    await shop.settled();
    expect(shop.orders.paid.get('A-1')).toBe(1);
    const sent = shop.matomo.requestsFor('A-1');
    expect(sent).toHaveLength(1);
    expect(sent[0]).toMatchObject({ channel: 'server', accepted: true });
    expect(sent[0]!.params).toMatchObject({ idsite: String(shop.siteId), idgoal: '0', ec_id: 'A-1', revenue: '25' });
    expect(eventNames('order:tracked')).toEqual([{ orderId: 'A-1', channel: 'server' }]);
    expect(eventNames('payment:confirmed')).toHaveLength(1);
  });

  test('the callback answers without waiting for Matomo', async () => {
    // Matomo that accepts connections and never answers.
    const sockets = new Set<Socket>();
    const silent = createServer((socket) => sockets.add(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const port = (silent.address() as AddressInfo).port;
    try {
      await start({ matomo: { domain: `127.0.0.1:${port}`, siteId: 1, protocol: 'http', timeoutMs: 30_000 } });
      const order = shop.orders.add({ id: 'A-2' });
      const response = await shop.notify(paid(order));
      expect(response.status).toBe(200);
      // the answer is in, and the order is still being sent (or about to be)
      let stats = await shop.tracking.stats();
      expect(stats.delivery.sent).toBe(0);
      for (const deadline = Date.now() + 5000; stats.delivery.inFlight === 0 && Date.now() < deadline; ) {
        await new Promise((resolve) => setTimeout(resolve, 10));
        stats = await shop.tracking.stats();
      }
      expect(stats.delivery.inFlight).toBe(1);
      expect(stats.delivery.sent).toBe(0);
      expect(shop.orders.paid.get('A-2')).toBe(1);
    } finally {
      await shop.tracking.close({ timeoutMs: 10 });
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  test('verified paid callback after the page tracked: markPaid once, no Matomo request', async () => {
    await start();
    const order = shop.orders.add({ id: 'B-1' });
    const cookie = await shop.checkout('B-1');
    expect((await shop.page('B-1', cookie)).trackOrder).toBe(true);
    const response = await shop.notify(paid(order));
    expect(response.status).toBe(200);
    await shop.settled();
    expect(shop.orders.paid.get('B-1')).toBe(1);
    expect(shop.matomo.requestsFor('B-1')).toHaveLength(0);
    expect(eventNames('order:skipped')).toContainEqual({ orderId: 'B-1', channel: 'server', reason: 'already-tracked' });
  });

  test('verified paid callback for an already paid order: duplicate, 2xx, nothing else happens', async () => {
    await start();
    const order = shop.orders.add({ id: 'C-1' });
    await shop.notify(paid(order));
    await shop.settled();
    const again = await shop.notify(paid(order));
    const laterTransaction = await shop.notify(paid(order, { transactionId: 'another-capture' }));
    expect(again.status).toBe(200);
    expect(again.body).toEqual({ received: true, duplicate: true });
    expect(laterTransaction.status).toBe(200);
    expect(laterTransaction.body.duplicate).toBe(true);
    await shop.settled();
    expect(shop.orders.paid.get('C-1')).toBe(1);
    expect(shop.matomo.requestsFor('C-1')).toHaveLength(1);
    expect(shop.orders.unconfirmed).toHaveLength(0);
  });

  test.each(['failed', 'canceled'])('verified %s callback on an unconfirmed order: markPaymentUnconfirmed, nothing sent', async (status) => {
    await start();
    const order = shop.orders.add({ id: `D-${status}` });
    const response = await shop.notify({ orderId: order.id, status, transactionId: 'tx-1' });
    expect(response.status).toBe(200);
    await shop.settled();
    expect(shop.orders.unconfirmed).toEqual([{ orderId: order.id, payment: expect.objectContaining({ outcome: status, gateway: 'acme' }) }]);
    expect(shop.orders.paid.has(order.id)).toBe(false);
    expect(shop.matomo.received).toHaveLength(0);
  });

  test.each(['failed', 'canceled', 'pending'])('verified %s callback after paid: never downgrade, recorded, nothing sent', async (status) => {
    await start();
    const order = shop.orders.add({ id: `E-${status}` });
    await shop.notify(paid(order));
    await shop.settled();
    const response = await shop.notify({ orderId: order.id, status, transactionId: 'tx-late' });
    expect(response.status).toBe(200);
    await shop.settled();
    expect(shop.orders.unconfirmed).toHaveLength(0);
    expect(shop.orders.paid.get(order.id)).toBe(1);
    expect(shop.matomo.requestsFor(order.id)).toHaveLength(1);
    expect(eventNames('payment:ignored')).toContainEqual(
      expect.objectContaining({ orderId: order.id, reason: status === 'pending' ? 'pending' : 'already-paid' }),
    );
  });

  test('pending: nothing happens, the next notification decides', async () => {
    await start();
    const order = shop.orders.add({ id: 'F-1' });
    const pending = await shop.notify({ orderId: order.id, status: 'pending', amount: '25.00', transactionId: 'tx-F' });
    expect(pending.status).toBe(200);
    expect(shop.orders.paid.has('F-1')).toBe(false);
    expect(shop.orders.unconfirmed).toHaveLength(0);
    expect(shop.matomo.received).toHaveLength(0);
    // pending → paid is a legitimate transition, not a duplicate
    const nowPaid = await shop.notify(paid(order, { transactionId: 'tx-F' }));
    expect(nowPaid.body.duplicate).toBe(false);
    await shop.settled();
    expect(shop.orders.paid.get('F-1')).toBe(1);
    expect(shop.matomo.requestsFor('F-1')).toHaveLength(1);
  });

  test.each([
    ['amount', { amount: '24.99' }, /amount 24\.99 does not match the order total 25/],
    ['currency', { currency: 'USD' }, /currency USD does not match the order currency EUR/],
    ['missing amount', { amount: undefined }, /confirms no amount/],
    ['missing currency', { currency: undefined }, /confirms no currency, the order is in EUR/],
  ])('paid but %s mismatch: not paid, markPaymentUnconfirmed(reason), error event, nothing sent', async (_name, extra, reason) => {
    await start();
    const order = shop.orders.add({ id: 'G-1', revenue: 25, currency: 'EUR' });
    const response = await shop.notify(paid(order, extra));
    expect(response.status).toBe(200);
    await shop.settled();
    expect(shop.orders.paid.has('G-1')).toBe(false);
    expect(shop.orders.unconfirmed).toHaveLength(1);
    expect(shop.orders.unconfirmed[0]!.payment?.rejectionReason).toMatch(reason);
    expect(eventNames('error')).toContainEqual(expect.objectContaining({ code: 'ERR_MST_AMOUNT_MISMATCH', orderId: 'G-1' }));
    expect(shop.matomo.received).toHaveLength(0);
    // the page does not count the unpaid revenue either…
    const cookie = await shop.checkout('G-1');
    expect((await shop.page('G-1', cookie)).trackOrder).toBe(false);
    // …and claimed nothing: a correct payment later is tracked by the server
    await shop.notify(paid(order, { transactionId: 'tx-correct' }));
    await shop.settled();
    expect(shop.orders.paid.get('G-1')).toBe(1);
    expect(shop.matomo.requestsFor('G-1')).toHaveLength(1);
  });

  test('confirmation page after a refused payment: trackOrder false, nothing claimed; a later payment is tracked by the server', async () => {
    await start();
    const order = shop.orders.add({ id: 'G-2' });
    const cookie = await shop.checkout('G-2');
    await shop.notify({ orderId: 'G-2', status: 'failed', transactionId: 'tx-refused' });
    expect(await shop.page('G-2', cookie)).toMatchObject({ trackOrder: false, script: '' });
    expect(eventNames('order:skipped')).toContainEqual({ orderId: 'G-2', channel: 'client', reason: 'payment-not-confirmed' });
    await shop.notify(paid(order, { transactionId: 'tx-second-try' }));
    await shop.settled();
    expect(shop.matomo.requestsFor('G-2')).toHaveLength(1);
    // once paid, a page view is just a reload of a tracked order
    expect((await shop.page('G-2', cookie)).trackOrder).toBe(false);
  });

  test('confirmation page after a refused and then confirmed payment, before the server claimed: the page may track', async () => {
    await start({ serverTracking: false });
    const order = shop.orders.add({ id: 'G-3' });
    const cookie = await shop.checkout('G-3');
    await shop.notify({ orderId: 'G-3', status: 'canceled', transactionId: 'tx-1' });
    await shop.notify(paid(order, { transactionId: 'tx-2' }));
    expect((await shop.page('G-3', cookie)).trackOrder).toBe(true);
  });

  describe('unverifiable callback: 401 with a JSON error and no state change', () => {
    test('the same callback within the tolerance (299 s) is accepted', async () => {
      const clock = 1_800_000_000_000;
      await start({ now: () => clock });
      const order = shop.orders.add({ id: 'H-0' });
      expect((await shop.notify(paid(order), { timestamp: clock / 1000 + 299 })).status).toBe(200);
      expect((await shop.notify(paid(order, { transactionId: 'b' }), { timestamp: clock / 1000 - 299 })).status).toBe(200);
    });

    // A fixed clock: the tolerance is judged against the receipt time, not against when the test happens to run.
    const clock = 1_800_000_000_000;
    const seconds = clock / 1000;
    test.each([
      ['wrong secret', { secret: 'not-the-right-secret-at-all', timestamp: seconds }],
      ['timestamp 301 s old', { timestamp: seconds - 301 }],
      ['timestamp 301 s in the future', { timestamp: seconds + 301 }],
    ])('%s', async (_name, options) => {
      await start({ now: () => clock });
      const order = shop.orders.add({ id: 'H-1' });
      const response = await shop.notify(paid(order), options);
      expect(response.status).toBe(401);
      expect(response.body).toMatchObject({ error: 'unauthentic' });
      await expectNoStateChange('H-1');
    });

    test('tampered body', async () => {
      await start();
      const order = shop.orders.add({ id: 'H-2' });
      const signed = signHmacPayload({ payload: paid(order), secret: GATEWAY_SECRET });
      const response = await request(shop.app)
        .post('/store/payment/notify/acme')
        .set(signed.headers)
        .send(signed.body.replace('"25.00"', '"0.01"'));
      expect(response.status).toBe(401);
      await expectNoStateChange('H-2');
    });

    test('missing signature headers', async () => {
      await start();
      shop.orders.add({ id: 'H-3' });
      const response = await request(shop.app)
        .post('/store/payment/notify/acme')
        .set('content-type', 'application/json')
        .send(JSON.stringify({ orderId: 'H-3', status: 'paid', amount: '25.00' }));
      expect(response.status).toBe(401);
      await expectNoStateChange('H-3');
    });

    test('authentic but malformed body: 400', async () => {
      await start();
      shop.orders.add({ id: 'H-4' });
      const response = await shop.notify({ orderId: 'H-4', status: 'refunded-maybe' });
      expect(response.status).toBe(400);
      expect(response.body).toMatchObject({ error: 'malformed' });
      await expectNoStateChange('H-4');
    });

    async function expectNoStateChange(orderId: string) {
      expect(shop.orders.paid.has(orderId)).toBe(false);
      expect(shop.orders.unconfirmed).toHaveLength(0);
      expect(shop.matomo.received).toHaveLength(0);
      const cookie = await shop.checkout(orderId);
      expect((await shop.page(orderId, cookie)).trackOrder).toBe(true);
    }
  });

  test('unknown gateway: 404', async () => {
    await start();
    const order = shop.orders.add({ id: 'I-1' });
    const response = await shop.notify(paid(order), { gateway: 'nopay' });
    expect(response.status).toBe(404);
    expect(response.body).toMatchObject({ error: 'unknown-gateway' });
    expect(shop.orders.paid.has('I-1')).toBe(false);
  });

  test('verified callback for an order the shop does not know: acknowledged, error event, nothing changes', async () => {
    await start();
    const response = await shop.notify({ orderId: 'NOPE-1', status: 'paid', amount: '1.00' });
    expect(response.status).toBe(200);
    expect(eventNames('error')).toContainEqual(expect.objectContaining({ code: 'ERR_MST_ORDER_REPOSITORY', orderId: 'NOPE-1' }));
    expect(shop.matomo.received).toHaveLength(0);
  });

  test('a verified callback naming an order id longer than any order (101 characters): acknowledged, nothing changes', async () => {
    await start();
    const response = await shop.notify({ orderId: 'x'.repeat(101), status: 'paid', amount: '1.00', currency: 'EUR' });
    expect(response.status).toBe(200);
    expect(eventNames('order:skipped')).toContainEqual({ orderId: 'x'.repeat(101), channel: 'server', reason: 'unknown-order' });
    expect(shop.orders.paid.size).toBe(0);
  });

  test('a markPaid slower than lockTtlMs still runs once: the lock is kept alive while it runs', async () => {
    // generous margins: the keep-alive runs every lockTtlMs / 3, so a busy CI machine does not break it
    await start({ lockTtlMs: 900, lockWaitMs: 10_000 });
    const order = shop.orders.add({ id: 'J-2' });
    const markPaid = shop.orders.markPaid;
    shop.orders.markPaid = async (orderId, payment) => {
      await new Promise((resolve) => setTimeout(resolve, 2500));
      await markPaid(orderId, payment);
    };
    const [first, second] = await Promise.all([shop.notify(paid(order)), shop.notify(paid(order))]);
    expect([first.status, second.status]).toEqual([200, 200]);
    expect(shop.orders.paid.get('J-2')).toBe(1);
  });

  test('the shop failing to record the payment: 503 so the gateway retries, and the retry completes it', async () => {
    await start();
    const order = shop.orders.add({ id: 'J-1' });
    const markPaid = shop.orders.markPaid;
    shop.orders.markPaid = async () => {
      throw new Error('ERP unavailable');
    };
    const failed = await shop.notify(paid(order));
    expect(failed.status).toBe(503);
    expect(failed.headers['retry-after']).toBeDefined();
    expect(shop.matomo.received).toHaveLength(0);
    shop.orders.markPaid = markPaid;
    const retried = await shop.notify(paid(order));
    expect(retried.status).toBe(200);
    await shop.settled();
    expect(shop.orders.paid.get('J-1')).toBe(1);
    expect(shop.matomo.requestsFor('J-1')).toHaveLength(1);
  });

  test('confirmation page, the buyer’s own order, not tracked: claims client, trackOrder true with the ecommerce script', async () => {
    await start();
    shop.orders.add({ id: 'K-1' });
    const cookie = await shop.checkout('K-1');
    const view = await shop.page('K-1', cookie);
    expect(view).toMatchObject({ status: 200, trackOrder: true, orderId: 'K-1' });
    expect(view.script).toMatch(/^<script>[\s\S]*_paq\.push\(\["addEcommerceItem","SKU-1"[\s\S]*_paq\.push\(\["trackEcommerceOrder","K-1",25\]\);\n<\/script>$/);
    expect(eventNames('order:tracked')).toEqual([{ orderId: 'K-1', channel: 'client' }]);
  });

  test('confirmation page reloaded, or the server tracked first: trackOrder false, empty script', async () => {
    await start();
    const first = shop.orders.add({ id: 'L-1' });
    const cookie = await shop.checkout('L-1');
    expect((await shop.page('L-1', cookie)).trackOrder).toBe(true);
    expect(await shop.page('L-1', cookie)).toMatchObject({ trackOrder: false, script: '' });

    const second = shop.orders.add({ id: 'L-2' });
    const cookie2 = await shop.checkout('L-2', cookie);
    await shop.notify(paid(second));
    await shop.settled();
    expect(await shop.page('L-2', cookie2)).toMatchObject({ trackOrder: false, script: '' });
    expect(shop.matomo.requestsFor('L-2')).toHaveLength(1);
    expect(shop.matomo.requestsFor(first.id)).toHaveLength(0); // the page's own matomo.js request is not ours to send
  });

  test('confirmation page for an unknown order or another visitor’s order: trackOrder false, nothing claimed', async () => {
    await start();
    const order = shop.orders.add({ id: 'M-1' });
    await shop.checkout('M-1'); // the buyer checks out…
    const stranger = await shop.checkout('M-OTHER'); // …another browser has its own checkout cookie
    expect(await shop.page('M-1', stranger)).toMatchObject({ trackOrder: false, script: '', orderId: null });
    expect(await shop.page('M-1')).toMatchObject({ trackOrder: false, orderId: null });
    expect(await shop.page('does-not-exist')).toMatchObject({ trackOrder: false });
    expect(eventNames('order:skipped')).toContainEqual({ orderId: 'M-1', channel: 'client', reason: 'not-owner' });
    // nothing was claimed: the server still tracks the order
    await shop.notify(paid(order));
    await shop.settled();
    expect(shop.matomo.requestsFor('M-1')).toHaveLength(1);
  });

  test('a HEAD request or a browser prefetch of the confirmation page claims nothing; the real view then tracks', async () => {
    await start();
    shop.orders.add({ id: 'N-2' });
    const cookie = await shop.checkout('N-2');
    const url = '/store/cart/checkout/success?id=N-2';
    expect((await request(shop.app).head(url).set('Cookie', cookie)).status).toBe(200);
    const prefetch = await request(shop.app).get(url).set('Cookie', cookie).set('Sec-Purpose', 'prefetch;prerender');
    expect(prefetch.body.trackOrder).toBe(false);
    expect((await shop.page('N-2', cookie)).trackOrder).toBe(true);
  });

  test('a forged checkout cookie is not this visitor’s', async () => {
    await start();
    shop.orders.add({ id: 'N-1' });
    const cookie = await shop.checkout('N-0');
    const forged = cookie.replace(/mst_checkout=v1\.([^.]+)\./, () => `mst_checkout=v1.${Buffer.from('["N-1"]').toString('base64url')}.`);
    expect((await shop.page('N-1', forged)).trackOrder).toBe(false);
  });

  test('isOwner option: the shop’s own ownership check lets the page track', async () => {
    await start({ isOwner: (req) => req.get('x-customer') === 'alice' });
    shop.orders.add({ id: 'O-1' });
    expect((await shop.page('O-1')).trackOrder).toBe(false);
    const response = await request(shop.app).get('/store/cart/checkout/success').query({ id: 'O-1' }).set('x-customer', 'alice');
    expect(response.body.trackOrder).toBe(true);
  });

  test('serverTracking false: callbacks still confirm payments, nothing is sent server-side, the page tracks', async () => {
    await start({ serverTracking: false });
    const order = shop.orders.add({ id: 'P-1' });
    const cookie = await shop.checkout('P-1');
    const response = await shop.notify(paid(order));
    expect(response.status).toBe(200);
    await shop.settled();
    expect(shop.orders.paid.get('P-1')).toBe(1);
    expect(shop.matomo.received).toHaveLength(0);
    expect(eventNames('order:skipped')).toContainEqual({ orderId: 'P-1', channel: 'server', reason: 'server-tracking-disabled' });
    expect((await shop.page('P-1', cookie)).trackOrder).toBe(true);
  });

  test('a body already parsed by a global express.json(): 500 telling the shop to mount us first', async () => {
    await start();
    const app = express();
    app.use(express.json());
    app.use(shop.tracking);
    const order = shop.orders.add({ id: 'Q-1' });
    const signed = signHmacPayload({ payload: paid(order), secret: GATEWAY_SECRET });
    const response = await request(app).post('/store/payment/notify/acme').set(signed.headers).send(signed.body);
    expect(response.status).toBe(500);
    expect(response.body.message).toMatch(/Mount app\.use\(matomoServerTracking\(\.\.\.\)\) before your body parsers/);
    expect(shop.orders.paid.has('Q-1')).toBe(false);
  });

  test('an order Matomo cannot take (negative price): payment confirmed, error event, nothing sent', async () => {
    await start();
    const order = shop.orders.add({ id: 'R-1', revenue: 5, items: [{ sku: 'X', price: -5, quantity: 1 }] });
    const response = await shop.notify(paid(order, { amount: '5.00' }));
    expect(response.status).toBe(200);
    expect(shop.orders.paid.get('R-1')).toBe(1);
    expect(eventNames('error')).toContainEqual(expect.objectContaining({ code: 'ERR_MST_ORDER_INVALID', orderId: 'R-1' }));
    expect(eventNames('order:skipped')).toContainEqual({ orderId: 'R-1', channel: 'server', reason: 'invalid-order' });
    expect(shop.matomo.received).toHaveLength(0);
  });
});
