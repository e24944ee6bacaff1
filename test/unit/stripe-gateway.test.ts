import type { IncomingHttpHeaders } from 'node:http';
import Stripe from 'stripe';
import { ConfigError } from '../../src/errors';
import type { GatewayRequest, VerificationResult } from '../../src/payments/gateway';
import { stripeGateway, type StripeGatewayOptions } from '../../src/payments/stripe';
import { failure, events } from '../helpers/verification';

const SECRET = 'whsec_test_0123456789abcdefghijklmnop';
const OLD_SECRET = 'whsec_old_fedcba9876543210zyxwvu';
const T = 1_764_761_000; // unix seconds the header was signed at
const stripe = new Stripe('sk_test_not_used_for_requests');

function paymentIntentEvent(type = 'payment_intent.succeeded', object: Record<string, unknown> = {}, id = 'evt_1') {
  return {
    id,
    object: 'event',
    type,
    created: T - 5,
    livemode: false,
    data: {
      object: {
        id: 'pi_123',
        object: 'payment_intent',
        amount: 2500,
        amount_received: 2500,
        currency: 'eur',
        metadata: { order_id: 'IT-1001' },
        ...object,
      },
    },
  };
}

function sessionEvent(type: string, object: Record<string, unknown> = {}) {
  return {
    id: 'evt_cs_1',
    object: 'event',
    type,
    created: T - 5,
    data: {
      object: {
        id: 'cs_test_1',
        object: 'checkout.session',
        amount_total: 1999,
        currency: 'eur',
        payment_status: 'paid',
        payment_intent: 'pi_cs_1',
        client_reference_id: 'CR-77',
        metadata: { order_id: 'IT-2002' },
        ...object,
      },
    },
  };
}

/** A body and the Stripe-Signature header the official package produces for it. */
function signed(event: object | string, secret = SECRET, timestamp = T) {
  const body = typeof event === 'string' ? event : JSON.stringify(event);
  return { body, header: stripe.webhooks.generateTestHeaderString({ payload: body, secret, timestamp }) };
}

function request(body: string, headers: IncomingHttpHeaders, skewSec = 0): GatewayRequest {
  return { method: 'POST', headers, query: {}, rawBody: Buffer.from(body), receivedAt: (T + skewSec) * 1000 };
}

async function verify(event: object | string, options: Partial<StripeGatewayOptions> = {}, sign = signed(event)): Promise<VerificationResult> {
  return stripeGateway({ webhookSecret: SECRET, ...options }).verifyAndParse(request(sign.body, { 'stripe-signature': sign.header }));
}

describe('stripeGateway: headers made by the official stripe package verify', () => {
  test('payment_intent.succeeded with metadata.order_id is a payment of amount_received', async () => {
    expect(events(await verify(paymentIntentEvent()))).toEqual([
      {
        eventKey: expect.stringContaining('paid'),
        orderId: 'IT-1001',
        outcome: 'paid',
        amount: '25.00',
        currency: 'EUR',
        transactionId: 'pi_123',
        occurredAt: new Date((T - 5) * 1000),
      },
    ]);
  });

  test.each([
    ['payment_intent.processing', 'pending'],
    ['payment_intent.payment_failed', 'failed'],
    ['payment_intent.canceled', 'canceled'],
  ])('%s is %s, without an amount to check', async (type, outcome) => {
    const [event] = events(await verify(paymentIntentEvent(type, { amount_received: 0 })));
    expect(event).toMatchObject({ orderId: 'IT-1001', outcome, currency: 'EUR' });
    expect(event!.amount).toBeUndefined();
  });

  test.each([
    ['checkout.session.completed', 'paid', 'paid', '19.99'],
    ['checkout.session.completed', 'no_payment_required', 'paid', '19.99'],
    ['checkout.session.completed', 'unpaid', 'pending', undefined],
    ['checkout.session.async_payment_succeeded', 'paid', 'paid', '19.99'],
    ['checkout.session.async_payment_failed', 'unpaid', 'failed', undefined],
    ['checkout.session.expired', 'unpaid', 'canceled', undefined],
  ])('%s with payment_status %s is %s', async (type, paymentStatus, outcome, amount) => {
    const [event] = events(await verify(sessionEvent(type, { payment_status: paymentStatus })));
    expect(event).toMatchObject({ orderId: 'IT-2002', outcome, transactionId: 'pi_cs_1' });
    expect(event!.amount).toBe(amount);
  });

  test('other event types are acknowledged without a payment event', async () => {
    expect(events(await verify({ ...paymentIntentEvent(), type: 'charge.succeeded' }))).toEqual([]);
    expect(events(await verify({ ...paymentIntentEvent(), type: 'customer.created' }))).toEqual([]);
  });

  test('a payment without the order id in its metadata (taken outside the shop) yields no event', async () => {
    expect(events(await verify(paymentIntentEvent(undefined, { metadata: {} })))).toEqual([]);
    expect(events(await verify(paymentIntentEvent(undefined, { metadata: { order_id: '' } })))).toEqual([]);
  });

  test('orderIdFrom: another metadata key, or a function of the object', async () => {
    const byKey = await verify(paymentIntentEvent(undefined, { metadata: { shop_order: 'S-9' } }), { orderIdFrom: 'shop_order' });
    expect(events(byKey)[0]!.orderId).toBe('S-9');
    const byFunction = await verify(sessionEvent('checkout.session.completed'), { orderIdFrom: (session) => session.client_reference_id as string });
    expect(events(byFunction)[0]!.orderId).toBe('CR-77');
  });

  test.each([
    ['eur', 1999, '19.99'],
    ['jpy', 2500, '2500'],
    ['krw', 15000, '15000'],
    ['kwd', 25120, '25.120'],
    ['bhd', 1000, '1.000'],
    ['isk', 250000, '2500.00'], // Stripe keeps ISK two-decimal in its API
    ['usd', 5, '0.05'],
  ])('amount in minor units of %s: %d → %s', async (currency, minor, major) => {
    const [event] = events(await verify(paymentIntentEvent(undefined, { currency, amount_received: minor })));
    expect(event).toMatchObject({ amount: major, currency: currency.toUpperCase() });
  });

  test('rotation: with [new, old] secrets both verify; during a roll Stripe sends one v1 per secret', async () => {
    for (const secret of [SECRET, OLD_SECRET]) {
      expect((await verify(paymentIntentEvent(), { webhookSecret: [SECRET, OLD_SECRET] }, signed(paymentIntentEvent(), secret))).ok).toBe(true);
    }
    const body = JSON.stringify(paymentIntentEvent());
    const first = signed(body, 'whsec_someone_else_0123456789').header;
    const second = signed(body, SECRET).header.split(',')[1]!;
    expect((await verify(body, {}, { body, header: `${first},${second}` })).ok).toBe(true);
  });

  test('the event key tells a redelivery from another event, and includes the status', async () => {
    const keyOf = async (event: object) => events(await verify(event))[0]!.eventKey;
    const paid = await keyOf(paymentIntentEvent());
    expect(await keyOf(paymentIntentEvent())).toBe(paid);
    expect(paid).toContain('paid');
    expect(await keyOf(paymentIntentEvent(undefined, {}, 'evt_2'))).not.toBe(paid);
    expect(await keyOf(paymentIntentEvent('payment_intent.processing'))).not.toBe(paid);
    // parts are encoded: an event id that contains the separator cannot imitate another key
    expect(await keyOf(paymentIntentEvent('payment_intent.processing', {}, 'evt_1:paid'))).not.toBe(await keyOf(paymentIntentEvent(undefined, {}, 'evt_1')));
  });
});

describe('stripeGateway: unauthentic notifications', () => {
  test('a tampered body is unauthentic', async () => {
    const sign = signed(paymentIntentEvent());
    const tampered = sign.body.replace('2500', '1');
    expect(tampered).not.toBe(sign.body);
    expect(failure(await verify(tampered, {}, { body: tampered, header: sign.header })).kind).toBe('unauthentic');
  });

  test('a body signed with another secret is unauthentic', async () => {
    expect(failure(await verify(paymentIntentEvent(), {}, signed(paymentIntentEvent(), 'whsec_not_ours_0123456789'))).kind).toBe('unauthentic');
  });

  test.each([
    ['301 s old', 301],
    ['301 s in the future', -301],
  ])('a timestamp %s is unauthentic', async (_label, skew) => {
    const sign = signed(paymentIntentEvent());
    const result = failure(await stripeGateway({ webhookSecret: SECRET }).verifyAndParse(request(sign.body, { 'stripe-signature': sign.header }, skew)));
    expect(result.kind).toBe('unauthentic');
    expect(result.reason).toMatch(/timestamp/);
  });

  test.each([
    ['299 s old', 299],
    ['299 s in the future', -299],
    ['exactly 300 s old', 300],
  ])('a timestamp %s is accepted', async (_label, skew) => {
    const sign = signed(paymentIntentEvent());
    expect((await stripeGateway({ webhookSecret: SECRET }).verifyAndParse(request(sign.body, { 'stripe-signature': sign.header }, skew))).ok).toBe(true);
  });

  test('toleranceSec narrows the window', async () => {
    const sign = signed(paymentIntentEvent());
    const gateway = stripeGateway({ webhookSecret: SECRET, toleranceSec: 60 });
    expect((await gateway.verifyAndParse(request(sign.body, { 'stripe-signature': sign.header }, 59))).ok).toBe(true);
    expect(failure(await gateway.verifyAndParse(request(sign.body, { 'stripe-signature': sign.header }, 61))).kind).toBe('unauthentic');
  });

  test('the header as a real array in the GatewayRequest (what Node gives for headers it does not join) is unauthentic', async () => {
    const sign = signed(paymentIntentEvent());
    const result = await stripeGateway({ webhookSecret: SECRET }).verifyAndParse(request(sign.body, { 'stripe-signature': [sign.header, sign.header] }));
    expect(failure(result)).toEqual({ ok: false, kind: 'unauthentic', reason: 'missing or repeated Stripe-Signature header' });
  });

  test('two headers joined into one (two timestamps) are unauthentic', async () => {
    const sign = signed(paymentIntentEvent());
    const other = signed(paymentIntentEvent(), SECRET, T - 10);
    expect(failure(await verify(sign.body, {}, { body: sign.body, header: `${sign.header}, ${other.header}` })).kind).toBe('unauthentic');
  });

  test('a missing header is unauthentic', async () => {
    const sign = signed(paymentIntentEvent());
    expect(failure(await stripeGateway({ webhookSecret: SECRET }).verifyAndParse(request(sign.body, {}))).kind).toBe('unauthentic');
  });

  test.each([
    ['no v1 signature', (h: string) => h.replace(/,v1=.*/, '')],
    ['only a v0 signature', (h: string) => h.replace('v1=', 'v0=')],
    ['no timestamp', (h: string) => h.replace(/^t=\d+,/, '')],
    ['a timestamp that is not a number', (h: string) => h.replace(/^t=\d+/, 't=soon')],
    ['a truncated signature', (h: string) => h.slice(0, -2)],
    ['an empty header', () => ''],
  ])('a header with %s is unauthentic', async (_what, mangle) => {
    const sign = signed(paymentIntentEvent());
    expect(failure(await verify(sign.body, {}, { body: sign.body, header: mangle(sign.header) })).kind).toBe('unauthentic');
  });
});

describe('stripeGateway: authentic but malformed notifications', () => {
  test.each<[string, object | string]>([
    ['a body that is not JSON', 'id=evt_1&type=payment_intent.succeeded'],
    ['an event without a type', { ...paymentIntentEvent(), type: undefined }],
    ['an event without data.object', { ...paymentIntentEvent(), data: {} }],
    ['a paid amount that is not an integer', paymentIntentEvent(undefined, { amount_received: 25.5 })],
    ['a negative paid amount', paymentIntentEvent(undefined, { amount_received: -2500 })],
    ['a paid amount as a string', paymentIntentEvent(undefined, { amount_received: '2500' })],
    ['a paid event without a currency', paymentIntentEvent(undefined, { currency: undefined })],
  ])('%s is malformed', async (_what, event) => {
    expect(failure(await verify(event)).kind).toBe('malformed');
  });
});

describe('stripeGateway: options are checked at construction', () => {
  test('an API key instead of the signing secret names the fix', () => {
    try {
      stripeGateway({ webhookSecret: 'sk_live_0123456789' });
      throw new Error('accepted an API key');
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).issues[0]).toEqual({ path: 'stripeGateway.webhookSecret', message: expect.stringContaining('Signing secret') });
    }
  });

  test.each<[string, unknown]>([
    ['no secret', undefined],
    ['an empty list', []],
    ['a secret without whsec_', 'not-a-stripe-secret-0123456789'],
    ['a list with a bad secret', [SECRET, 'nope']],
  ])('%s throws a ConfigError', (_what, webhookSecret) => {
    expect(() => stripeGateway({ webhookSecret } as StripeGatewayOptions)).toThrow(ConfigError);
  });

  test('a non-positive tolerance and an empty orderIdFrom throw, listing both', () => {
    try {
      stripeGateway({ webhookSecret: SECRET, toleranceSec: 0, orderIdFrom: '' });
      throw new Error('accepted');
    } catch (error) {
      expect((error as ConfigError).issues.map((issue) => issue.path)).toEqual(['stripeGateway.orderIdFrom', 'stripeGateway.toleranceSec']);
    }
  });
});
