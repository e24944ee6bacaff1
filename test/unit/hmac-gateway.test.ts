import type { IncomingHttpHeaders } from 'node:http';
import { ConfigError } from '../../src/errors';
import type { GatewayRequest, VerificationResult } from '../../src/payments/gateway';
import { computeHmacSignature, hmacGateway, signHmacPayload } from '../../src/payments/hmac';
import { failure } from '../helpers/verification';

const SECRET = 'acme-secret-0123456789abcdef';
const OLD_SECRET = 'acme-old-secret-fedcba9876543210';
const T = 1_764_761_000; // unix seconds of the notification
const PAYLOAD = { orderId: 'IT-1001', status: 'paid', amount: '12.50', currency: 'eur', transactionId: 'tx-77' };

/** The request the router hands the adapter, received `skewSec` after the timestamp. */
function request(body: string, headers: IncomingHttpHeaders, skewSec = 0): GatewayRequest {
  return { method: 'POST', headers, query: {}, rawBody: Buffer.from(body), receivedAt: (T + skewSec) * 1000 };
}

function signed(payload: string | object = PAYLOAD, secret = SECRET, timestamp = T) {
  return signHmacPayload({ payload, secret, timestamp });
}

async function verify(req: GatewayRequest, secret: string | string[] = SECRET): Promise<VerificationResult> {
  return hmacGateway({ secret }).verifyAndParse(req);
}

describe('hmacGateway: authentic notifications', () => {
  test('a body signed with signHmacPayload verifies and yields one payment event', async () => {
    const { body, headers } = signed();
    const result = await verify(request(body, headers));
    expect(result).toEqual({
      ok: true,
      events: [
        {
          eventKey: expect.stringContaining('paid'),
          orderId: 'IT-1001',
          outcome: 'paid',
          amount: '12.50',
          currency: 'EUR',
          transactionId: 'tx-77',
        },
      ],
    });
  });

  test('the event key tells a redelivery from a new status of the same order', async () => {
    const keyOf = async (status: string) => {
      const { body, headers } = signed({ ...PAYLOAD, status });
      const result = await verify(request(body, headers));
      if (!result.ok) throw new Error(result.reason);
      return result.events[0]!.eventKey;
    };
    const paid = await keyOf('paid');
    expect(await keyOf('paid')).toBe(paid);
    const pending = await keyOf('pending');
    expect(pending).toContain('pending');
    expect(pending).not.toBe(paid);
  });

  test('different notifications never share an event key (else one is dropped as a "duplicate")', async () => {
    // The router dedups by eventKey, so the key must identify (orderId, status, transactionId)
    // unambiguously, whatever characters the shop's order ids and the gateway's ids contain.
    const keyOf = async (payload: object) => {
      const { body, headers } = signed(payload);
      const result = await verify(request(body, headers));
      if (!result.ok) throw new Error(result.reason);
      return result.events[0]!.eventKey;
    };
    const first = await keyOf({ orderId: 'A:paid', status: 'paid' });
    const second = await keyOf({ orderId: 'A', status: 'paid', transactionId: 'paid:' });
    expect(first).not.toBe(second);
  });

  test('the event key is orderId:status:transactionId, each part encoded', async () => {
    const keyOf = async (payload: object) => {
      const { body, headers } = signed(payload);
      const result = await verify(request(body, headers));
      if (!result.ok) throw new Error(result.reason);
      return result.events[0]!.eventKey;
    };
    expect(await keyOf(PAYLOAD)).toBe('IT-1001:paid:tx-77');
    expect(await keyOf({ orderId: 'A:paid', status: 'failed' })).toBe('A%3Apaid:failed:');
  });

  test('the signature is HMAC-SHA256 over "timestamp.rawBody" in hex', () => {
    const { body, headers } = signed();
    expect(headers['x-timestamp']).toBe(String(T));
    expect(headers['x-signature']).toBe(computeHmacSignature(SECRET, T, body));
    expect(headers['x-signature']).toMatch(/^[0-9a-f]{64}$/);
  });

  test('an upper-case hex signature is accepted too', async () => {
    const { body, headers } = signed();
    expect((await verify(request(body, { ...headers, 'x-signature': headers['x-signature']!.toUpperCase() }))).ok).toBe(true);
  });
});

describe('hmacGateway: unauthentic notifications', () => {
  test('a tampered body is unauthentic', async () => {
    const { body, headers } = signed();
    const tampered = body.replace('12.50', '0.01');
    expect(tampered).not.toBe(body);
    expect(failure(await verify(request(tampered, headers))).kind).toBe('unauthentic');
  });

  test('a body signed with another secret is unauthentic', async () => {
    const { body, headers } = signed(PAYLOAD, 'someone-else-0123456789abcdef');
    expect(failure(await verify(request(body, headers))).kind).toBe('unauthentic');
  });

  test('a signature over another timestamp is unauthentic', async () => {
    const { body, headers } = signed();
    expect(failure(await verify(request(body, { ...headers, 'x-timestamp': String(T - 1) }))).kind).toBe('unauthentic');
  });

  test('rotation: with secret [new, old] both the new and the old secret verify', async () => {
    for (const secret of [SECRET, OLD_SECRET]) {
      const { body, headers } = signed(PAYLOAD, secret);
      expect((await verify(request(body, headers), [SECRET, OLD_SECRET])).ok).toBe(true);
    }
    const { body, headers } = signed(PAYLOAD, 'retired-secret-0123456789abcdef');
    expect(failure(await verify(request(body, headers), [SECRET, OLD_SECRET])).kind).toBe('unauthentic');
  });

  test.each([
    ['301 s old', 301],
    ['301 s in the future', -301],
  ])('a timestamp %s is unauthentic', async (_label, skew) => {
    const { body, headers } = signed();
    const result = failure(await verify(request(body, headers, skew)));
    expect(result.kind).toBe('unauthentic');
    expect(result.reason).toMatch(/timestamp/);
  });

  test.each([
    ['299 s old', 299],
    ['299 s in the future', -299],
    ['exactly 300 s old', 300],
  ])('a timestamp %s is accepted', async (_label, skew) => {
    const { body, headers } = signed();
    expect((await verify(request(body, headers, skew))).ok).toBe(true);
  });

  test('toleranceSec narrows the window', async () => {
    const { body, headers } = signed();
    const gateway = hmacGateway({ secret: SECRET, toleranceSec: 60 });
    expect((await gateway.verifyAndParse(request(body, headers, 59))).ok).toBe(true);
    expect(failure(await gateway.verifyAndParse(request(body, headers, 61))).kind).toBe('unauthentic');
  });

  test('a signature header given twice (an array) is unauthentic', async () => {
    const { body, headers } = signed();
    const twice = { ...headers, 'x-signature': [headers['x-signature']!, headers['x-signature']!] };
    expect(failure(await verify(request(body, twice))).kind).toBe('unauthentic');
  });

  test('a timestamp header given twice (an array) is unauthentic', async () => {
    const { body, headers } = signed();
    const twice = { ...headers, 'x-timestamp': [String(T), String(T)] };
    expect(failure(await verify(request(body, twice))).kind).toBe('unauthentic');
  });

  test.each(['x-signature', 'x-timestamp'])('a missing %s header is unauthentic', async (name) => {
    const { body, headers } = signed();
    const { [name]: _removed, ...rest } = headers;
    expect(failure(await verify(request(body, rest))).kind).toBe('unauthentic');
  });

  test.each(['not-hex', 'ab'.repeat(31), '', '1764761000.5'])('a signature %p that is not 64 hex digits is unauthentic', async (signature) => {
    const { body, headers } = signed();
    expect(failure(await verify(request(body, { ...headers, 'x-signature': signature }))).kind).toBe('unauthentic');
  });

  test('custom header names are honoured', async () => {
    const gateway = hmacGateway({ secret: SECRET, signatureHeader: 'X-Acme-Signature', timestampHeader: 'X-Acme-Time' });
    const { body, headers } = signHmacPayload({ payload: PAYLOAD, secret: SECRET, timestamp: T, signatureHeader: 'x-acme-signature', timestampHeader: 'x-acme-time' });
    expect((await gateway.verifyAndParse(request(body, headers))).ok).toBe(true);
    const defaults = signed();
    expect(failure(await gateway.verifyAndParse(request(defaults.body, defaults.headers))).kind).toBe('unauthentic');
  });
});

describe('hmacGateway: authentic but malformed notifications', () => {
  test.each<[string, string | object]>([
    ['a body that is not JSON', 'orderId=IT-1001&status=paid'],
    ['a JSON array', [PAYLOAD]],
    ['a missing orderId', { ...PAYLOAD, orderId: undefined }],
    ['an empty orderId', { ...PAYLOAD, orderId: '' }],
    ['a numeric orderId', { ...PAYLOAD, orderId: 1001 }],
    ['an unknown status', { ...PAYLOAD, status: 'PAID_OK' }],
    ['a missing status', { ...PAYLOAD, status: undefined }],
    ['an amount with a comma', { ...PAYLOAD, amount: '12,50' }],
    ['a negative amount', { ...PAYLOAD, amount: '-12.50' }],
    ['an amount that is not a number', { ...PAYLOAD, amount: 'twelve' }],
    ['an amount as an object', { ...PAYLOAD, amount: { value: 1250 } }],
    ['a currency that is not ISO 4217', { ...PAYLOAD, currency: 'euro' }],
  ])('%s is malformed', async (_what, payload) => {
    const { body, headers } = signed(payload);
    expect(failure(await verify(request(body, headers))).kind).toBe('malformed');
  });

  test('amount, currency and transactionId are optional', async () => {
    const { body, headers } = signed({ orderId: 'IT-1001', status: 'failed' });
    expect(await verify(request(body, headers))).toEqual({
      ok: true,
      events: [{ eventKey: expect.stringContaining('failed'), orderId: 'IT-1001', outcome: 'failed' }],
    });
  });
});

describe('hmacGateway: options are checked at construction', () => {
  test.each<[string, unknown]>([
    ['a short secret', 'short'],
    ['an empty list', []],
    ['a list with one short secret', [SECRET, 'short']],
    ['no secret', undefined],
  ])('%s throws a ConfigError', (_what, secret) => {
    expect(() => hmacGateway({ secret } as { secret: string })).toThrow(ConfigError);
  });

  test('a ConfigError names the option and the minimum length', () => {
    try {
      hmacGateway({ secret: 'short' });
      throw new Error('accepted a short secret');
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).code).toBe('ERR_MST_CONFIG');
      expect((error as ConfigError).issues[0]).toEqual({ path: 'hmacGateway.secret', message: expect.stringContaining('16 characters') });
    }
  });

  test('a non-positive tolerance throws', () => {
    expect(() => hmacGateway({ secret: SECRET, toleranceSec: 0 })).toThrow(ConfigError);
  });
});
