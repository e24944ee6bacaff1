import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from '../../src/errors';
import type { GatewayRequest, VerificationResult } from '../../src/payments/gateway';
import { computeNexiMac, nexiXPayGateway, type NexiMacAlgorithm, type NexiXPayGatewayOptions } from '../../src/payments/nexi-xpay';
import { failure, events } from '../helpers/verification';

interface NexiVectors {
  secret: string;
  cases: Array<{ fields: Record<string, string> & { mac: string; mac_sha256: string } }>;
}
const vectors = JSON.parse(readFileSync(join(__dirname, '../fixtures/nexi-xpay-notifications.json'), 'utf8')) as NexiVectors;
const KEY = vectors.secret;

/** The urlpost body XPay sends: the case's fields, with `mac` holding the MAC of `algorithm`. */
function body(fields: Record<string, string>, algorithm: NexiMacAlgorithm = 'sha1', extra: Record<string, string> = {}): string {
  const { mac, mac_sha256, ...rest } = fields;
  return new URLSearchParams({ ...rest, alias: 'ALIAS_WEB_00012345', mac: algorithm === 'sha1' ? mac! : mac_sha256!, ...extra }).toString();
}

function request(raw: string | Buffer): GatewayRequest {
  return { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, query: {}, rawBody: Buffer.from(raw), receivedAt: Date.now() };
}

async function verify(raw: string | Buffer, options: Partial<NexiXPayGatewayOptions> = {}): Promise<VerificationResult> {
  return nexiXPayGateway({ macKey: KEY, algorithm: 'sha1', ...options }).verifyAndParse(request(raw));
}

const OUTCOME: Record<string, string> = { OK: 'paid', PEN: 'pending', KO: 'failed', ANNULLO: 'failed', ERRORE: 'failed' };
const first = vectors.cases[0]!.fields;

describe('nexiXPayGateway: the shared vectors', () => {
  test('the fixture has cases for every esito it documents', () => {
    expect(vectors.cases.length).toBeGreaterThanOrEqual(5);
    expect(new Set(vectors.cases.map((c) => c.fields.esito))).toEqual(new Set(['OK', 'KO', 'PEN', 'ANNULLO']));
  });

  describe.each(vectors.cases.map((c) => [c.fields.codTrans, c.fields.esito, c.fields] as const))('%s (%s)', (codTrans, esito, fields) => {
    test('computeNexiMac reproduces mac (SHA-1) and mac_sha256', () => {
      expect(computeNexiMac(fields, KEY, 'sha1')).toBe(fields.mac);
      expect(computeNexiMac(fields, KEY, 'sha256')).toBe(fields.mac_sha256);
    });

    test.each<NexiMacAlgorithm>(['sha1', 'sha256'])('verifies with %s, the algorithm it was made with', async (algorithm) => {
      const [event] = events(await verify(body(fields, algorithm), { algorithm }));
      expect(event).toMatchObject({ orderId: codTrans, outcome: OUTCOME[esito!], currency: 'EUR', transactionId: codTrans });
      expect(event!.eventKey).toContain(esito);
    });

    test.each<[NexiMacAlgorithm, NexiMacAlgorithm]>([
      ['sha1', 'sha256'],
      ['sha256', 'sha1'],
    ])('made with %s, fails with %s', async (made, configured) => {
      expect(failure(await verify(body(fields, made), { algorithm: configured })).kind).toBe('unauthentic');
    });

    test.each<NexiMacAlgorithm>(['sha1', 'sha256'])('a tampered importo fails (%s)', async (algorithm) => {
      const tampered = body(fields, algorithm, { importo: String(Number(fields.importo) - 1) });
      expect(failure(await verify(tampered, { algorithm })).kind).toBe('unauthentic');
    });
  });
});

describe('nexiXPayGateway: what a verified notification means', () => {
  test('importo is in cents: 12345 → 123.45, and only a paid event carries it', async () => {
    expect(events(await verify(body(first)))[0]).toMatchObject({ outcome: 'paid', amount: '123.45', currency: 'EUR' });
    const ko = vectors.cases.find((c) => c.fields.esito === 'KO')!.fields;
    expect(events(await verify(body(ko)))[0]!.amount).toBeUndefined();
  });

  test.each([
    ['JPY', '2500', '2500'],
    ['KWD', '25125', '25.125'],
    ['EUR', '5', '0.05'],
  ])('importo in %s minor units: %s → %s', async (divisa, importo, amount) => {
    const fields = { ...first, divisa, importo };
    const signed = { ...fields, mac: computeNexiMac(fields, KEY, 'sha1'), mac_sha256: '' };
    expect(events(await verify(body(signed)))[0]).toMatchObject({ amount, currency: divisa });
  });

  test('ERRORE is failed', async () => {
    const fields = { ...first, esito: 'ERRORE' };
    expect(events(await verify(body({ ...fields, mac: computeNexiMac(fields, KEY, 'sha1') })))[0]!.outcome).toBe('failed');
  });

  test('the event key is codTrans:esito:data:orario, each part encoded', async () => {
    const keyOf = async (fields: Record<string, string>) => events(await verify(body({ ...fields, mac: computeNexiMac(fields, KEY, 'sha1') })))[0]!.eventKey;
    expect(await keyOf(first)).toBe('ORD-1001:OK:20261203:153012');
    expect(await keyOf({ ...first, orario: '153013' })).not.toBe(await keyOf(first));
    expect(await keyOf({ ...first, codTrans: 'A:OK' , data: '1' })).not.toBe(await keyOf({ ...first, codTrans: 'A', data: 'OK:1' }));
  });

  test('orderIdFrom maps a per-attempt codTrans to the order id', async () => {
    const fields = { ...first, codTrans: 'IT-1001-2' };
    const raw = body({ ...fields, mac: computeNexiMac(fields, KEY, 'sha1') });
    const orderIdFrom = (f: Readonly<Record<string, string>>) => f.codTrans!.replace(/-\d+$/, '');
    expect(events(await verify(raw, { orderIdFrom }))[0]).toMatchObject({ orderId: 'IT-1001', transactionId: 'IT-1001-2' });
  });

  test('orderIdFrom sees only the MAC-covered fields: a forged unsigned field cannot redirect the payment', async () => {
    const fields = { ...first, codTrans: 'IT-1001-2' };
    // A genuine notification, plus a field the MAC does not cover, added by whoever relays it.
    const forged = body({ ...fields, mac: computeNexiMac(fields, KEY, 'sha1') }, 'sha1', { orderId: 'IT-9999', codTransOrig: 'IT-9999' });
    const seen: string[][] = [];
    const orderIdFrom = (f: Readonly<Record<string, string>>) => {
      seen.push(Object.keys(f));
      return f.orderId ?? f.codTransOrig ?? f.codTrans!.replace(/-\d+$/, '');
    };
    expect(events(await verify(forged, { orderIdFrom }))[0]).toMatchObject({ orderId: 'IT-1001', outcome: 'paid', transactionId: 'IT-1001-2' });
    expect(seen).toHaveLength(1);
    expect(seen[0]!.every((name) => ['codTrans', 'esito', 'importo', 'divisa', 'data', 'orario', 'codAut'].includes(name))).toBe(true);
    expect(seen[0]).toEqual(expect.arrayContaining(['codTrans', 'esito', 'importo', 'divisa']));
    // A shop that reads an unsigned field gets nothing from it: the notification is acknowledged and ignored.
    expect(events(await verify(forged, { orderIdFrom: (f) => f.orderId }))).toEqual([]);
  });

  test('rotation: with [new, old] keys both verify', async () => {
    expect((await verify(body(first), { macKey: ['new-key-0123456789', KEY] })).ok).toBe(true);
    expect(failure(await verify(body(first), { macKey: ['new-key-0123456789'] })).kind).toBe('unauthentic');
  });

  test('the MAC is over the decoded values: percent-encoding of the same characters does not matter', async () => {
    const raw = body(first).replace('codTrans=ORD-1001', 'codTrans=%4FRD%2d1001');
    expect(events(await verify(raw))[0]!.orderId).toBe('ORD-1001');
  });
});

describe('nexiXPayGateway: unauthentic notifications', () => {
  test.each([
    ['a tampered esito', (raw: string) => raw.replace('esito=KO', 'esito=OK')],
    ['a tampered codTrans', (raw: string) => raw.replace('codTrans=ORD-1002', 'codTrans=ORD-1001')],
    ['a tampered divisa', (raw: string) => raw.replace('divisa=EUR', 'divisa=USD')],
    ['a missing mac', (raw: string) => raw.replace(/&mac=[0-9a-f]+/, '')],
    ['an empty mac', (raw: string) => raw.replace(/mac=[0-9a-f]+/, 'mac=')],
    ['a mac given twice', (raw: string) => `${raw}&mac=${'0'.repeat(40)}`],
    ['esito given twice', (raw: string) => `${raw}&esito=OK`],
    ['a truncated mac', (raw: string) => raw.slice(0, -1)],
  ])('%s is unauthentic', async (_what, mangle) => {
    const ko = vectors.cases.find((c) => c.fields.esito === 'KO')!.fields;
    expect(failure(await verify(mangle(body(ko)))).kind).toBe('unauthentic');
  });

  test('another key is unauthentic', async () => {
    expect(failure(await verify(body(first), { macKey: 'some-other-key-123' })).kind).toBe('unauthentic');
  });

  test('an empty body is unauthentic', async () => {
    expect(failure(await verify('')).kind).toBe('unauthentic');
  });
});

describe('nexiXPayGateway: authentic but malformed notifications', () => {
  test.each([
    ['an unknown esito', { esito: 'FORSE' }],
    ['an importo with a decimal point', { importo: '123.45' }],
    ['an empty importo', { importo: '' }],
    ['a numeric divisa', { divisa: '978' }],
    ['an empty codTrans', { codTrans: '' }],
  ])('%s is malformed', async (_what, change) => {
    const fields = { ...first, ...change };
    expect(failure(await verify(body({ ...fields, mac: computeNexiMac(fields, KEY, 'sha1') }))).kind).toBe('malformed');
  });
});

describe('nexiXPayGateway: options and acknowledgement', () => {
  test('no algorithm is a ConfigError that names the choice', () => {
    try {
      nexiXPayGateway({ macKey: KEY } as NexiXPayGatewayOptions);
      throw new Error('accepted');
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).issues).toEqual([{ path: 'nexiXPayGateway.algorithm', message: expect.stringContaining("'sha1' or 'sha256'") }]);
    }
  });

  test.each<[string, unknown]>([
    ['no key', undefined],
    ['a short key', 'short'],
    ['an empty list', []],
  ])('%s is a ConfigError', (_what, macKey) => {
    expect(() => nexiXPayGateway({ macKey, algorithm: 'sha1' } as NexiXPayGatewayOptions)).toThrow(ConfigError);
  });

  test('an accepted notification is answered 200 OK in plain text', () => {
    expect(nexiXPayGateway({ macKey: KEY, algorithm: 'sha256' }).acknowledge!({ ok: true, duplicate: true, events: [] })).toEqual({
      status: 200,
      contentType: 'text/plain',
      body: 'OK',
    });
  });
});
