import vm from 'node:vm';
import fc from 'fast-check';
import { InvalidOrderError } from '../../src/errors';
import { buildOrderSnippet } from '../../src/matomo/snippet';
import type { Order } from '../../src/orders';

const HOSTILE_NAME = 'Tazza </script><script>alert(1)</script> "Crema" \'x\' C:\\cups\\ \u2028line\u2029para <!-- & ☕';

function order(partial: Partial<Order> = {}): Order {
  return {
    id: 'IT-2026-0001',
    revenue: 123.45,
    subtotal: 100,
    tax: 22,
    shipping: 5,
    discount: 3.55,
    items: [
      { sku: 'SKU1', name: 'Name 1', category: 'Cat', price: 50, quantity: 2 },
      { sku: 'BIKE-7', name: 'Bici', category: ['Sport', 'Ciclismo'], price: 0.1 + 0.2, quantity: 1 },
    ],
    ...partial,
  };
}

/** The JavaScript between `<script…>` and `</script>`, exactly as the browser would run it. */
function scriptBody(html: string): string {
  const match = /^<script(?: nonce="[^"]*")?>([\s\S]*)<\/script>$/.exec(html);
  expect(match).not.toBeNull();
  return match![1]!;
}

/** Runs the snippet like a page without matomo.js loaded yet: returns what it queued in `_paq`. */
function run(html: string, existing?: unknown[][]): unknown[][] {
  const window: { _paq?: unknown[][] } = existing ? { _paq: existing } : {};
  vm.runInContext(scriptBody(html), vm.createContext({ window }));
  expect(Array.isArray(window._paq)).toBe(true);
  // copy into this realm so that jest compares plain arrays
  return Array.from(window._paq!, (call) => Array.from(call, (arg) => (Array.isArray(arg) ? Array.from(arg) : arg)));
}

function count(text: string, fragment: string): number {
  return text.split(fragment).length - 1;
}

describe('buildOrderSnippet: the matomo.js calls of the confirmation page', () => {
  test('one addEcommerceItem per item, then one trackEcommerceOrder with the totals', () => {
    const calls = run(buildOrderSnippet(order()));
    expect(calls).toEqual([
      ['addEcommerceItem', 'SKU1', 'Name 1', 'Cat', 50, 2],
      ['addEcommerceItem', 'BIKE-7', 'Bici', ['Sport', 'Ciclismo'], 0.3, 1],
      ['trackEcommerceOrder', 'IT-2026-0001', 123.45, 100, 22, 5, 3.55],
    ]);
  });

  test('calls are appended to a _paq the shop already filled', () => {
    const calls = run(buildOrderSnippet(order()), [['trackPageView']]);
    expect(calls[0]).toEqual(['trackPageView']);
    expect(calls).toHaveLength(4);
    expect(calls.filter((call) => call[0] === 'trackEcommerceOrder')).toHaveLength(1);
  });

  test('an order without items still tracks the order', () => {
    expect(run(buildOrderSnippet(order({ items: [] })))).toEqual([['trackEcommerceOrder', 'IT-2026-0001', 123.45, 100, 22, 5, 3.55]]);
  });

  test('a hostile product name round-trips exactly and cannot close the script element', () => {
    const html = buildOrderSnippet(order({ items: [{ sku: 'S"1\\', name: HOSTILE_NAME, category: '</SCRIPT>', price: 1, quantity: 1 }] }));
    const [item] = run(html);
    expect(item).toEqual(['addEcommerceItem', 'S"1\\', HOSTILE_NAME, '</SCRIPT>', 1, 1]);
    expect(count(html, '</script>')).toBe(1);
    expect(count(html.toLowerCase(), '</script')).toBe(1);
    expect(html.endsWith('</script>')).toBe(true);
    expect(html).not.toContain('<!--');
    expect(html).not.toContain('\u2028');
    expect(html).not.toContain('\u2029');
  });

  test('a hostile order id round-trips too', () => {
    const id = '</script>"\\\u2028';
    const calls = run(buildOrderSnippet(order({ id, items: [] })));
    expect(calls[0]![1]).toBe(id);
  });

  test('totals left undefined are not sent, and never as null', () => {
    const onlyRevenue = run(buildOrderSnippet(order({ subtotal: undefined, tax: undefined, shipping: undefined, discount: undefined, items: [] })));
    expect(onlyRevenue).toEqual([['trackEcommerceOrder', 'IT-2026-0001', 123.45]]);

    const gaps = run(buildOrderSnippet(order({ subtotal: undefined, tax: 22, shipping: undefined, discount: undefined, items: [] })));
    const call = gaps[0]!;
    expect(call).toHaveLength(5);
    expect(call[3]).toBeUndefined();
    expect(call).not.toContain(null);
    expect(call[4]).toBe(22);
  });

  test('zero totals are sent as 0, not dropped', () => {
    const [call] = run(buildOrderSnippet(order({ shipping: 0, discount: 0, items: [] })));
    expect(call).toEqual(['trackEcommerceOrder', 'IT-2026-0001', 123.45, 100, 22, 0, 0]);
  });

  test('the nonce attribute is escaped', () => {
    const html = buildOrderSnippet(order(), { nonce: 'abc"><img src=x onerror=alert(1)>&' });
    const openTag = html.slice(0, html.indexOf('>') + 1);
    expect(openTag).toBe('<script nonce="abc&#34;&#62;&#60;img src=x onerror=alert(1)&#62;&#38;">');
    expect(count(html, '<')).toBe(2); // the opening and the closing tag, nothing else
    expect(run(html)).toHaveLength(3);
  });

  test('a plain nonce is kept as it is; no nonce, no attribute', () => {
    expect(buildOrderSnippet(order(), { nonce: 'r4nd0m+/=' }).startsWith('<script nonce="r4nd0m+/=">')).toBe(true);
    expect(buildOrderSnippet(order()).startsWith('<script>')).toBe(true);
  });

  test('an invalid order throws instead of rendering a broken snippet', () => {
    expect(() => buildOrderSnippet(order({ revenue: NaN }))).toThrow(InvalidOrderError);
  });
});

describe('buildOrderSnippet: the User ID', () => {
  test('setUserId comes first, before the items and the order, so the order request carries uid', () => {
    const calls = run(buildOrderSnippet(order(), { userId: 'customer-42' }));
    expect(calls[0]).toEqual(['setUserId', 'customer-42']);
    expect(calls.slice(1).map((call) => call[0])).toEqual(['addEcommerceItem', 'addEcommerceItem', 'trackEcommerceOrder']);
  });

  test('no userId, no setUserId', () => {
    const html = buildOrderSnippet(order());
    expect(html).not.toContain('setUserId');
    expect(run(html).some((call) => call[0] === 'setUserId')).toBe(false);
  });

  test('a hostile User ID round-trips exactly and cannot close the script element', () => {
    const userId = 'x</script><script>alert(1)</script>"\u2028';
    const html = buildOrderSnippet(order(), { userId });
    expect(run(html)[0]).toEqual(['setUserId', userId]);
    expect(count(html.toLowerCase(), '</script')).toBe(1);
    expect(html).not.toContain('\u2028');
  });
});

describe('buildOrderSnippet with arbitrary product names (property)', () => {
  const fragments = fc.constantFrom('</script>', '</SCRIPT ', '<!--', '-->', '<script>', '\u2028', '\u2029', '"', "'", '\\', '`', '${x}', '&amp;', '\u0000', '\ud800', '\udfff');
  const text = fc.oneof(
    fc.string({ unit: 'binary' }),
    fc.string({ unit: 'grapheme' }),
    fc.array(fc.oneof(fragments, fc.string({ unit: 'binary', maxLength: 4 })), { maxLength: 12 }).map((parts) => parts.join('')),
  );

  test('every name, sku and category round-trips exactly and the HTML has a single </script>', () => {
    fc.assert(
      fc.property(text, text.filter((s) => s.length > 0), text, (name, sku, category) => {
        const html = buildOrderSnippet(order({ items: [{ sku, name, category, price: 9.99, quantity: 1 }] }));
        const [item, track] = run(html);
        expect(item).toEqual(['addEcommerceItem', sku, name, category, 9.99, 1]);
        expect(track![0]).toBe('trackEcommerceOrder');
        expect(count(html.toLowerCase(), '</script')).toBe(1);
        expect(html).not.toContain('<!--');
        expect(html).not.toMatch(/[\u2028\u2029]/);
      }),
      { numRuns: 300 },
    );
  });
});
