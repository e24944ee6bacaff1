import { createHmac } from 'node:crypto';
import { fromMinorUnits } from '../amounts';
import { ConfigError, type ConfigIssue } from '../errors';
import type { PaymentOutcome } from '../orders';
import { defaultAcknowledgement } from './acknowledgement';
import { ISO_CURRENCY, isRecord, joinEventKey, nonEmptyString, sameBytes, stringList } from './common';
import type { Acknowledgement, GatewayAdapter, GatewayRequest, ParsedPaymentEvent, ProcessingResult, VerificationResult } from './gateway';

export interface AdyenGatewayOptions {
  /**
   * The webhook's HMAC key(s) as shown in the Customer Area (hex). Several verify
   * (rotation: keep the old key until Adyen has stopped signing with it).
   */
  hmacKeys: string | string[];
  /** Body of the answer to an accepted batch. Default: `'[accepted]'`. */
  acceptBody?: string;
}

/**
 * Adyen's minor units follow ISO 4217 except for these currencies
 * (docs.adyen.com/development-resources/currency-codes: "differs from standard").
 */
export const ADYEN_CURRENCY_EXPONENTS: Readonly<Record<string, number>> = { CLP: 2, CVE: 0, IDR: 0, ISK: 2 };

/** Adyen sends at most 100 items a batch (classic webhooks send one); more is not Adyen. */
const MAX_ITEMS = 100;

function validateOptions(options: AdyenGatewayOptions) {
  const issues: ConfigIssue[] = [];
  const keys = stringList(options?.hmacKeys, (key) => /^(?:[0-9a-fA-F]{2}){16,}$/.test(key));
  if (!keys) {
    issues.push({
      path: 'adyenGateway.hmacKeys',
      message: 'must be the webhook\'s HMAC key as hex (Customer Area › Developers › Webhooks › your webhook › "HMAC Key"), or a list of them.',
    });
  }
  const acceptBody = options?.acceptBody ?? '[accepted]';
  if (typeof acceptBody !== 'string') issues.push({ path: 'adyenGateway.acceptBody', message: "must be a string, e.g. '[accepted]'." });
  if (issues.length) throw new ConfigError(issues);
  return { keys: keys!.map((key) => Buffer.from(key, 'hex')), acceptBody };
}

/** The fields Adyen signs, in its order, joined by ':' (Adyen's scheme: no escaping). */
export function adyenSignedData(item: Record<string, unknown>): string | null {
  const amount = item.amount;
  if (!isRecord(amount)) return null;
  const fields = [item.pspReference, item.originalReference ?? '', item.merchantAccountCode, item.merchantReference ?? '', amount.value, amount.currency, item.eventCode, item.success];
  if (!fields.every((field) => typeof field === 'string' || (typeof field === 'number' && Number.isFinite(field)))) return null;
  return fields.map(String).join(':');
}

function interpret(eventCode: string, success: boolean): PaymentOutcome | null {
  switch (eventCode) {
    case 'AUTHORISATION':
      return success ? 'paid' : 'failed';
    case 'PENDING':
      return success ? 'pending' : null;
    case 'CANCELLATION':
      return success ? 'canceled' : null;
    case 'OFFER_CLOSED':
      // The shopper did not complete a redirect or voucher payment in time.
      return success ? 'failed' : null;
    default:
      return null;
  }
}

/**
 * Adyen standard webhooks: a JSON batch of `NotificationRequestItem`s, each signed with
 * HMAC-SHA256 in `additionalData.hmacSignature`. One item that does not verify fails
 * the whole batch (401), so a forged item cannot ride along with genuine ones; Adyen
 * then retries the batch and shows the failure in the Customer Area.
 */
export function adyenGateway(options: AdyenGatewayOptions): GatewayAdapter {
  const { keys, acceptBody } = validateOptions(options);

  function verifyItem(item: Record<string, unknown>): boolean {
    const data = adyenSignedData(item);
    const signature = isRecord(item.additionalData) ? item.additionalData.hmacSignature : undefined;
    if (data === null || typeof signature !== 'string' || !/^[A-Za-z0-9+/]{43}=$/.test(signature)) return false;
    const given = Buffer.from(signature, 'base64');
    return keys.some((key) => sameBytes(createHmac('sha256', key).update(data, 'utf8').digest(), given));
  }

  function verifyAndParse(request: GatewayRequest): VerificationResult {
    const malformed = (reason: string): VerificationResult => ({ ok: false, kind: 'malformed', reason });
    let body: unknown;
    try {
      body = JSON.parse(request.rawBody.toString('utf8'));
    } catch {
      return malformed('body is not JSON');
    }
    const list = isRecord(body) ? body.notificationItems : undefined;
    if (!Array.isArray(list) || list.length === 0 || list.length > MAX_ITEMS) {
      return malformed(`body has no notificationItems (1 to ${MAX_ITEMS})`);
    }
    const items: Array<Record<string, unknown>> = [];
    for (const [index, wrapper] of list.entries()) {
      const item = isRecord(wrapper) ? wrapper.NotificationRequestItem : undefined;
      // Nothing of the batch is used unless every item verifies.
      if (!isRecord(item) || !verifyItem(item)) {
        return { ok: false, kind: 'unauthentic', reason: `notificationItems[${index}] has no valid hmacSignature` };
      }
      items.push(item);
    }

    const events: ParsedPaymentEvent[] = [];
    for (const item of items) {
      const eventCode = String(item.eventCode);
      const success = item.success === 'true';
      const outcome = interpret(eventCode, success);
      const orderId = nonEmptyString(item.merchantReference, 1000);
      if (!outcome || orderId === undefined) continue;
      const amount = item.amount as Record<string, unknown>;
      const currency = typeof amount.currency === 'string' && ISO_CURRENCY.test(amount.currency) ? amount.currency.toUpperCase() : undefined;
      if (!currency) return malformed(`${eventCode} for ${orderId} has no valid currency`);
      const major = fromMinorUnits(amount.value as string | number, currency, ADYEN_CURRENCY_EXPONENTS);
      if (major === null) return malformed(`${eventCode} for ${orderId}: amount.value must be a non-negative integer in minor units`);
      const pspReference = String(item.pspReference);
      const occurredAt = typeof item.eventDate === 'string' ? new Date(item.eventDate) : null;
      events.push({
        // success is part of the key: Adyen may report an event code for a payment as failed, then succeeded.
        eventKey: joinEventKey(pspReference, eventCode, String(item.success)),
        orderId,
        outcome,
        // An authorisation that failed confirms no money: only a paid event carries the amount to check.
        ...(outcome === 'paid' && { amount: major }),
        currency,
        transactionId: pspReference,
        ...(occurredAt && !Number.isNaN(occurredAt.getTime()) && { occurredAt }),
      });
    }
    return { ok: true, events };
  }

  function acknowledge(result: ProcessingResult): Acknowledgement {
    if (!result.ok) return defaultAcknowledgement(result);
    return { status: 200, contentType: 'text/plain', body: acceptBody };
  }

  return { verifyAndParse, acknowledge };
}
