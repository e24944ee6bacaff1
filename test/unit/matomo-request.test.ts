import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { attributionFromCookies } from '../../src/attribution';
import { parseCookies } from '../../src/cookies';
import { InvalidOrderError } from '../../src/errors';
import { buildOrderQuery, finalizeQuery } from '../../src/matomo/request';
import type { Order } from '../../src/orders';
import { visitorIdFromCookies, type VisitorContext } from '../../src/visitor';

interface ReferenceCase {
  name: string;
  order: Order;
  visitor?: Record<string, unknown>;
  referenceQuery: string;
  expected: Record<string, unknown>;
}

/** Made with Matomo's reference PHP tracker; see test/fixtures/README.md. */
const vectors = JSON.parse(readFileSync(join(__dirname, '..', 'fixtures', 'matomo-order-requests.json'), 'utf8')) as {
  about: string;
  siteId: number;
  cases: ReferenceCase[];
};

/** Parameters a tracker adds on its own (cache buster, client hints…): allowed in ours, not compared. */
const TRACKER_SPECIFIC = new Set(['apiv', 'cid', 'r', 'send_image', 'url', 'urlref', 'ua', 'lang', 'cdt']);
const NUMERIC = new Set(['idsite', 'rec', 'idgoal', 'revenue', 'ec_st', 'ec_tx', 'ec_sh', 'ec_dt', 'cdt', '_refts']);
const PLAIN_NUMBER = /^\d+(\.\d+)?$/;

/** `[sku, name, category, price, quantity]` with price and quantity as numbers, as Matomo reads them. */
function normaliseItems(items: unknown): unknown {
  expect(Array.isArray(items)).toBe(true);
  return (items as unknown[][]).map((row) => {
    expect(row).toHaveLength(5);
    const [sku, name, category, price, quantity] = row;
    expect(String(price)).toMatch(PLAIN_NUMBER);
    expect(String(quantity)).toMatch(PLAIN_NUMBER);
    return [sku, name, category, Number(price), Number(quantity)];
  });
}

function queryOf(params: URLSearchParams): Map<string, string> {
  const map = new Map<string, string>();
  for (const [key, value] of params) {
    expect(map.has(key)).toBe(false); // every parameter once
    map.set(key, value);
  }
  return map;
}

const withoutVisitor = vectors.cases.filter((c) => c.visitor === undefined);
const withVisitor = vectors.cases.filter((c) => c.visitor !== undefined);
const options = { siteId: vectors.siteId, useUserId: false };

function order(partial: Partial<Order> = {}): Order {
  return {
    id: 'A-1001',
    revenue: 25,
    userId: 'customer-42',
    items: [{ sku: 'SKU-1', name: 'Espresso cup', category: 'Kitchen', price: 12.5, quantity: 2 }],
    ...partial,
  };
}

function visitor(partial: Partial<VisitorContext> = {}): VisitorContext {
  return {
    visitorId: '0123456789abcdef',
    userAgent: 'Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0',
    language: 'it-IT,it;q=0.9,en;q=0.5',
    url: 'https://shop.example.test/store/cart/checkout?step=pay',
    referrer: 'https://shop.example.test/store/cart?coupon=SPRING',
    attribution: { campaignName: 'spring-sale', campaignKeyword: 'shoes', timestampSeconds: 1_764_761_000, referrerUrl: 'https://news.example.org/article?u=42#c' },
    ip: '203.0.113.7',
    consent: true,
    capturedAt: 1_764_761_000_000,
    ...partial,
  };
}

describe('the order request matches Matomo’s reference tracker', () => {
  test('the fixture is the reference vector file, with cases without a visitor', () => {
    expect(vectors.about).toContain('MatomoTracker.php 4.0.1');
    expect(vectors.siteId).toBe(3);
    expect(withoutVisitor.length).toBeGreaterThanOrEqual(5);
  });

  test.each(withoutVisitor.map((c) => [c.name, c] as const))('%s', (_name, reference) => {
    expectMatchesReference(queryOf(buildOrderQuery(reference.order, null, options)), reference);
  });
});

/** Every parameter of the reference's `expected` is in ours with the same meaning; ours has nothing else but tracker-specific ones. */
function expectMatchesReference(ours: Map<string, string>, reference: ReferenceCase): void {
  for (const [key, expected] of Object.entries(reference.expected)) {
    expect([key, ours.has(key)]).toEqual([key, true]);
    const value = ours.get(key)!;
    if (key === 'ec_items') {
      expect(normaliseItems(JSON.parse(value))).toEqual(normaliseItems(expected));
    } else if (NUMERIC.has(key)) {
      expect(value).toMatch(PLAIN_NUMBER);
      expect([key, Number(value)]).toEqual([key, Number(expected)]);
    } else {
      expect([key, value]).toEqual([key, expected]);
    }
  }
  for (const key of ours.keys()) {
    if (!(key in reference.expected)) expect([key, TRACKER_SPECIFIC.has(key)]).toEqual([key, true]);
  }
}

/**
 * The shared vector's `visitor` block as captureCheckout would have stored it: visitor id and
 * attribution go through our cookie parsers, from cookies as matomo.js writes them.
 */
function visitorOf(block: Record<string, unknown>, consent: boolean): VisitorContext {
  const siteId = vectors.siteId;
  const capturedAt = (block.cdt as number) * 1000;
  const cookies = parseCookies({
    cookie: `_pk_id.${siteId}.1fff=${String(block.visitorId)}.1764700000.; _pk_ref.${siteId}.1fff=${encodeURIComponent(JSON.stringify(block.attribution))}`,
  });
  return {
    visitorId: visitorIdFromCookies(cookies, siteId),
    attribution: attributionFromCookies(cookies, siteId, capturedAt),
    url: block.url as string,
    referrer: block.urlref as string,
    consent,
    capturedAt,
  };
}

describe('visitor context matches Matomo’s reference tracker (cid, _rcn, _rck, _refts, _ref, cdt, url, urlref)', () => {
  test('the fixture has cases with a visitor block', () => {
    expect(withVisitor.map((c) => c.name)).toContain('visitor-context-linkage');
  });

  describe.each(withVisitor.map((c) => [c.name, c] as const))('%s', (_name, reference) => {
    const cdtSeconds = reference.visitor!.cdt as number;

    test('with consent: the body as sent (cdt added at send time) matches', () => {
      const query = buildOrderQuery(reference.order, visitorOf(reference.visitor!, true), options).toString();
      const body = new URLSearchParams(finalizeQuery(query, { cdtSeconds, tokenAuth: null }));
      expectMatchesReference(queryOf(body), reference);
    });

    test('without consent: the same but for cid, a fresh random one instead of the cookie’s', () => {
      // The vector's URLs carry no query string, so stripping them without consent changes nothing.
      const query = buildOrderQuery(reference.order, visitorOf(reference.visitor!, false), options).toString();
      const body = new URLSearchParams(finalizeQuery(query, { cdtSeconds, tokenAuth: null }));
      const cid = body.get('cid');
      expect(cid).toMatch(/^[0-9a-f]{16}$/);
      expect(cid).not.toBe(reference.expected.cid);
      body.set('cid', String(reference.expected.cid));
      expectMatchesReference(queryOf(body), reference);
    });

    test('parameters come in the reference tracker’s order', () => {
      const ours = [...buildOrderQuery(reference.order, visitorOf(reference.visitor!, true), options).keys()];
      // r and cdt depend on the moment of sending: finalizeQuery appends them.
      const theirs = [...new URLSearchParams(reference.referenceQuery).keys()].filter((key) => ours.includes(key));
      expect(ours.filter((key) => theirs.includes(key))).toEqual(theirs);
    });
  });
});

describe('visitor id (cid)', () => {
  test('without a captured visitor, cid is 16 lowercase hex, fresh for every build', () => {
    const first = buildOrderQuery(order(), null, options).get('cid');
    const second = buildOrderQuery(order(), null, options).get('cid');
    expect(first).toMatch(/^[0-9a-f]{16}$/);
    expect(second).toMatch(/^[0-9a-f]{16}$/);
    expect(first).not.toBe(second);
  });

  test('with a captured visitor, cid is the visitor’s own id', () => {
    expect(buildOrderQuery(order(), visitor(), options).get('cid')).toBe('0123456789abcdef');
  });
});

describe('personal data only with consent', () => {
  test('without consent: no ua, lang or uid, even with useUserId', () => {
    const query = buildOrderQuery(order(), visitor({ consent: false }), { siteId: 3, useUserId: true });
    expect(query.has('ua')).toBe(false);
    expect(query.has('lang')).toBe(false);
    expect(query.has('uid')).toBe(false);
  });

  test('with consent: ua and lang are sent; uid only when useUserId is on', () => {
    const query = buildOrderQuery(order(), visitor(), { siteId: 3, useUserId: false });
    expect(query.get('ua')).toBe('Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0');
    expect(query.get('lang')).toBe('it-IT,it;q=0.9,en;q=0.5');
    expect(query.has('uid')).toBe(false);
  });

  test('with consent and useUserId: uid is the order’s userId', () => {
    expect(buildOrderQuery(order(), visitor(), { siteId: 3, useUserId: true }).get('uid')).toBe('customer-42');
  });

  test('with consent and useUserId but no userId on the order: no uid', () => {
    const query = buildOrderQuery(order({ userId: undefined }), visitor(), { siteId: 3, useUserId: true });
    expect(query.has('uid')).toBe(false);
  });

  test('without a visitor at all: no ua, lang or uid', () => {
    const query = buildOrderQuery(order(), null, { siteId: 3, useUserId: true });
    expect(['ua', 'lang', 'uid'].filter((key) => query.has(key))).toEqual([]);
  });
});

describe('captured visitor context reaches the request', () => {
  test('visitor id, attribution, page URL, referrer, user agent and language', () => {
    const query = buildOrderQuery(order(), visitor(), options);
    expect(Object.fromEntries(query)).toMatchObject({
      cid: '0123456789abcdef',
      url: 'https://shop.example.test/store/cart/checkout?step=pay',
      urlref: 'https://shop.example.test/store/cart?coupon=SPRING',
      _rcn: 'spring-sale',
      _rck: 'shoes',
      _refts: '1764761000',
      _ref: 'https://news.example.org/article?u=42#c',
      ua: 'Mozilla/5.0 (X11; Linux x86_64) Firefox/140.0',
      lang: 'it-IT,it;q=0.9,en;q=0.5',
    });
  });

  test('a referrer without campaign: _refts and _ref, no empty _rcn/_rck (as Matomo’s trackers do)', () => {
    const attribution = { campaignName: '', campaignKeyword: '', timestampSeconds: 1_764_761_000, referrerUrl: 'https://www.google.com/' };
    const query = buildOrderQuery(order(), visitor({ attribution }), options);
    expect(query.has('_rcn')).toBe(false);
    expect(query.has('_rck')).toBe(false);
    expect(query.get('_refts')).toBe('1764761000');
    expect(query.get('_ref')).toBe('https://www.google.com/');
  });

  test('a campaign without referrer: _rcn and _refts, no _ref', () => {
    const attribution = { campaignName: 'newsletter', campaignKeyword: '', timestampSeconds: 1_764_761_000, referrerUrl: '' };
    const query = buildOrderQuery(order(), visitor({ attribution }), options);
    expect(query.get('_rcn')).toBe('newsletter');
    expect(query.has('_ref')).toBe(false);
  });

  test('no attribution, no referrer captured: none of _rcn, _rck, _refts, _ref, urlref', () => {
    const query = buildOrderQuery(order(), visitor({ attribution: undefined, referrer: undefined }), options);
    expect(['_rcn', '_rck', '_refts', '_ref', 'urlref'].filter((key) => query.has(key))).toEqual([]);
  });
});

describe('cip: the buyer’s IP only with a token (Matomo refuses cip without one)', () => {
  test('sendIp (a token is configured) and consent: cip is the captured IP', () => {
    expect(buildOrderQuery(order(), visitor(), { ...options, sendIp: true }).get('cip')).toBe('203.0.113.7');
  });

  test('no token (sendIp false or left out): no cip', () => {
    expect(buildOrderQuery(order(), visitor(), { ...options, sendIp: false }).has('cip')).toBe(false);
    expect(buildOrderQuery(order(), visitor(), options).has('cip')).toBe(false);
  });

  test('a token but no consent: no cip', () => {
    expect(buildOrderQuery(order(), visitor({ consent: false }), { ...options, sendIp: true }).has('cip')).toBe(false);
  });

  test('finalizeQuery keeps cip, also without a token argument: in a bulk body the token sits beside the requests, not in them', () => {
    const query = buildOrderQuery(order(), visitor(), { ...options, sendIp: true }).toString();
    expect(new URLSearchParams(finalizeQuery(query, { cdtSeconds: null, tokenAuth: 't'.repeat(32) })).get('cip')).toBe('203.0.113.7');
    expect(new URLSearchParams(finalizeQuery(query, { cdtSeconds: null, tokenAuth: null })).get('cip')).toBe('203.0.113.7');
  });
});

describe('uid: the User ID only with useUserId and consent', () => {
  test('the id captured from the userId option wins over order.userId', () => {
    expect(buildOrderQuery(order(), visitor({ userId: 'session-user-7' }), { siteId: 3, useUserId: true }).get('uid')).toBe('session-user-7');
  });

  test('an order.userId longer than Matomo stores (200) is not sent rather than cut', () => {
    expect(buildOrderQuery(order({ userId: 'u'.repeat(200) }), visitor(), { siteId: 3, useUserId: true }).get('uid')).toHaveLength(200);
    expect(buildOrderQuery(order({ userId: 'u'.repeat(201) }), visitor(), { siteId: 3, useUserId: true }).has('uid')).toBe(false);
  });
});

describe('consent refused: the order is recorded anonymously', () => {
  const refused = () => buildOrderQuery(order(), visitor({ consent: false, userId: 'session-user-7' }), { siteId: 3, useUserId: true, sendIp: true });

  test('only order, visit and campaign parameters: no cip, uid, ua or lang', () => {
    expect([...refused().keys()].sort()).toEqual(
      ['idsite', 'rec', 'apiv', 'cid', 'url', 'urlref', '_rcn', '_rck', '_refts', '_ref', 'send_image', 'idgoal', 'revenue', 'ec_items', 'ec_id'].sort(),
    );
  });

  test('URLs lose their query strings and fragments; the campaign stays; the cookie’s visitor id does not', () => {
    const query = refused();
    expect(query.get('url')).toBe('https://shop.example.test/store/cart/checkout');
    expect(query.get('urlref')).toBe('https://shop.example.test/store/cart');
    expect(query.get('_ref')).toBe('https://news.example.org/article');
    expect(query.get('_rcn')).toBe('spring-sale');
    expect(query.get('cid')).toMatch(/^[0-9a-f]{16}$/);
    expect(query.get('cid')).not.toBe('0123456789abcdef');
  });

  test('and nothing personal in the body as sent, even with a token', () => {
    const body = new URLSearchParams(finalizeQuery(refused().toString(), { cdtSeconds: 1_764_763_200, tokenAuth: 't'.repeat(32) }));
    expect(['cip', 'uid', 'ua', 'lang'].filter((key) => body.has(key))).toEqual([]);
  });
});

describe('orders Matomo cannot store are refused before sending', () => {
  test('an order id of 100 characters is fine, 101 throws InvalidOrderError', () => {
    expect(buildOrderQuery(order({ id: 'x'.repeat(100) }), null, options).get('ec_id')).toHaveLength(100);
    expect(() => buildOrderQuery(order({ id: 'x'.repeat(101) }), null, options)).toThrow(InvalidOrderError);
  });

  test('an empty order id throws', () => {
    expect(() => buildOrderQuery(order({ id: '' }), null, options)).toThrow(InvalidOrderError);
  });

  test('a NaN item price throws InvalidOrderError with code ERR_MST_ORDER_INVALID', () => {
    const bad = order({ items: [{ sku: 'SKU-1', price: NaN, quantity: 1 }] });
    expect(() => buildOrderQuery(bad, null, options)).toThrow(expect.objectContaining({ code: 'ERR_MST_ORDER_INVALID' }));
    expect(() => buildOrderQuery(bad, null, options)).toThrow(/items\[0\]\.price/);
  });

  test('five categories are fine, six throw', () => {
    const categories = ['a', 'b', 'c', 'd', 'e'];
    const five = order({ items: [{ sku: 'S', price: 1, quantity: 1, category: categories }] });
    expect(JSON.parse(buildOrderQuery(five, null, options).get('ec_items')!)[0][2]).toEqual(categories);
    const six = order({ items: [{ sku: 'S', price: 1, quantity: 1, category: [...categories, 'f'] }] });
    expect(() => buildOrderQuery(six, null, options)).toThrow(InvalidOrderError);
  });

  test.each<[string, Partial<Order>]>([
    ['negative revenue', { revenue: -1 }],
    ['infinite tax', { tax: Infinity }],
    ['quantity 0', { items: [{ sku: 'S', price: 1, quantity: 0 }] }],
    ['fractional quantity', { items: [{ sku: 'S', price: 1, quantity: 1.5 }] }],
    ['empty sku', { items: [{ sku: '', price: 1, quantity: 1 }] }],
  ])('%s throws', (_what, patch) => {
    expect(() => buildOrderQuery(order(patch), null, options)).toThrow(InvalidOrderError);
  });
});

describe('finalizeQuery: the body as sent', () => {
  const base = () => buildOrderQuery(order(), visitor(), options).toString();

  test('token_auth goes into the body string', () => {
    const body = finalizeQuery(base(), { cdtSeconds: null, tokenAuth: 'abcdef0123456789abcdef0123456789' });
    expect(new URLSearchParams(body).get('token_auth')).toBe('abcdef0123456789abcdef0123456789');
    expect(body).toContain('token_auth=abcdef0123456789abcdef0123456789');
  });

  test('without a token there is no token_auth', () => {
    expect(new URLSearchParams(finalizeQuery(base(), { cdtSeconds: null, tokenAuth: null })).has('token_auth')).toBe(false);
  });

  test('cdt is added when given, and only then', () => {
    expect(new URLSearchParams(finalizeQuery(base(), { cdtSeconds: 1_764_763_200, tokenAuth: null })).get('cdt')).toBe('1764763200');
    expect(new URLSearchParams(finalizeQuery(base(), { cdtSeconds: null, tokenAuth: null })).has('cdt')).toBe(false);
  });

  test('r is a 6-digit cache buster, or the one given', () => {
    expect(new URLSearchParams(finalizeQuery(base(), { cdtSeconds: null, tokenAuth: null })).get('r')).toMatch(/^\d{6}$/);
    expect(new URLSearchParams(finalizeQuery(base(), { cdtSeconds: null, tokenAuth: null, cacheBuster: '123456' })).get('r')).toBe('123456');
  });

  test('the order parameters are kept unchanged', () => {
    const before = new URLSearchParams(base());
    const after = new URLSearchParams(finalizeQuery(before.toString(), { cdtSeconds: 1, tokenAuth: 't'.repeat(32) }));
    for (const [key, value] of before) expect([key, after.get(key)]).toEqual([key, value]);
  });
});
