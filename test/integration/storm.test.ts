/**
 * "First event wins, never twice, never lost — across processes too."
 * Two middleware instances (two Keyv clients, one redis-server), 200 orders, each
 * hit concurrently by 3 identical paid callbacks and 2 confirmation-page views
 * from the buyer, in random order, on random instances.
 */
import { signHmacPayload } from '../../src';
import {
  GATEWAY_SECRET,
  createHarness,
  createOrders,
  paid,
  startMatomo,
  uniqueSiteId,
  type Harness,
  type StoreKind,
} from '../helpers/harness';
import { seeded, shuffle } from '../helpers/random';

const ORDERS = 200;

describe.each<[StoreKind, number]>([
  ['redis', 2],
  ['memory', 1],
])('storm on the %s store with %i instance(s)', (kind, instanceCount) => {
  test(`${ORDERS} orders × (3 identical paid callbacks + 2 page views), concurrently: each order tracked exactly once`, async () => {
    const seed = Number(process.env.STORM_SEED ?? Date.now() % 1_000_000);
    const random = seeded(seed);
    const matomo = await startMatomo();
    const orders = createOrders();
    const siteId = uniqueSiteId();
    const shops: Harness[] = [];
    try {
      for (let i = 0; i < instanceCount; i++) {
        const shop = await createHarness({ kind, siteId, orders, matomo });
        await shop.listen();
        shops.push(shop);
      }
      const pick = () => shops[Math.floor(random() * shops.length)]!;

      const cookies = new Map<string, string>();
      for (let i = 0; i < ORDERS; i++) {
        const order = orders.add({ id: `S-${seed}-${i}`, revenue: 10 + (i % 7), items: [{ sku: `SKU-${i % 5}`, price: 10 + (i % 7), quantity: 1 }] });
        cookies.set(order.id, await pick().checkout(order.id));
      }

      const pageViews = new Map<string, boolean[]>();
      const callbackStatuses: number[] = [];
      const actions: Array<() => Promise<void>> = [];
      for (const order of orders.orders.values()) {
        // the gateway re-sends one notification: byte-identical body and signature
        const signed = signHmacPayload({ payload: paid(order), secret: GATEWAY_SECRET });
        for (let k = 0; k < 3; k++) {
          actions.push(async () => {
            const response = await pick().notify(JSON.parse(signed.body) as object, { timestamp: Number(signed.headers['x-timestamp']) });
            callbackStatuses.push(response.status);
          });
        }
        for (let k = 0; k < 2; k++) {
          actions.push(async () => {
            const view = await pick().page(order.id, cookies.get(order.id));
            pageViews.set(order.id, [...(pageViews.get(order.id) ?? []), view.trackOrder]);
          });
        }
      }
      const started = Date.now();
      await Promise.all(shuffle(actions, random).map((action) => action()));
      const elapsedMs = Date.now() - started;
      // close() lets every Matomo send in flight finish: after it, the stand-in has all it will ever get
      for (const shop of shops) await shop.tracking.close({ timeoutMs: 10_000 });

      let byPage = 0;
      let byServer = 0;
      const problems: string[] = [];
      for (const order of orders.orders.values()) {
        const pageTracked = (pageViews.get(order.id) ?? []).filter(Boolean).length;
        const requests = matomo.standIn.requestsFor(order.id);
        const accepted = requests.filter((r) => r.accepted && r.channel === 'server').length;
        if (pageTracked + accepted !== 1) problems.push(`${order.id}: page ${pageTracked}, server ${accepted}`);
        if (requests.length > 1) problems.push(`${order.id}: the stand-in received ${requests.length} requests`);
        if (orders.paid.get(order.id) !== 1) problems.push(`${order.id}: markPaid called ${orders.paid.get(order.id) ?? 0} times`);
        byPage += pageTracked;
        byServer += accepted;
      }
      expect({ seed, problems }).toEqual({ seed, problems: [] });
      expect(callbackStatuses).toHaveLength(ORDERS * 3);
      expect(callbackStatuses.every((status) => status === 200)).toBe(true);
      expect(byPage + byServer).toBe(ORDERS);
      expect(matomo.standIn.received.filter((r) => !r.accepted)).toHaveLength(0);
      process.stdout.write(
        `storm (${kind}, ${instanceCount} instance(s), seed ${seed}): ${ORDERS} orders, ${ORDERS * 5} requests in ${elapsedMs} ms; ` +
          `tracked by page ${byPage}, by server ${byServer}; markPaid ${[...orders.paid.values()].reduce((a, b) => a + b, 0)}\n`,
      );
    } finally {
      for (const shop of shops) await shop.close();
      await matomo.close();
    }
  });
});
