import { startRedisServer, type RedisServer } from '../helpers/redis-server';

/**
 * Starts a real redis-server on a free loopback port for the whole run (unless
 * MST_TEST_REDIS_URL points at one already) and hands its URL to the test
 * workers through the environment. global-teardown.ts stops it.
 */
export default async function globalSetup(): Promise<void> {
  if (process.env.MST_TEST_REDIS_URL) return;
  const server = await startRedisServer();
  (globalThis as { __MST_REDIS__?: RedisServer }).__MST_REDIS__ = server;
  process.env.MST_TEST_REDIS_URL = server.url;
}
