/**
 * A shop process for the crash test: the middleware on Redis, serving paid
 * callbacks, until the test SIGKILLs it. Prints `PORT <n>` once it listens.
 * Every order `K-<n>` exists, costs 10 EUR, and markPaid is idempotent.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import KeyvRedis from '@keyv/redis';
import express from 'express';
import Keyv from 'keyv';
import { hmacGateway, matomoServerTracking, type Order } from '../../src';

const { REDIS_URL, MATOMO_DOMAIN, SITE_ID, SECRET } = process.env;
if (!REDIS_URL || !MATOMO_DOMAIN || !SITE_ID || !SECRET) throw new Error('crash-child needs REDIS_URL, MATOMO_DOMAIN, SITE_ID and SECRET');

const order = (id: string): Order => ({ id, revenue: 10, currency: 'EUR', items: [{ sku: 'CRASH', price: 10, quantity: 1 }] });

const tracking = matomoServerTracking({
  matomo: { domain: MATOMO_DOMAIN, siteId: SITE_ID, protocol: 'http', timeoutMs: 1000 },
  orders: {
    getOrder: async (id) => (id.startsWith('K-') ? order(id) : null),
    markPaid: async () => {},
    markPaymentUnconfirmed: async () => {},
  },
  store: new Keyv({ store: new KeyvRedis(REDIS_URL, { throwOnErrors: true }) }),
  gateways: { acme: hmacGateway({ secret: SECRET }) },
  logger: { warn: () => {}, error: () => {} },
  checkoutCookie: { secret: 'crash-test-checkout-secret' },
  lockWaitMs: 200,
  lockTtlMs: 1500,
  delivery: { backoffMs: 50, maxBackoffMs: 300, pollIntervalMs: 50, leaseMs: 1500 },
});

const app = express();
app.use(tracking);
const server = createServer(app);
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`PORT ${(server.address() as AddressInfo).port}\n`);
});
process.on('SIGTERM', () => {
  server.close();
  void tracking.close({ timeoutMs: 2000 }).then(() => process.exit(0));
});
