import { ConfigError } from '../../src/errors';
import type { GatewayRequest, VerificationResult } from '../../src/payments/gateway';
import {
  PAYPAL_IPN_LIVE_VERIFY_URL,
  PAYPAL_IPN_SANDBOX_VERIFY_URL,
  paypalIpnGateway,
  type PaypalIpnGatewayOptions,
  type PaypalIpnHttp,
  type PaypalIpnVerifyRequest,
} from '../../src/payments/paypal-ipn';
import { failure, events } from '../helpers/verification';

const RECEIVER = 'shop@example.it';

/** An IPN body as PayPal sends it: form-encoded, windows-1252 unless it says otherwise. */
function ipn(overrides: Record<string, string | undefined> = {}): string {
  const fields: Record<string, string | undefined> = {
    mc_gross: '25.00',
    invoice: 'IT-1001',
    protection_eligibility: 'Eligible',
    payer_id: 'LPLWNMTBWMFAY',
    payment_date: '15:30:12 Dec 03, 2026 PST',
    payment_status: 'Completed',
    charset: 'windows-1252',
    first_name: 'Mario',
    mc_fee: '0.88',
    notify_version: '3.9',
    custom: 'cart-55',
    payer_status: 'verified',
    business: RECEIVER,
    quantity: '1',
    verify_sign: 'AtkOfCXbDm2hu0ZELryHFjY-Vb7PAUvS6nMXgysbElEn9v-1XcmSoGtf',
    payer_email: 'buyer@example.com',
    txn_id: '61E67681CH3238416',
    payment_type: 'instant',
    last_name: 'Rossi',
    receiver_email: RECEIVER,
    payment_fee: '0.88',
    receiver_id: 'S8XGHLYDW9T3S',
    txn_type: 'web_accept',
    item_name: 'Espresso cups',
    mc_currency: 'EUR',
    residence_country: 'IT',
    test_ipn: '1',
    ...overrides,
  };
  return new URLSearchParams(Object.entries(fields).filter((entry): entry is [string, string] => entry[1] !== undefined)).toString();
}

function request(raw: string | Buffer, contentType = 'application/x-www-form-urlencoded'): GatewayRequest {
  return { method: 'POST', headers: { 'content-type': contentType }, query: {}, rawBody: Buffer.from(raw), receivedAt: Date.now() };
}

/** A fake PayPal that answers `answer` and remembers what it was sent. */
function fakePaypal(answer: string | (() => Promise<{ status: number; body: string }>) = 'VERIFIED') {
  const calls: PaypalIpnVerifyRequest[] = [];
  const http: PaypalIpnHttp = async (call) => {
    calls.push(call);
    return typeof answer === 'string' ? { status: 200, body: answer } : answer();
  };
  return { calls, http };
}

async function verify(raw: string | Buffer, options: Partial<PaypalIpnGatewayOptions> = {}, paypal = fakePaypal()): Promise<VerificationResult> {
  return paypalIpnGateway({ receiverEmail: RECEIVER, http: paypal.http, ...options }).verifyAndParse(request(raw));
}

describe('paypalIpnGateway: verification by postback', () => {
  test('the exact bytes are posted back after cmd=_notify-validate&, to the live URL by default', async () => {
    const paypal = fakePaypal();
    const raw = Buffer.from(`${ipn({ first_name: undefined })}&first_name=Nicol%F2`); // windows-1252 ò
    await verify(raw, {}, paypal);
    expect(paypal.calls).toHaveLength(1);
    expect(paypal.calls[0]!.url).toBe(PAYPAL_IPN_LIVE_VERIFY_URL);
    expect(paypal.calls[0]!.body.equals(Buffer.concat([Buffer.from('cmd=_notify-validate&'), raw]))).toBe(true);
    expect(paypal.calls[0]!.headers['content-type']).toBe('application/x-www-form-urlencoded');
    expect(paypal.calls[0]!.headers['user-agent']).toBeTruthy();
  });

  test('VERIFIED: a Completed payment is paid with mc_gross and mc_currency', async () => {
    expect(events(await verify(ipn()))).toEqual([
      { eventKey: '61E67681CH3238416:Completed', orderId: 'IT-1001', outcome: 'paid', amount: '25.00', currency: 'EUR', transactionId: '61E67681CH3238416' },
    ]);
  });

  test('INVALID is unauthentic', async () => {
    expect(failure(await verify(ipn(), {}, fakePaypal('INVALID'))).kind).toBe('unauthentic');
  });

  test.each<[string, () => Promise<{ status: number; body: string }>]>([
    ['a network error', () => Promise.reject(new Error('ECONNREFUSED'))],
    ['a 503 from PayPal', async () => ({ status: 503, body: 'Service Unavailable' })],
    ['an answer that is neither VERIFIED nor INVALID', async () => ({ status: 200, body: '<html>maintenance</html>' })],
  ])('%s is transient (503, PayPal retries)', async (_what, answer) => {
    expect(failure(await verify(ipn(), {}, fakePaypal(answer))).kind).toBe('transient');
  });

  test('no answer within timeoutMs is transient, even from a client that ignores the abort signal', async () => {
    const paypal = fakePaypal(() => new Promise(() => {}));
    const started = Date.now();
    const result = failure(await verify(ipn(), { timeoutMs: 50 }, paypal));
    expect(result.kind).toBe('transient');
    expect(result.reason).toMatch(/50 ms/);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(paypal.calls[0]!.signal.aborted).toBe(true);
  });

  test('an empty body is not posted back', async () => {
    const paypal = fakePaypal();
    expect(failure(await verify('', {}, paypal)).kind).toBe('malformed');
    expect(paypal.calls).toHaveLength(0);
  });

  test('verifyUrl points at the sandbox', async () => {
    const paypal = fakePaypal();
    await verify(ipn(), { verifyUrl: PAYPAL_IPN_SANDBOX_VERIFY_URL }, paypal);
    expect(paypal.calls[0]!.url).toBe(PAYPAL_IPN_SANDBOX_VERIFY_URL);
  });
});

describe('paypalIpnGateway: what a verified IPN means', () => {
  test.each([
    ['Completed', 'paid'],
    ['Pending', 'pending'],
    ['Failed', 'failed'],
    ['Denied', 'failed'],
    ['Expired', 'failed'],
    ['Voided', 'failed'],
  ])('payment_status %s is %s', async (status, outcome) => {
    expect(events(await verify(ipn({ payment_status: status })))[0]).toMatchObject({ outcome, eventKey: `61E67681CH3238416:${status}` });
  });

  test.each(['Refunded', 'Reversed', 'Canceled_Reversal', 'Processed', 'Created'])('payment_status %s yields no event', async (status) => {
    expect(events(await verify(ipn({ payment_status: status, mc_gross: '-25.00' })))).toEqual([]);
  });

  test('a message without payment_status (dispute, subscription signup) yields no event', async () => {
    expect(events(await verify(ipn({ payment_status: undefined, txn_type: 'new_case' })))).toEqual([]);
  });

  test('Pending and Completed for one txn_id have different event keys', async () => {
    const pending = events(await verify(ipn({ payment_status: 'Pending', pending_reason: 'echeck' })))[0]!.eventKey;
    const completed = events(await verify(ipn()))[0]!.eventKey;
    expect(pending).not.toBe(completed);
  });

  test('orderIdFrom: custom, or a function of the fields', async () => {
    expect(events(await verify(ipn(), { orderIdFrom: 'custom' }))[0]!.orderId).toBe('cart-55');
    expect(events(await verify(ipn(), { orderIdFrom: (f) => f.item_number ?? f.invoice }))[0]!.orderId).toBe('IT-1001');
  });

  test('a payment without the order id field (taken outside the shop) yields no event', async () => {
    expect(events(await verify(ipn({ invoice: undefined })))).toEqual([]);
  });

  test('receiver_email is compared without regard to case; any of several addresses', async () => {
    expect((await verify(ipn({ receiver_email: 'Shop@Example.IT' }))).ok).toBe(true);
    expect((await verify(ipn({ receiver_email: 'sales@example.it' }), { receiverEmail: [RECEIVER, 'sales@example.it'] })).ok).toBe(true);
  });

  test('a VERIFIED IPN to another receiver_email is not a payment to the shop: unauthentic', async () => {
    const result = failure(await verify(ipn({ receiver_email: 'attacker@example.com', business: 'attacker@example.com' })));
    expect(result.kind).toBe('unauthentic');
    expect(result.reason).toMatch(/receiver_email/);
  });

  test('mc_gross is passed on as it is, for the amount check against the order', async () => {
    expect(events(await verify(ipn({ mc_gross: '0.01' })))[0]!.amount).toBe('0.01');
    expect(events(await verify(ipn({ mc_gross: '2500', mc_currency: 'JPY' })))[0]).toMatchObject({ amount: '2500', currency: 'JPY' });
  });

  test.each([
    ['no mc_gross', { mc_gross: undefined }],
    ['an mc_gross with a comma', { mc_gross: '25,00' }],
    ['no mc_currency', { mc_currency: undefined }],
    ['no txn_id', { txn_id: undefined }],
  ])('a Completed payment with %s is malformed', async (_what, change) => {
    expect(failure(await verify(ipn(change))).kind).toBe('malformed');
  });

  test('a field that decides the outcome given twice is malformed', async () => {
    expect(failure(await verify(`${ipn()}&payment_status=Completed`)).kind).toBe('malformed');
    expect(failure(await verify(`${ipn()}&receiver_email=${encodeURIComponent(RECEIVER)}`)).kind).toBe('malformed');
  });
});

describe('paypalIpnGateway: charsets', () => {
  test('windows-1252 (the default) is decoded as such: %E9 is é', async () => {
    const raw = ipn({ invoice: undefined }) + '&invoice=Caf%E9-7';
    expect(events(await verify(raw))[0]!.orderId).toBe('Café-7');
  });

  test('the charset field decides: UTF-8', async () => {
    const raw = ipn({ invoice: undefined, charset: 'UTF-8' }) + '&invoice=Caf%C3%A9-7';
    expect(events(await verify(raw))[0]!.orderId).toBe('Café-7');
  });

  test('without a charset field, the Content-Type charset decides', async () => {
    const raw = ipn({ invoice: undefined, charset: undefined }) + '&invoice=Caf%C3%A9-7';
    const gateway = paypalIpnGateway({ receiverEmail: RECEIVER, http: fakePaypal().http });
    const result = await gateway.verifyAndParse(request(raw, 'application/x-www-form-urlencoded; charset=UTF-8'));
    expect(events(result)[0]!.orderId).toBe('Café-7');
  });

  test('bytes that are invalid in the declared charset are malformed', async () => {
    const raw = ipn({ invoice: undefined, charset: 'UTF-8' }) + '&invoice=Caf%E9-7';
    expect(failure(await verify(raw)).kind).toBe('malformed');
  });

  test('an unknown charset is malformed', async () => {
    expect(failure(await verify(ipn({ charset: 'x-klingon' }))).kind).toBe('malformed');
  });
});

describe('paypalIpnGateway: options and acknowledgement', () => {
  test.each<[string, Partial<PaypalIpnGatewayOptions>, string]>([
    ['no receiverEmail', { receiverEmail: undefined as unknown as string }, 'paypalIpnGateway.receiverEmail'],
    ['a receiverEmail that is not an email', { receiverEmail: 'shop' }, 'paypalIpnGateway.receiverEmail'],
    ['a verifyUrl over plain http to another host', { verifyUrl: 'http://ipnpb.paypal.com/cgi-bin/webscr' }, 'paypalIpnGateway.verifyUrl'],
    ['a verifyUrl that is not a URL', { verifyUrl: 'ipnpb.paypal.com' }, 'paypalIpnGateway.verifyUrl'],
    ['an unknown orderIdFrom', { orderIdFrom: 'item_number' as 'invoice' }, 'paypalIpnGateway.orderIdFrom'],
    ['a zero timeout', { timeoutMs: 0 }, 'paypalIpnGateway.timeoutMs'],
  ])('%s is a ConfigError', (_what, options, path) => {
    try {
      paypalIpnGateway({ receiverEmail: RECEIVER, ...options });
      throw new Error('accepted');
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).issues.map((issue) => issue.path)).toEqual([path]);
    }
  });

  test('plain http is allowed to a loopback stand-in', () => {
    expect(() => paypalIpnGateway({ receiverEmail: RECEIVER, verifyUrl: 'http://127.0.0.1:8080/ipn' })).not.toThrow();
  });

  test('an accepted IPN is answered with an empty 200', () => {
    expect(paypalIpnGateway({ receiverEmail: RECEIVER }).acknowledge!({ ok: true, duplicate: false, events: [] })).toMatchObject({ status: 200, body: '' });
  });
});
