import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import KeyvRedis from '@keyv/redis';
import express, { type Express } from 'express';
import Keyv from 'keyv';
import request from 'supertest';
import { createMatomoStandIn, type MatomoStandIn } from '../../example-app/matomo-stand-in';
import {
  hmacGateway,
  matomoServerTracking,
  signHmacPayload,
  type MatomoServerTracking,
  type MatomoServerTrackingOptions,
  type Order,
  type OrderRepository,
  type PaymentEvent,
  type TrackingEvents,
} from '../../src';

export type StoreKind = 'memory' | 'redis';
export const STORE_KINDS: StoreKind[] = ['memory', 'redis'];
export const GATEWAY_SECRET = 'test-secret-0123456789abcdef';

export function redisUrl(): string {
  const url = process.env.MST_TEST_REDIS_URL;
  if (!url) throw new Error('MST_TEST_REDIS_URL is not set: the jest global setup starts redis-server and sets it');
  return url;
}

/** A site id no other test uses, so tests share one redis-server without seeing each other's keys. */
export function uniqueSiteId(): number {
  return 100_000 + Math.floor(Math.random() * 1_000_000_000);
}

/** The shop's Keyv: undefined (default in-memory) or a real Redis one. `close()` disconnects it. */
export function createKeyv(kind: StoreKind): { keyv: Keyv | undefined; close(): Promise<void> } {
  if (kind === 'memory') return { keyv: undefined, close: async () => {} };
  const keyv = new Keyv({ store: new KeyvRedis(redisUrl(), { throwOnErrors: true }) });
  return { keyv, close: () => keyv.disconnect() };
}

/** The shop's order table, recording every call we make into it. */
export interface RecordingOrders extends OrderRepository {
  orders: Map<string, Order>;
  paid: Map<string, number>;
  unconfirmed: Array<{ orderId: string; payment: PaymentEvent | null }>;
  add(order: Partial<Order> & { id: string }): Order;
}

export function createOrders(): RecordingOrders {
  const orders = new Map<string, Order>();
  const paid = new Map<string, number>();
  const unconfirmed: RecordingOrders['unconfirmed'] = [];
  return {
    orders,
    paid,
    unconfirmed,
    add(partial) {
      const order: Order = {
        revenue: 25,
        currency: 'EUR',
        items: [{ sku: 'SKU-1', name: 'Espresso cup', category: 'Kitchen', price: 12.5, quantity: 2 }],
        ...partial,
      };
      orders.set(order.id, order);
      return order;
    },
    async getOrder(orderId) {
      return orders.get(orderId) ?? null;
    },
    async markPaid(orderId) {
      paid.set(orderId, (paid.get(orderId) ?? 0) + 1);
    },
    async markPaymentUnconfirmed(orderId, payment) {
      unconfirmed.push({ orderId, payment });
    },
  };
}

/** A real HTTP Matomo stand-in, since the middleware talks to Matomo over the network with undici. */
export async function startMatomo(): Promise<{ standIn: MatomoStandIn; domain: string; close(): Promise<void> }> {
  const standIn = createMatomoStandIn();
  const app = express();
  app.use(standIn.router);
  const server = createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { standIn, domain: `127.0.0.1:${port}`, close: () => closeServer(server) };
}

export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve, reject) => {
    server.close((error) => (error ? reject(error) : resolve()));
    server.closeAllConnections();
  });
}

export interface PageView {
  status: number;
  trackOrder: boolean;
  script: string;
  orderId: string | null;
}

export interface Harness {
  app: Express;
  tracking: MatomoServerTracking;
  orders: RecordingOrders;
  matomo: MatomoStandIn;
  siteId: number;
  /** Every event the middleware emitted, in order. */
  events: Array<{ name: keyof TrackingEvents; payload: unknown }>;
  /** Runs the shop's checkout for `orderId`; returns the browser's Cookie header. */
  checkout(orderId: string, cookie?: string): Promise<string>;
  /** Opens the confirmation page as the browser holding `cookie`. */
  page(orderId: string, cookie?: string): Promise<PageView>;
  /** Sends a correctly signed gateway callback. */
  notify(payload: object, options?: { secret?: string; timestamp?: number; gateway?: string }): Promise<request.Response>;
  /** Waits (up to 5 s) until the outbox is empty and no Matomo send is in flight. */
  settled(): Promise<void>;
  /** Serves the app on a real loopback port; later calls go over HTTP to it (for heavy concurrency). */
  listen(): Promise<string>;
  close(): Promise<void>;
}

export interface HarnessOptions {
  kind: StoreKind;
  siteId?: number;
  orders?: RecordingOrders;
  /** An already running stand-in shared with other instances (the storm test). */
  matomo?: { standIn: MatomoStandIn; domain: string };
  options?: Partial<MatomoServerTrackingOptions>;
  /** The shop's own Keyv (closed by the test, not the harness). */
  keyv?: Keyv;
}

const EVENT_NAMES: Array<keyof TrackingEvents> = [
  'order:tracked',
  'order:skipped',
  'payment:confirmed',
  'payment:unconfirmed',
  'payment:ignored',
  'warning',
  'error',
];

/**
 * One shop instance: express + the middleware on a memory or real Redis store,
 * the built-in HMAC gateway as `acme`, a recording order repository, and a real
 * HTTP Matomo stand-in.
 */
export async function createHarness(options: HarnessOptions): Promise<Harness> {
  const siteId = options.siteId ?? uniqueSiteId();
  const orders = options.orders ?? createOrders();
  const ownMatomo = options.matomo ? null : await startMatomo();
  const matomo = options.matomo ?? ownMatomo!;
  const store = options.keyv ? { keyv: options.keyv, close: async () => {} } : createKeyv(options.kind);
  const tracking = matomoServerTracking({
    matomo: { domain: matomo.domain, siteId, protocol: 'http' },
    orders,
    store: store.keyv,
    gateways: { acme: hmacGateway({ secret: GATEWAY_SECRET }) },
    logger: { warn: () => {}, error: () => {} },
    delivery: { backoffMs: 20, maxBackoffMs: 100, pollIntervalMs: 50 },
    lockWaitMs: 10_000,
    // the tests' browsers run no consent banner; consent tests pass 'matomo-cookies' or a function
    consent: 'not-required',
    ...options.options,
  });
  const events: Harness['events'] = [];
  for (const name of EVENT_NAMES) tracking.events.on(name, (payload: unknown) => events.push({ name, payload }));

  const app = express();
  app.use(tracking);
  app.use(express.json());
  app.post('/test/checkout/:id', async (req, res) => {
    await res.locals.matomo.captureCheckout(String(req.params.id));
    res.status(201).json({ ok: true });
  });
  app.get('/store/cart/checkout/success', (_req, res) => {
    const m = res.locals.matomo;
    res.json({ trackOrder: m.trackOrder, script: m.script, orderId: m.order?.id ?? null });
  });

  // supertest starts an ephemeral server per request on an app; after listen() every call reuses one server.
  let server: Server | null = null;
  let target: Express | string = app;

  return {
    app,
    tracking,
    orders,
    matomo: matomo.standIn,
    siteId,
    events,
    async checkout(orderId, cookie) {
      const call = request(target).post(`/test/checkout/${encodeURIComponent(orderId)}`);
      if (cookie) call.set('Cookie', cookie);
      const response = await call;
      const setCookie = response.headers['set-cookie'] as unknown as string[] | undefined;
      return (setCookie ?? []).map((c) => c.split(';')[0]).join('; ');
    },
    async page(orderId, cookie) {
      const call = request(target).get('/store/cart/checkout/success').query({ id: orderId });
      if (cookie) call.set('Cookie', cookie);
      const response = await call;
      return { status: response.status, ...(response.body as Omit<PageView, 'status'>) };
    },
    notify(payload, { secret = GATEWAY_SECRET, timestamp, gateway = 'acme' } = {}) {
      const signed = signHmacPayload({ payload, secret, ...(timestamp !== undefined && { timestamp }) });
      return request(target).post(`/store/payment/notify/${gateway}`).set(signed.headers).send(signed.body);
    },
    async settled() {
      // the outbox is shared: settled when nothing waits in it and nothing is in this instance's hands
      for (const deadline = Date.now() + 5000; Date.now() < deadline; ) {
        const stats = await tracking.stats();
        if (stats.outbox.depth === 0 && stats.delivery.inFlight === 0) return;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    },
    async listen() {
      server = createServer(app);
      await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
      target = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      return target;
    },
    async close() {
      if (server) await closeServer(server);
      await tracking.close({ timeoutMs: 2000 });
      await store.close();
      await ownMatomo?.close();
    },
  };
}

/** The payload of a paid callback for `order`. */
export function paid(order: Order, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { orderId: order.id, status: 'paid', amount: order.revenue.toFixed(2), currency: order.currency ?? 'EUR', transactionId: `tx-${order.id}`, ...extra };
}
