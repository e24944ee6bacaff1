import { randomBytes } from 'node:crypto';
import { formatAmount, sameAmount } from '../amounts';
import { keys, type ClaimStore, type OutboxItem } from '../claims';
import type { ResolvedConfig } from '../config';
import { InvalidOrderError, MatomoTrackingError, StoreError } from '../errors';
import type { Emit } from '../events';
import { buildOrderQuery, isValidOrderId } from '../matomo/request';
import type { Order, PaymentEvent } from '../orders';
import { loadVisitor } from '../visitor';

const LOCK_POLL_MS = 25;

export type SettleOutcome =
  | { status: 'processed' }
  | { status: 'duplicate' }
  /** The order does not exist: acknowledged, nothing changed. */
  | { status: 'unknown-order' }
  /** Try again later: the store or the shop's repository failed, or another notification holds the order. */
  | { status: 'retry'; reason: string };

export interface SettleDependencies {
  store: ClaimStore;
  config: Pick<ResolvedConfig, 'orders' | 'serverTracking' | 'useUserId' | 'retentionMs' | 'lockWaitMs' | 'lockTtlMs' | 'now' | 'matomo'> & { siteId: number };
  emit: Emit;
  /** An item was just enqueued: wake the outbox worker. */
  deliver(item: OutboxItem): void;
}

/** Why a "paid" event is not accepted as payment of `order`, or `null` when it is. */
export function paymentMismatch(order: Order, event: PaymentEvent): string | null {
  if (event.amount === undefined) return 'the notification confirms no amount';
  if (!sameAmount(event.amount, order.revenue)) {
    return `amount ${String(event.amount)} does not match the order total ${formatAmount(order.revenue)}`;
  }
  if (order.currency) {
    if (!event.currency) return `the notification confirms no currency, the order is in ${order.currency}`;
    if (order.currency.toUpperCase() !== event.currency.toUpperCase()) {
      return `currency ${event.currency} does not match the order currency ${order.currency}`;
    }
  }
  return null;
}

/**
 * Applies one verified payment event to its order: the rules table of DESIGN §2.
 * Notifications about one order are serialised by a lock in the store, so that
 * concurrent deliveries (one gateway retrying, several instances) call `markPaid`
 * once; the paid mark, the tracking claim and the outbox entry are then written
 * in one atomic step, so a crash cannot leave a paid order neither tracked nor queued.
 */
export function createSettler(deps: SettleDependencies) {
  const { store, config, emit } = deps;

  async function acquire(lockKey: string, token: string): Promise<boolean> {
    const giveUpAt = config.now() + config.lockWaitMs;
    for (;;) {
      if (await store.claim(lockKey, token, config.lockTtlMs)) return true;
      if (config.now() >= giveUpAt) return false;
      await new Promise((resolve) => setTimeout(resolve, LOCK_POLL_MS + Math.random() * LOCK_POLL_MS));
    }
  }

  async function settle(event: PaymentEvent): Promise<SettleOutcome> {
    if (!isValidOrderId(event.orderId)) {
      // Authentic, but no order of this shop can have such an id (Matomo's limit is ours too):
      // a payment on a shared gateway account. Retrying cannot help, so acknowledge it.
      unknownOrder(event, `names an order id of ${String(event.orderId).length} characters, longer than any order of this shop`);
      return { status: 'unknown-order' };
    }
    const lockKey = keys.orderLock(event.orderId);
    const token = randomBytes(12).toString('base64url');
    const acquired = await acquire(lockKey, token).catch((error: unknown) => {
      // A claim that timed out may still land in the store later: free it so it cannot block the gateway's retry.
      void store.release(lockKey, token).catch(() => {});
      throw error;
    });
    if (!acquired) {
      return { status: 'retry', reason: `another notification for order ${event.orderId} is still being processed` };
    }
    // Keep the lock while the shop's markPaid runs, however long: if it expired, a retry
    // of the gateway could take the order and call markPaid a second time.
    const keepAlive = setInterval(() => {
      store.extendClaim(lockKey, token, config.lockTtlMs).catch(() => {});
    }, Math.max(50, Math.floor(config.lockTtlMs / 3)));
    keepAlive.unref();
    try {
      return await settleLocked(event);
    } finally {
      clearInterval(keepAlive);
      await store.release(lockKey, token).catch(() => {
        // The lock expires by itself after lockTtlMs.
      });
    }
  }

  function unknownOrder(event: PaymentEvent, what: string): void {
    emit('order:skipped', { orderId: event.orderId, channel: 'server', reason: 'unknown-order' });
    emit('error', {
      code: 'ERR_MST_ORDER_REPOSITORY',
      error: new MatomoTrackingError('ERR_MST_ORDER_REPOSITORY', `a verified ${event.gateway} notification ${what}`),
      orderId: event.orderId,
    });
  }

  async function settleLocked(event: PaymentEvent): Promise<SettleOutcome> {
    const { orderId } = event;
    const eventKey = keys.event(`${event.gateway}:${event.eventKey}`);
    if ((await store.get(eventKey)) !== null) {
      emit('payment:ignored', { orderId, payment: event, reason: 'duplicate' });
      return { status: 'duplicate' };
    }
    const order = await repository('getOrder', () => config.orders.getOrder(orderId));
    if (!order) {
      unknownOrder(event, `names order ${orderId}, which getOrder() does not know`);
      return { status: 'unknown-order' };
    }
    const alreadyPaid = (await store.get(keys.paid(orderId))) !== null;
    const outcome = await apply(event, order, alreadyPaid);
    await store.set(eventKey, '1', config.retentionMs);
    return outcome;
  }

  async function apply(event: PaymentEvent, order: Order, alreadyPaid: boolean): Promise<SettleOutcome> {
    const { orderId } = event;
    if (event.outcome === 'pending') {
      emit('payment:ignored', { orderId, payment: event, reason: 'pending' });
      return { status: 'processed' };
    }
    if (event.outcome === 'failed' || event.outcome === 'canceled') {
      if (alreadyPaid) {
        emit('payment:ignored', { orderId, payment: event, reason: 'already-paid' });
        return { status: 'processed' };
      }
      await repository('markPaymentUnconfirmed', () => config.orders.markPaymentUnconfirmed(orderId, event));
      await store.set(keys.unconfirmed(orderId), event.outcome, config.retentionMs);
      emit('payment:unconfirmed', { orderId, payment: event, reason: event.outcome });
      return { status: 'processed' };
    }
    if (alreadyPaid) {
      emit('payment:ignored', { orderId, payment: event, reason: 'duplicate' });
      return { status: 'duplicate' };
    }
    const mismatch = paymentMismatch(order, event);
    if (mismatch) {
      const rejected = { ...event, rejectionReason: mismatch };
      await repository('markPaymentUnconfirmed', () => config.orders.markPaymentUnconfirmed(orderId, rejected));
      await store.set(keys.unconfirmed(orderId), 'mismatch', config.retentionMs);
      emit('error', { code: 'ERR_MST_AMOUNT_MISMATCH', error: new MatomoTrackingError('ERR_MST_AMOUNT_MISMATCH', `order ${orderId}: ${mismatch}; not accepted as payment`), orderId });
      emit('payment:unconfirmed', { orderId, payment: rejected, reason: mismatch });
      return { status: 'processed' };
    }
    await repository('markPaid', () => config.orders.markPaid(orderId, event));
    const item = config.serverTracking ? await outboxItem(order) : null;
    const result = await store.settlePaid(orderId, item, config.retentionMs);
    emit('payment:confirmed', { orderId, payment: event });
    if (result.enqueued && item) {
      deps.deliver(item);
    } else if (!config.serverTracking) {
      emit('order:skipped', { orderId, channel: 'server', reason: 'server-tracking-disabled' });
    } else if (item) {
      emit('order:skipped', { orderId, channel: 'server', reason: 'already-tracked' });
    }
    return { status: 'processed' };
  }

  /** The order as a Matomo request, or `null` (reported) when it cannot be sent as it is. */
  async function outboxItem(order: Order): Promise<OutboxItem | null> {
    // Visitor data improves attribution but is not worth failing a payment over.
    const visitor = await loadVisitor(store, order.id).catch(() => null);
    try {
      // `cip` needs the token, which goes only into the POST body at send time.
      const sendIp = config.matomo.tokenAuth !== null;
      const query = buildOrderQuery(order, visitor, { siteId: config.siteId, useUserId: config.useUserId, sendIp });
      const now = config.now();
      return { id: order.id, orderId: order.id, query: query.toString(), enqueuedAt: now, attempts: 0, nextAttemptAt: now };
    } catch (error) {
      if (!(error instanceof InvalidOrderError)) throw error;
      emit('error', { code: error.code, error, orderId: order.id });
      emit('order:skipped', { orderId: order.id, channel: 'server', reason: 'invalid-order' });
      return null;
    }
  }

  return { settle };
}

/** Runs a call into the shop's OrderRepository, turning its failure into a retryable error with our code. */
async function repository<T>(method: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    if (error instanceof StoreError) throw error;
    throw new MatomoTrackingError(
      'ERR_MST_ORDER_REPOSITORY',
      `orders.${method}() failed: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
  }
}
