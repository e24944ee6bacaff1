import { StoreError } from '../errors';
import type { Channel } from '../events';
import { keys, type ClaimStore, type DeadLetter, type OutboxItem, type SettlePaidResult } from './claim-store';

const OUTBOX_KEYS = [keys.outboxDue(), keys.outboxItems(), keys.outboxAge()];
const DEAD_KEYS = [keys.deadItems(), keys.deadIndex()];

/** The part of a node-redis v5 client (single, cluster or sentinel) we use. */
export interface RedisScriptClient {
  /** False while node-redis reconnects. */
  readonly isReady?: boolean;
  eval(script: string, options: { keys: string[]; arguments: string[] }): Promise<unknown>;
}

/** The part of `@keyv/redis`'s adapter we use: its client, connected on demand. */
export interface KeyvRedisLike {
  client: { isOpen?: boolean };
  getClient(): Promise<unknown>;
}

// Every step is one script: Redis runs a script to completion before any other
// command, so check-and-set across keys needs no lock ("do all the work on the
// redis server", as rate-limit-redis puts it). Every key a script touches is
// passed in KEYS and shares the site's hash tag, so Redis Cluster routes the
// script to one slot.

const CLAIM = `return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0`;

const GET = `return redis.call('GET', KEYS[1])`;

const SET = `redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1`;

const EXTEND = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0`;

const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

// The outbox is three structures under the site's hash tag: `outbox:items` (hash id →
// item JSON), `outbox:due` (zset id → due time, or end of lease) and `outbox:age` (zset
// id → enqueue time, for the age of the oldest item). Dead letters: `dead:items` (hash
// id → JSON) and `dead:index` (zset id → time of death).
const OUTBOX = (first: number) => ({ due: `KEYS[${first}]`, items: `KEYS[${first + 1}]`, age: `KEYS[${first + 2}]` });

// KEYS: paid, tracking, outbox due, items, age
// ARGV: ttl ms, item id ('' = do not claim), item json, due score, enqueued at
const SETTLE_PAID = (({ due, items, age }) => `
local newlyPaid = redis.call('SET', KEYS[1], 'paid', 'NX', 'PX', ARGV[1])
local tracking = redis.call('GET', KEYS[2])
local enqueued = 0
if newlyPaid and ARGV[2] ~= '' and not tracking then
  redis.call('SET', KEYS[2], 'server', 'PX', ARGV[1])
  redis.call('HSET', ${items}, ARGV[2], ARGV[3])
  redis.call('ZADD', ${due}, ARGV[4], ARGV[2])
  redis.call('ZADD', ${age}, ARGV[5], ARGV[2])
  tracking = 'server'
  enqueued = 1
end
return { newlyPaid and 0 or 1, tracking or '', enqueued }`)(OUTBOX(3));

// KEYS: due, items. ARGV: now, limit, lease end
const LEASE = `
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
local leased = {}
for _, id in ipairs(ids) do
  local json = redis.call('HGET', KEYS[2], id)
  if json then
    redis.call('ZADD', KEYS[1], ARGV[3], id)
    leased[#leased + 1] = json
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return leased`;

// KEYS: due. ARGV: lease end, ids… (XX: only items still queued)
const RENEW = `
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', ARGV[1], ARGV[i]) end
return 1`;

// KEYS: due, items, age. ARGV: id
const COMPLETE = `
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return redis.call('HDEL', KEYS[2], ARGV[1])`;

// KEYS: due, items. ARGV: id, json, due. Only items still queued are rescheduled.
const RESCHEDULE = `
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1`;

// KEYS: due, items, age, dead items, dead index. ARGV: id, letter json, dead at
const DEAD_LETTER = `
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[4], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[5], ARGV[3], ARGV[1])
return 1`;

// KEYS: due, items, age, dead items, dead index. ARGV: id, now
const REVIVE = `
local json = redis.call('HGET', KEYS[4], ARGV[1])
if not json then return 0 end
local item = cjson.decode(json).item
item.attempts = 0
item.nextAttemptAt = tonumber(ARGV[2])
item.revivedAt = tonumber(ARGV[2])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[5], ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(item))
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZADD', KEYS[3], item.enqueuedAt, ARGV[1])
return 1`;

// KEYS: dead items, dead index. ARGV: id
const DROP_DEAD = `
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('HDEL', KEYS[1], ARGV[1])`;

// KEYS: dead items, dead index. ARGV: limit
// (HGET one by one: unpack() of thousands of ids would overflow Lua's stack.)
const LIST_DEAD = `
local ids = redis.call('ZRANGE', KEYS[2], 0, tonumber(ARGV[1]) - 1)
local letters = {}
for i, id in ipairs(ids) do letters[i] = redis.call('HGET', KEYS[1], id) or '' end
return letters`;

const COUNT = `return redis.call('ZCARD', KEYS[1])`;

// KEYS: age
const OLDEST = `
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #oldest == 0 then return false end
return oldest[2]`;

/**
 * Claim store on the shop's Redis, reusing the client of its `@keyv/redis` adapter.
 * All keys live under `{mst:<siteId>}:`.
 */
export class RedisClaimStore implements ClaimStore {
  readonly kind = 'redis';
  private readonly prefix: string;
  private client: Promise<RedisScriptClient> | null = null;

  constructor(
    private readonly adapter: KeyvRedisLike,
    siteId: number,
    private readonly timeoutMs: number,
  ) {
    this.prefix = `{mst:${siteId}}:`;
  }

  /** The full Redis key of a relative key, for tests and tooling. */
  key(relative: string): string {
    return this.prefix + relative;
  }

  async claim(key: string, owner: string, ttlMs: number): Promise<boolean> {
    return (await this.run(CLAIM, [key], [owner, String(ttlMs)])) === 1;
  }

  async get(key: string): Promise<string | null> {
    const value = await this.run(GET, [key], []);
    return typeof value === 'string' ? value : null;
  }

  async set(key: string, value: string, ttlMs: number): Promise<void> {
    await this.run(SET, [key], [value, String(ttlMs)]);
  }

  async extendClaim(key: string, owner: string, ttlMs: number): Promise<boolean> {
    return (await this.run(EXTEND, [key], [owner, String(ttlMs)])) === 1;
  }

  async release(key: string, owner: string): Promise<boolean> {
    return (await this.run(RELEASE, [key], [owner])) === 1;
  }

  async settlePaid(orderId: string, item: OutboxItem | null, ttlMs: number): Promise<SettlePaidResult> {
    const reply = await this.run(
      SETTLE_PAID,
      [keys.paid(orderId), keys.tracking(orderId), ...OUTBOX_KEYS],
      [String(ttlMs), item?.id ?? '', item ? JSON.stringify(item) : '', String(item?.nextAttemptAt ?? 0), String(item?.enqueuedAt ?? 0)],
    );
    const [alreadyPaid, tracking, enqueued] = reply as [number, string, number];
    return {
      alreadyPaid: alreadyPaid === 1,
      tracking: tracking === '' ? null : (tracking as Channel),
      enqueued: enqueued === 1,
    };
  }

  readonly outbox = {
    lease: async (now: number, limit: number, leaseMs: number): Promise<OutboxItem[]> => {
      const reply = (await this.run(LEASE, [keys.outboxDue(), keys.outboxItems()], [String(now), String(limit), String(now + leaseMs)])) as string[];
      return reply.map((json) => JSON.parse(json) as OutboxItem);
    },
    renew: async (ids: string[], now: number, leaseMs: number): Promise<void> => {
      if (ids.length) await this.run(RENEW, [keys.outboxDue()], [String(now + leaseMs), ...ids]);
    },
    complete: async (id: string): Promise<void> => {
      await this.run(COMPLETE, OUTBOX_KEYS, [id]);
    },
    reschedule: async (item: OutboxItem): Promise<void> => {
      await this.run(RESCHEDULE, [keys.outboxDue(), keys.outboxItems()], [item.id, JSON.stringify(item), String(item.nextAttemptAt)]);
    },
    deadLetter: async (letter: DeadLetter): Promise<void> => {
      await this.run(DEAD_LETTER, [...OUTBOX_KEYS, ...DEAD_KEYS], [letter.item.id, JSON.stringify(letter), String(letter.deadAt)]);
    },
    depth: async (): Promise<number> => Number(await this.run(COUNT, [keys.outboxDue()], [])),
    oldestEnqueuedAt: async (): Promise<number | null> => {
      const score = await this.run(OLDEST, [keys.outboxAge()], []);
      return typeof score === 'string' ? Number(score) : null;
    },
  };

  readonly deadLetters = {
    list: async (limit: number): Promise<DeadLetter[]> => {
      const reply = (await this.run(LIST_DEAD, DEAD_KEYS, [String(limit)])) as string[];
      return reply.filter((json) => json !== '').map((json) => JSON.parse(json) as DeadLetter);
    },
    count: async (): Promise<number> => Number(await this.run(COUNT, [keys.deadIndex()], [])),
    revive: async (id: string, now: number): Promise<boolean> => (await this.run(REVIVE, [...OUTBOX_KEYS, ...DEAD_KEYS], [id, String(now)])) === 1,
    drop: async (id: string): Promise<boolean> => (await this.run(DROP_DEAD, DEAD_KEYS, [id])) === 1,
  };

  async close(): Promise<void> {
    // The client belongs to the shop's Keyv: the shop disconnects it.
    this.client = null;
  }

  private connect(): Promise<RedisScriptClient> {
    // One connect attempt at a time: @keyv/redis's getClient() is not safe to call
    // concurrently before the first connection is up.
    this.client ??= this.adapter.getClient().then(
      (client) => client as RedisScriptClient,
      (error: unknown) => {
        this.client = null;
        throw error;
      },
    );
    return this.client;
  }

  private async run(script: string, relativeKeys: string[], args: string[]): Promise<unknown> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new StoreError(`Redis did not answer within ${this.timeoutMs} ms (storeTimeoutMs)`)),
        this.timeoutMs,
      );
    });
    try {
      const client = await Promise.race([this.connect(), deadline]);
      // While node-redis reconnects it queues commands and runs them once it is back,
      // long after we gave up on them: a lock taken then would block its order. Fail fast instead.
      if (client.isReady === false) throw new StoreError('Redis is reconnecting');
      return await Promise.race([
        client.eval(script, { keys: relativeKeys.map((k) => this.prefix + k), arguments: args }),
        deadline,
      ]);
    } catch (error) {
      if (error instanceof StoreError) throw error;
      throw new StoreError(`Redis failed: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    } finally {
      clearTimeout(timer);
    }
  }
}
