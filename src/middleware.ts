import { Router, type Request } from 'express';
import { CheckoutBinding } from './checkout-cookie';
import { createClaimStore, reviveDeadLetters } from './claims';
import { resolveConfig, type MatomoServerTrackingOptions } from './config';
import { createConfirmationHook } from './confirmation-page';
import { asTrackingError, InvalidOrderError, MatomoTrackingError } from './errors';
import { createEmitter, type TrackingEventEmitter } from './events';
import { Warnings, type Warn } from './logger';
import { createUndiciTransport } from './matomo/client';
import { OutboxWorker } from './matomo/outbox-worker';
import type { DeadLetter } from './claims';
import { isValidOrderId } from './matomo/request';
import { createCallbackRouter } from './payments/router';
import { createSettler } from './payments/settle';
import { captureVisitor, saveVisitor } from './visitor';

export interface TrackingStats {
  /** `'memory'` or `'redis'`. */
  store: 'memory' | 'redis';
  serverTracking: boolean;
  /** Counted by this instance since it started. */
  orders: { trackedByPage: number; trackedByServer: number; skipped: number };
  payments: { confirmed: number; unconfirmed: number; ignored: number };
  /** Sends by this instance since it started. */
  delivery: { inFlight: number; sent: number; retried: number; dead: number };
  /** The shared outbox (all instances); `null` when the store could not be read. */
  outbox: { depth: number | null; oldestAgeMs: number | null; deadLetters: number | null };
  errors: number;
}

/** Orders given up on (DESIGN §5): look at them, send them again once the cause is fixed, or drop them. */
export interface DeadLetterApi {
  /** Oldest first. Default limit: 100. */
  list(limit?: number): Promise<DeadLetter[]>;
  /** Puts one dead letter, or all of them, back into the outbox; resolves to how many. */
  retry(id: string | 'all'): Promise<number>;
  /** Forgets a dead letter for good; `false` when there was none. */
  drop(id: string): Promise<boolean>;
}

/** `app.use(tracking)`: an Express router with a few extra members. */
export interface MatomoServerTracking extends Router {
  /** Typed events: `order:tracked`, `order:skipped`, `payment:*`, `delivery:*`, `warning`, `error`. */
  readonly events: TrackingEventEmitter;
  readonly deadLetters: DeadLetterApi;
  /**
   * Binds the buyer's browser to `orderId` (signed cookie) and stores its visitor context.
   * Call it in the checkout handler after creating the order. Never throws: problems go to `events`.
   */
  captureCheckout(req: Request, orderId: string): Promise<void>;
  stats(): Promise<TrackingStats>;
  /**
   * Stops taking callbacks (503, so gateways retry elsewhere), keeps delivering due orders
   * until `timeoutMs`, then aborts the send in flight; unsent orders stay in the outbox for
   * the next start of any instance. Default timeout: 10000 ms.
   */
  close(options?: { timeoutMs?: number }): Promise<void>;
}

/**
 * Creates the middleware. Validates everything first and throws a `ConfigError`
 * listing every problem: nothing is started when the options are wrong.
 */
export function matomoServerTracking(options: MatomoServerTrackingOptions): MatomoServerTracking {
  const config = resolveConfig(options);
  const { siteId } = config.matomo;
  const store = createClaimStore(config.store, { siteId, timeoutMs: config.storeTimeoutMs, now: config.now });
  const counters = { trackedByPage: 0, trackedByServer: 0, skipped: 0, confirmed: 0, unconfirmed: 0, ignored: 0, errors: 0 };
  const { events, emit } = createEmitter(config.logger, (name, payload) => {
    if (name === 'order:tracked') (payload as { channel: string }).channel === 'client' ? counters.trackedByPage++ : counters.trackedByServer++;
    else if (name === 'order:skipped') counters.skipped++;
    else if (name === 'payment:confirmed') counters.confirmed++;
    else if (name === 'payment:unconfirmed') counters.unconfirmed++;
    else if (name === 'payment:ignored') counters.ignored++;
    else if (name === 'error') counters.errors++;
  });

  const logged = new Set<string>();
  const warn: Warn = (warning, context = {}) => {
    if (!logged.has(warning.code)) {
      logged.add(warning.code);
      config.logger.warn(`matomo-server-tracking ${warning.code}: ${warning.message}`);
    }
    emit('warning', { code: warning.code, message: warning.message, ...context });
  };
  if (store.kind === 'memory' && process.env.NODE_ENV === 'production') warn(Warnings.MEMORY_STORE_IN_PRODUCTION);

  const transport = createUndiciTransport(config.matomo.endpoint, config.matomo.timeoutMs);
  const worker = new OutboxWorker(store, transport, { ...config.delivery, tokenAuth: config.matomo.tokenAuth, now: config.now }, emit, warn);
  // With server tracking off nothing is ever sent from the server, not even what an earlier configuration queued.
  if (config.serverTracking) worker.start();
  const binding = new CheckoutBinding(config.checkoutCookie, store, warn);
  binding.preload();
  const settler = createSettler({
    store,
    config: { ...config, siteId },
    emit,
    deliver: () => worker.wake(),
  });

  let closed = false;
  const router = Router() as MatomoServerTracking;

  router.use(function matomoLocals(req, res, next) {
    res.locals.matomo = {
      trackOrder: false,
      order: null,
      script: '',
      captureCheckout: (orderId: string) => captureCheckout(req, orderId),
    };
    next();
  });
  router.use(
    createCallbackRouter({
      path: config.paths.callback,
      gateways: config.gateways,
      now: config.now,
      emit,
      isClosed: () => closed,
      settle: (event) => settler.settle(event),
    }),
  );
  router.get(config.paths.confirmation, createConfirmationHook({ store, binding, config, emit }));

  async function captureCheckout(req: Request, orderId: string): Promise<void> {
    try {
      if (!isValidOrderId(orderId)) throw new InvalidOrderError(`captureCheckout: order id must be a string of 1 to 100 characters`);
      const res = req.res;
      if (!res) throw new MatomoTrackingError('ERR_MST_CONFIG', 'captureCheckout needs the Express request of the checkout (req.res is missing)');
      if (res.headersSent) {
        throw new MatomoTrackingError('ERR_MST_CONFIG', 'captureCheckout ran after the response was sent: await it before redirecting, it sets the checkout cookie');
      }
      const visitor = await captureVisitor(req, config);
      await Promise.all([binding.bind(req, res, orderId), saveVisitor(store, orderId, visitor, config.retentionMs)]);
    } catch (error) {
      // What is left once our own errors are out is the store failing.
      const wrapped = asTrackingError(error, 'ERR_MST_STORE');
      emit('error', { code: wrapped.code, error: wrapped, orderId: String(orderId) });
    }
  }

  const deadLetters: DeadLetterApi = {
    list: (limit = 100) => store.deadLetters.list(limit),
    async retry(id) {
      const revived = await reviveDeadLetters(store, id, config.now);
      if (revived > 0 && config.serverTracking) worker.wake();
      return revived;
    },
    drop: (id) => store.deadLetters.drop(id),
  };

  return Object.assign(router, {
    events,
    deadLetters,
    captureCheckout,
    async stats(): Promise<TrackingStats> {
      const read = <T>(promise: Promise<T>) => promise.catch(() => null);
      const [depth, oldest, dead] = await Promise.all([
        read(store.outbox.depth()),
        read(store.outbox.oldestEnqueuedAt()),
        read(store.deadLetters.count()),
      ]);
      return {
        store: store.kind,
        serverTracking: config.serverTracking,
        orders: { trackedByPage: counters.trackedByPage, trackedByServer: counters.trackedByServer, skipped: counters.skipped },
        payments: { confirmed: counters.confirmed, unconfirmed: counters.unconfirmed, ignored: counters.ignored },
        delivery: { inFlight: worker.inFlight, ...worker.counters },
        outbox: { depth, oldestAgeMs: oldest === null ? null : Math.max(0, config.now() - oldest), deadLetters: dead },
        errors: counters.errors,
      };
    },
    async close({ timeoutMs = 10_000 }: { timeoutMs?: number } = {}): Promise<void> {
      if (closed) return;
      closed = true;
      await worker.close(timeoutMs);
      await transport.close();
      await store.close();
    },
  }) as MatomoServerTracking;
}
