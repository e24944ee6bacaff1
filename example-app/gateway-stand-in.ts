import { randomBytes } from 'node:crypto';
import express, { type Request, type Response, Router } from 'express';
import { signHmacPayload } from 'matomo-server-tracking';
import { Agent, fetch } from 'undici';

export interface GatewayStandInOptions {
  /** Shared with the shop's `hmacGateway({ secret })`. */
  secret: string;
  /** Name of the gateway in the shop's callback URL. Default: `'acme'`. */
  gateway?: string;
}

export interface GatewayStandIn {
  /** Mount at the root: serves `GET` and `POST /acmepay/pay`. */
  router: Router;
  /** Closes the connections the stand-in opened to the shop. */
  close(): Promise<void>;
}

type Action = 'return' | 'close' | 'refuse';

interface Payment {
  order: string;
  amount: string;
  currency: string;
  returnUrl: string;
}

/**
 * "AcmePay", a payment gateway stand-in. Like a real gateway it tells the shop
 * the outcome server to server (signed callback) before it sends the buyer
 * anywhere, so the three buttons show the three paths the library must handle.
 */
export function createGatewayStandIn(options: GatewayStandInOptions): GatewayStandIn {
  const gateway = options.gateway ?? 'acme';
  // Its own connection pool, so that close() leaves no keep-alive socket behind;
  // autoSelectFamily because "localhost" may resolve to ::1 while the shop listens on 127.0.0.1.
  const agent = new Agent({ autoSelectFamily: true });
  const router = Router();

  router.get('/acmepay/pay', (req, res) => {
    const payment = readPayment(req.query, shopBaseUrl(req));
    if (typeof payment === 'string') res.status(400).type('html').send(page('Invalid payment request', `<p>${escapeHtml(payment)}</p>`));
    else res.type('html').send(paymentPage(payment));
  });

  router.post('/acmepay/pay', express.urlencoded({ extended: false, limit: '10kb' }), async (req: Request, res: Response) => {
    const base = shopBaseUrl(req);
    const body = (req.body ?? {}) as Record<string, unknown>;
    const payment = readPayment(body, base);
    const action = body.action;
    if (typeof payment === 'string' || (action !== 'return' && action !== 'close' && action !== 'refuse')) {
      res.status(400).type('html').send(page('Invalid payment request', `<p>${escapeHtml(typeof payment === 'string' ? payment : 'unknown action')}</p>`));
      return;
    }

    const answer = await notifyShop(base, payment, action === 'refuse' ? 'failed' : 'paid');
    if (!answer.ok) {
      // A real gateway would retry later; here a wrong ACME_SECRET or a down shop should be visible at once.
      res.status(502).type('html').send(
        page('The shop did not accept the notification', `<p>${escapeHtml(answer.detail)}</p><p>A real gateway would retry the callback later.</p>`),
      );
      return;
    }

    if (action === 'return') {
      res.redirect(303, payment.returnUrl);
      return;
    }
    if (action === 'refuse') {
      res.redirect(303, `${base}/store/cart/checkout/failed?id=${encodeURIComponent(payment.order)}`);
      return;
    }
    // The buyer closed the tab: this page stands for "nothing more happens in the browser".
    res.type('html').send(
      page(
        'You closed the tab',
        `<p>AcmePay charged <strong>${escapeHtml(payment.amount)} ${escapeHtml(payment.currency)}</strong> for order ` +
          `<strong>${escapeHtml(payment.order)}</strong> and told the shop so, server to server.</p>` +
          `<p>Then you closed the tab: the shop's confirmation page was never opened, so matomo.js never ran. ` +
          `The order is tracked in Matomo by the server anyway.</p>` +
          `<p><a href="${escapeHtml(`${base}/orders`)}">See the shop's orders</a></p>`,
      ),
    );
  });

  async function notifyShop(base: string, payment: Payment, status: 'paid' | 'failed'): Promise<{ ok: boolean; detail: string }> {
    const transactionId = `acme_${randomBytes(9).toString('base64url')}`;
    const signed = signHmacPayload({
      payload: { orderId: payment.order, status, amount: payment.amount, currency: payment.currency, transactionId },
      secret: options.secret,
    });
    const url = `${base}/store/payment/notify/${gateway}`;
    try {
      const response = await fetch(url, {
        method: 'POST',
        headers: signed.headers,
        body: signed.body,
        dispatcher: agent,
        signal: AbortSignal.timeout(15_000),
      });
      const text = await response.text();
      return { ok: response.ok, detail: `POST ${url} answered ${response.status}: ${text.slice(0, 500)}` };
    } catch (error) {
      return { ok: false, detail: `POST ${url} failed: ${error instanceof Error ? error.message : String(error)}` };
    }
  }

  return { router, close: () => agent.close() };
}

/** The shop this stand-in lives in, as the browser reached it, so the demo works on any host and port. */
function shopBaseUrl(req: Request): string {
  return `${req.protocol}://${req.get('host') ?? 'localhost'}`;
}

/** The payment the shop asked for, or what is wrong with the request. */
function readPayment(fields: Record<string, unknown>, base: string): Payment | string {
  const { order, amount, currency } = fields;
  const returnUrl = fields.return;
  if (typeof order !== 'string' || order.length === 0 || order.length > 100) return 'order must be an order id of 1 to 100 characters';
  if (typeof amount !== 'string' || !/^\d{1,9}(\.\d{1,2})?$/.test(amount)) return 'amount must be a decimal like 12.50';
  if (typeof currency !== 'string' || !/^[A-Z]{3}$/.test(currency)) return 'currency must be an ISO 4217 code like EUR';
  if (typeof returnUrl !== 'string') return 'return must be the URL of the shop’s confirmation page';
  // Only back into the shop that sent the buyer: anything else would make the stand-in an open redirect.
  let target: URL;
  try {
    target = new URL(returnUrl);
  } catch {
    return 'return must be an absolute URL';
  }
  if (target.origin !== new URL(base).origin) return `return must point into the shop (${base})`;
  return { order, amount, currency, returnUrl: target.href };
}

function paymentPage(payment: Payment): string {
  const hidden = Object.entries({ order: payment.order, amount: payment.amount, currency: payment.currency, return: payment.returnUrl })
    .map(([name, value]) => `<input type="hidden" name="${name}" value="${escapeHtml(value)}">`)
    .join('');
  const button = (action: Action, label: string) => `<button type="submit" name="action" value="${action}">${label}</button>`;
  return page(
    'AcmePay',
    `<p>Order <strong>${escapeHtml(payment.order)}</strong>: <strong>${escapeHtml(payment.amount)} ${escapeHtml(payment.currency)}</strong></p>` +
      `<form method="post" action="/acmepay/pay">${hidden}` +
      `<p>${button('return', 'Pay and return to shop')} ${button('close', 'Pay and close the tab')} ${button('refuse', 'Refuse payment')}</p>` +
      `</form>` +
      `<p class="hint">Each button first sends the signed server-to-server callback to the shop, then acts like the buyer.</p>`,
  );
}

function page(title: string, body: string): string {
  return (
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)} – AcmePay</title>` +
    `<style>body{font-family:system-ui,sans-serif;max-width:40rem;margin:2rem auto;padding:0 1rem;background:#f4f6fb}` +
    `h1{color:#243b8a}button{margin:.25rem;padding:.5rem 1rem}.hint{color:#666;font-size:.9em}</style></head>` +
    `<body><h1>${escapeHtml(title)}</h1>${body}</body></html>`
  );
}

function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
}
