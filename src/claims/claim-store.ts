import type { Channel } from '../events';

/** One order waiting to be sent to Matomo, kept in the store until Matomo accepted it. */
export interface OutboxItem {
  /** One order is one item: the order id, so that enqueueing twice is impossible. */
  id: string;
  orderId: string;
  /** The Tracking API query string, without `token_auth`, `cdt` and `r` (added at send time). */
  query: string;
  /** When the paid callback arrived (ms): becomes `cdt`. */
  enqueuedAt: number;
  /** Sending attempts made so far. */
  attempts: number;
  /** Not to be sent before this time (ms). */
  nextAttemptAt: number;
  /** When a person sent it back from the dead letters (ms): the give-up age counts from then. */
  revivedAt?: number;
}

/** An order Matomo refused for good, or that could not be delivered in time: kept for a person to look at. */
export interface DeadLetter {
  item: OutboxItem;
  /** Why it was given up, e.g. Matomo's answer. */
  reason: string;
  /** When it was given up (ms). */
  deadAt: number;
}

export interface SettlePaidResult {
  /** The order was already marked paid by an earlier notification. */
  alreadyPaid: boolean;
  /** Which channel holds the tracking claim after this step (`null`: nobody). */
  tracking: Channel | null;
  /** This step claimed the order for the server and put it in the outbox. */
  enqueued: boolean;
}

/**
 * The atomic operations "first event wins" needs (DESIGN §3). Keyv cannot do
 * set-if-absent, so each backend implements them natively: a synchronous Map in
 * memory, `SET NX PX` and Lua scripts in Redis. Keys are relative: the store
 * prefixes them with its site namespace.
 */
export interface ClaimStore {
  readonly kind: 'memory' | 'redis';
  /** Sets `key` to `owner` for `ttlMs` unless it exists. `true` when this call set it. */
  claim(key: string, owner: string, ttlMs: number): Promise<boolean>;
  get(key: string): Promise<string | null>;
  set(key: string, value: string, ttlMs: number): Promise<void>;
  /** Sets a new ttl on `key` only while it still holds `owner` (keeping a lock alive). `true` when it did. */
  extendClaim(key: string, owner: string, ttlMs: number): Promise<boolean>;
  /** Deletes `key` only while it still holds `owner` (releasing a lock we own). */
  release(key: string, owner: string): Promise<boolean>;
  /**
   * In one atomic step: mark the order paid; unless it was already paid and when
   * `item` is given, claim tracking for the server if nobody holds it and enqueue `item`.
   */
  settlePaid(orderId: string, item: OutboxItem | null, ttlMs: number): Promise<SettlePaidResult>;
  /**
   * The durable outbox (DESIGN §5). An item is leased by moving its due time to the end
   * of the lease: other workers do not see it until then, so a live worker never sends an
   * item another one holds, and the item of a worker that crashed comes due again.
   */
  readonly outbox: {
    /** Takes up to `limit` items due at `now`, oldest due first, and hides them until `now + leaseMs`. */
    lease(now: number, limit: number, leaseMs: number): Promise<OutboxItem[]>;
    /** Extends the lease of items still in the outbox to `now + leaseMs` (a long run of sends under one lease). */
    renew(ids: string[], now: number, leaseMs: number): Promise<void>;
    /** Matomo accepted the item: forget it. */
    complete(id: string): Promise<void>;
    /** Stores the item's new attempt count and due time (ends its lease). No-op when it left the outbox. */
    reschedule(item: OutboxItem): Promise<void>;
    /** Moves the item from the outbox to the dead letters; no-op when it already left the outbox (another worker delivered it). */
    deadLetter(letter: DeadLetter): Promise<void>;
    /** Items waiting, due or leased. */
    depth(): Promise<number>;
    /** When the oldest waiting item was enqueued (ms), or `null` when none waits. */
    oldestEnqueuedAt(): Promise<number | null>;
  };
  readonly deadLetters: {
    /** Oldest first. */
    list(limit: number): Promise<DeadLetter[]>;
    count(): Promise<number>;
    /** Back into the outbox, due at `now`, attempts reset, `revivedAt = now`. `false` when there is no such dead letter. */
    revive(id: string, now: number): Promise<boolean>;
    drop(id: string): Promise<boolean>;
  };
  /** Releases what the store itself opened (never the shop's own Redis client). */
  close(): Promise<void>;
}

/** Relative key names, in one place so both backends agree. */
export const keys = {
  tracking: (orderId: string) => `track:${orderId}`,
  paid: (orderId: string) => `paid:${orderId}`,
  /** Set when a verified notification refused the payment; the page then does not track until a payment arrives. */
  unconfirmed: (orderId: string) => `unconfirmed:${orderId}`,
  event: (eventKey: string) => `event:${eventKey}`,
  orderLock: (orderId: string) => `lock:${orderId}`,
  visitor: (orderId: string) => `visitor:${orderId}`,
  checkoutSecret: () => 'checkout-secret',
  outboxDue: () => 'outbox:due',
  outboxItems: () => 'outbox:items',
  outboxAge: () => 'outbox:age',
  deadItems: () => 'dead:items',
  deadIndex: () => 'dead:index',
};
