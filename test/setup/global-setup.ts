import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Starts a real redis-server on a free loopback port for the whole run (unless
 * MST_TEST_REDIS_URL points at one already) and hands its URL to the test
 * workers through the environment. global-teardown.ts stops it.
 */
export default async function globalSetup(): Promise<void> {
  if (process.env.MST_TEST_REDIS_URL) return;
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'mst-redis-'));
    const child = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--protected-mode', 'yes'],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    try {
      await waitForPing(port, child);
      (globalThis as { __MST_REDIS__?: ChildProcess }).__MST_REDIS__ = child;
      process.env.MST_TEST_REDIS_URL = `redis://127.0.0.1:${port}`;
      return;
    } catch (error) {
      lastError = error;
      child.kill('SIGKILL');
    }
  }
  throw new Error(
    `could not start redis-server for the Redis tests (${String(lastError)}). ` +
      'Install it with `apt-get install -y redis-server` (npm test does so when run as root), or set MST_TEST_REDIS_URL.',
  );
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

async function waitForPing(port: number, child: ChildProcess): Promise<void> {
  let exited: string | null = null;
  child.once('error', (error) => (exited = error.message));
  child.once('exit', (code) => (exited = `redis-server exited with code ${code}`));
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (exited) throw new Error(exited);
    if (await ping(port)) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error('redis-server did not answer PING within 10 s');
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.setTimeout(500);
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (data) => {
      socket.destroy();
      resolve(data.toString().startsWith('+PONG'));
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
}
