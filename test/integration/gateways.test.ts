/**
 * The real gateways' adapters mounted in a shop, against the in-memory store and a real
 * redis-server: what each gateway's notification does to the order, and the failures
 * peer projects reported (a global body parser breaking signatures, concurrent
 * deliveries settling an order several times, Pending→Completed dropped as a duplicate,
 * a 2xx hiding a failed authentication).
 */
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { hmacValidator as HmacValidator } from '@adyen/api-library';
import express from 'express';
import Stripe from 'stripe';
import request from 'supertest';
import {
  adyenGateway,
  computeNexiMac,
  hmacGateway,
  nexiXPayGateway,
  paypalIpnGateway,
  stripeGateway,
  type GatewayAdapter,
  type GatewayRequest,
  type MatomoServerTrackingOptions,
} from '../../src';
import { BODY_ALREADY_PARSED_MESSAGE } from '../../src/payments/router';
import { GATEWAY_SECRET, STORE_KINDS, closeServer, createHarness, type Harness } from '../helpers/harness';

const STRIPE_SECRET = 'whsec_integration_0123456789abcdef';
const ADYEN_KEY = '44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056';
const PAYPAL_RECEIVER = 'shop@example.it';
const nexiVectors = JSON.parse(readFileSync(join(__dirname, '../fixtures/nexi-xpay-notifications.json'), 'utf8')) as {
  secret: string;
  cases: Array<{ fields: Record<string, string> }>;
};
const stripe = new Stripe('sk_test_not_used_for_requests');
const adyenSigner = new HmacValidator();

// ---- what each gateway sends ------------------------------------------------------------------

interface Delivery {
  gateway: string;
  body: string | Buffer;
  headers: Record<string, string>;
}

function stripeDelivery(orderId: string, options: { minor?: number; currency?: string; eventId?: string; type?: string; timestamp?: number; secret?: string } = {}): Delivery {
  const body = JSON.stringify({
    id: options.eventId ?? `evt_${orderId}`,
    object: 'event',
    type: options.type ?? 'payment_intent.succeeded',
    created: 1_800_000_000,
    data: {
      object: {
        id: `pi_${orderId}`,
        object: 'payment_intent',
        amount: options.minor ?? 2500,
        amount_received: options.minor ?? 2500,
        currency: options.currency ?? 'eur',
        metadata: { order_id: orderId },
      },
    },
  });
  const header = stripe.webhooks.generateTestHeaderString({
    payload: body,
    secret: options.secret ?? STRIPE_SECRET,
    ...(options.timestamp !== undefined && { timestamp: options.timestamp }),
  });
  return { gateway: 'stripe', body, headers: { 'content-type': 'application/json', 'stripe-signature': header } };
}

type AdyenItem = Record<string, unknown>;

function adyenItem(orderId: string, overrides: AdyenItem = {}): AdyenItem {
  const item: AdyenItem = {
    pspReference: `PSP-${orderId}`,
    originalReference: '',
    merchantAccountCode: 'PasswebShopIT',
    merchantReference: orderId,
    amount: { value: 2500, currency: 'EUR' },
    eventCode: 'AUTHORISATION',
    eventDate: '2026-12-03T15:30:12+01:00',
    success: 'true',
    ...overrides,
  };
  return { ...item, additionalData: { hmacSignature: adyenSigner.calculateHmac(item as never, ADYEN_KEY) } };
}

function adyenDelivery(items: AdyenItem[]): Delivery {
  const body = JSON.stringify({ live: 'false', notificationItems: items.map((NotificationRequestItem) => ({ NotificationRequestItem })) });
  return { gateway: 'adyen', body, headers: { 'content-type': 'application/json' } };
}

function nexiFields(esito: string): Record<string, string> {
  return nexiVectors.cases.find((c) => c.fields.esito === esito)!.fields;
}

function nexiDelivery(fields: Record<string, string>, change: Record<string, string> = {}): Delivery {
  const { mac_sha256: _sha256, ...sent } = fields;
  const body = new URLSearchParams({ alias: 'ALIAS_WEB_00012345', ...sent, ...change }).toString();
  return { gateway: 'nexi', body, headers: { 'content-type': 'application/x-www-form-urlencoded' } };
}

/** Nexi fields for any order, signed with the vectors' key as XPay would. */
function nexiSigned(fields: Record<string, string>): Record<string, string> {
  return { ...fields, mac: computeNexiMac(fields, nexiVectors.secret, 'sha1') };
}

function ipnDelivery(orderId: string, overrides: Record<string, string> = {}, rawTail = ''): Delivery {
  const fields = {
    mc_gross: '25.00',
    invoice: orderId,
    payment_status: 'Completed',
    charset: 'windows-1252',
    receiver_email: PAYPAL_RECEIVER,
    txn_id: `TXN-${orderId}`,
    txn_type: 'web_accept',
    mc_currency: 'EUR',
    verify_sign: 'AtkOfCXbDm2hu0ZELryHFjY-Vb7PAUvS6nMXgysbElEn9v-1XcmSoGtf',
    ...overrides,
  };
  const body = Buffer.concat([Buffer.from(new URLSearchParams(fields).toString()), Buffer.from(rawTail, 'latin1')]);
  return { gateway: 'paypal', body, headers: { 'content-type': 'application/x-www-form-urlencoded' } };
}

// ---- a fake PayPal verify endpoint: a real HTTP server on a loopback port -------------------------

interface FakePaypal {
  url: string;
  answer: 'VERIFIED' | 'INVALID' | 'hang';
  received: Buffer[];
  close(): Promise<void>;
}

async function startFakePaypal(): Promise<FakePaypal> {
  const hanging = new Set<ServerResponse>();
  const fake: FakePaypal = { url: '', answer: 'VERIFIED', received: [], close: async () => {} };
  const server: Server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      fake.received.push(Buffer.concat(chunks));
      if (fake.answer === 'hang') {
        hanging.add(res);
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain' }).end(fake.answer);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  fake.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/cgi-bin/webscr`;
  fake.close = async () => {
    for (const res of hanging) res.destroy();
    await closeServer(server);
  };
  return fake;
}

// ---------------------------------------------------------------------------------------------------

const asIs = (body: unknown) => body as string;

describe.each(STORE_KINDS)('gateways (%s store)', (kind) => {
  let shop: Harness;
  let paypal: FakePaypal;
  let target: string | Harness['app'];

  beforeAll(async () => {
    paypal = await startFakePaypal();
  });

  afterAll(async () => {
    await paypal.close();
  });

  beforeEach(() => {
    paypal.answer = 'VERIFIED';
    paypal.received = [];
  });

  afterEach(async () => {
    await shop?.close();
  });

  async function start(options: Partial<MatomoServerTrackingOptions> = {}) {
    shop = await createHarness({
      kind,
      options: {
        gateways: {
          acme: hmacGateway({ secret: GATEWAY_SECRET }),
          stripe: stripeGateway({ webhookSecret: STRIPE_SECRET }),
          paypal: paypalIpnGateway({ receiverEmail: PAYPAL_RECEIVER, verifyUrl: paypal.url, timeoutMs: 300 }),
          nexi: nexiXPayGateway({ macKey: nexiVectors.secret, algorithm: 'sha1' }),
          adyen: adyenGateway({ hmacKeys: ADYEN_KEY }),
        },
        ...options,
      },
    });
    target = shop.app;
    return shop;
  }

  /** Sends the body's bytes as they are (superagent would otherwise re-encode a form body). */
  function deliver({ gateway, body, headers }: Delivery, app: string | Harness['app'] = target) {
    return request(app).post(`/store/payment/notify/${gateway}`).set(headers).serialize(asIs).send(body);
  }

  async function expectNoStateChange(orderId: string) {
    await shop.settled();
    expect(shop.orders.paid.has(orderId)).toBe(false);
    expect(shop.orders.unconfirmed).toHaveLength(0);
    expect(shop.matomo.received).toHaveLength(0);
    const cookie = await shop.checkout(orderId);
    expect((await shop.page(orderId, cookie)).trackOrder).toBe(true);
  }

  async function expectTrackedOnceByServer(orderId: string) {
    await shop.settled();
    expect(shop.orders.paid.get(orderId)).toBe(1);
    const sent = shop.matomo.requestsFor(orderId);
    expect(sent).toHaveLength(1);
    expect(sent[0]).toMatchObject({ channel: 'server', accepted: true });
  }

  describe('Stripe', () => {
    test('a payment_intent.succeeded signed by the official stripe package: paid, tracked by the server', async () => {
      await start();
      shop.orders.add({ id: 'S-1', revenue: 25 });
      const response = await deliver(stripeDelivery('S-1'));
      expect(response.status).toBe(200);
      await expectTrackedOnceByServer('S-1');
      expect(shop.matomo.requestsFor('S-1')[0]!.params).toMatchObject({ ec_id: 'S-1', revenue: '25' });
    });

    test('zero-decimal currency: 2500 JPY in minor units pays an order of ¥2500', async () => {
      await start();
      shop.orders.add({ id: 'S-JPY', revenue: 2500, currency: 'JPY', items: [{ sku: 'T', price: 2500, quantity: 1 }] });
      expect((await deliver(stripeDelivery('S-JPY', { minor: 2500, currency: 'jpy' }))).status).toBe(200);
      await expectTrackedOnceByServer('S-JPY');
    });

    test('an amount below the order total is not a payment', async () => {
      await start();
      shop.orders.add({ id: 'S-LOW', revenue: 25 });
      expect((await deliver(stripeDelivery('S-LOW', { minor: 2400 }))).status).toBe(200);
      await shop.settled();
      expect(shop.orders.paid.has('S-LOW')).toBe(false);
      expect(shop.orders.unconfirmed[0]!.payment?.rejectionReason).toMatch(/amount 24\.00 does not match the order total 25/);
      expect(shop.matomo.received).toHaveLength(0);
    });

    describe('unverifiable: 401 and no state change', () => {
      const clock = 1_800_000_000_000;
      const seconds = clock / 1000;
      test.each<[string, (orderId: string) => Delivery]>([
        ['tampered body', (id) => {
          const delivery = stripeDelivery(id, { timestamp: seconds });
          return { ...delivery, body: (delivery.body as string).replace('"amount_received":2500', '"amount_received":2501') };
        }],
        ['wrong secret', (id) => stripeDelivery(id, { timestamp: seconds, secret: 'whsec_someone_else_0123456789' })],
        ['timestamp 301 s old', (id) => stripeDelivery(id, { timestamp: seconds - 301 })],
        ['timestamp 301 s in the future', (id) => stripeDelivery(id, { timestamp: seconds + 301 })],
        ['missing header', (id) => {
          const { 'stripe-signature': _removed, ...headers } = stripeDelivery(id, { timestamp: seconds }).headers;
          return { gateway: 'stripe', body: stripeDelivery(id, { timestamp: seconds }).body, headers };
        }],
      ])('%s', async (_name, make) => {
        await start({ now: () => clock });
        shop.orders.add({ id: 'S-401' });
        const response = await deliver(make('S-401'));
        expect(response.status).toBe(401);
        expect(response.body).toMatchObject({ error: 'unauthentic' });
        await expectNoStateChange('S-401');
      });

      test('the header sent twice: Node joins the two into one value with two timestamps, which is refused', async () => {
        await start({ now: () => clock });
        shop.orders.add({ id: 'S-401' });
        const delivery = stripeDelivery('S-401', { timestamp: seconds });
        const header = delivery.headers['stripe-signature']!;
        const response = await request(shop.app)
          .post('/store/payment/notify/stripe')
          .set('content-type', 'application/json')
          .set('stripe-signature', [header, header] as unknown as string)
          .send(delivery.body);
        expect(response.status).toBe(401);
        expect(response.body).toMatchObject({ error: 'unauthentic', message: 'Stripe-Signature has no timestamp (t=…)' });
        await expectNoStateChange('S-401');
      });

      test('the same delivery within the tolerance is accepted (control)', async () => {
        await start({ now: () => clock });
        shop.orders.add({ id: 'S-OK' });
        expect((await deliver(stripeDelivery('S-OK', { timestamp: seconds - 299 }))).status).toBe(200);
        expect(shop.orders.paid.get('S-OK')).toBe(1);
      });
    });
  });

  describe('Adyen', () => {
    test('a batch signed with the official HmacValidator: [accepted], each item applied', async () => {
      await start();
      shop.orders.add({ id: 'A-1' });
      shop.orders.add({ id: 'A-2' });
      const response = await deliver(adyenDelivery([adyenItem('A-1'), adyenItem('A-2', { success: 'false', reason: 'Refused' })]));
      expect(response.status).toBe(200);
      expect(response.text).toBe('[accepted]');
      expect(response.headers['content-type']).toMatch(/^text\/plain/);
      await expectTrackedOnceByServer('A-1');
      expect(shop.orders.unconfirmed).toEqual([{ orderId: 'A-2', payment: expect.objectContaining({ gateway: 'adyen', outcome: 'failed' }) }]);
    });

    test('three-decimal currency: 25125 KWD minor units pays an order of 25.125 KWD', async () => {
      await start();
      shop.orders.add({ id: 'A-KWD', revenue: 25.125, currency: 'KWD', items: [{ sku: 'K', price: 25.125, quantity: 1 }] });
      expect((await deliver(adyenDelivery([adyenItem('A-KWD', { amount: { value: 25125, currency: 'KWD' } })]))).status).toBe(200);
      await expectTrackedOnceByServer('A-KWD');
    });

    test('a tampered item fails the whole batch: 401, nothing applied, not even the genuine item', async () => {
      await start();
      shop.orders.add({ id: 'A-3' });
      shop.orders.add({ id: 'A-4' });
      const tampered = { ...adyenItem('A-4', { amount: { value: 1, currency: 'EUR' } }), amount: { value: 2500, currency: 'EUR' } };
      const response = await deliver(adyenDelivery([adyenItem('A-3'), tampered]));
      expect(response.status).toBe(401);
      expect(response.text).not.toContain('[accepted]');
      await expectNoStateChange('A-3');
      await expectNoStateChange('A-4');
    });
  });

  describe('Nexi XPay', () => {
    test('the shared vector ORD-1001 (esito OK, importo 12345): paid 123.45, answered OK', async () => {
      await start();
      shop.orders.add({ id: 'ORD-1001', revenue: 123.45, items: [{ sku: 'N', price: 123.45, quantity: 1 }] });
      const response = await deliver(nexiDelivery(nexiFields('OK')));
      expect(response.status).toBe(200);
      expect(response.text).toBe('OK');
      await expectTrackedOnceByServer('ORD-1001');
    });

    test('KO: payment unconfirmed, nothing sent', async () => {
      await start();
      shop.orders.add({ id: 'ORD-1002', revenue: 19.9 });
      expect((await deliver(nexiDelivery(nexiFields('KO')))).status).toBe(200);
      await shop.settled();
      expect(shop.orders.unconfirmed).toEqual([{ orderId: 'ORD-1002', payment: expect.objectContaining({ gateway: 'nexi', outcome: 'failed' }) }]);
      expect(shop.matomo.received).toHaveLength(0);
    });

    test('PEN then OK for one codTrans: one payment', async () => {
      await start();
      shop.orders.add({ id: 'N-5', revenue: 25 });
      const base = { codTrans: 'N-5', importo: '2500', divisa: 'EUR', data: '20261203', codAut: '' };
      expect((await deliver(nexiDelivery(nexiSigned({ ...base, esito: 'PEN', orario: '100000' })))).status).toBe(200);
      expect(shop.orders.paid.has('N-5')).toBe(false);
      const ok = nexiDelivery(nexiSigned({ ...base, esito: 'OK', orario: '100130', codAut: 'X1' }));
      expect((await deliver(ok)).status).toBe(200);
      expect((await deliver(ok)).status).toBe(200);
      await expectTrackedOnceByServer('N-5');
    });

    test('a tampered importo: 401, no state change', async () => {
      await start();
      shop.orders.add({ id: 'ORD-1001', revenue: 0.01 });
      const response = await deliver(nexiDelivery(nexiFields('OK'), { importo: '1' }));
      expect(response.status).toBe(401);
      await expectNoStateChange('ORD-1001');
    });
  });

  describe('PayPal IPN against a local verify endpoint', () => {
    test('VERIFIED Completed: paid, answered with an empty 200; PayPal got our exact bytes back', async () => {
      await start();
      shop.orders.add({ id: 'P-1' });
      // A raw windows-1252 byte (ò) that is not valid UTF-8: it must reach PayPal unchanged.
      const delivery = ipnDelivery('P-1', {}, '&first_name=Nicol\xF2');
      const response = await deliver(delivery);
      expect(response.status).toBe(200);
      expect(response.text).toBe('');
      await expectTrackedOnceByServer('P-1');
      expect(paypal.received).toHaveLength(1);
      expect(paypal.received[0]!.equals(Buffer.concat([Buffer.from('cmd=_notify-validate&'), delivery.body as Buffer]))).toBe(true);
    });

    test('an order id in windows-1252 (invoice=Café-7) is decoded with the declared charset', async () => {
      await start();
      shop.orders.add({ id: 'Café-7' });
      const delivery = ipnDelivery('placeholder', { txn_id: 'TXN-CAFE' });
      const body = Buffer.from((delivery.body as Buffer).toString('latin1').replace('invoice=placeholder', 'invoice=Caf%E9-7'), 'latin1');
      expect((await deliver({ ...delivery, body })).status).toBe(200);
      await expectTrackedOnceByServer('Café-7');
    });

    test('INVALID: 401, no state change', async () => {
      await start();
      shop.orders.add({ id: 'P-2' });
      paypal.answer = 'INVALID';
      const response = await deliver(ipnDelivery('P-2'));
      expect(response.status).toBe(401);
      expect(response.body).toMatchObject({ error: 'unauthentic' });
      await expectNoStateChange('P-2');
    });

    test('the verify endpoint does not answer in time: 503 with Retry-After, no state change', async () => {
      await start();
      shop.orders.add({ id: 'P-3' });
      paypal.answer = 'hang';
      const response = await deliver(ipnDelivery('P-3'));
      expect(response.status).toBe(503);
      expect(response.headers['retry-after']).toBeDefined();
      await expectNoStateChange('P-3');
    });

    test('Pending then Completed for one txn_id: one payment (not dropped as a duplicate)', async () => {
      await start();
      shop.orders.add({ id: 'P-4' });
      expect((await deliver(ipnDelivery('P-4', { payment_status: 'Pending', pending_reason: 'echeck' }))).status).toBe(200);
      expect(shop.orders.paid.has('P-4')).toBe(false);
      expect((await deliver(ipnDelivery('P-4'))).status).toBe(200);
      expect((await deliver(ipnDelivery('P-4'))).status).toBe(200); // PayPal's redelivery
      await expectTrackedOnceByServer('P-4');
    });

    test('a wrong receiver_email: not paid (401, no state change)', async () => {
      await start();
      shop.orders.add({ id: 'P-5' });
      const response = await deliver(ipnDelivery('P-5', { receiver_email: 'someone@else.example' }));
      expect(response.status).toBe(401);
      await expectNoStateChange('P-5');
    });

    test('a wrong mc_gross: not paid, payment unconfirmed with the reason, nothing sent', async () => {
      await start();
      shop.orders.add({ id: 'P-6', revenue: 25 });
      expect((await deliver(ipnDelivery('P-6', { mc_gross: '2.50' }))).status).toBe(200);
      await shop.settled();
      expect(shop.orders.paid.has('P-6')).toBe(false);
      expect(shop.orders.unconfirmed[0]!.payment?.rejectionReason).toMatch(/amount 2\.50 does not match/);
      expect(shop.matomo.received).toHaveLength(0);
    });

    test('a wrong mc_currency: not paid', async () => {
      await start();
      shop.orders.add({ id: 'P-7', revenue: 25, currency: 'EUR' });
      expect((await deliver(ipnDelivery('P-7', { mc_currency: 'USD' }))).status).toBe(200);
      await shop.settled();
      expect(shop.orders.paid.has('P-7')).toBe(false);
      expect(shop.orders.unconfirmed[0]!.payment?.rejectionReason).toMatch(/currency USD/);
    });
  });

  describe('a global body parser mounted before the middleware', () => {
    test.each<[string, () => express.RequestHandler, () => Delivery]>([
      ['express.json() before a Stripe (JSON) callback', () => express.json(), () => stripeDelivery('B-1')],
      ['express.json() before an Adyen (JSON) callback', () => express.json(), () => adyenDelivery([adyenItem('B-1')])],
      ['express.urlencoded() before a Nexi (form) callback', () => express.urlencoded(), () => nexiDelivery(nexiSigned({ codTrans: 'B-1', esito: 'OK', importo: '2500', divisa: 'EUR', data: '20261203', orario: '120000', codAut: 'A' }))],
      ['express.urlencoded() before a PayPal IPN (form) callback', () => express.urlencoded({ extended: false }), () => ipnDelivery('B-1')],
    ])('%s: 500 with the documented message, nothing changes', async (_name, parser, delivery) => {
      await start();
      const app = express();
      app.use(parser());
      app.use(shop.tracking);
      shop.orders.add({ id: 'B-1' });
      const response = await deliver(delivery(), app);
      expect(response.status).toBe(500);
      expect(response.body).toEqual({ error: 'body-already-parsed', message: BODY_ALREADY_PARSED_MESSAGE });
      expect(response.body.message).toMatch(/Mount app\.use\(matomoServerTracking\(\.\.\.\)\) before your body parsers/);
      expect(shop.orders.paid.has('B-1')).toBe(false);
      expect(shop.events).toContainEqual({ name: 'error', payload: expect.objectContaining({ code: 'ERR_MST_BODY_ALREADY_PARSED' }) });
    });

    test('a parser for another content type leaves the body alone (express.json() before a form callback works)', async () => {
      await start();
      const app = express();
      app.use(express.json());
      app.use(shop.tracking);
      shop.orders.add({ id: 'B-2' });
      expect((await deliver(ipnDelivery('B-2'), app)).status).toBe(200);
      await expectTrackedOnceByServer('B-2');
    });
  });

  describe('concurrent duplicate deliveries (20 at once over HTTP): markPaid once', () => {
    test.each<[string, (orderId: string) => Delivery]>([
      ['stripe', (id) => stripeDelivery(id)],
      ['adyen', (id) => adyenDelivery([adyenItem(id)])],
      ['nexi', (id) => nexiDelivery(nexiSigned({ codTrans: id, esito: 'OK', importo: '2500', divisa: 'EUR', data: '20261203', orario: '120000', codAut: 'A' }))],
      ['paypal', (id) => ipnDelivery(id)],
    ])('%s', async (gateway, make) => {
      await start();
      const orderId = `C-${gateway}`;
      shop.orders.add({ id: orderId, revenue: 25 });
      const url = await shop.listen();
      const delivery = make(orderId);
      const responses = await Promise.all(Array.from({ length: 20 }, () => deliver(delivery, url)));
      expect(responses.map((response) => response.status)).toEqual(Array(20).fill(200));
      await expectTrackedOnceByServer(orderId);
      expect(shop.events.filter((event) => event.name === 'payment:confirmed')).toHaveLength(1);
    });
  });

  describe('the router contract', () => {
    /** An adapter that records what it was given and answers 200 to everything it is asked to acknowledge. */
    function recordingAdapter(verdict: Awaited<ReturnType<GatewayAdapter['verifyAndParse']>>) {
      const seen: GatewayRequest[] = [];
      const adapter: GatewayAdapter = {
        verifyAndParse: (req) => {
          seen.push(req);
          return verdict;
        },
        acknowledge: () => ({ status: 200, contentType: 'text/plain', body: 'fine' }),
      };
      return { seen, adapter };
    }

    test('the adapter gets method, headers, query, the raw bytes (JSON or form, any charset) and receivedAt', async () => {
      const clock = 1_800_000_123_456;
      const { seen, adapter } = recordingAdapter({ ok: true, events: [] });
      await start({ now: () => clock, gateways: { custom: adapter } });
      const form = Buffer.from('name=Nicol\xF2&amount=1%2C00', 'latin1');
      const json = Buffer.from('{"a":"é"}\n');
      await request(shop.app)
        .post('/store/payment/notify/custom?attempt=2')
        .set('content-type', 'application/x-www-form-urlencoded; charset=windows-1252')
        .serialize(asIs)
        .send(form);
      await request(shop.app).post('/store/payment/notify/custom').set('content-type', 'application/json').serialize(asIs).send(json);
      expect(seen).toHaveLength(2);
      expect(seen[0]).toMatchObject({ method: 'POST', query: { attempt: '2' }, receivedAt: clock });
      expect(seen[0]!.headers['content-type']).toBe('application/x-www-form-urlencoded; charset=windows-1252');
      expect(seen[0]!.rawBody.equals(form)).toBe(true);
      expect(seen[1]!.rawBody.equals(json)).toBe(true);
    });

    test.each([
      ['unauthentic', 401],
      ['malformed', 400],
      ['transient', 503],
    ] as const)('a refusal (%s) is answered %d even when the adapter would acknowledge 200', async (kind, status) => {
      const { adapter } = recordingAdapter({ ok: false, kind, reason: 'test' });
      await start({ gateways: { custom: adapter } });
      const response = await request(shop.app).post('/store/payment/notify/custom').set('content-type', 'application/json').send('{}');
      expect(response.status).toBe(status);
      if (kind === 'transient') expect(response.headers['retry-after']).toBe('5');
    });

    test('an accepted notification is answered the way the adapter shapes it', async () => {
      const { adapter } = recordingAdapter({ ok: true, events: [] });
      await start({ gateways: { custom: adapter } });
      const response = await request(shop.app).post('/store/payment/notify/custom').send('{}');
      expect(response.status).toBe(200);
      expect(response.text).toBe('fine');
    });

    test('an adapter whose acknowledge throws: the default answer, and an error event', async () => {
      const adapter: GatewayAdapter = {
        verifyAndParse: () => ({ ok: true, events: [] }),
        acknowledge: () => {
          throw new Error('boom');
        },
      };
      await start({ gateways: { custom: adapter } });
      const response = await request(shop.app).post('/store/payment/notify/custom').send('{}');
      expect(response.status).toBe(200);
      expect(response.body).toEqual({ received: true, duplicate: false });
      expect(shop.events).toContainEqual({ name: 'error', payload: expect.objectContaining({ code: 'ERR_MST_GATEWAY' }) });
    });
  });
});
