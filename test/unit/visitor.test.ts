import express from 'express';
import request from 'supertest';
import { captureVisitor, withoutPersonalData, withoutQuery, type VisitorCaptureConfig, type VisitorContext } from '../../src/visitor';

const NOW = 1_764_763_200_000;
const TOKEN = 'c0ffee0123456789abcdef0123456789';
const PK_ID = '_pk_id.3.1fff=0123456789abcdef.1764761000.';
const PK_REF = '_pk_ref.3.1fff=%5B%22spring-sale%22%2C%22shoes%22%2C1764761000%2C%22https%3A%2F%2Fnews.example.org%2Farticle%3Fuser%3Dmario%40example.it%23top%22%5D';
const CONSENT = 'mtm_consent=1764761000000';
const UA = 'Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0';

function config(patch: Partial<VisitorCaptureConfig> = {}): VisitorCaptureConfig {
  return {
    consent: 'matomo-cookies',
    now: () => NOW,
    useUserId: false,
    userId: null,
    matomo: { siteId: 3, tokenAuth: TOKEN },
    ...patch,
  };
}

/** Runs captureVisitor inside a real Express request, as captureCheckout does. */
async function capture(
  patch: Partial<VisitorCaptureConfig> = {},
  headers: Record<string, string> = {},
  options: { trustProxy?: string | number; path?: string } = {},
): Promise<VisitorContext> {
  const app = express();
  if (options.trustProxy !== undefined) app.set('trust proxy', options.trustProxy);
  app.post('/store/cart/checkout', async (req, res) => {
    res.json(await captureVisitor(req, config(patch)));
  });
  const call = request(app).post(options.path ?? '/store/cart/checkout?step=pay').set('Host', 'shop.example.test');
  for (const [name, value] of Object.entries(headers)) call.set(name, value);
  const response = await call;
  expect(response.status).toBe(200);
  return response.body as VisitorContext;
}

describe('captureVisitor with consent', () => {
  test('reads visitor id, attribution, user agent, language, IP, page URL and referrer', async () => {
    const visitor = await capture(
      {},
      {
        Cookie: `${PK_ID}; ${PK_REF}; ${CONSENT}`,
        'User-Agent': UA,
        'Accept-Language': 'it-IT,it;q=0.9,en;q=0.5',
        Referer: 'https://shop.example.test/store/cart?coupon=SPRING',
        'X-Forwarded-For': '203.0.113.7',
      },
      { trustProxy: 'loopback' },
    );
    expect(visitor).toEqual({
      visitorId: '0123456789abcdef',
      attribution: {
        campaignName: 'spring-sale',
        campaignKeyword: 'shoes',
        timestampSeconds: 1764761000,
        referrerUrl: 'https://news.example.org/article?user=mario@example.it#top',
      },
      userAgent: UA,
      language: 'it-IT,it;q=0.9,en;q=0.5',
      ip: '203.0.113.7',
      url: 'http://shop.example.test/store/cart/checkout?step=pay',
      referrer: 'https://shop.example.test/store/cart?coupon=SPRING',
      consent: true,
      capturedAt: NOW,
    });
  });

  test('trust proxy decides which X-Forwarded-For entry is the client, as Express does', async () => {
    const headers = { Cookie: CONSENT, 'X-Forwarded-For': '198.51.100.1, 203.0.113.7' };
    // Only the loopback hop is trusted: the last untrusted address is the client.
    expect((await capture({}, headers, { trustProxy: 'loopback' })).ip).toBe('203.0.113.7');
    // Two trusted hops (the loopback one and 203.0.113.7): the client is the first address.
    expect((await capture({}, headers, { trustProxy: 2 })).ip).toBe('198.51.100.1');
  });

  test('without trust proxy a forged X-Forwarded-For is ignored: the socket peer, IPv4 without the ::ffff: prefix', async () => {
    const visitor = await capture({}, { Cookie: CONSENT, 'X-Forwarded-For': '203.0.113.7' });
    expect(visitor.ip).toBe('127.0.0.1');
  });

  test('no token: the IP is not even stored, since it could never be sent', async () => {
    const visitor = await capture({ matomo: { siteId: 3, tokenAuth: null } }, { Cookie: CONSENT }, { trustProxy: 'loopback' });
    expect(visitor).not.toHaveProperty('ip');
  });

  test('a Referer that is not an absolute URL is dropped; an oversized user agent is cut at 500', async () => {
    const visitor = await capture({}, { Cookie: CONSENT, Referer: 'not a url', 'User-Agent': 'x'.repeat(2000) });
    expect(visitor).not.toHaveProperty('referrer');
    expect(visitor.userAgent).toBe('x'.repeat(500));
  });

  test('consent: "not-required" needs no cookie', async () => {
    expect((await capture({ consent: 'not-required' }, { 'User-Agent': UA })).userAgent).toBe(UA);
  });
});

describe('captureVisitor: the User ID', () => {
  const headers = { Cookie: CONSENT };

  test('with useUserId and consent, the userId option’s answer is kept (sync or async)', async () => {
    expect((await capture({ useUserId: true, userId: () => 'customer-42' }, headers)).userId).toBe('customer-42');
    expect((await capture({ useUserId: true, userId: async () => 'customer-43' }, headers)).userId).toBe('customer-43');
  });

  test('with useUserId off, the option is not even asked', async () => {
    const userId = jest.fn(() => 'customer-42');
    expect(await capture({ useUserId: false, userId }, headers)).not.toHaveProperty('userId');
    expect(userId).not.toHaveBeenCalled();
  });

  test('without consent, the option is not asked either', async () => {
    const userId = jest.fn(() => 'customer-42');
    expect(await capture({ useUserId: true, userId }, {})).not.toHaveProperty('userId');
    expect(userId).not.toHaveBeenCalled();
  });

  test.each<[string, () => unknown]>([
    ['throws', () => { throw new Error('session store down'); }],
    ['rejects', () => Promise.reject(new Error('session store down'))],
    ['returns an empty string', () => ''],
    ['returns a number', () => 42],
    ['returns more than Matomo stores (200 characters)', () => 'u'.repeat(201)],
  ])('an option that %s gives no User ID, and the checkout still succeeds', async (_what, userId) => {
    const visitor = await capture({ useUserId: true, userId: userId as VisitorCaptureConfig['userId'] }, headers);
    expect(visitor).not.toHaveProperty('userId');
    expect(visitor.consent).toBe(true);
  });
});

describe('captureVisitor without consent: nothing personal is stored', () => {
  const headers = {
    Cookie: `${PK_ID}; ${PK_REF}`,
    'User-Agent': UA,
    'Accept-Language': 'it-IT',
    Referer: 'https://shop.example.test/store/cart?email=mario%40example.it',
    'X-Forwarded-For': '203.0.113.7',
  };

  test('no consent cookie: no visitor id, user agent, language, IP or User ID; URLs lose query and fragment', async () => {
    const visitor = await capture({ useUserId: true, userId: () => 'customer-42' }, headers, { trustProxy: 'loopback' });
    expect(visitor).toEqual({
      attribution: { campaignName: 'spring-sale', campaignKeyword: 'shoes', timestampSeconds: 1764761000, referrerUrl: 'https://news.example.org/article' },
      url: 'http://shop.example.test/store/cart/checkout',
      referrer: 'https://shop.example.test/store/cart',
      consent: false,
      capturedAt: NOW,
    });
  });

  test('consent withdrawn (mtm_consent_removed) counts as refused', async () => {
    const visitor = await capture({}, { ...headers, Cookie: `${headers.Cookie}; ${CONSENT}; mtm_consent_removed=1764762000000` });
    expect(visitor.consent).toBe(false);
    expect(visitor).not.toHaveProperty('userAgent');
  });

  test('a consent function that throws counts as refused', async () => {
    const visitor = await capture({ consent: () => { throw new Error('CMP down'); } }, headers);
    expect(visitor.consent).toBe(false);
    expect(visitor).not.toHaveProperty('language');
  });
});

describe('withoutPersonalData', () => {
  const full: VisitorContext = {
    visitorId: '0123456789abcdef',
    attribution: { campaignName: '', campaignKeyword: '', timestampSeconds: 1764761000, referrerUrl: 'https://www.google.com/search?q=mario+rossi' },
    userAgent: UA,
    language: 'it',
    ip: '203.0.113.7',
    url: 'https://user:secret@shop.example.test/checkout?email=a%40b.it#x',
    referrer: 'https://shop.example.test/cart?token=abc',
    userId: 'customer-42',
    consent: false,
    capturedAt: NOW,
  };

  test('keeps the campaign and the path of each URL; drops the rest, visitor id included', () => {
    expect(withoutPersonalData(full)).toEqual({
      attribution: { campaignName: '', campaignKeyword: '', timestampSeconds: 1764761000, referrerUrl: 'https://www.google.com/search' },
      url: 'https://shop.example.test/checkout',
      referrer: 'https://shop.example.test/cart',
      consent: false,
      capturedAt: NOW,
    });
  });

  test('withoutQuery of something that is not a URL gives nothing', () => {
    expect(withoutQuery('not a url')).toBeUndefined();
    expect(withoutQuery(undefined)).toBeUndefined();
  });
});
