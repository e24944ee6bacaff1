/**
 * Issue 3's crash test: a shop process on Redis is SIGKILLed at random moments while
 * 300 paid callbacks flow; the gateway re-sends what was not acknowledged to the next
 * process on the same Redis. Every acknowledged order must reach Matomo; a resend
 * of an order Matomo already had (a worker killed between Matomo's answer and its
 * own bookkeeping) is refused by Matomo's unique order id and counted.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { resolve } from 'node:path';
import { Agent, request } from 'undici';
import { signHmacPayload } from '../../src';
import { GATEWAY_SECRET, redisUrl, startMatomo, uniqueSiteId } from '../helpers/harness';

const ORDERS = 300;
const KILLED_PROCESSES = 4;
const CONCURRENCY = 8;
const CHILD = resolve(__dirname, '../helpers/crash-child.ts');

interface Shop {
  child: ChildProcess;
  port: number;
  exited: Promise<void>;
}

function startShop(env: Record<string, string>): Promise<Shop> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<void>((done) => child.once('exit', () => done()));
    let output = '';
    let errors = '';
    child.stderr!.on('data', (chunk: Buffer) => (errors += chunk.toString()));
    child.stdout!.on('data', (chunk: Buffer) => {
      output += chunk.toString();
      const match = /PORT (\d+)/.exec(output);
      if (match) resolvePromise({ child, port: Number(match[1]), exited });
    });
    child.once('exit', (code, signal) => reject(new Error(`crash-child exited early (${code ?? signal}): ${errors.slice(-2000)}`)));
  });
}

describe('crash test', () => {
  test(`SIGKILL at random moments while ${ORDERS} paid callbacks flow: every acknowledged order reaches Matomo`, async () => {
    const matomo = await startMatomo();
    const env = { REDIS_URL: redisUrl(), MATOMO_DOMAIN: matomo.domain, SITE_ID: String(uniqueSiteId()), SECRET: GATEWAY_SECRET };
    const agent = new Agent({ connections: CONCURRENCY, keepAliveTimeout: 1000 });
    const pending = new Set(Array.from({ length: ORDERS }, (_, i) => `K-${i}`));
    const acknowledged = new Set<string>();
    let refusedCallbacks = 0;
    const started = Date.now();

    async function pump(shop: Shop, alive: () => boolean): Promise<void> {
      async function lane(): Promise<void> {
        while (alive()) {
          const orderId = [...pending].find((id) => !inFlight.has(id));
          if (!orderId) return;
          inFlight.add(orderId);
          const signed = signHmacPayload({ payload: { orderId, status: 'paid', amount: '10.00', currency: 'EUR', transactionId: `tx-${orderId}` }, secret: GATEWAY_SECRET });
          try {
            const response = await request(`http://127.0.0.1:${shop.port}/store/payment/notify/acme`, {
              method: 'POST',
              headers: signed.headers,
              body: signed.body,
              dispatcher: agent,
            });
            await response.body.dump();
            if (response.statusCode === 200) {
              acknowledged.add(orderId);
              pending.delete(orderId);
            } else {
              refusedCallbacks++; // 503 while another process's lock expires: the gateway retries
            }
          } catch {
            // killed mid-request: not acknowledged, the gateway will retry
          } finally {
            inFlight.delete(orderId);
          }
        }
      }
      const inFlight = new Set<string>();
      await Promise.all(Array.from({ length: CONCURRENCY }, lane));
    }

    const shops: Shop[] = [];
    try {
      for (let round = 0; round < KILLED_PROCESSES && pending.size > 0; round++) {
        const shop = await startShop(env);
        shops.push(shop);
        let alive = true;
        const killAfter = 100 + Math.floor(Math.random() * 400);
        const timer = setTimeout(() => {
          alive = false;
          shop.child.kill('SIGKILL');
        }, killAfter);
        await pump(shop, () => alive && pending.size > 0);
        clearTimeout(timer);
        shop.child.kill('SIGKILL');
        await shop.exited;
      }
      const last = await startShop(env);
      shops.push(last);
      for (const deadline = Date.now() + 30_000; pending.size > 0 && Date.now() < deadline; ) {
        await pump(last, () => true);
        if (pending.size > 0) await new Promise((r) => setTimeout(r, 100));
      }
      expect(pending.size).toBe(0);

      // the surviving process (its worker, after the dead ones' leases run out) delivers the rest
      const recorded = () => [...acknowledged].filter((id) => matomo.standIn.orders().has(id)).length;
      for (const deadline = Date.now() + 30_000; recorded() < acknowledged.size && Date.now() < deadline; ) {
        await new Promise((r) => setTimeout(r, 100));
      }
      const missing = [...acknowledged].filter((id) => !matomo.standIn.orders().has(id));
      expect(missing).toEqual([]);
      const accepted = matomo.standIn.received.filter((r) => r.accepted);
      const duplicatesCaught = matomo.standIn.received.filter((r) => !r.accepted).length;
      expect(accepted).toHaveLength(ORDERS); // each order recorded once
      expect(new Set(accepted.map((r) => r.params.ec_id)).size).toBe(ORDERS);
      process.stdout.write(
        `crash test: ${ORDERS} orders, ${KILLED_PROCESSES} processes SIGKILLed, ${ORDERS} recorded once, ` +
          `${duplicatesCaught} resend(s) refused by the stand-in's unique ec_id, ${refusedCallbacks} callback(s) answered 503 and retried, ` +
          `${Date.now() - started} ms\n`,
      );
    } finally {
      for (const shop of shops) {
        shop.child.kill('SIGKILL');
        await shop.exited;
      }
      await agent.close();
      await matomo.close();
    }
  }, 120_000);
});
