/**
 * "Delivery that loses nothing" (issue 3) against a real HTTP Matomo stand-in and a
 * real redis-server: Matomo down, answering 500/429, hanging; two instances on one
 * outbox; bulk answers naming invalid requests; close() with a backlog and a restart.
 * Every test prints its figures on one line: sent, retried, dead, duplicates the
 * stand-in caught (a second request for an `ec_id` it had recorded).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import KeyvRedis from '@keyv/redis';
import express from 'express';
import Keyv from 'keyv';
import { createMatomoStandIn, type MatomoStandIn } from '../../example-app/matomo-stand-in';
import { createClaimStore, type ClaimStore, type OutboxItem } from '../../src/claims';
import type { MatomoServerTrackingOptions, Order, TrackingEvents } from '../../src';
import { buildOrderQuery } from '../../src/matomo/request';
import {
  closeServer,
  createHarness,
  createOrders,
  paid,
  redisUrl,
  uniqueSiteId,
  type Harness,
  type RecordingOrders,
} from '../helpers/harness';
import { freePort } from '../helpers/redis-server';
import { seeded } from '../helpers/random';

const DAY_MS = 24 * 60 * 60 * 1000;

/** A stand-in served on `port` (0: any free one), so it can come up on a port the shop already points at. */
async function serveStandIn(standIn: MatomoStandIn, port = 0): Promise<{ domain: string; close(): Promise<void> }> {
  const app = express();
  app.use(standIn.router);
  const server: Server = createServer(app);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  // closeServer() also ends the connections a 'hang' fault keeps open
  return { domain: `127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => closeServer(server) };
}

/** Options of one shop instance pointing at `domain`, with short delivery timings. */
function shopOptions(
  domain: string,
  siteId: number,
  { timeoutMs = 2000, ...delivery }: { timeoutMs?: number; leaseMs?: number; batchSize?: number } = {},
): Partial<MatomoServerTrackingOptions> {
  return {
    matomo: { domain, siteId, protocol: 'http', timeoutMs },
    delivery: { backoffMs: 20, maxBackoffMs: 200, pollIntervalMs: 50, leaseMs: Math.max(2000, timeoutMs * 2), ...delivery },
  };
}

function addOrders(orders: RecordingOrders, prefix: string, count: number): Order[] {
  return Array.from({ length: count }, (_, i) =>
    orders.add({ id: `${prefix}-${i}`, revenue: 10 + (i % 7), items: [{ sku: `SKU-${i % 5}`, price: 10 + (i % 7), quantity: 1 }] }),
  );
}

/** Sends each order's paid callback, `concurrency` at a time; returns status and duration of each. */
async function payAll(shop: Harness, orders: Order[], concurrency = 25): Promise<Array<{ status: number; ms: number; doneAt: number }>> {
  const results: Array<{ status: number; ms: number; doneAt: number }> = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < orders.length) {
        const order = orders[next++]!;
        const started = Date.now();
        const response = await shop.notify(paid(order));
        results.push({ status: response.status, ms: Date.now() - started, doneAt: Date.now() });
      }
    }),
  );
  return results;
}

async function waitUntil(what: string, condition: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; ) {
    if (await condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting until ${what}`);
}

/** A second request for an order the stand-in had already recorded (it refuses it, as Matomo does). */
const duplicatesCaught = (standIn: MatomoStandIn) =>
  standIn.received.filter((entry) => !entry.accepted && /already recorded/.test(entry.reason ?? '')).length;

/** How many times the stand-in recorded each of `ids` (it should be once each). */
function timesRecorded(standIn: MatomoStandIn, ids: string[]): Map<string, number> {
  const times = new Map(ids.map((id) => [id, 0]));
  for (const entry of standIn.received) {
    const id = entry.params.ec_id;
    if (entry.accepted && id !== undefined && times.has(id)) times.set(id, times.get(id)! + 1);
  }
  return times;
}

function expectEachRecordedOnce(standIn: MatomoStandIn, ids: string[]): void {
  const wrong = [...timesRecorded(standIn, ids)].filter(([, times]) => times !== 1);
  expect(wrong).toEqual([]);
  expect(duplicatesCaught(standIn)).toBe(0);
}

async function figures(test: string, shops: Harness[], standIn: MatomoStandIn, extra: Record<string, unknown> = {}): Promise<void> {
  const stats = await Promise.all(shops.map((shop) => shop.tracking.stats()));
  const sum = (pick: (s: (typeof stats)[number]) => number) => stats.reduce((total, s) => total + pick(s), 0);
  const line = {
    sent: sum((s) => s.delivery.sent),
    retried: sum((s) => s.delivery.retried),
    dead: sum((s) => s.delivery.dead),
    duplicatesCaught: duplicatesCaught(standIn),
    ...extra,
  };
  process.stdout.write(`[delivery-faults] ${test}: ${Object.entries(line).map(([k, v]) => `${k}=${String(v)}`).join(' ')}\n`);
}

/** The shop's Redis, opened directly: to queue orders without a shop, or to look into the outbox. */
function openStore(siteId: number): { store: ClaimStore; close(): Promise<void> } {
  const keyv = new Keyv({ store: new KeyvRedis(redisUrl(), { throwOnErrors: true }) });
  const store = createClaimStore(keyv, { siteId, timeoutMs: 5000, now: Date.now });
  return {
    store,
    close: async () => {
      await store.close();
      await keyv.disconnect();
    },
  };
}

/** Queues paid orders in the outbox as a paid callback does (claim + enqueue in one step). */
async function enqueueDirectly(store: ClaimStore, siteId: number, orders: Order[]): Promise<void> {
  for (let i = 0; i < orders.length; i += 100) {
    await Promise.all(
      orders.slice(i, i + 100).map(async (order) => {
        const now = Date.now();
        const query = buildOrderQuery(order, null, { siteId, useUserId: false }).toString();
        const item: OutboxItem = { id: order.id, orderId: order.id, query, enqueuedAt: now, attempts: 0, nextAttemptAt: now };
        expect((await store.settlePaid(order.id, item, 90 * DAY_MS)).enqueued).toBe(true);
      }),
    );
  }
}

describe('delivery faults (Redis outbox, HTTP Matomo stand-in)', () => {
  const cleanups: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });

  test('Matomo down (port closed) for the first part of 500 orders, then up ⇒ all 500 recorded once', async () => {
    const siteId = uniqueSiteId();
    const port = await freePort();
    const domain = `127.0.0.1:${port}`;
    const standIn = createMatomoStandIn();
    const orders = createOrders();
    const shop = await createHarness({ kind: 'redis', siteId, orders, matomo: { standIn, domain }, options: shopOptions(domain, siteId) });
    cleanups.push(() => shop.close());
    await shop.listen();
    const all = addOrders(orders, `DOWN-${siteId}`, 500);

    const whileDown = await payAll(shop, all.slice(0, 250));
    expect(whileDown.every((result) => result.status === 200)).toBe(true);
    const downStats = await shop.tracking.stats();
    expect(downStats.outbox.depth).toBeGreaterThan(0);
    expect(downStats.delivery.retried).toBeGreaterThan(0); // connection refused, retried
    expect(downStats.delivery.sent).toBe(0);

    const matomo = await serveStandIn(standIn, port);
    cleanups.push(() => matomo.close());
    const whileUp = await payAll(shop, all.slice(250));
    expect(whileUp.every((result) => result.status === 200)).toBe(true);

    const ids = all.map((order) => order.id);
    await waitUntil('the stand-in recorded all 500', async () => standIn.orders().size === 500 && (await shop.tracking.stats()).outbox.depth === 0, 20_000);
    expectEachRecordedOnce(standIn, ids);
    const stats = await shop.tracking.stats();
    expect(stats.delivery.sent).toBe(500);
    expect(stats.outbox.deadLetters).toBe(0);
    await figures('Matomo down then up, 500 orders', [shop], standIn, { queuedWhileDown: downStats.outbox.depth });
  });

  test('Matomo answering 500 to 30% at random and 429 with Retry-After: 1 for a while ⇒ all recorded once, Retry-After respected', async () => {
    const seed = Number(process.env.FAULT_SEED ?? Date.now() % 1_000_000);
    const random = seeded(seed);
    const standIn = createMatomoStandIn();
    const matomo = await serveStandIn(standIn);
    cleanups.push(() => matomo.close());
    const siteId = uniqueSiteId();
    const orders = createOrders();
    const shop = await createHarness({ kind: 'redis', siteId, orders, matomo: { standIn, domain: matomo.domain }, options: shopOptions(matomo.domain, siteId) });
    cleanups.push(() => shop.close());
    await shop.listen();
    const all = addOrders(orders, `FLAKY-${siteId}`, 300);

    const started = Date.now();
    standIn.setFault(() => {
      if (Date.now() - started < 1500 && random() < 0.5) return { status: 429, headers: { 'Retry-After': '1' }, body: 'Too Many Requests' };
      return random() < 0.3 ? { status: 500, body: 'Internal Server Error' } : null;
    });
    const callbacks = await payAll(shop, all);
    expect(callbacks.every((result) => result.status === 200)).toBe(true);
    const ids = all.map((order) => order.id);
    await waitUntil('the stand-in recorded all 300', async () => standIn.orders().size === 300 && (await shop.tracking.stats()).outbox.depth === 0, 20_000);
    expectEachRecordedOnce(standIn, ids);

    // Retry-After: after a 429, no request for the same orders before one second has passed.
    const arrivals = new Map<string, number[]>();
    const arrived = (id: string, at: number) => arrivals.set(id, [...(arrivals.get(id) ?? []), at]);
    for (const entry of standIn.received) if (entry.params.ec_id) arrived(entry.params.ec_id, entry.at);
    for (const fault of standIn.faulted) for (const id of fault.ecIds) arrived(id, fault.at);
    const gaps: number[] = [];
    for (const fault of standIn.faulted.filter((f) => f.fault === 429)) {
      for (const id of fault.ecIds) {
        const next = arrivals.get(id)!.filter((at) => at > fault.at).sort((a, b) => a - b)[0];
        if (next !== undefined) gaps.push(next - fault.at);
      }
    }
    const count = (status: number) => standIn.faulted.filter((f) => f.fault === status).length;
    expect(count(429)).toBeGreaterThan(0);
    expect(count(500)).toBeGreaterThan(0);
    expect(gaps.length).toBeGreaterThan(0);
    const soonest = Math.min(...gaps);
    expect(soonest).toBeGreaterThanOrEqual(995);
    const stats = await shop.tracking.stats();
    expect(stats.outbox.deadLetters).toBe(0);
    await figures('500 at 30% + 429 Retry-After 1 s, 300 orders', [shop], standIn, {
      seed,
      answered429: count(429),
      answered500: count(500),
      soonestAfter429Ms: soonest,
    });
  });

  test('Matomo hanging for 5 s ⇒ requests time out and are retried; paid callbacks keep answering fast meanwhile', async () => {
    const standIn = createMatomoStandIn();
    const matomo = await serveStandIn(standIn);
    cleanups.push(() => matomo.close());
    const siteId = uniqueSiteId();
    const orders = createOrders();
    const shop = await createHarness({
      kind: 'redis',
      siteId,
      orders,
      matomo: { standIn, domain: matomo.domain },
      options: shopOptions(matomo.domain, siteId, { timeoutMs: 300, leaseMs: 2000 }),
    });
    cleanups.push(() => shop.close());
    await shop.listen();
    const retries: Array<TrackingEvents['delivery:retry'][0]> = [];
    shop.tracking.events.on('delivery:retry', (retry) => retries.push(retry));
    const all = addOrders(orders, `HANG-${siteId}`, 100);

    const hangUntil = Date.now() + 5000;
    standIn.setFault(() => (Date.now() < hangUntil ? 'hang' : null));
    const callbacks = await payAll(shop, all, 10);
    const lastDone = Math.max(...callbacks.map((result) => result.doneAt));
    const slowest = Math.max(...callbacks.map((result) => result.ms));
    expect(callbacks.every((result) => result.status === 200)).toBe(true);
    expect(lastDone).toBeLessThan(hangUntil); // every callback answered while Matomo was still hanging
    expect(slowest).toBeLessThan(2000); // not waiting for Matomo (which hangs 5 s), with room for a busy CI machine
    expect(standIn.orders().size).toBe(0);

    await waitUntil('Matomo hung at least 2 requests', () => standIn.faulted.length >= 2, 5000);
    const ids = all.map((order) => order.id);
    await waitUntil('the stand-in recorded all 100', async () => standIn.orders().size === 100 && (await shop.tracking.stats()).outbox.depth === 0, hangUntil - Date.now() + 10_000);
    expectEachRecordedOnce(standIn, ids);
    const timeouts = retries.filter((retry) => retry.status === null);
    expect(timeouts.length).toBeGreaterThanOrEqual(2);
    expect(timeouts[0]!.reason).toMatch(/cannot reach Matomo/);
    await figures('Matomo hangs 5 s (timeoutMs 300), 100 orders', [shop], standIn, {
      hungRequests: standIn.faulted.length,
      timeoutRetries: timeouts.length,
      slowestCallbackMs: slowest,
      medianCallbackMs: callbacks.map((result) => result.ms).sort((a, b) => a - b)[50],
    });
  });

  test('two instances on one Redis deliver 1,000 queued orders ⇒ each sent exactly once', async () => {
    const siteId = uniqueSiteId();
    const orders = createOrders();
    const all = addOrders(orders, `TWO-${siteId}`, 1000);
    const direct = openStore(siteId);
    cleanups.push(() => direct.close());
    await enqueueDirectly(direct.store, siteId, all);
    expect(await direct.store.outbox.depth()).toBe(1000);

    // Both instances start while Matomo is down, so neither has a head start when it comes up.
    const port = await freePort();
    const domain = `127.0.0.1:${port}`;
    const standIn = createMatomoStandIn();
    const shops: Harness[] = [];
    for (let i = 0; i < 2; i++) {
      const shop = await createHarness({ kind: 'redis', siteId, orders, matomo: { standIn, domain }, options: shopOptions(domain, siteId, { batchSize: 25 }) });
      cleanups.push(() => shop.close());
      shops.push(shop);
    }
    await waitUntil('both instances tried Matomo', async () => (await Promise.all(shops.map((s) => s.tracking.stats()))).every((s) => s.delivery.retried > 0), 5000);
    const matomo = await serveStandIn(standIn, port);
    cleanups.push(() => matomo.close());

    const ids = all.map((order) => order.id);
    await waitUntil('the stand-in recorded all 1,000', async () => standIn.orders().size === 1000 && (await direct.store.outbox.depth()) === 0, 20_000);
    expectEachRecordedOnce(standIn, ids);
    expect(standIn.received.filter((entry) => entry.params.ec_id !== undefined)).toHaveLength(1000); // not even a refused resend
    const [a, b] = await Promise.all(shops.map((shop) => shop.tracking.stats()));
    expect(a!.delivery.sent + b!.delivery.sent).toBe(1000);
    expect(a!.delivery.sent).toBeGreaterThan(0);
    expect(b!.delivery.sent).toBeGreaterThan(0);
    expect(await direct.store.deadLetters.count()).toBe(0);
    await figures('two instances, 1,000 queued orders', shops, standIn, { sentByA: a!.delivery.sent, sentByB: b!.delivery.sent });
  });

  test('a bulk answer with invalid_indices ⇒ only the invalid orders go to the dead letters; retry(id) delivers one once the cause is fixed', async () => {
    const siteId = uniqueSiteId();
    const orders = createOrders();
    const all = addOrders(orders, `BULK-${siteId}`, 20);
    const direct = openStore(siteId);
    cleanups.push(() => direct.close());
    await enqueueDirectly(direct.store, siteId, all);
    const invalid = [all[2]!.id, all[9]!.id, all[17]!.id];
    const standIn = createMatomoStandIn();
    standIn.setRefusal((params) => (invalid.includes(params.ec_id ?? '') ? 'unknown currency for this site' : null));
    const matomo = await serveStandIn(standIn);
    cleanups.push(() => matomo.close());

    // The 20 orders are all due when the instance starts: one bulk request.
    const shop = await createHarness({ kind: 'redis', siteId, orders, matomo: { standIn, domain: matomo.domain }, options: shopOptions(matomo.domain, siteId) });
    cleanups.push(() => shop.close());
    await shop.settled();
    expect(standIn.received).toHaveLength(20);
    expect(standIn.received.every((entry) => entry.bulk)).toBe(true);
    const valid = all.map((order) => order.id).filter((id) => !invalid.includes(id));
    expectEachRecordedOnce(standIn, valid);
    const letters = await shop.tracking.deadLetters.list();
    expect(letters.map((letter) => letter.item.id).sort()).toEqual([...invalid].sort());
    for (const letter of letters) expect(letter.reason).toMatch(/invalid/);
    expect((await shop.tracking.stats()).outbox).toMatchObject({ depth: 0, deadLetters: 3 });

    standIn.setRefusal(null); // the cause is fixed
    expect(await shop.tracking.deadLetters.retry(invalid[0]!)).toBe(1);
    await waitUntil('the retried order is recorded', () => standIn.orders().has(invalid[0]!), 5000);
    await shop.settled();
    expectEachRecordedOnce(standIn, [...valid, invalid[0]!]);
    expect((await shop.tracking.deadLetters.list()).map((letter) => letter.item.id).sort()).toEqual(invalid.slice(1).sort());
    expect(await shop.tracking.deadLetters.retry('no-such-order')).toBe(0);

    expect(await shop.tracking.deadLetters.drop(invalid[1]!)).toBe(true);
    expect(await shop.tracking.deadLetters.drop(invalid[1]!)).toBe(false);
    expect(await shop.tracking.deadLetters.retry('all')).toBe(1);
    await waitUntil('the last dead letter is recorded', () => standIn.orders().has(invalid[2]!), 5000);
    await shop.settled();
    expect(await shop.tracking.deadLetters.list()).toEqual([]);
    expect(standIn.orders().has(invalid[1]!)).toBe(false);
    expectEachRecordedOnce(standIn, [...valid, invalid[0]!, invalid[2]!]);
    await figures('bulk with invalid_indices, 20 orders (3 refused)', [shop], standIn, { deadLettered: invalid.length, revived: 2, dropped: 1 });
  });

  test('close() with a backlog returns within its timeout, and the backlog is delivered after a restart', async () => {
    const standIn = createMatomoStandIn();
    const matomo = await serveStandIn(standIn);
    cleanups.push(() => matomo.close());
    standIn.setFault(() => 'hang'); // Matomo stuck: the backlog cannot drain
    const siteId = uniqueSiteId();
    const orders = createOrders();
    const options = shopOptions(matomo.domain, siteId, { timeoutMs: 5000, leaseMs: 15_000 });
    const first = await createHarness({ kind: 'redis', siteId, orders, matomo: { standIn, domain: matomo.domain }, options });
    cleanups.push(() => first.close());
    await first.listen();
    const all = addOrders(orders, `CLOSE-${siteId}`, 200);
    expect((await payAll(first, all)).every((result) => result.status === 200)).toBe(true);
    await waitUntil('a send is hanging', () => standIn.faulted.length > 0, 2000);
    const before = await first.tracking.stats();
    expect(before.delivery.inFlight).toBeGreaterThan(0);
    expect(before.outbox.depth).toBe(200);
    expect(before.outbox.oldestAgeMs).toBeGreaterThan(0);

    const closeStarted = Date.now();
    await first.tracking.close({ timeoutMs: 1000 });
    const took = Date.now() - closeStarted;
    expect(took).toBeLessThan(1000 + 500 + 1000); // timeout, then at most the 0.5 s grace (plus room for a busy CI machine)
    expect(standIn.orders().size).toBe(0);

    // Nothing lost, nothing counted as tried: the whole backlog waits in Redis, due at once.
    const direct = openStore(siteId);
    cleanups.push(() => direct.close());
    expect(await direct.store.outbox.depth()).toBe(200);
    const due = await direct.store.outbox.lease(Date.now(), 1000, 0);
    expect(due).toHaveLength(200);
    expect(due.every((item) => item.attempts === 0)).toBe(true);

    standIn.setFault(null);
    const restarted = await createHarness({ kind: 'redis', siteId, orders, matomo: { standIn, domain: matomo.domain }, options });
    cleanups.push(() => restarted.close());
    const ids = all.map((order) => order.id);
    await waitUntil('the restarted instance delivered the backlog', async () => standIn.orders().size === 200 && (await direct.store.outbox.depth()) === 0, 10_000);
    expectEachRecordedOnce(standIn, ids);
    expect((await restarted.tracking.stats()).delivery.sent).toBe(200);
    await figures('close() with a backlog of 200, then restart', [first, restarted], standIn, {
      closeTookMs: took,
      inFlightAtClose: before.delivery.inFlight,
      hungRequests: standIn.faulted.length,
    });
  });
});
