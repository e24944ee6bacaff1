import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { InvalidOrderError } from '../../src/errors';
import { buildOrderQuery, finalizeQuery } from '../../src/matomo/request';
import type { Order } from '../../src/orders';
import type { VisitorContext } from '../../src/visitor';

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
    url: 'https://shop.example.test/store/cart/checkout',
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
    const ours = queryOf(buildOrderQuery(reference.order, null, options));

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
