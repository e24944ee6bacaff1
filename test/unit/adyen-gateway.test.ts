import { hmacValidator as HmacValidator } from '@adyen/api-library';
import { ConfigError } from '../../src/errors';
import { adyenGateway, type AdyenGatewayOptions } from '../../src/payments/adyen';
import type { GatewayRequest, ProcessingResult, VerificationResult } from '../../src/payments/gateway';
import { failure, events } from '../helpers/verification';

const KEY = '44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056';
const OLD_KEY = '0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF';
const validator = new HmacValidator();

type Item = Record<string, unknown> & { amount: { value: number; currency: string } };

function item(overrides: Partial<Item> = {}): Item {
  return {
    pspReference: 'PSP0001',
    originalReference: '',
    merchantAccountCode: 'PasswebShopIT',
    merchantReference: 'IT-1001',
    amount: { value: 2500, currency: 'EUR' },
    eventCode: 'AUTHORISATION',
    eventDate: '2026-12-03T15:30:12+01:00',
    success: 'true',
    paymentMethod: 'visa',
    reason: '123456:1111:03/2030',
    ...overrides,
  };
}

/** Signs each item with the official library's HmacValidator, as Adyen does. */
function signItem(unsigned: Item, key = KEY): Item {
  const signature = validator.calculateHmac(unsigned as never, key);
  return { ...unsigned, additionalData: { ...(unsigned.additionalData as object), hmacSignature: signature } };
}

function batch(items: Item[]): string {
  return JSON.stringify({ live: 'false', notificationItems: items.map((NotificationRequestItem) => ({ NotificationRequestItem })) });
}

function request(body: string): GatewayRequest {
  return { method: 'POST', headers: { 'content-type': 'application/json' }, query: {}, rawBody: Buffer.from(body), receivedAt: Date.now() };
}

async function verify(body: string, options: Partial<AdyenGatewayOptions> = {}): Promise<VerificationResult> {
  return adyenGateway({ hmacKeys: KEY, ...options }).verifyAndParse(request(body));
}

describe('adyenGateway: signatures made by the official HmacValidator verify', () => {
  test('an AUTHORISATION with success "true" is a payment of amount.value in minor units', async () => {
    const signed = signItem(item());
    expect(validator.validateHMAC(signed as never, KEY)).toBe(true);
    expect(events(await verify(batch([signed])))).toEqual([
      {
        eventKey: expect.stringContaining('AUTHORISATION'),
        orderId: 'IT-1001',
        outcome: 'paid',
        amount: '25.00',
        currency: 'EUR',
        transactionId: 'PSP0001',
        occurredAt: new Date('2026-12-03T14:30:12Z'),
      },
    ]);
  });

  test('a batch yields one event per relevant item, in order', async () => {
    const items = [
      signItem(item()),
      signItem(item({ pspReference: 'PSP0002', merchantReference: 'IT-1002', success: 'false', reason: 'Refused' })),
      signItem(item({ pspReference: 'PSP0003', eventCode: 'REPORT_AVAILABLE', merchantReference: 'report.csv' })),
      signItem(item({ pspReference: 'PSP0004', merchantReference: 'IT-1004', eventCode: 'CANCELLATION', originalReference: 'PSP0000' })),
    ];
    const result = events(await verify(batch(items)));
    expect(result.map((event) => [event.orderId, event.outcome, event.amount])).toEqual([
      ['IT-1001', 'paid', '25.00'],
      ['IT-1002', 'failed', undefined],
      ['IT-1004', 'canceled', undefined],
    ]);
  });

  test.each([
    ['PENDING', 'true', 'pending'],
    ['OFFER_CLOSED', 'true', 'failed'],
    ['CAPTURE', 'true', null],
    ['REFUND', 'true', null],
    ['CANCELLATION', 'false', null],
  ])('%s with success %s is %s', async (eventCode, success, outcome) => {
    const result = events(await verify(batch([signItem(item({ eventCode, success }))])));
    expect(result.map((event) => event.outcome)).toEqual(outcome ? [outcome] : []);
  });

  test('an item without a merchantReference yields no event', async () => {
    expect(events(await verify(batch([signItem(item({ merchantReference: '' }))])))).toEqual([]);
  });

  test.each([
    ['EUR', 2500, '25.00'],
    ['JPY', 2500, '2500'],
    ['KWD', 25125, '25.125'],
    ['BHD', 7, '0.007'],
    ['CLP', 250000, '2500.00'], // Adyen: 2 decimals, unlike ISO 4217
    ['IDR', 150000, '150000'], // Adyen: 0 decimals, unlike ISO 4217
    ['ISK', 100, '1.00'],
  ])('amount in minor units of %s: %d → %s', async (currency, value, major) => {
    const [event] = events(await verify(batch([signItem(item({ amount: { value, currency } }))])));
    expect(event).toMatchObject({ amount: major, currency });
  });

  test('rotation: items signed with the old key verify while both keys are configured', async () => {
    const body = batch([signItem(item(), OLD_KEY)]);
    expect(failure(await verify(body)).kind).toBe('unauthentic');
    expect((await verify(body, { hmacKeys: [KEY, OLD_KEY] })).ok).toBe(true);
    expect((await verify(body, { hmacKeys: [KEY.toLowerCase(), OLD_KEY.toLowerCase()] })).ok).toBe(true);
  });

  test('the event key includes pspReference, event code and success, each encoded', async () => {
    const keyOf = async (overrides: Partial<Item>) => events(await verify(batch([signItem(item(overrides))])))[0]!.eventKey;
    const paid = await keyOf({});
    expect(await keyOf({})).toBe(paid);
    expect(await keyOf({ success: 'false' })).not.toBe(paid);
    expect(await keyOf({ pspReference: 'PSP0001:AUTHORISATION', eventCode: 'AUTHORISATION' })).not.toBe(await keyOf({ pspReference: 'PSP0001' }));
  });
});

describe('adyenGateway: one bad item fails the whole batch', () => {
  test('a tampered item (amount changed after signing) makes the batch unauthentic', async () => {
    const genuine = signItem(item({ pspReference: 'PSP0009', merchantReference: 'IT-9' }));
    const tampered = { ...signItem(item()), amount: { value: 1, currency: 'EUR' } };
    const result = failure(await verify(batch([genuine, tampered])));
    expect(result.kind).toBe('unauthentic');
    expect(result.reason).toMatch(/notificationItems\[1\]/);
  });

  test.each<[string, (signed: Item) => Item]>([
    ['a changed merchantReference', (signed) => ({ ...signed, merchantReference: 'IT-OTHER' })],
    ['success flipped', (signed) => ({ ...signed, success: 'false' })],
    ['a changed currency', (signed) => ({ ...signed, amount: { value: 2500, currency: 'USD' } })],
    ['no hmacSignature', (signed) => ({ ...signed, additionalData: {} })],
    ['no additionalData', ({ additionalData: _removed, ...rest }) => rest as Item],
    ['a signature that is not base64 of 32 bytes', (signed) => ({ ...signed, additionalData: { hmacSignature: 'AAAA' } })],
    ['no amount', ({ amount: _removed, ...rest }) => rest as Item],
  ])('%s is unauthentic', async (_what, mangle) => {
    expect(failure(await verify(batch([mangle(signItem(item()))]))).kind).toBe('unauthentic');
  });

  test('a batch signed with another key is unauthentic', async () => {
    expect(failure(await verify(batch([signItem(item(), OLD_KEY)]))).kind).toBe('unauthentic');
  });
});

describe('adyenGateway: malformed bodies', () => {
  test.each([
    ['not JSON', 'notificationItems=1'],
    ['no notificationItems', JSON.stringify({ live: 'false' })],
    ['an empty batch', JSON.stringify({ live: 'false', notificationItems: [] })],
    ['more than 100 items', batch(Array.from({ length: 101 }, () => signItem(item())))],
  ])('%s is malformed', async (_what, body) => {
    expect(failure(await verify(body)).kind).toBe('malformed');
  });

  test('a verified payment with a fractional or negative amount.value is malformed', async () => {
    expect(failure(await verify(batch([signItem(item({ amount: { value: 25.5, currency: 'EUR' } }))]))).kind).toBe('malformed');
    expect(failure(await verify(batch([signItem(item({ amount: { value: -2500, currency: 'EUR' } }))]))).kind).toBe('malformed');
  });
});

describe('adyenGateway: acknowledgement', () => {
  const ok: ProcessingResult = { ok: true, duplicate: false, events: [] };

  test('an accepted batch is answered "[accepted]" as text, or the configured body', () => {
    expect(adyenGateway({ hmacKeys: KEY }).acknowledge!(ok)).toEqual({ status: 200, contentType: 'text/plain', body: '[accepted]' });
    expect(adyenGateway({ hmacKeys: KEY, acceptBody: 'ok' }).acknowledge!(ok).body).toBe('ok');
  });

  test('a refused batch is never answered 2xx', () => {
    const refused = adyenGateway({ hmacKeys: KEY }).acknowledge!({ ok: false, kind: 'unauthentic', reason: 'bad signature' });
    expect(refused.status).toBe(401);
    expect(refused.body).not.toContain('[accepted]');
  });
});

describe('adyenGateway: options are checked at construction', () => {
  test.each<[string, unknown]>([
    ['no key', undefined],
    ['a key that is not hex', 'not-a-hex-key-not-a-hex-key-not-a-hex-key'],
    ['a short key', 'ABCDEF'],
    ['an odd number of hex digits', `${KEY}A`],
    ['an empty list', []],
  ])('%s throws a ConfigError naming hmacKeys', (_what, hmacKeys) => {
    try {
      adyenGateway({ hmacKeys } as AdyenGatewayOptions);
      throw new Error('accepted');
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).issues[0]!.path).toBe('adyenGateway.hmacKeys');
    }
  });
});
