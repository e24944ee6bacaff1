import { formatAmount } from '../amounts';
import type { Order } from '../orders';
import { validateOrder } from './request';

/**
 * Serialises a value for a JavaScript literal inside an HTML `<script>` element.
 * JSON alone is not enough: `</script>` in a product name would close the element,
 * `<!--` would change how the HTML parser reads the rest, and U+2028/U+2029 end a
 * line in older JavaScript engines. Escaping `<`, `>`, `&` and those two characters
 * as `\uXXXX` keeps the value identical once parsed.
 */
export function scriptLiteral(value: unknown): string {
  if (value === undefined) return 'undefined';
  return JSON.stringify(value).replace(/[<>&\u2028\u2029]/g, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function escapeAttribute(value: string): string {
  return value.replace(/[&"<>]/g, (char) => `&#${char.charCodeAt(0)};`);
}

function push(args: unknown[]): string {
  // matomo.js tests optional arguments with `isDefined`, so a missing total must be
  // `undefined`, never `null` (which would be sent as the string "null").
  while (args.length > 0 && args[args.length - 1] === undefined) args.pop();
  return `_paq.push([${args.map(scriptLiteral).join(',')}]);`;
}

export interface OrderSnippetOptions {
  /** The page's CSP nonce (helmet puts it in `res.locals.cspNonce`). */
  nonce?: string;
  /**
   * The User ID the server would send for this order (`matomoUserId`), already decided with
   * `useUserId` and the visitor's consent; pushed with `setUserId` before the order.
   */
  userId?: string;
}

/**
 * The matomo.js ecommerce calls for one order, as a `<script>` block for the
 * confirmation page. The shop's own Matomo snippet (setTrackerUrl, setSiteId,
 * trackPageView) stays as it is; matomo.js applies its configuration first.
 */
export function buildOrderSnippet(order: Order, options: OrderSnippetOptions = {}): string {
  const items = validateOrder(order);
  const lines = ['var _paq = window._paq = window._paq || [];'];
  // Before the ecommerce calls, so that the order request itself carries `uid`, as the server's would.
  if (options.userId) lines.push(push(['setUserId', options.userId]));
  for (const [sku, name, category, price, quantity] of items) {
    lines.push(push(['addEcommerceItem', sku, name, category, Number(price), quantity]));
  }
  const amount = (value: number | undefined) => (value === undefined ? undefined : Number(formatAmount(value)));
  lines.push(
    push(['trackEcommerceOrder', order.id, amount(order.revenue), amount(order.subtotal), amount(order.tax), amount(order.shipping), amount(order.discount)]),
  );
  const nonce = options.nonce ? ` nonce="${escapeAttribute(options.nonce)}"` : '';
  return `<script${nonce}>\n${lines.join('\n')}\n</script>`;
}
