/**
 * `npx matomo-server-tracking dead-letters list|retry|drop --redis URL --site N`,
 * against a real redis-server.
 */
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import KeyvRedis from '@keyv/redis';
import Keyv from 'keyv';
import { createClaimStore, type ClaimStore, type OutboxItem } from '../../src/claims';
import { runCli, type CliIo } from '../../src/cli';
import { redisUrl, uniqueSiteId } from '../helpers/harness';

const run = promisify(execFile);

function capture(isTTY = false) {
  const io = { out: '', err: '' };
  const cli: CliIo = { out: (text) => void (io.out += text), err: (text) => void (io.err += text), isTTY };
  return { io, cli };
}

function item(orderId: string): OutboxItem {
  return { id: orderId, orderId, query: `idsite=1&ec_id=${orderId}`, enqueuedAt: Date.UTC(2026, 11, 1), attempts: 5, nextAttemptAt: 0 };
}

describe('dead-letters CLI', () => {
  let keyv: Keyv;
  let store: ClaimStore;
  let site: string;

  beforeEach(async () => {
    const siteId = uniqueSiteId();
    site = String(siteId);
    keyv = new Keyv({ store: new KeyvRedis(redisUrl(), { throwOnErrors: true }) });
    store = createClaimStore(keyv, { siteId, timeoutMs: 2000, now: Date.now });
    for (const [i, id] of ['IT-1', 'IT-2', 'IT-3'].entries()) {
      await store.settlePaid(id, item(id), 60_000);
      await store.outbox.deadLetter({ item: item(id), reason: `Matomo rejected the order with 400 (#${i})`, deadAt: Date.UTC(2026, 11, 2, i) });
    }
  });

  afterEach(async () => {
    await keyv.disconnect();
  });

  const args = (...rest: string[]) => ['dead-letters', ...rest, '--redis', redisUrl(), '--site', site];

  test('list shows each dead letter, oldest first, with its reason', async () => {
    const { io, cli } = capture();
    expect(await runCli(args('list'), cli)).toBe(0);
    const lines = io.out.trim().split('\n');
    expect(lines).toHaveLength(4);
    expect(lines[0]).toMatch(/^IT-1\tdead since 2026-12-02T00:00:00\.000Z\tpaid 2026-12-01T00:00:00\.000Z\t5 tries\tMatomo rejected the order with 400 \(#0\)$/);
    expect(lines[3]).toBe('3 of 3 dead letter(s).');
    const json = capture();
    expect(await runCli(args('list', '--json', '--limit', '2'), json.cli)).toBe(0);
    expect((JSON.parse(json.io.out) as Array<{ item: OutboxItem }>).map((l) => l.item.orderId)).toEqual(['IT-1', 'IT-2']);
  });

  test('retry <id> puts one order back into the outbox', async () => {
    const { io, cli } = capture();
    expect(await runCli(args('retry', 'IT-2'), cli)).toBe(0);
    expect(io.out).toBe('Order IT-2 is back in the outbox.\n');
    expect(await store.deadLetters.count()).toBe(2);
    expect((await store.outbox.lease(Date.now(), 10, 1000)).map((i) => [i.id, i.attempts])).toEqual([['IT-2', 0]]);
  });

  test('retry all moves every dead letter back, with a progress report', async () => {
    const plain = capture(false);
    expect(await runCli(args('retry', 'all'), plain.cli)).toBe(0);
    expect(plain.io.out).toBe('3 order(s) back in the outbox.\n');
    expect(plain.io.err).toContain('3/3 (100%)');
    expect(await store.deadLetters.count()).toBe(0);
    expect(await store.outbox.depth()).toBe(3);
  });

  test('the progress bar redraws in place on a terminal', async () => {
    const tty = capture(true);
    expect(await runCli(args('retry', 'all'), tty.cli)).toBe(0);
    expect(tty.io.err).toContain('\r[##########--------------------] 1/3');
    expect(tty.io.err.endsWith('] 3/3\n')).toBe(true);
  });

  test('drop forgets one dead letter; an unknown id is an error', async () => {
    const ok = capture();
    expect(await runCli(args('drop', 'IT-3'), ok.cli)).toBe(0);
    expect(await store.deadLetters.count()).toBe(2);
    const missing = capture();
    expect(await runCli(args('drop', 'IT-3'), missing.cli)).toBe(1);
    expect(missing.io.err).toBe("No dead letter for order 'IT-3'.\n");
    const all = capture();
    expect(await runCli(args('drop', 'all'), all.cli)).toBe(2);
    expect(await store.deadLetters.count()).toBe(2);
  });

  test.each([
    [['dead-letters', 'list', '--redis', 'redis://x'], /--site <id> is required/],
    [['dead-letters', 'list', '--site', '3'], /--redis <url> is required/],
    [['dead-letters', 'purge', '--redis', 'redis://x', '--site', '3'], /unknown dead-letters command 'purge'/],
    [['queue', 'list'], /unknown command 'queue'/],
    [['dead-letters', 'list', '--bogus'], /Unknown option '--bogus'/],
  ])('usage error %j', async (argv, message) => {
    const { io, cli } = capture();
    expect(await runCli(argv, cli, {})).toBe(2);
    expect(io.err).toMatch(message);
    expect(io.err).toContain('Usage: matomo-server-tracking dead-letters');
  });

  test('an unreachable Redis is reported, exit code 1', async () => {
    const { io, cli } = capture();
    expect(await runCli(['dead-letters', 'list', '--redis', 'redis://127.0.0.1:1', '--site', '3'], cli)).toBe(1);
    expect(io.err).toMatch(/^matomo-server-tracking: /);
  });

  test('the built bin runs (npm test builds dist/ first)', async () => {
    const bin = resolve(__dirname, '../../dist/cli.js');
    const { stdout } = await run(process.execPath, [bin, ...args('list')]);
    expect(stdout).toContain('3 of 3 dead letter(s).');
  });
});
