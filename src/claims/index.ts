import { ConfigError } from '../errors';
import type { ClaimStore } from './claim-store';
import { MemoryClaimStore } from './memory';
import { RedisClaimStore, type KeyvRedisLike } from './redis';

export type { ClaimStore, DeadLetter, OutboxItem, SettlePaidResult } from './claim-store';
export { keys } from './claim-store';
export { MemoryClaimStore } from './memory';
export { RedisClaimStore } from './redis';
export { reviveDeadLetters } from './revive';

function isKeyvRedis(adapter: unknown): adapter is KeyvRedisLike {
  return (
    typeof adapter === 'object' &&
    adapter !== null &&
    typeof (adapter as KeyvRedisLike).getClient === 'function' &&
    typeof (adapter as KeyvRedisLike).client === 'object'
  );
}

/**
 * Picks the claim store for the shop's Keyv: no Keyv or Keyv's own in-memory Map ⇒
 * memory; `@keyv/redis` ⇒ Redis on its client. Any other adapter cannot set a key
 * only if it is absent, and a get-then-set claim would track orders twice: refuse it.
 */
export function createClaimStore(
  store: unknown,
  options: { siteId: number; timeoutMs: number; now: () => number },
): ClaimStore {
  if (store === undefined) return new MemoryClaimStore(options.now);
  const adapter = (store as { store?: unknown }).store;
  if (adapter instanceof Map) return new MemoryClaimStore(options.now);
  if (isKeyvRedis(adapter)) return new RedisClaimStore(adapter, options.siteId, options.timeoutMs);
  const name = (adapter as { constructor?: { name?: string } })?.constructor?.name ?? typeof adapter;
  throw new ConfigError([
    {
      path: 'store',
      message:
        `the Keyv adapter ${name} cannot claim an order atomically (set-if-absent), so orders could be tracked twice. ` +
        'Use new Keyv({ store: new KeyvRedis(url) }) from @keyv/redis, or leave `store` out for the in-memory store (one process only).',
    },
  ]);
}
