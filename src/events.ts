import { EventEmitter } from 'node:events';
import type { ErrorCode } from './errors';
import type { Logger } from './logger';
import type { PaymentEvent } from './orders';

export type Channel = 'client' | 'server';

export type SkipReason =
  /** The other channel claimed the order first. */
  | 'already-tracked'
  /** `serverTracking: false`: the confirmation page is the only channel. */
  | 'server-tracking-disabled'
  /** The order cannot be sent as it is (see the `error` event for why). */
  | 'invalid-order'
  /** The confirmation page was opened by a browser that did not check out this order. */
  | 'not-owner'
  /** No such order. */
  | 'unknown-order'
  /** A verified notification refused the payment and none confirmed it since: the page must not count unpaid revenue. */
  | 'payment-not-confirmed'
  /** No analytics consent: matomo.js would hold the order back, so the page leaves it to the server (sent without personal data). */
  | 'no-consent';

export type IgnoredReason =
  /** This exact notification was processed before (redelivery). */
  | 'duplicate'
  /** A failed/canceled/pending notification after the order was paid: never downgrade. */
  | 'already-paid'
  /** Pending: wait for the next notification. */
  | 'pending';

/** The typed event map of `tracking.events`. */
export interface TrackingEvents {
  'order:tracked': [{ orderId: string; channel: Channel }];
  'order:skipped': [{ orderId: string; channel: Channel; reason: SkipReason }];
  'payment:confirmed': [{ orderId: string; payment: PaymentEvent }];
  'payment:unconfirmed': [{ orderId: string; payment: PaymentEvent | null; reason: string }];
  'payment:ignored': [{ orderId: string; payment: PaymentEvent; reason: IgnoredReason }];
  /** Matomo accepted `count` orders in one request that took `ms`. */
  'delivery:sent': [{ count: number; ms: number }];
  /** A send failed and will be retried after `delayMs` (`status` null for network errors and timeouts). */
  'delivery:retry': [{ orderId: string; attempt: number; status: number | null; reason: string; delayMs: number }];
  /** An order was given up and moved to the dead letters. */
  'delivery:dead': [{ orderId: string; reason: string }];
  /** Coded warning; `orderId` when it concerns one order (e.g. `WRN_MST_CDT_DROPPED`). Logged once per code, emitted every time. */
  warning: [{ code: string; message: string; orderId?: string }];
  error: [{ code: ErrorCode; error: Error; orderId?: string }];
}

export type TrackingEventEmitter = EventEmitter<TrackingEvents>;

/**
 * Emits without ever throwing into the request path: Node throws on an `error`
 * event nobody listens to, and a listener may throw too. Both end in the logger.
 * `tap` sees every event first (our own counters), without counting as a listener.
 */
export function createEmitter(logger: Logger, tap: <K extends keyof TrackingEvents>(name: K, ...args: TrackingEvents[K]) => void = () => {}) {
  const events = new EventEmitter<TrackingEvents>();

  function emit<K extends keyof TrackingEvents>(name: K, ...args: TrackingEvents[K]): void {
    tap(name, ...args);
    if (name === 'error' && events.listenerCount('error') === 0) {
      const [payload] = args as TrackingEvents['error'];
      logger.error(`matomo-server-tracking: ${payload.code}${payload.orderId ? ` (order ${payload.orderId})` : ''}: ${payload.error.message}`);
      return;
    }
    try {
      // The generic overloads of EventEmitter<T> do not narrow through a generic K.
      (events.emit as (event: string, ...rest: unknown[]) => boolean)(name, ...args);
    } catch (listenerError) {
      logger.error(`matomo-server-tracking: a '${String(name)}' listener threw: ${String(listenerError)}`);
    }
  }

  return { events, emit };
}

export type Emit = ReturnType<typeof createEmitter>['emit'];
