import type { RedisServer } from '../helpers/redis-server';

export default async function globalTeardown(): Promise<void> {
  await (globalThis as { __MST_REDIS__?: RedisServer }).__MST_REDIS__?.stop();
}
