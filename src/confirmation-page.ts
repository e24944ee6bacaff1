import type { NextFunction, Request, Response } from 'express';
import type { CheckoutBinding } from './checkout-cookie';
import { keys, type ClaimStore } from './claims';
import type { ResolvedConfig } from './config';
import { asTrackingError, InvalidOrderError } from './errors';
import type { Emit } from './events';
import { isValidOrderId, validateOrder } from './matomo/request';
import { buildOrderSnippet } from './matomo/snippet';
import type { Order } from './orders';
import { matomoUserId, userIdFromRequest } from './user-id';
import { decideConsent } from './visitor';

/** What the confirmation page finds in `res.locals.matomo`. */
export interface MatomoLocals {
  /** True exactly once per order: this page view is the one that tracks it. */
  trackOrder: boolean;
  /** The order, when this browser is the buyer's; otherwise `null`. */
  order: Order | null;
  /** `<script>…</script>` with the matomo.js ecommerce calls when `trackOrder`, else `''`. */
  script: string;
  /** Binds this browser to `orderId` and stores the visitor context; call it after creating the order. */
  captureCheckout(orderId: string): Promise<void>;
}

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Locals {
      matomo: MatomoLocals;
    }
  }
}

export interface ConfirmationHookDependencies {
  store: ClaimStore;
  binding: CheckoutBinding;
  config: Pick<ResolvedConfig, 'orders' | 'isOwner' | 'retentionMs' | 'useUserId' | 'userId' | 'consent'>;
  emit: Emit;
}

/**
 * The `/store/cart/checkout/success?id=…` hook: decides whether this page view
 * tracks the order, then always calls `next()` for the shop's own handler.
 * Nothing here throws into the page. When the store fails to claim, the page
 * tracks (fail open): Matomo's unique order id is the backstop against a double
 * count. Ownership and consent never fail open.
 */
export function createConfirmationHook(deps: ConfirmationHookDependencies) {
  const { store, binding, config, emit } = deps;

  async function isBuyer(req: Request, order: Order): Promise<boolean> {
    if (await binding.owns(req, order.id)) return true;
    if (!config.isOwner) return false;
    try {
      return (await config.isOwner(req, order)) === true;
    } catch (error) {
      report('ERR_MST_ORDER_REPOSITORY', error, order.id);
      return false;
    }
  }

  /**
   * A buyer can open the success URL after the gateway refused the payment. Tracking
   * then would count unpaid revenue, and the claim would stop the server from tracking
   * a later successful payment. Without a refusal on record, the page tracks as usual.
   */
  async function paymentRefused(orderId: string): Promise<boolean> {
    if ((await store.get(keys.unconfirmed(orderId))) === null) return false;
    return (await store.get(keys.paid(orderId))) === null;
  }

  /**
   * The User ID the server would have sent, decided now with the same rules: consent
   * can have been given or withdrawn since checkout, and this page view is what tracks.
   */
  async function pageUserId(req: Request, order: Order): Promise<string | undefined> {
    if (!config.useUserId) return undefined;
    // only reached with consent: without it the page does not track at all
    const userId = await userIdFromRequest(req, config.userId).catch(() => undefined);
    return matomoUserId(order, { consent: true, userId }, config.useUserId);
  }

  function report(code: 'ERR_MST_ORDER_REPOSITORY' | 'ERR_MST_STORE' | 'ERR_MST_ORDER_INVALID', error: unknown, orderId: string): void {
    const wrapped = asTrackingError(error, code);
    emit('error', { code: wrapped.code, error: wrapped, orderId });
  }

  return async function matomoConfirmationPage(req: Request, res: Response, next: NextFunction): Promise<void> {
    const locals = res.locals.matomo;
    const orderId = req.query.id;
    // A HEAD request or a speculative prefetch shows the page to nobody: it must not use up the claim.
    if (req.method !== 'GET' || isPrefetch(req) || !isValidOrderId(orderId)) return next();

    let order: Order | null;
    try {
      order = await config.orders.getOrder(orderId);
    } catch (error) {
      report('ERR_MST_ORDER_REPOSITORY', error, orderId);
      return next();
    }
    if (!order) {
      emit('order:skipped', { orderId, channel: 'client', reason: 'unknown-order' });
      return next();
    }

    try {
      validateOrder(order); // before claiming: an order Matomo cannot take is reported, never claimed
    } catch (error) {
      report('ERR_MST_ORDER_INVALID', error instanceof InvalidOrderError ? error : new InvalidOrderError(String(error)), orderId);
      emit('order:skipped', { orderId, channel: 'client', reason: 'invalid-order' });
      return next();
    }

    // Ownership never fails open: a stranger must not see the order nor claim it, store or no store.
    let owner = false;
    try {
      owner = await isBuyer(req, order);
    } catch (error) {
      report('ERR_MST_STORE', error, orderId);
    }
    if (!owner) {
      emit('order:skipped', { orderId, channel: 'client', reason: 'not-owner' });
      return next();
    }
    locals.order = order;

    const consent = await decideConsent(req, config.consent);
    if (!consent) {
      // matomo.js holds the order back without consent: claiming it here would lose it.
      // The server sends it, without personal data, when the payment is confirmed.
      emit('order:skipped', { orderId, channel: 'client', reason: 'no-consent' });
      return next();
    }

    let claimed: boolean;
    try {
      if (await paymentRefused(orderId)) {
        emit('order:skipped', { orderId, channel: 'client', reason: 'payment-not-confirmed' });
        return next();
      }
      claimed = await store.claim(keys.tracking(orderId), 'client', config.retentionMs);
    } catch (error) {
      report('ERR_MST_STORE', error, orderId);
      claimed = true; // fail open: Matomo's unique order id is the backstop against a double count
    }

    if (claimed) {
      const nonce = typeof res.locals.cspNonce === 'string' ? res.locals.cspNonce : undefined;
      // validated above, so this cannot throw
      locals.script = buildOrderSnippet(order, { nonce, userId: await pageUserId(req, order) });
      locals.trackOrder = true;
      emit('order:tracked', { orderId, channel: 'client' });
    } else {
      emit('order:skipped', { orderId, channel: 'client', reason: 'already-tracked' });
    }
    next();
  };
}

/** Browsers mark speculative loads (link prefetch, Speculation Rules, Safari/Firefox previews). */
function isPrefetch(req: Request): boolean {
  const purpose = `${req.get('sec-purpose') ?? ''} ${req.get('purpose') ?? ''} ${req.get('x-purpose') ?? ''} ${req.get('x-moz') ?? ''}`.toLowerCase();
  return /\b(prefetch|prerender|preview)\b/.test(purpose);
}
