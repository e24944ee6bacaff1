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

  test('extendClaim keeps the owner’s claim alive, and only the owner’s', async () => {
    await store.claim('lease', 'me', 100);
    expect(await store.extendClaim('lease', 'someone-else', 60_000)).toBe(false);
    expect(await store.extendClaim('lease', 'me', 60_000)).toBe(true);
    await subject.elapse(150);
    expect(await store.get('lease')).toBe('me');
    expect(await store.extendClaim('missing', 'me', 60_000)).toBe(false);
    expect(await store.get('missing')).toBeNull();
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

  test('outbox lease: due items oldest first, limited, hidden until the lease ends', async () => {
    await store.settlePaid('late', item('late', 3000), 60_000);
    await store.settlePaid('early', item('early', 1000), 60_000);
    await store.settlePaid('middle', item('middle', 2000), 60_000);
    expect((await store.outbox.lease(2500, 1, 10_000)).map((i) => i.id)).toEqual(['early']);
    // early is leased until 12_500: a second worker gets the next ones, never early
    expect((await store.outbox.lease(3000, 10, 10_000)).map((i) => i.id)).toEqual(['middle', 'late']);
    expect(await store.outbox.lease(12_000, 10, 10_000)).toEqual([]);
    // a crashed worker's lease runs out: the item comes due again, unchanged
    expect(await store.outbox.lease(12_500, 10, 10_000)).toEqual([item('early', 1000)]);
    expect(await store.outbox.depth()).toBe(3);
  });

  test('of 10 workers leasing at once, each item goes to exactly one', async () => {
    for (let i = 0; i < 40; i++) await store.settlePaid(`w${i}`, item(`w${i}`, i), 60_000);
    const leases = await Promise.all(Array.from({ length: 10 }, () => store.outbox.lease(100, 7, 60_000)));
    const ids = leases.flat().map((i) => i.id);
    expect(ids).toHaveLength(40);
    expect(new Set(ids).size).toBe(40);
  });

  test('outbox: reschedule ends the lease with a new due time; complete removes; neither resurrects', async () => {
    await store.settlePaid('a', item('a', 0), 60_000);
    const [leased] = await store.outbox.lease(10, 10, 60_000);
    await store.outbox.reschedule({ ...leased!, attempts: 2, nextAttemptAt: 500 });
    expect(await store.outbox.lease(499, 10, 60_000)).toEqual([]);
    expect(await store.outbox.lease(500, 10, 60_000)).toEqual([{ ...item('a', 500), attempts: 2 }]);
    await store.outbox.complete('a');
    await store.outbox.complete('a'); // idempotent
    await store.outbox.reschedule(item('a', 1)); // gone for good
    await store.outbox.reschedule(item('never-queued', 1));
    expect(await store.outbox.depth()).toBe(0);
    expect(await store.outbox.lease(10_000, 10, 1)).toEqual([]);
  });

  test('outbox: the oldest waiting item’s enqueue time', async () => {
    expect(await store.outbox.oldestEnqueuedAt()).toBeNull();
    await store.settlePaid('x', { ...item('x'), enqueuedAt: 5000 }, 60_000);
    await store.settlePaid('y', { ...item('y'), enqueuedAt: 3000 }, 60_000);
    expect(await store.outbox.oldestEnqueuedAt()).toBe(3000);
    await store.outbox.complete('y');
    expect(await store.outbox.oldestEnqueuedAt()).toBe(5000);
  });

  test('dead letters: moved out of the outbox, listed oldest first, revived with attempts reset, dropped', async () => {
    await store.settlePaid('d1', { ...item('d1'), attempts: 4 }, 60_000);
    await store.settlePaid('d2', item('d2'), 60_000);
    await store.outbox.deadLetter({ item: { ...item('d1'), attempts: 4 }, reason: 'Matomo answered 400', deadAt: 200 });
    await store.outbox.deadLetter({ item: item('d2'), reason: 'too old', deadAt: 100 });
    expect(await store.outbox.depth()).toBe(0);
    expect(await store.outbox.oldestEnqueuedAt()).toBeNull();
    expect(await store.deadLetters.count()).toBe(2);
    expect(await store.deadLetters.list(10)).toEqual([
      { item: item('d2'), reason: 'too old', deadAt: 100 },
      { item: { ...item('d1'), attempts: 4 }, reason: 'Matomo answered 400', deadAt: 200 },
    ]);
    expect(await store.deadLetters.list(1)).toHaveLength(1);
    expect(await store.deadLetters.revive('d1', 7000)).toBe(true);
    expect(await store.deadLetters.revive('d1', 7000)).toBe(false);
    expect(await store.outbox.lease(7000, 10, 1000)).toEqual([{ ...item('d1', 7000), attempts: 0, revivedAt: 7000 }]);
    expect(await store.outbox.oldestEnqueuedAt()).toBe(1);
    expect(await store.deadLetters.drop('d2')).toBe(true);
    expect(await store.deadLetters.drop('d2')).toBe(false);
    expect(await store.deadLetters.count()).toBe(0);
  });

  test('dead-lettering an item that already left the outbox (delivered by another worker) changes nothing', async () => {
    await store.settlePaid('gone', item('gone'), 60_000);
    await store.outbox.complete('gone');
    await store.outbox.deadLetter({ item: item('gone'), reason: 'late worker', deadAt: 1 });
    expect(await store.deadLetters.count()).toBe(0);
  });
});

describe('RedisClaimStore specifics', () => {
  test('listing thousands of dead letters works (no Lua unpack limit)', async () => {
    const keyv = new Keyv({ store: new KeyvRedis(redisUrl(), { throwOnErrors: true }) });
    const store = createClaimStore(keyv, { siteId: uniqueSiteId(), timeoutMs: 5000, now: Date.now });
    try {
      const ids = Array.from({ length: 9000 }, (_, i) => `many-${i}`);
      for (let i = 0; i < ids.length; i += 500) {
        await Promise.all(ids.slice(i, i + 500).map((id) => store.settlePaid(id, item(id), 60_000)));
      }
      await Promise.all(ids.map((id, i) => store.outbox.deadLetter({ item: item(id), reason: 'x', deadAt: i })));
      const letters = await store.deadLetters.list(10_000);
      expect(letters).toHaveLength(9000);
      expect(letters[8999]!.item.id).toBe('many-8999');
    } finally {
      await keyv.disconnect();
    }
  }, 60_000);

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
        [
          `{mst:${siteId}}:outbox:age`,
          `{mst:${siteId}}:outbox:due`,
          `{mst:${siteId}}:outbox:items`,
          `{mst:${siteId}}:paid:y`,
          `{mst:${siteId}}:track:x`,
          `{mst:${siteId}}:track:y`,
        ].sort(),
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
