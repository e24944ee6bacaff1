import { runInNewContext } from 'node:vm';
import request from 'supertest';
import type { TrackingEvents } from 'matomo-server-tracking';
import type { ReceivedRequest } from '../../example-app/matomo-stand-in';
import { createShop, PRODUCTS, type Shop } from '../../example-app/shop';

type Agent = ReturnType<typeof request.agent>;

const CAFFE = PRODUCTS.find((product) => product.name.includes('</script>'))!;
const MOKA = PRODUCTS.find((product) => product.sku === 'MOKA-3')!;

let shop: Shop;
let events: Array<{ name: keyof TrackingEvents; payload: { orderId?: string; channel?: string; reason?: string } }>;

beforeEach(async () => {
  shop = await createShop({ port: 0 });
  events = [];
  for (const name of ['order:tracked', 'order:skipped', 'payment:confirmed', 'payment:unconfirmed', 'error'] as const) {
    shop.tracking.events.on(name, (payload: object) => events.push({ name, payload }));
  }
});

afterEach(async () => {
  await shop.close();
});

/** A buyer's browser: browses, fills the cart, checks out. Returns the AcmePay page it is sent to. */
async function checkout(skus: string[] = [MOKA.sku]): Promise<{ buyer: Agent; orderId: string; payPath: string }> {
  const buyer = request.agent(shop.url);
  await buyer.get('/').expect(200);
  for (const sku of skus) {
    await buyer.post('/cart/add').type('form').send({ sku, quantity: '1' }).expect(303).expect('location', '/cart');
  }
  const cart = await buyer.get('/cart').expect(200);
  expect(cart.text).toContain('Checkout');
  const response = await buyer.post('/checkout').expect(303);
  const payPath = response.headers.location as string;
  expect(payPath).toMatch(/^\/acmepay\/pay\?/);
  const orderId = new URL(payPath, shop.url).searchParams.get('order')!;
  expect(orderId).toMatch(/^IT-\d{4}-\d{6}$/);
  expect(shop.orders.get(orderId)?.status).toBe('awaiting payment');
  return { buyer, orderId, payPath };
}

/** Opens the AcmePay page and presses one of its buttons, as the browser would submit the form. */
async function pay(buyer: Agent, payPath: string, button: 'Pay and return to shop' | 'Pay and close the tab' | 'Refuse payment', status: number) {
  const page = await buyer.get(payPath).expect(200);
  const fields: Record<string, string> = {};
  for (const [, name, value] of page.text.matchAll(/<input type="hidden" name="(\w+)" value="([^"]*)">/g)) {
    fields[name!] = unescapeHtml(value!);
  }
  const action = new RegExp(`<button type="submit" name="action" value="(\\w+)">${button}</button>`).exec(page.text)?.[1];
  expect(action).toBeDefined();
  return buyer.post('/acmepay/pay').type('form').send({ ...fields, action: action! }).expect(status);
}

function successPath(orderId: string): string {
  return `/store/cart/checkout/success?id=${encodeURIComponent(orderId)}`;
}

function unescapeHtml(text: string): string {
  return text.replace(/&#(\d+);/g, (_, code: string) => String.fromCharCode(Number(code)));
}

function count(text: string, needle: string): number {
  return text.split(needle).length - 1;
}

/** Polls until Matomo recorded `orderId` (the server sends in the background), with a deadline. */
async function recordedOrder(orderId: string, timeoutMs = 5000): Promise<ReceivedRequest> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const entry = shop.standIn!.orders().get(orderId);
    if (entry) return entry;
    if (Date.now() > deadline) throw new Error(`the Matomo stand-in did not record order ${orderId} within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Waits for every send in flight to end, so that counting afterwards sees all there will ever be. */
async function settled(): Promise<void> {
  await shop.tracking.close();
}

test('pay and close the tab: the server tracks the order once', async () => {
  const { buyer, orderId, payPath } = await checkout();

  const closed = await pay(buyer, payPath, 'Pay and close the tab', 200);
  expect(closed.text).toContain('You closed the tab');

  expect(shop.orders.get(orderId)?.status).toBe('paid');
  expect(shop.orders.documentsFor(orderId)).toHaveLength(1);
  const entry = await recordedOrder(orderId);
  expect(entry.channel).toBe('server');
  expect(entry.params.revenue).toBe(shop.orders.get(orderId)!.order.revenue.toString());

  await settled();
  expect(shop.standIn!.requestsFor(orderId)).toHaveLength(1);
  expect(events.filter((e) => e.name === 'order:tracked')).toEqual([{ name: 'order:tracked', payload: { orderId, channel: 'server' } }]);
});

test('pay and return to the shop: the page does not track what the server already tracked', async () => {
  const { buyer, orderId, payPath } = await checkout();

  const paid = await pay(buyer, payPath, 'Pay and return to shop', 303);
  expect(paid.headers.location).toBe(`${shop.url}${successPath(orderId)}`);
  const page = await buyer.get(successPath(orderId)).expect(200);

  expect(page.text).toContain(orderId);
  expect(page.text).not.toContain('trackEcommerceOrder');
  expect(page.text).toContain('was already tracked');
  expect(page.text).toContain("_paq.push(['trackPageView']);");
  expect((await recordedOrder(orderId)).channel).toBe('server');
  expect(shop.orders.documentsFor(orderId)).toHaveLength(1);

  await settled();
  expect(shop.standIn!.requestsFor(orderId)).toHaveLength(1);
});

test('refuse payment: no ERP document and nothing in Matomo', async () => {
  const { buyer, orderId, payPath } = await checkout();

  const failedPath = `/store/cart/checkout/failed?id=${orderId}`;
  const refused = await pay(buyer, payPath, 'Refuse payment', 303);
  expect(refused.headers.location).toBe(`${shop.url}${failedPath}`);
  const failed = await buyer.get(failedPath).expect(200);
  expect(failed.text).toContain('was not completed');

  expect(shop.orders.get(orderId)?.status).toBe('payment not confirmed');
  expect(shop.orders.documentsFor(orderId)).toHaveLength(0);

  // The buyer opening the success URL anyway is sent to the failed page, and nothing is claimed.
  await buyer.get(successPath(orderId)).expect(303).expect('location', failedPath);

  await settled();
  expect(shop.standIn!.requestsFor(orderId)).toHaveLength(0);
  expect(events.filter((e) => e.name === 'order:tracked')).toHaveLength(0);
  expect(events.filter((e) => e.name === 'payment:unconfirmed')).toHaveLength(1);
});

test('confirmation page before the callback: the page tracks, the server does not', async () => {
  const { buyer, orderId, payPath } = await checkout();

  const page = await buyer.get(successPath(orderId)).expect(200);
  expect(count(page.text, 'trackEcommerceOrder')).toBe(1);
  expect(page.text).toContain('This page view tracks order');

  await pay(buyer, payPath, 'Pay and close the tab', 200);
  expect(shop.orders.get(orderId)?.status).toBe('paid');
  expect(shop.orders.documentsFor(orderId)).toHaveLength(1);

  // Reloading the page does not track a second time.
  const reload = await buyer.get(successPath(orderId)).expect(200);
  expect(reload.text).not.toContain('trackEcommerceOrder');

  await settled();
  expect(shop.standIn!.requestsFor(orderId)).toHaveLength(0); // supertest runs no matomo.js: only a server send would show
  expect(events).toContainEqual({ name: 'order:skipped', payload: { orderId, channel: 'server', reason: 'already-tracked' } });
});

test('another browser opening the success URL claims nothing', async () => {
  const { buyer, orderId, payPath } = await checkout();

  const stranger = request.agent(shop.url);
  const page = await stranger.get(successPath(orderId)).expect(200);
  expect(page.text).not.toContain('trackEcommerceOrder');
  expect(page.text).not.toContain(MOKA.name);
  expect(page.text).toContain('did not place order');

  await pay(buyer, payPath, 'Pay and close the tab', 200);
  expect((await recordedOrder(orderId)).channel).toBe('server');

  await settled();
  expect(shop.standIn!.requestsFor(orderId)).toHaveLength(1);
});

test('a product name with </script> cannot break out of the snippet', async () => {
  const { buyer, orderId } = await checkout([CAFFE.sku, MOKA.sku]);

  const html = (await buyer.get(successPath(orderId)).expect(200)).text;
  expect(count(html, 'trackEcommerceOrder')).toBe(1);

  // Every <script> element ends exactly where it should: the name adds no closing tag.
  const scripts = [...html.matchAll(/<script\b[^>]*>([\s\S]*?)<\/script>/g)].map((match) => match[1]!);
  expect(count(html, '</script>')).toBe(scripts.length);
  expect(count(html, '<script')).toBe(scripts.length);
  const snippet = scripts.find((script) => script.includes('trackEcommerceOrder'))!;
  expect(snippet).not.toContain('</script>');
  expect(snippet).toContain('\\u003c/script\\u003e');

  // Run as a browser would, the snippet hands matomo.js the exact name.
  const window: { _paq?: unknown[][] } = {};
  runInNewContext(snippet, { window });
  const item = window._paq!.find((call) => call[0] === 'addEcommerceItem' && call[1] === CAFFE.sku);
  expect(item?.[2]).toBe(CAFFE.name);
  expect(window._paq!.at(-1)?.slice(0, 2)).toEqual(['trackEcommerceOrder', orderId]);

  // In the visible page the name is escaped HTML.
  expect(html).toContain('Caffè &#34;Crema&#34; &#60;/script&#62;');
});
