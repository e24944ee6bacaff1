import { request as undiciRequest } from 'undici';
import { toScaledAmount } from '../amounts';
import { ConfigError, type ConfigIssue } from '../errors';
import type { PaymentOutcome } from '../orders';
import { defaultAcknowledgement } from './acknowledgement';
import { ISO_CURRENCY, joinEventKey } from './common';
import { charsetOf, decodeForm, decoderFor, parseFormBytes } from './form';
import type { Acknowledgement, GatewayAdapter, GatewayRequest, ProcessingResult, VerificationResult } from './gateway';

export const PAYPAL_IPN_LIVE_VERIFY_URL = 'https://ipnpb.paypal.com/cgi-bin/webscr';
export const PAYPAL_IPN_SANDBOX_VERIFY_URL = 'https://ipnpb.sandbox.paypal.com/cgi-bin/webscr';

/** The postback to PayPal, for an injected HTTP client. */
export interface PaypalIpnVerifyRequest {
  url: string;
  /** `cmd=_notify-validate&` followed by the notification's bytes, unchanged. */
  body: Buffer;
  headers: Record<string, string>;
  /** Aborted when `timeoutMs` has passed. */
  signal: AbortSignal;
}

/** Posts the verification request; rejects on network errors. */
export type PaypalIpnHttp = (request: PaypalIpnVerifyRequest) => Promise<{ status: number; body: string }>;

export interface PaypalIpnGatewayOptions {
  /** The shop's PayPal account email(s): an IPN for another `receiver_email` is not a payment to the shop. */
  receiverEmail: string | string[];
  /** Where to post the message back. Default: `PAYPAL_IPN_LIVE_VERIFY_URL`; `PAYPAL_IPN_SANDBOX_VERIFY_URL` for the sandbox. */
  verifyUrl?: string;
  /** The field holding the shop's order id (set when creating the payment), or a function of the fields. Default: `'invoice'`. */
  orderIdFrom?: 'invoice' | 'custom' | ((fields: Readonly<Record<string, string>>) => string | null | undefined);
  /** Deadline of the postback; past it the IPN is answered 503 and PayPal retries. Default: `10000` (ms). */
  timeoutMs?: number;
  /** HTTP client for the postback. Default: undici `request`. */
  http?: PaypalIpnHttp;
}

const OUTCOMES: Readonly<Record<string, PaymentOutcome>> = {
  Completed: 'paid',
  Pending: 'pending',
  Failed: 'failed',
  Denied: 'failed',
  Expired: 'failed',
  Voided: 'failed',
};

/** Fields that must appear once: given twice, it is unclear which one PayPal meant. */
const SINGLE_FIELDS = ['txn_id', 'payment_status', 'receiver_email', 'mc_gross', 'mc_currency', 'invoice', 'custom', 'charset'];

/** PayPal's default IPN encoding, used when the message declares none. */
const DEFAULT_CHARSET = 'windows-1252';

const defaultHttp: PaypalIpnHttp = async ({ url, body, headers, signal }) => {
  const response = await undiciRequest(url, { method: 'POST', headers, body, signal });
  return { status: response.statusCode, body: (await response.body.text()).slice(0, 200) };
};

function isLoopback(hostname: string): boolean {
  return hostname === 'localhost' || hostname === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}

function validateOptions(options: PaypalIpnGatewayOptions) {
  const issues: ConfigIssue[] = [];
  const emails = Array.isArray(options?.receiverEmail) ? options.receiverEmail : [options?.receiverEmail];
  if (emails.length === 0 || !emails.every((email) => typeof email === 'string' && /^[^\s@]+@[^\s@]+$/.test(email.trim()))) {
    issues.push({ path: 'paypalIpnGateway.receiverEmail', message: "must be the email of the shop's PayPal account, or a list of them." });
  }
  const verifyUrl = options?.verifyUrl ?? PAYPAL_IPN_LIVE_VERIFY_URL;
  let url: URL | null = null;
  try {
    url = new URL(verifyUrl);
  } catch {
    // reported below
  }
  // Over plain HTTP anyone on the path could answer VERIFIED; only a local stand-in may use it.
  if (!url || !(url.protocol === 'https:' || (url.protocol === 'http:' && isLoopback(url.hostname)))) {
    issues.push({
      path: 'paypalIpnGateway.verifyUrl',
      message: `must be an https URL: PAYPAL_IPN_LIVE_VERIFY_URL (${PAYPAL_IPN_LIVE_VERIFY_URL}) or PAYPAL_IPN_SANDBOX_VERIFY_URL (${PAYPAL_IPN_SANDBOX_VERIFY_URL}).`,
    });
  }
  const orderIdFrom = options?.orderIdFrom ?? 'invoice';
  if (!(orderIdFrom === 'invoice' || orderIdFrom === 'custom' || typeof orderIdFrom === 'function')) {
    issues.push({ path: 'paypalIpnGateway.orderIdFrom', message: "must be 'invoice', 'custom' or a function (fields) => orderId." });
  }
  const timeoutMs = options?.timeoutMs ?? 10_000;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    issues.push({ path: 'paypalIpnGateway.timeoutMs', message: 'must be a positive number of milliseconds, e.g. 10000.' });
  }
  if (options?.http !== undefined && typeof options.http !== 'function') {
    issues.push({ path: 'paypalIpnGateway.http', message: 'must be a function ({ url, body, headers, signal }) => Promise<{ status, body }>.' });
  }
  if (issues.length) throw new ConfigError(issues);
  return {
    receivers: new Set((emails as string[]).map((email) => email.trim().toLowerCase())),
    verifyUrl,
    orderIdFrom,
    timeoutMs,
    http: options.http ?? defaultHttp,
  };
}

/**
 * PayPal Instant Payment Notification: a form POST that PayPal confirms when the exact
 * bytes are posted back (`cmd=_notify-validate&…` → `VERIFIED`). Only then are the
 * fields read; `receiver_email` must be the shop's, and amount and currency
 * (`mc_gross`, `mc_currency`) are checked against the order like every gateway's.
 */
export function paypalIpnGateway(options: PaypalIpnGatewayOptions): GatewayAdapter {
  const { receivers, verifyUrl, orderIdFrom, timeoutMs, http } = validateOptions(options);

  /** PayPal's verdict on the message (`VERIFIED`, `INVALID`); throws when none could be had now. */
  async function postBack(rawBody: Buffer): Promise<string> {
    const controller = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => {
        controller.abort();
        reject(new Error(`no answer within ${timeoutMs} ms`));
      }, timeoutMs);
    });
    try {
      // The race keeps the deadline even for an injected client that ignores the signal.
      const response = await Promise.race([
        http({
          url: verifyUrl,
          body: Buffer.concat([Buffer.from('cmd=_notify-validate&'), rawBody]),
          headers: { 'content-type': 'application/x-www-form-urlencoded', 'user-agent': 'matomo-server-tracking-ipn' },
          signal: controller.signal,
        }),
        deadline,
      ]);
      if (response.status !== 200) throw new Error(`the verify URL answered ${response.status}`);
      return response.body.trim();
    } finally {
      clearTimeout(timer);
    }
  }

  async function verifyAndParse(request: GatewayRequest): Promise<VerificationResult> {
    const malformed = (reason: string): VerificationResult => ({ ok: false, kind: 'malformed', reason });
    if (request.rawBody.length === 0) return malformed('empty body');

    let verdict: string;
    try {
      verdict = await postBack(request.rawBody);
    } catch (error) {
      return { ok: false, kind: 'transient', reason: `PayPal verification unavailable: ${error instanceof Error ? error.message : String(error)}` };
    }
    if (verdict === 'INVALID') return { ok: false, kind: 'unauthentic', reason: 'PayPal answered INVALID: this message did not come from PayPal' };
    if (verdict !== 'VERIFIED') return { ok: false, kind: 'transient', reason: 'PayPal answered neither VERIFIED nor INVALID' };

    const form = parseFormBytes(request.rawBody);
    for (const name of SINGLE_FIELDS) {
      if ((form.get(name)?.length ?? 0) > 1) return malformed(`field ${name} is given more than once`);
    }
    const charset = form.get('charset')?.[0]?.toString('latin1') || charsetOf(request.headers['content-type']) || DEFAULT_CHARSET;
    const decoder = decoderFor(charset);
    if (!decoder) return malformed(`unknown charset '${charset}'`);
    const fields: Record<string, string> = {};
    try {
      for (const [name, values] of decodeForm(form, decoder)) fields[name] = values[0] ?? '';
    } catch {
      return malformed(`fields are not valid ${charset}`);
    }

    if (!receivers.has((fields.receiver_email ?? '').trim().toLowerCase())) {
      // A genuine IPN about a payment to someone else's account: replayed to us, it must not pay an order.
      return { ok: false, kind: 'unauthentic', reason: `receiver_email '${fields.receiver_email ?? ''}' is not this shop's PayPal account` };
    }
    const status = fields.payment_status ?? '';
    const outcome = OUTCOMES[status];
    // Refunds, reversals, disputes and subscription messages are not about paying an order.
    if (!outcome) return { ok: true, events: [] };
    const txnId = fields.txn_id ?? '';
    if (txnId.length === 0 || txnId.length > 64) return malformed(`payment_status ${status} without a txn_id`);

    let orderId: string | null | undefined;
    try {
      orderId = typeof orderIdFrom === 'function' ? orderIdFrom(fields) : fields[orderIdFrom];
    } catch (error) {
      return malformed(`orderIdFrom threw: ${error instanceof Error ? error.message : String(error)}`);
    }
    if (typeof orderId !== 'string' || orderId.length === 0) return { ok: true, events: [] };

    const amount = fields.mc_gross;
    const currency = fields.mc_currency;
    if (outcome === 'paid') {
      if (amount === undefined || toScaledAmount(amount) === null) return malformed(`mc_gross '${amount ?? ''}' is not an amount like 12.50`);
      if (currency === undefined || !ISO_CURRENCY.test(currency)) return malformed(`mc_currency '${currency ?? ''}' is not an ISO 4217 code`);
    }
    return {
      ok: true,
      events: [
        {
          // Not txn_id alone: Pending and then Completed for one txn_id are two steps, not a redelivery.
          eventKey: joinEventKey(txnId, status),
          orderId,
          outcome,
          ...(outcome === 'paid' && { amount: amount!.trim() }),
          ...(currency !== undefined && ISO_CURRENCY.test(currency) && { currency: currency.toUpperCase() }),
          transactionId: txnId,
        },
      ],
    };
  }

  function acknowledge(result: ProcessingResult): Acknowledgement {
    // PayPal wants an empty 200; anything else, and it retries.
    return result.ok ? { status: 200, contentType: 'text/plain', body: '' } : defaultAcknowledgement(result);
  }

  return { verifyAndParse, acknowledge };
}
