/**
 * `npm run bench`: what the middleware costs a shop, as ratios measured side by
 * side in one run on this machine (absolute numbers vary between machines; the
 * ratios are the goals).
 *
 *   1. confirmation page: plain handler vs. behind the middleware (memory, Redis)
 *   2. paid callbacks: Matomo healthy vs. Matomo hanging — the answer never waits for Matomo
 *
 * Goals: the page keeps ≥ 40 % of its plain throughput on Redis (one store round trip per view,
 * load generator on the same two cores); callbacks keep ≥ 70 %
 * of their throughput while Matomo hangs. Exits 1 when a goal is missed.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import KeyvRedis from '@keyv/redis';
import autocannon from 'autocannon';
import express from 'express';
import Keyv from 'keyv';
import { hmacGateway, matomoServerTracking, signHmacPayload, type Order } from '../src';
import { createMatomoStandIn } from '../example-app/matomo-stand-in';
import { startRedisServer } from '../test/helpers/redis-server';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 5);
const SECRET = 'bench-secret-0123456789';

async function listen(app: express.Express): Promise<{ url: string; server: Server }> {
  const server = createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

async function load(url: string, options: Partial<autocannon.Options> = {}) {
  const result = await autocannon({ url, connections: 20, duration: SECONDS, ...options });
  return { rps: result.requests.average, p99: result.latency.p99, non2xx: result.non2xx, errors: result.errors };
}

const order = (id: string): Order => ({ id, revenue: 25, currency: 'EUR', items: [{ sku: 'SKU', name: 'Cup', price: 12.5, quantity: 2 }] });
const orders = {
  getOrder: async (id: string) => order(id),
  markPaid: async () => {},
  markPaymentUnconfirmed: async () => {},
};

/** A Matomo that never answers (sockets are kept until the bench ends). */
async function hangingMatomo(): Promise<{ domain: string; stop(): Promise<void> }> {
  const sockets = new Set<import('node:net').Socket>();
  const server = (await import('node:net')).createServer((socket) => sockets.add(socket));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    domain: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    stop: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

async function healthyMatomo(): Promise<{ domain: string; stop(): Promise<void> }> {
  const app = express();
  app.use(createMatomoStandIn().router);
  const { url, server } = await listen(app);
  return { domain: url.replace('http://', ''), stop: () => close(server) };
}

async function pageBench(store: Keyv | undefined, label: string) {
  const app = express();
  let tracking: ReturnType<typeof matomoServerTracking> | null = null;
  if (label !== 'plain') {
    tracking = matomoServerTracking({
      matomo: { domain: '127.0.0.1:9', siteId: 1, protocol: 'http' },
      orders,
      store,
      checkoutCookie: { secret: 'bench-checkout-secret' },
      logger: { warn: () => {}, error: () => {} },
    });
    app.use(tracking);
    app.post('/checkout', async (_req, res) => {
      await res.locals.matomo.captureCheckout('B-1');
      res.end();
    });
  }
  app.get('/store/cart/checkout/success', (_req, res) => res.json({ track: res.locals.matomo?.trackOrder ?? false }));
  const { url, server } = await listen(app);
  let cookie = '';
  if (tracking) {
    const response = await fetch(`${url}/checkout`, { method: 'POST' });
    cookie = (response.headers.get('set-cookie') ?? '').split(';')[0]!;
  }
  // every view after the first is a reload of a tracked order: the page's common path
  const result = await load(`${url}/store/cart/checkout/success?id=B-1`, { headers: { cookie } });
  await close(server);
  await tracking?.close({ timeoutMs: 1000 });
  return result;
}

async function callbackBench(matomo: { domain: string }, store: Keyv | undefined) {
  const tracking = matomoServerTracking({
    matomo: { domain: matomo.domain, siteId: 1, protocol: 'http', timeoutMs: 2000 },
    orders,
    store,
    gateways: { acme: hmacGateway({ secret: SECRET }) },
    logger: { warn: () => {}, error: () => {} },
    delivery: { leaseMs: 10_000 },
  });
  const app = express();
  app.use(tracking);
  const { url, server } = await listen(app);
  let next = 0;
  const prefix = `${Date.now()}-${Math.random().toString(36).slice(2, 6)}`;
  const result = await load(`${url}/store/payment/notify/acme`, {
    method: 'POST',
    // a new order per request: every callback is a first, paid, verified notification
    requests: [
      {
        setupRequest: (request) => {
          const signed = signHmacPayload({ payload: { orderId: `P-${prefix}-${next++}`, status: 'paid', amount: '25.00', currency: 'EUR' }, secret: SECRET });
          return { ...request, method: 'POST', headers: signed.headers, body: signed.body };
        },
      },
    ],
  });
  await close(server);
  await tracking.close({ timeoutMs: 500 });
  return result;
}

function row(name: string, r: { rps: number; p99: number; non2xx: number; errors: number }) {
  return `${name.padEnd(44)} ${r.rps.toFixed(0).padStart(8)} req/s   p99 ${String(r.p99).padStart(4)} ms${r.non2xx || r.errors ? `   non-2xx ${r.non2xx}, errors ${r.errors}` : ''}`;
}

async function main() {
  const redis = await startRedisServer();
  const redisKeyv = () => new Keyv({ store: new KeyvRedis(redis.url, { throwOnErrors: true }) });
  const failures: string[] = [];
  try {
    console.log(`matomo-server-tracking bench, ${SECONDS} s per run, 20 connections\n`);
    const plain = await pageBench(undefined, 'plain');
    const pageMemory = await pageBench(undefined, 'memory');
    const keyvPage = redisKeyv();
    const pageRedis = await pageBench(keyvPage, 'redis');
    await keyvPage.disconnect();
    console.log(row('confirmation page, plain handler', plain));
    console.log(row('confirmation page + middleware (memory)', pageMemory));
    console.log(row('confirmation page + middleware (Redis)', pageRedis));
    const pageRatio = pageRedis.rps / plain.rps;
    console.log(`  ratio Redis/plain: ${pageRatio.toFixed(2)} (goal ≥ 0.40), memory/plain: ${(pageMemory.rps / plain.rps).toFixed(2)}\n`);
    if (pageRatio < 0.4) failures.push("confirmation page on Redis below 40 % of the plain handler");

    for (const [name, makeStore] of [
      ['memory', () => undefined],
      ['Redis', redisKeyv],
    ] as const) {
      const healthy = await healthyMatomo();
      const storeA = makeStore();
      const good = await callbackBench(healthy, storeA);
      await healthy.stop();
      await storeA?.disconnect();
      const hanging = await hangingMatomo();
      const storeB = makeStore();
      const bad = await callbackBench(hanging, storeB);
      await hanging.stop();
      await storeB?.disconnect();
      console.log(row(`paid callbacks (${name}), Matomo healthy`, good));
      console.log(row(`paid callbacks (${name}), Matomo hanging`, bad));
      const ratio = bad.rps / good.rps;
      console.log(`  ratio hanging/healthy: ${ratio.toFixed(2)} (goal ≥ 0.70)\n`);
      if (ratio < 0.7) failures.push(`callbacks on ${name} slowed down by a hanging Matomo`);
      if (good.non2xx || bad.non2xx) failures.push(`callbacks on ${name} answered non-2xx`);
    }
  } finally {
    await redis.stop();
  }
  if (failures.length) {
    console.log(`missed: ${failures.join('; ')}`);
    process.exitCode = 1;
  } else {
    console.log('all goals met');
  }
}

void main();
