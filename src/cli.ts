#!/usr/bin/env node
/**
 * `npx matomo-server-tracking dead-letters list|retry|drop --redis URL --site N`
 * Looks at the orders the middleware gave up on, in the Redis every instance shares.
 * Retrying puts them back into the outbox: the running shop instances deliver them.
 */
import { parseArgs } from 'node:util';
import KeyvRedis from '@keyv/redis';
import { RedisClaimStore } from './claims/redis';
import { reviveDeadLetters, type DeadLetter } from './claims';

const USAGE = `Usage: matomo-server-tracking dead-letters <command> --redis <url> --site <id>

Commands:
  list [--limit N] [--json]   show dead letters, oldest first (default limit 100)
  retry <order-id | all>      put them back into the outbox; running instances send them
  drop <order-id>             forget one for good

Options:
  --redis <url>   the Redis the shop's instances share (default: $REDIS_URL)
  --site <id>     the Matomo site id (matomo.siteId)
`;

export interface CliIo {
  out(text: string): void;
  err(text: string): void;
  /** Progress bars only on a terminal. */
  isTTY: boolean;
}

const processIo: CliIo = {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
  isTTY: Boolean(process.stderr.isTTY),
};

class UsageError extends Error {}

/** Runs one command; resolves to the exit code (0 ok, 1 failure, 2 usage). */
export async function runCli(argv: string[], io: CliIo = processIo, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        redis: { type: 'string' },
        site: { type: 'string' },
        limit: { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (error) {
    io.err(`${error instanceof Error ? error.message : String(error)}\n\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const [group, command, target] = positionals;
  if (values.help || positionals.length === 0) {
    io.out(USAGE);
    return values.help ? 0 : 2;
  }
  try {
    if (group !== 'dead-letters') throw new UsageError(`unknown command '${group}': only 'dead-letters' exists.`);
    const url = values.redis ?? env.REDIS_URL;
    if (!url) throw new UsageError('--redis <url> is required (or set REDIS_URL).');
    if (!values.site || !/^[1-9]\d*$/.test(values.site)) throw new UsageError('--site <id> is required: the positive Matomo site id (matomo.siteId).');
    const siteId = Number(values.site);
    if (command === 'list') {
      const limit = values.limit === undefined ? 100 : Number(values.limit);
      if (!Number.isInteger(limit) || limit < 1) throw new UsageError('--limit must be a positive whole number.');
      return await withStore(url, siteId, async (store) => list(store, limit, Boolean(values.json), io));
    }
    if (command === 'retry' || command === 'drop') {
      if (!target) throw new UsageError(`${command} needs an order id${command === 'retry' ? " or 'all'" : ''}.`);
      if (command === 'drop' && target === 'all') throw new UsageError("drop takes one order id at a time: dropping loses the order's analytics for good.");
      return await withStore(url, siteId, async (store) => (command === 'retry' ? retry(store, target, io) : drop(store, target, io)));
    }
    throw new UsageError(`unknown dead-letters command '${command ?? ''}': use list, retry or drop.`);
  } catch (error) {
    if (error instanceof UsageError) {
      io.err(`${error.message}\n\n${USAGE}`);
      return 2;
    }
    io.err(`matomo-server-tracking: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  }
}

async function withStore(url: string, siteId: number, run: (store: RedisClaimStore) => Promise<number>): Promise<number> {
  // One-shot command: fail at once instead of reconnecting forever.
  const adapter = new KeyvRedis({ url, socket: { connectTimeout: 5000, reconnectStrategy: false } }, { throwOnConnectError: true });
  adapter.on('error', () => {}); // reported through the failing command instead
  try {
    return await run(new RedisClaimStore(adapter, siteId, 10_000));
  } finally {
    await adapter.disconnect().catch(() => {});
  }
}

async function list(store: RedisClaimStore, limit: number, json: boolean, io: CliIo): Promise<number> {
  const letters = await store.deadLetters.list(limit);
  const total = await store.deadLetters.count();
  if (json) {
    io.out(`${JSON.stringify(letters, null, 2)}\n`);
    return 0;
  }
  if (letters.length === 0) {
    io.out('No dead letters.\n');
    return 0;
  }
  for (const letter of letters) io.out(`${describe(letter)}\n`);
  io.out(`${letters.length} of ${total} dead letter(s).\n`);
  return 0;
}

function describe({ item, reason, deadAt }: DeadLetter): string {
  return `${item.orderId}\tdead since ${new Date(deadAt).toISOString()}\tpaid ${new Date(item.enqueuedAt).toISOString()}\t${item.attempts} tries\t${reason}`;
}

async function retry(store: RedisClaimStore, target: string, io: CliIo): Promise<number> {
  if (target !== 'all') {
    if ((await reviveDeadLetters(store, target, Date.now)) === 0) {
      io.err(`No dead letter for order '${target}'.\n`);
      return 1;
    }
    io.out(`Order ${target} is back in the outbox.\n`);
    return 0;
  }
  let progress: ((done: number) => void) | null = null;
  const done = await reviveDeadLetters(store, 'all', Date.now, (count, total) => {
    progress ??= progressBar(total, io);
    progress(count);
  });
  io.out(`${done} order(s) back in the outbox.\n`);
  return 0;
}

async function drop(store: RedisClaimStore, target: string, io: CliIo): Promise<number> {
  if (!(await store.deadLetters.drop(target))) {
    io.err(`No dead letter for order '${target}'.\n`);
    return 1;
  }
  io.out(`Dropped the dead letter of order ${target}.\n`);
  return 0;
}

/** `[##########----------] 120/500` on a terminal, redrawn in place; a line per 10% otherwise. */
export function progressBar(total: number, io: CliIo, width = 30): (done: number) => void {
  let lastTenth = -1;
  return (done) => {
    if (total === 0) return;
    const ratio = Math.min(1, done / total);
    if (io.isTTY) {
      const filled = Math.round(ratio * width);
      io.err(`\r[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${done}/${total}${done >= total ? '\n' : ''}`);
      return;
    }
    const tenth = Math.floor(ratio * 10);
    if (tenth !== lastTenth) {
      lastTenth = tenth;
      io.err(`${done}/${total} (${tenth * 10}%)\n`);
    }
  };
}

if (require.main === module) {
  void runCli(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
