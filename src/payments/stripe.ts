import { createHmac } from 'node:crypto';
import { fromMinorUnits } from '../amounts';
import { ConfigError, type ConfigIssue } from '../errors';
import type { PaymentOutcome } from '../orders';
import { ISO_CURRENCY, isRecord, joinEventKey, nonEmptyString, sameBytes, singleHeader, stringList, withinTolerance } from './common';
import type { GatewayAdapter, GatewayRequest, ParsedPaymentEvent, VerificationResult } from './gateway';

/** The Stripe object an event is about (`event.data.object`): a PaymentIntent or a Checkout Session. */
export type StripeObject = Record<string, unknown>;

export interface StripeGatewayOptions {
  /**
   * The endpoint's signing secret (`whsec_…`, Dashboard › Developers › Webhooks › your endpoint),
   * not the API key. Several verify (rotation: Stripe signs with both while a secret is rolled).
   */
  webhookSecret: string | string[];
  /**
   * Where the shop's order id is: a key of the object's `metadata`, or a function of the
   * object (e.g. `(session) => session.client_reference_id`). Default: `'order_id'`.
   */
  orderIdFrom?: string | ((object: StripeObject, event: { id: string; type: string }) => string | null | undefined);
  /** How far the signature's timestamp may be from our clock, in both directions. Default: `300` (s). */
  toleranceSec?: number;
}

/**
 * Stripe's minor units follow ISO 4217 except where its API keeps another representation:
 * ISK stays two-decimal (100 = 1 kr) for backwards compatibility, MGA is zero-decimal.
 */
export const STRIPE_CURRENCY_EXPONENTS: Readonly<Record<string, number>> = { ISK: 2, MGA: 0 };

const SIGNATURE_HEADER = 'stripe-signature';

function validateOptions(options: StripeGatewayOptions) {
  const issues: ConfigIssue[] = [];
  const secrets = stringList(options?.webhookSecret, (secret) => /^whsec_\S{8,}$/.test(secret));
  if (!secrets) {
    const given = Array.isArray(options?.webhookSecret) ? options.webhookSecret : [options?.webhookSecret];
    const apiKey = given.some((secret) => typeof secret === 'string' && /^(sk|rk|pk)_/.test(secret));
    issues.push({
      path: 'stripeGateway.webhookSecret',
      message: apiKey
        ? 'this is an API key, not a webhook signing secret: copy the endpoint\'s "Signing secret" (whsec_…) from Dashboard › Developers › Webhooks.'
        : "must be the endpoint's signing secret, a string starting with 'whsec_', or a list of them (rotation).",
    });
  }
  const orderIdFrom = options?.orderIdFrom ?? 'order_id';
  if (!(typeof orderIdFrom === 'function' || (typeof orderIdFrom === 'string' && orderIdFrom.length > 0))) {
    issues.push({ path: 'stripeGateway.orderIdFrom', message: "must be a metadata key like 'order_id' or a function (object) => orderId." });
  }
  const toleranceSec = options?.toleranceSec ?? 300;
  if (!Number.isFinite(toleranceSec) || toleranceSec <= 0) {
    issues.push({ path: 'stripeGateway.toleranceSec', message: 'must be a positive number of seconds, e.g. 300.' });
  }
  if (issues.length) throw new ConfigError(issues);
  return { secrets: secrets!, orderIdFrom, toleranceSec };
}

/** `t=…,v1=…,v1=…,v0=…` → the timestamp and every v1 signature; `null` when it is not that. */
function parseSignatureHeader(header: string): { timestamp: string; signatures: Buffer[] } | null {
  let timestamp: string | null = null;
  const signatures: Buffer[] = [];
  for (const item of header.split(',')) {
    const equals = item.indexOf('=');
    if (equals === -1) continue;
    const key = item.slice(0, equals).trim();
    const value = item.slice(equals + 1).trim();
    if (key === 't') {
      // Two timestamps (two headers joined by a proxy) leave it unclear which one was signed.
      if (timestamp !== null) return null;
      timestamp = value;
    } else if (key === 'v1' && /^[0-9a-f]{64}$/i.test(value)) {
      signatures.push(Buffer.from(value, 'hex'));
    }
  }
  return timestamp === null ? null : { timestamp, signatures };
}

/** The events we act on: type → outcome, and where the confirmed amount is. */
function interpret(type: string, object: StripeObject): { outcome: PaymentOutcome; amountField?: string } | null {
  switch (type) {
    case 'payment_intent.succeeded':
      return { outcome: 'paid', amountField: 'amount_received' };
    case 'payment_intent.processing':
      return { outcome: 'pending' };
    case 'payment_intent.payment_failed':
      return { outcome: 'failed' };
    case 'payment_intent.canceled':
      return { outcome: 'canceled' };
    case 'checkout.session.completed':
      // "unpaid": a delayed method (SEPA, bank transfer); async_payment_succeeded/failed follows.
      return object.payment_status === 'unpaid' ? { outcome: 'pending' } : { outcome: 'paid', amountField: 'amount_total' };
    case 'checkout.session.async_payment_succeeded':
      return { outcome: 'paid', amountField: 'amount_total' };
    case 'checkout.session.async_payment_failed':
      return { outcome: 'failed' };
    case 'checkout.session.expired':
      return { outcome: 'canceled' };
    default:
      return null;
  }
}

/**
 * Stripe webhooks (`Stripe-Signature: t=…,v1=…`, HMAC-SHA256 over `${t}.${rawBody}`).
 * PaymentIntent and Checkout Session events become payment events; every other event
 * type, and objects without an order id (payments the shop took elsewhere), are
 * acknowledged and ignored.
 */
export function stripeGateway(options: StripeGatewayOptions): GatewayAdapter {
  const { secrets, orderIdFrom, toleranceSec } = validateOptions(options);

  function verifyAndParse(request: GatewayRequest): VerificationResult {
    const unauthentic = (reason: string): VerificationResult => ({ ok: false, kind: 'unauthentic', reason });
    const header = singleHeader(request.headers, SIGNATURE_HEADER);
    if (!header) return unauthentic('missing or repeated Stripe-Signature header');
    const parsed = parseSignatureHeader(header);
    if (!parsed || !/^\d{1,12}$/.test(parsed.timestamp)) return unauthentic('Stripe-Signature has no timestamp (t=…)');
    if (parsed.signatures.length === 0) return unauthentic('Stripe-Signature has no v1 signature');
    const fresh = withinTolerance(Number(parsed.timestamp), request.receivedAt, toleranceSec);
    if (!fresh.ok) return unauthentic(fresh.reason);
    const valid = secrets.some((secret) => {
      const expected = createHmac('sha256', secret).update(`${parsed.timestamp}.`).update(request.rawBody).digest();
      return parsed.signatures.some((given) => sameBytes(expected, given));
    });
    if (!valid) return unauthentic('no v1 signature matches the body and a configured webhook secret');
    return parse(request.rawBody);
  }

  function orderIdOf(object: StripeObject, event: { id: string; type: string }): string | undefined {
    if (typeof orderIdFrom === 'function') return nonEmptyString(orderIdFrom(object, event) ?? undefined, 1000);
    return isRecord(object.metadata) ? nonEmptyString(object.metadata[orderIdFrom], 1000) : undefined;
  }

  function parse(rawBody: Buffer): VerificationResult {
    const malformed = (reason: string): VerificationResult => ({ ok: false, kind: 'malformed', reason });
    let event: unknown;
    try {
      event = JSON.parse(rawBody.toString('utf8'));
    } catch {
      return malformed('body is not JSON');
    }
    if (!isRecord(event) || typeof event.id !== 'string' || typeof event.type !== 'string') {
      return malformed('body is not a Stripe event (no id or type)');
    }
    const object = isRecord(event.data) ? event.data.object : undefined;
    if (!isRecord(object)) return malformed('event has no data.object');
    const meaning = interpret(event.type, object);
    if (!meaning) return { ok: true, events: [] };
    let orderId: string | undefined;
    try {
      orderId = orderIdOf(object, { id: event.id, type: event.type });
    } catch (error) {
      return malformed(`orderIdFrom threw: ${error instanceof Error ? error.message : String(error)}`);
    }
    if (orderId === undefined) return { ok: true, events: [] };

    const currency = typeof object.currency === 'string' && ISO_CURRENCY.test(object.currency) ? object.currency.toUpperCase() : undefined;
    let amount: string | undefined;
    if (meaning.amountField) {
      if (!currency) return malformed(`${event.type} has no valid currency`);
      const minor = object[meaning.amountField];
      amount = (typeof minor === 'number' && fromMinorUnits(minor, currency, STRIPE_CURRENCY_EXPONENTS)) || undefined;
      if (amount === undefined) return malformed(`${meaning.amountField} must be a non-negative integer in minor units`);
    }
    const transactionId = nonEmptyString(object.payment_intent) ?? nonEmptyString(object.id);
    const parsed: ParsedPaymentEvent = {
      // Stripe redelivers an event with the same id; a later event about the same payment has its own.
      eventKey: joinEventKey(event.id, meaning.outcome),
      orderId,
      outcome: meaning.outcome,
      ...(amount !== undefined && { amount }),
      ...(currency !== undefined && { currency }),
      ...(transactionId !== undefined && { transactionId }),
      ...(typeof event.created === 'number' && Number.isSafeInteger(event.created) && { occurredAt: new Date(event.created * 1000) }),
    };
    return { ok: true, events: [parsed] };
  }

  return { verifyAndParse };
}
