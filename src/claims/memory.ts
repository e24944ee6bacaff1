import type { Channel } from '../events';
import { keys, type ClaimStore, type DeadLetter, type OutboxItem, type SettlePaidResult } from './claim-store';

interface Entry {
  value: string;
  expiresAt: number;
}

/** Sweep expired entries every this many writes, so a long-lived process does not grow forever. */
const SWEEP_EVERY = 1000;

/**
 * Single-process claim store. Every operation reads and writes the Map inside one
 * synchronous block, and Node runs one block at a time: that is the atomicity the
 * Redis store gets from `SET NX` and Lua. Async only to share the interface.
 */
export class MemoryClaimStore implements ClaimStore {
  readonly kind = 'memory';
  private readonly entries = new Map<string, Entry>();
  /** Item as stored, and when it is due: its own due time, or the end of its lease. */
  private readonly items = new Map<string, { item: OutboxItem; dueAt: number }>();
  private readonly dead = new Map<string, DeadLetter>();
  private writes = 0;

  constructor(private readonly now: () => number = Date.now) {}

  async claim(key: string, owner: string, ttlMs: number): Promise<boolean> {
    if (this.read(key) !== null) return false;
    this.write(key, owner, ttlMs);
    return true;
  }

  async get(key: string): Promise<string | null> {
    return this.read(key);
  }

  async set(key: string, value: string, ttlMs: number): Promise<void> {
    this.write(key, value, ttlMs);
  }

  async extendClaim(key: string, owner: string, ttlMs: number): Promise<boolean> {
    if (this.read(key) !== owner) return false;
    this.write(key, owner, ttlMs);
    return true;
  }

  async release(key: string, owner: string): Promise<boolean> {
    if (this.read(key) !== owner) return false;
    this.entries.delete(key);
    return true;
  }

  async settlePaid(orderId: string, item: OutboxItem | null, ttlMs: number): Promise<SettlePaidResult> {
    const alreadyPaid = this.read(keys.paid(orderId)) !== null;
    if (!alreadyPaid) this.write(keys.paid(orderId), 'paid', ttlMs);
    let tracking = this.read(keys.tracking(orderId)) as Channel | null;
    let enqueued = false;
    if (!alreadyPaid && item && tracking === null) {
      this.write(keys.tracking(orderId), 'server', ttlMs);
      this.items.set(item.id, { item: { ...item }, dueAt: item.nextAttemptAt });
      tracking = 'server';
      enqueued = true;
    }
    return { alreadyPaid, tracking, enqueued };
  }

  readonly outbox = {
    lease: async (now: number, limit: number, leaseMs: number): Promise<OutboxItem[]> => {
      const due = [...this.items.values()]
        .filter((entry) => entry.dueAt <= now)
        .sort((a, b) => a.dueAt - b.dueAt)
        .slice(0, limit);
      for (const entry of due) entry.dueAt = now + leaseMs;
      return due.map((entry) => ({ ...entry.item }));
    },
    renew: async (ids: string[], now: number, leaseMs: number): Promise<void> => {
      for (const id of ids) {
        const entry = this.items.get(id);
        if (entry) entry.dueAt = now + leaseMs;
      }
    },
    complete: async (id: string): Promise<void> => {
      this.items.delete(id);
    },
    reschedule: async (item: OutboxItem): Promise<void> => {
      if (this.items.has(item.id)) this.items.set(item.id, { item: { ...item }, dueAt: item.nextAttemptAt });
    },
    deadLetter: async (letter: DeadLetter): Promise<void> => {
      if (!this.items.delete(letter.item.id)) return;
      this.dead.set(letter.item.id, { ...letter, item: { ...letter.item } });
    },
    depth: async (): Promise<number> => this.items.size,
    oldestEnqueuedAt: async (): Promise<number | null> => {
      let oldest: number | null = null;
      for (const { item } of this.items.values()) if (oldest === null || item.enqueuedAt < oldest) oldest = item.enqueuedAt;
      return oldest;
    },
  };

  readonly deadLetters = {
    list: async (limit: number): Promise<DeadLetter[]> =>
      [...this.dead.values()]
        .sort((a, b) => a.deadAt - b.deadAt)
        .slice(0, limit)
        .map((letter) => ({ ...letter, item: { ...letter.item } })),
    count: async (): Promise<number> => this.dead.size,
    revive: async (id: string, now: number): Promise<boolean> => {
      const letter = this.dead.get(id);
      if (!letter) return false;
      this.dead.delete(id);
      this.items.set(id, { item: { ...letter.item, attempts: 0, nextAttemptAt: now, revivedAt: now }, dueAt: now });
      return true;
    },
    drop: async (id: string): Promise<boolean> => this.dead.delete(id),
  };

  async close(): Promise<void> {
    // Nothing to release: the data belongs to this process and goes with it.
  }

  private read(key: string): string | null {
    const entry = this.entries.get(key);
    if (!entry) return null;
    if (entry.expiresAt <= this.now()) {
      this.entries.delete(key);
      return null;
    }
    return entry.value;
  }

  private write(key: string, value: string, ttlMs: number): void {
    this.entries.set(key, { value, expiresAt: this.now() + ttlMs });
    if (++this.writes % SWEEP_EVERY === 0) this.sweep();
  }

  private sweep(): void {
    const now = this.now();
    for (const [key, entry] of this.entries) if (entry.expiresAt <= now) this.entries.delete(key);
  }
}
