import { randomBytes } from 'node:crypto';
import { formatAmount, isValidAmount } from '../amounts';
import { InvalidOrderError } from '../errors';
import type { Order, OrderItem } from '../orders';
import { matomoUserId } from '../user-id';
import { withoutPersonalData, type VisitorContext } from '../visitor';

/** Matomo's `log_conversion.idorder` is varchar(100). */
export const MAX_ORDER_ID_LENGTH = 100;
const MAX_CATEGORIES = 5;

export function isValidOrderId(id: unknown): id is string {
  return typeof id === 'string' && id.length > 0 && id.length <= MAX_ORDER_ID_LENGTH;
}

/** One `ec_items` row: `[sku, name, category, price, quantity]`, as Matomo's trackers send it. */
export type EcommerceItemRow = [string, string, string | string[], string, number];

function itemRow(item: OrderItem, index: number): EcommerceItemRow {
  const where = `items[${index}]`;
  if (typeof item?.sku !== 'string' || item.sku.length === 0) throw new InvalidOrderError(`${where}.sku must be a non-empty string`);
  if (item.name !== undefined && typeof item.name !== 'string') throw new InvalidOrderError(`${where}.name must be a string`);
  const category = item.category ?? '';
  if (Array.isArray(category)) {
    if (category.length > MAX_CATEGORIES || !category.every((c) => typeof c === 'string')) {
      throw new InvalidOrderError(`${where}.category must be a string or at most ${MAX_CATEGORIES} strings`);
    }
  } else if (typeof category !== 'string') {
    throw new InvalidOrderError(`${where}.category must be a string or at most ${MAX_CATEGORIES} strings`);
  }
  if (!isValidAmount(item.price)) throw new InvalidOrderError(`${where}.price must be a finite amount ≥ 0, got ${String(item.price)}`);
  if (!Number.isSafeInteger(item.quantity) || item.quantity <= 0) {
    throw new InvalidOrderError(`${where}.quantity must be a positive whole number, got ${String(item.quantity)}`);
  }
  return [item.sku, item.name ?? '', category, formatAmount(item.price), item.quantity];
}

/**
 * Validates the order for Matomo and returns its items as rows. Matomo records an
 * order with broken `ec_items` as an order with no items and still answers success,
 * so every problem must be caught here, before sending.
 */
export function validateOrder(order: Order): EcommerceItemRow[] {
  if (!isValidOrderId(order?.id)) {
    throw new InvalidOrderError(`order id must be a string of 1 to ${MAX_ORDER_ID_LENGTH} characters (Matomo's limit)`);
  }
  if (!isValidAmount(order.revenue)) throw new InvalidOrderError(`revenue must be a finite amount ≥ 0, got ${String(order.revenue)}`);
  for (const field of ['subtotal', 'tax', 'shipping', 'discount'] as const) {
    if (order[field] !== undefined && !isValidAmount(order[field])) {
      throw new InvalidOrderError(`${field} must be a finite amount ≥ 0 when set, got ${String(order[field])}`);
    }
  }
  if (!Array.isArray(order.items)) throw new InvalidOrderError('items must be an array');
  return order.items.map(itemRow);
}

/** A fresh visitor id, so that orders without a captured one never share a visit. */
export function randomVisitorId(): string {
  return randomBytes(8).toString('hex');
}

export interface OrderRequestOptions {
  siteId: number;
  /** Send `uid` (only when the visitor consented too). */
  useUserId: boolean;
  /**
   * Send the buyer's IP as `cip`. Matomo refuses the whole request when `cip` comes without
   * a valid `token_auth`, so this must be true only when a token is configured. Default: false.
   */
  sendIp?: boolean;
}

/**
 * Builds the Tracking API query of one order (DESIGN §4), without the parts that
 * depend on the moment of sending (`cdt`, `r`) or are secret (`token_auth`).
 * Personal data (`cip`, `uid`, `ua`, `lang`, query strings of URLs) only with the visitor's
 * consent; without it the order is still recorded, anonymously. Parameters follow the
 * order of Matomo's reference tracker, so requests compare easily in logs.
 */
export function buildOrderQuery(order: Order, captured: VisitorContext | null, options: OrderRequestOptions): URLSearchParams {
  const items = validateOrder(order);
  // Again here, not only at capture: a context stored by an earlier version may hold more.
  const visitor = captured && !captured.consent ? withoutPersonalData(captured) : captured;
  const query = new URLSearchParams();
  query.set('idsite', String(options.siteId));
  query.set('rec', '1');
  query.set('apiv', '1');
  if (options.sendIp && visitor?.consent && visitor.ip) query.set('cip', visitor.ip);
  const userId = matomoUserId(order, visitor, options.useUserId);
  if (userId) query.set('uid', userId);
  query.set('cid', visitor?.visitorId ?? randomVisitorId());
  if (visitor?.url) query.set('url', visitor.url);
  if (visitor?.referrer) query.set('urlref', visitor.referrer);
  const attribution = visitor?.attribution;
  if (attribution) {
    // Like Matomo's trackers: empty fields are left out rather than sent empty.
    if (attribution.campaignName) query.set('_rcn', attribution.campaignName);
    if (attribution.campaignKeyword) query.set('_rck', attribution.campaignKeyword);
    query.set('_refts', String(attribution.timestampSeconds));
    if (attribution.referrerUrl) query.set('_ref', attribution.referrerUrl);
  }
  if (visitor?.consent) {
    if (visitor.userAgent) query.set('ua', visitor.userAgent);
    if (visitor.language) query.set('lang', visitor.language);
  }
  query.set('send_image', '0');
  query.set('idgoal', '0');
  query.set('revenue', formatAmount(order.revenue));
  const totals = { ec_st: order.subtotal, ec_tx: order.tax, ec_sh: order.shipping, ec_dt: order.discount };
  for (const [name, value] of Object.entries(totals)) if (value !== undefined) query.set(name, formatAmount(value));
  query.set('ec_items', JSON.stringify(items));
  query.set('ec_id', order.id);
  return query;
}

/** The final body of one request: adds the send-time parameters and the token. */
export function finalizeQuery(
  query: string,
  options: { cdtSeconds: number | null; tokenAuth: string | null; cacheBuster?: string },
): string {
  const params = new URLSearchParams(query);
  if (options.cdtSeconds !== null) params.set('cdt', String(options.cdtSeconds));
  params.set('r', options.cacheBuster ?? String(randomBytes(3).readUIntBE(0, 3)).padStart(6, '0').slice(-6));
  if (options.tokenAuth) params.set('token_auth', options.tokenAuth);
  return params.toString();
}
