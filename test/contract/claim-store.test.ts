/**
 * One contract, every claim store (as @keyv/test-suite does for Keyv adapters):
 * the in-memory store and the Redis store on a real redis-server.
 */
import KeyvRedis, { createClient } from '@keyv/redis';
import Keyv from 'keyv';
import { keys, MemoryClaimStore, RedisClaimStore, type ClaimStore, type OutboxItem } from '../../src/claims';
import { createClaimStore } from '../../src/claims';
import { ConfigError, StoreError } from '../../src/errors';
import { redisUrl, uniqueSiteId } from '../helpers/harness';

interface Subject {
  store: ClaimStore;
  /** Moves the store's clock forward (memory) or waits (Redis, whose clock is its own). */
  elapse(ms: number): Promise<void>;
  close(): Promise<void>;
}

const subjects: Record<'memory' | 'redis', () => Subject> = {
  memory() {
    let now = 1_000_000;
    const store = new MemoryClaimStore(() => now);
    return { store, elapse: async (ms) => void (now += ms), close: () => store.close() };
  },
  redis() {
    const keyv = new Keyv({ store: new KeyvRedis(redisUrl(), { throwOnErrors: true }) });
    const store = createClaimStore(keyv, { siteId: uniqueSiteId(), timeoutMs: 2000, now: Date.now });
    return {
      store,
      elapse: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
      close: async () => {
        await store.close();
        await keyv.disconnect();
      },
    };
  },
};

function item(orderId: string, nextAttemptAt = 0): OutboxItem {
  return { id: orderId, orderId, query: `idsite=1&ec_id=${orderId}`, enqueuedAt: 1, attempts: 0, nextAttemptAt };
}

describe.each(Object.keys(subjects) as Array<keyof typeof subjects>)('ClaimStore contract (%s)', (kind) => {
  let subject: Subject;
  let store: ClaimStore;

  beforeEach(() => {
    subject = subjects[kind]();
    store = subject.store;
  });
  afterEach(() => subject.close());

  test('the first claim wins; later claims on the same key lose', async () => {
    expect(await store.claim('k', 'client', 60_000)).toBe(true);
    expect(await store.claim('k', 'server', 60_000)).toBe(false);
    expect(await store.get('k')).toBe('client');
  });

  test('of 50 concurrent claims exactly one wins', async () => {
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => store.claim('race', `owner-${i}`, 60_000)));
    expect(results.filter(Boolean)).toHaveLength(1);
    expect(await store.get('race')).toBe(`owner-${results.indexOf(true)}`);
  });

  test('a claim expires after its ttl', async () => {
    expect(await store.claim('short', 'a', 50)).toBe(true);
    await subject.elapse(120);
    expect(await store.get('short')).toBeNull();
    expect(await store.claim('short', 'b', 50)).toBe(true);
  });

  test('release deletes only the owner’s claim', async () => {
    await store.claim('lock', 'me', 60_000);
    expect(await store.release('lock', 'someone-else')).toBe(false);
    expect(await store.get('lock')).toBe('me');
    expect(await store.release('lock', 'me')).toBe(true);
    expect(await store.get('lock')).toBeNull();
  });

  test('set overwrites and get reads; a missing key reads null', async () => {
    expect(await store.get('missing')).toBeNull();
    await store.set('v', 'one', 60_000);
    await store.set('v', 'two', 60_000);
    expect(await store.get('v')).toBe('two');
  });

  test('settlePaid on a fresh order: marks paid, claims server and enqueues in one step', async () => {
    const result = await store.settlePaid('o1', item('o1'), 60_000);
    expect(result).toEqual({ alreadyPaid: false, tracking: 'server', enqueued: true });
    expect(await store.get(keys.paid('o1'))).toBe('paid');
    expect(await store.get(keys.tracking('o1'))).toBe('server');
    expect(await store.outbox.depth()).toBe(1);
  });

  test('settlePaid twice: the second is already paid and enqueues nothing', async () => {
    await store.settlePaid('o1', item('o1'), 60_000);
    expect(await store.settlePaid('o1', item('o1'), 60_000)).toEqual({ alreadyPaid: true, tracking: 'server', enqueued: false });
    expect(await store.outbox.depth()).toBe(1);
  });

  test('settlePaid after the page claimed: paid, but the server neither claims nor enqueues', async () => {
    await store.claim(keys.tracking('o2'), 'client', 60_000);
    expect(await store.settlePaid('o2', item('o2'), 60_000)).toEqual({ alreadyPaid: false, tracking: 'client', enqueued: false });
    expect(await store.get(keys.tracking('o2'))).toBe('client');
    expect(await store.outbox.depth()).toBe(0);
  });

  test('settlePaid without an item (server tracking off): paid, tracking left to the page', async () => {
    expect(await store.settlePaid('o3', null, 60_000)).toEqual({ alreadyPaid: false, tracking: null, enqueued: false });
    expect(await store.claim(keys.tracking('o3'), 'client', 60_000)).toBe(true);
  });

  test('concurrent settlePaid and page claims: exactly one channel wins, at most one item is queued', async () => {
    const orders = Array.from({ length: 30 }, (_, i) => `race-${i}`);
    await Promise.all(
      orders.flatMap((id) => [
        store.settlePaid(id, item(id), 60_000),
        store.claim(keys.tracking(id), 'client', 60_000),
        store.settlePaid(id, item(id), 60_000),
      ]),
    );
    let queued = 0;
    for (const id of orders) {
      const owner = await store.get(keys.tracking(id));
      expect(['client', 'server']).toContain(owner);
      if (owner === 'server') queued++;
    }
    expect(await store.outbox.depth()).toBe(queued);
  });

  test('outbox: due items oldest first, limited; reschedule moves an item; complete removes it', async () => {
    await store.settlePaid('late', item('late', 3000), 60_000);
    await store.settlePaid('early', item('early', 1000), 60_000);
    await store.settlePaid('middle', item('middle', 2000), 60_000);
    expect((await store.outbox.due(2500, 10)).map((i) => i.id)).toEqual(['early', 'middle']);
    expect((await store.outbox.due(5000, 1)).map((i) => i.id)).toEqual(['early']);
    await store.outbox.reschedule({ ...item('early', 4000), attempts: 2 });
    const due = await store.outbox.due(3500, 10);
    expect(due.map((i) => i.id)).toEqual(['middle', 'late']);
    expect((await store.outbox.due(4000, 10)).find((i) => i.id === 'early')).toMatchObject({ attempts: 2, nextAttemptAt: 4000 });
    await store.outbox.complete('middle');
    expect(await store.outbox.depth()).toBe(2);
    await store.outbox.complete('middle'); // idempotent
    await store.outbox.reschedule(item('never-queued', 1)); // does not resurrect or create
    expect(await store.outbox.depth()).toBe(2);
  });
});

describe('RedisClaimStore specifics', () => {
  test('every key lives under the site’s hash tag {mst:<siteId>} (Redis Cluster routes them to one slot)', async () => {
    const siteId = uniqueSiteId();
    const keyv = new Keyv({ store: new KeyvRedis(redisUrl(), { throwOnErrors: true }) });
    const store = createClaimStore(keyv, { siteId, timeoutMs: 2000, now: Date.now });
    const raw = createClient({ url: redisUrl() });
    await raw.connect();
    try {
      await store.claim(keys.tracking('x'), 'client', 60_000);
      await store.settlePaid('y', item('y'), 60_000);
      const found = (await raw.keys(`*${siteId}*`)).sort();
      expect(found).toEqual(
        [`{mst:${siteId}}:outbox:due`, `{mst:${siteId}}:outbox:items`, `{mst:${siteId}}:paid:y`, `{mst:${siteId}}:track:x`, `{mst:${siteId}}:track:y`].sort(),
      );
      expect(await raw.pTTL(`{mst:${siteId}}:track:x`)).toBeGreaterThan(59_000);
    } finally {
      raw.destroy();
      await keyv.disconnect();
    }
  });

  test('Redis unreachable: operations fail with StoreError within storeTimeoutMs, never hang', async () => {
    const keyv = new Keyv({ store: new KeyvRedis({ url: 'redis://127.0.0.1:1', socket: { reconnectStrategy: false } }) });
    keyv.on('error', () => {});
    const store = createClaimStore(keyv, { siteId: 1, timeoutMs: 300, now: Date.now });
    await expect(store.claim('k', 'v', 1000)).rejects.toBeInstanceOf(StoreError);
    await keyv.disconnect().catch(() => {});
  });

  test('the adapter is recognised from the Keyv instance; an adapter without set-if-absent is refused', () => {
    expect(createClaimStore(undefined, { siteId: 1, timeoutMs: 100, now: Date.now })).toBeInstanceOf(MemoryClaimStore);
    expect(createClaimStore(new Keyv(), { siteId: 1, timeoutMs: 100, now: Date.now })).toBeInstanceOf(MemoryClaimStore);
    const redisKeyv = new Keyv({ store: new KeyvRedis(redisUrl()) });
    expect(createClaimStore(redisKeyv, { siteId: 1, timeoutMs: 100, now: Date.now })).toBeInstanceOf(RedisClaimStore);
    class SomeSqlAdapter {
      async get() {}
      async set() {}
      async delete() {
        return true;
      }
      async clear() {}
      on() {
        return this;
      }
    }
    const sqlKeyv = new Keyv({ store: new SomeSqlAdapter() as never });
    const create = () => createClaimStore(sqlKeyv, { siteId: 1, timeoutMs: 100, now: Date.now });
    expect(create).toThrow(ConfigError);
    expect(create).toThrow(/the Keyv adapter SomeSqlAdapter cannot claim an order atomically/);
  });
});
