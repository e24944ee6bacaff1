import { createHmac } from 'node:crypto';
import { toScaledAmount } from '../amounts';
import { ConfigError, type ConfigIssue } from '../errors';
import type { PaymentOutcome } from '../orders';
import { ISO_CURRENCY, joinEventKey, sameBytes, singleHeader, withinTolerance } from './common';
import type { GatewayAdapter, GatewayRequest, ParsedPaymentEvent, VerificationResult } from './gateway';

export interface HmacGatewayOptions {
  /** Shared secret(s), at least 16 characters. Several verify (rotation); the signer uses the first. */
  secret: string | string[];
  /** How far the timestamp may be from our clock, in both directions. Default: `300` (s). */
  toleranceSec?: number;
  /** Header carrying the hex signature. Default: `'x-signature'`. */
  signatureHeader?: string;
  /** Header carrying the unix timestamp in seconds. Default: `'x-timestamp'`. */
  timestampHeader?: string;
}

const OUTCOMES: readonly PaymentOutcome[] = ['paid', 'pending', 'failed', 'canceled'];

/** HMAC-SHA256(secret, `${timestamp}.${rawBody}`) as lowercase hex. */
export function computeHmacSignature(secret: string, timestamp: number | string, rawBody: string | Buffer): string {
  return createHmac('sha256', secret).update(`${timestamp}.`).update(rawBody).digest('hex');
}

export interface SignedHmacPayload {
  /** The exact body to send: the signature covers these bytes. */
  body: string;
  headers: Record<string, string>;
}

/**
 * Signs a notification the way `hmacGateway` verifies it, like stripe-node's
 * `generateTestHeaderString`: for tests, and for a gateway stand-in.
 */
export function signHmacPayload(options: {
  payload: string | object;
  secret: string;
  /** Unix seconds. Default: now. */
  timestamp?: number;
  signatureHeader?: string;
  timestampHeader?: string;
}): SignedHmacPayload {
  const body = typeof options.payload === 'string' ? options.payload : JSON.stringify(options.payload);
  const timestamp = options.timestamp ?? Math.floor(Date.now() / 1000);
  return {
    body,
    headers: {
      'content-type': 'application/json',
      [options.timestampHeader ?? 'x-timestamp']: String(timestamp),
      [options.signatureHeader ?? 'x-signature']: computeHmacSignature(options.secret, timestamp, body),
    },
  };
}

function validateOptions(options: HmacGatewayOptions): { secrets: string[]; toleranceSec: number; signatureHeader: string; timestampHeader: string } {
  const issues: ConfigIssue[] = [];
  const secrets = Array.isArray(options?.secret) ? options.secret : [options?.secret];
  if (secrets.length === 0 || !secrets.every((s) => typeof s === 'string' && s.length >= 16)) {
    issues.push({ path: 'hmacGateway.secret', message: 'must be a string of at least 16 characters, or a list of them (newest first).' });
  }
  const toleranceSec = options?.toleranceSec ?? 300;
  if (!Number.isFinite(toleranceSec) || toleranceSec <= 0) {
    issues.push({ path: 'hmacGateway.toleranceSec', message: 'must be a positive number of seconds, e.g. 300.' });
  }
  const header = (name: string | undefined, fallback: string, path: string) => {
    const value = (name ?? fallback).toLowerCase();
    if (!/^[a-z0-9-]+$/.test(value)) issues.push({ path, message: `must be an HTTP header name like '${fallback}'.` });
    return value;
  };
  const signatureHeader = header(options?.signatureHeader, 'x-signature', 'hmacGateway.signatureHeader');
  const timestampHeader = header(options?.timestampHeader, 'x-timestamp', 'hmacGateway.timestampHeader');
  if (issues.length) throw new ConfigError(issues);
  return { secrets: secrets as string[], toleranceSec, signatureHeader, timestampHeader };
}

/**
 * The generic gateway (DESIGN §6): JSON body, `x-timestamp` and
 * `x-signature: hex(HMAC-SHA256(secret, timestamp + "." + rawBody))`.
 */
export function hmacGateway(options: HmacGatewayOptions): GatewayAdapter {
  const { secrets, toleranceSec, signatureHeader, timestampHeader } = validateOptions(options);

  function verifyAndParse(request: GatewayRequest): VerificationResult {
    const timestamp = singleHeader(request.headers, timestampHeader);
    const signature = singleHeader(request.headers, signatureHeader);
    if (!timestamp || !signature) {
      return { ok: false, kind: 'unauthentic', reason: `missing or repeated ${timestampHeader} / ${signatureHeader} header` };
    }
    if (!/^\d{1,12}$/.test(timestamp)) return { ok: false, kind: 'unauthentic', reason: `${timestampHeader} is not unix seconds` };
    const fresh = withinTolerance(Number(timestamp), request.receivedAt, toleranceSec);
    if (!fresh.ok) return { ok: false, kind: 'unauthentic', reason: fresh.reason };
    if (!/^[0-9a-f]{64}$/i.test(signature)) return { ok: false, kind: 'unauthentic', reason: `${signatureHeader} is not a hex SHA-256 HMAC` };
    const given = Buffer.from(signature.toLowerCase(), 'hex');
    const valid = secrets.some((secret) => sameBytes(Buffer.from(computeHmacSignature(secret, timestamp, request.rawBody), 'hex'), given));
    if (!valid) return { ok: false, kind: 'unauthentic', reason: 'signature does not match the body' };
    return parse(request.rawBody);
  }

  return { verifyAndParse };
}

function parse(rawBody: Buffer): VerificationResult {
  let body: unknown;
  try {
    body = JSON.parse(rawBody.toString('utf8'));
  } catch {
    return { ok: false, kind: 'malformed', reason: 'body is not JSON' };
  }
  const malformed = (reason: string): VerificationResult => ({ ok: false, kind: 'malformed', reason });
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return malformed('body is not a JSON object');
  const { orderId, status, amount, currency, transactionId } = body as Record<string, unknown>;
  if (typeof orderId !== 'string' || orderId.length === 0) return malformed('orderId must be a non-empty string');
  if (typeof status !== 'string' || !OUTCOMES.includes(status as PaymentOutcome)) {
    return malformed(`status must be one of ${OUTCOMES.join(', ')}`);
  }
  if (amount !== undefined && ((typeof amount !== 'string' && typeof amount !== 'number') || toScaledAmount(amount) === null)) {
    return malformed('amount must be a decimal like "12.50"');
  }
  if (currency !== undefined && (typeof currency !== 'string' || !ISO_CURRENCY.test(currency))) {
    return malformed('currency must be an ISO 4217 code like "EUR"');
  }
  if (transactionId !== undefined && (typeof transactionId !== 'string' || transactionId.length > 200)) {
    return malformed('transactionId must be a string');
  }
  const event: ParsedPaymentEvent = {
    // Each part encoded, so that no two notifications can run together into one key.
    eventKey: joinEventKey(orderId, status, transactionId ?? ''),
    orderId,
    outcome: status as PaymentOutcome,
    ...(amount !== undefined && { amount }),
    ...(currency !== undefined && { currency: currency.toUpperCase() }),
    ...(transactionId !== undefined && { transactionId }),
  };
  return { ok: true, events: [event] };
}
