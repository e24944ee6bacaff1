import express, { type Express } from 'express';
import request from 'supertest';
import { CheckoutBinding } from '../../src/checkout-cookie';
import { MemoryClaimStore, type ClaimStore } from '../../src/claims';
import type { ResolvedConfig } from '../../src/config';
import { Warnings } from '../../src/logger';

const NEW_SECRET = 'checkout-secret-new-0123456789';
const OLD_SECRET = 'checkout-secret-old-9876543210';
const DAY_MS = 24 * 60 * 60 * 1000;

type Warning = (typeof Warnings)[keyof typeof Warnings];

function binding(
  secrets: string[] | null,
  options: { store?: ClaimStore; warn?: (warning: Warning) => void; secure?: boolean | 'auto' } = {},
): CheckoutBinding {
  const config: ResolvedConfig['checkoutCookie'] = { secrets, name: 'mst_checkout', secure: options.secure ?? 'auto', maxAgeMs: 30 * DAY_MS };
  return new CheckoutBinding(config, options.store ?? new MemoryClaimStore(), options.warn ?? (() => {}));
}

/** A shop with a checkout that binds the browser to one or more orders, and a page that asks who owns what. */
function shop(checkout: CheckoutBinding): Express {
  const app = express();
  app.post('/checkout/:ids', async (req, res) => {
    for (const id of String(req.params.ids).split(',')) await checkout.bind(req, res, id);
    res.sendStatus(204);
  });
  app.get('/owns/:id', async (req, res) => {
    res.json({ owns: await checkout.owns(req, String(req.params.id)) });
  });
  return app;
}

/** The Set-Cookie headers of a response. */
function setCookies(response: request.Response): string[] {
  return (response.headers['set-cookie'] as unknown as string[] | undefined) ?? [];
}

/**
 * Checks out `orderIds` as the browser holding `cookie`; returns the browser's new Cookie
 * header. Like a browser, the last Set-Cookie of a name wins.
 */
async function checkout(app: Express, orderIds: string, cookie?: string): Promise<string> {
  const call = request(app).post(`/checkout/${orderIds}`);
  if (cookie) call.set('Cookie', cookie);
  const headers = setCookies(await call.expect(204));
  expect(headers.length).toBeGreaterThanOrEqual(1);
  return headers.at(-1)!.split(';')[0]!;
}

async function owns(app: Express, orderId: string, cookie?: string): Promise<boolean> {
  const call = request(app).get(`/owns/${orderId}`);
  if (cookie) call.set('Cookie', cookie);
  return ((await call.expect(200)).body as { owns: boolean }).owns;
}

/** `mst_checkout=v1.<payload>.<signature>` → its parts. */
function parts(cookie: string): { version: string; payload: string; signature: string } {
  const [version, payload, signature] = cookie.slice('mst_checkout='.length).split('.');
  return { version: version!, payload: payload!, signature: signature! };
}

describe('CheckoutBinding: the checkout cookie proves who checked out', () => {
  test('a cookie set for order A verifies for A and not for B', async () => {
    const app = shop(binding([NEW_SECRET]));
    const cookie = await checkout(app, 'A');
    expect(await owns(app, 'A', cookie)).toBe(true);
    expect(await owns(app, 'B', cookie)).toBe(false);
  });

  test('a browser without the cookie owns nothing', async () => {
    const app = shop(binding([NEW_SECRET]));
    await checkout(app, 'A');
    expect(await owns(app, 'A')).toBe(false);
  });

  test('the cookie is httpOnly, SameSite=Lax, on path /, for 30 days', async () => {
    const [setCookie = ''] = setCookies(await request(shop(binding([NEW_SECRET]))).post('/checkout/A').expect(204));
    expect(setCookie).toMatch(/^mst_checkout=v1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+;/);
    expect(setCookie).toContain('HttpOnly');
    expect(setCookie).toContain('SameSite=Lax');
    expect(setCookie).toContain('Path=/');
    expect(setCookie).toContain(`Max-Age=${30 * 24 * 60 * 60}`);
    expect(setCookie).not.toContain('Secure'); // 'auto' over plain HTTP
  });

  test('secure: true sets Secure even over plain HTTP', async () => {
    const [setCookie] = setCookies(await request(shop(binding([NEW_SECRET], { secure: true }))).post('/checkout/A').expect(204));
    expect(setCookie).toContain('Secure');
  });

  test('a tampered payload does not verify, for any order', async () => {
    const app = shop(binding([NEW_SECRET]));
    const { version, payload, signature } = parts(await checkout(app, 'A'));
    expect(JSON.parse(Buffer.from(payload, 'base64url').toString())).toEqual(['A']);
    const forged = Buffer.from(JSON.stringify(['A', 'B'])).toString('base64url');
    const cookie = `mst_checkout=${version}.${forged}.${signature}`;
    expect(await owns(app, 'B', cookie)).toBe(false);
    expect(await owns(app, 'A', cookie)).toBe(false);
  });

  test('a tampered signature does not verify', async () => {
    const app = shop(binding([NEW_SECRET]));
    const { version, payload, signature } = parts(await checkout(app, 'A'));
    const flipped = (signature[0] === 'A' ? 'B' : 'A') + signature.slice(1);
    expect(await owns(app, 'A', `mst_checkout=${version}.${payload}.${flipped}`)).toBe(false);
    expect(await owns(app, 'A', `mst_checkout=${version}.${payload}.${signature.slice(0, -2)}`)).toBe(false);
    expect(await owns(app, 'A', `mst_checkout=${version}.${payload}.${signature}.extra`)).toBe(false);
    expect(await owns(app, 'A', `mst_checkout=v2.${payload}.${signature}`)).toBe(false);
  });

  test('a cookie signed with the old secret verifies while secrets = [new, old]', async () => {
    const before = shop(binding([OLD_SECRET]));
    const cookie = await checkout(before, 'A');
    const rotating = shop(binding([NEW_SECRET, OLD_SECRET]));
    expect(await owns(rotating, 'A', cookie)).toBe(true);
    expect(await owns(shop(binding([NEW_SECRET])), 'A', cookie)).toBe(false);
  });

  test('during rotation the next checkout re-signs with the new secret and keeps the old orders', async () => {
    const cookie = await checkout(shop(binding([OLD_SECRET])), 'A');
    const renewed = await checkout(shop(binding([NEW_SECRET, OLD_SECRET])), 'B', cookie);
    const newOnly = shop(binding([NEW_SECRET]));
    expect(await owns(newOnly, 'A', renewed)).toBe(true);
    expect(await owns(newOnly, 'B', renewed)).toBe(true);
  });

  test('at most 5 orders are kept: the newest', async () => {
    const app = shop(binding([NEW_SECRET]));
    let cookie: string | undefined;
    for (const id of ['o1', 'o2', 'o3', 'o4', 'o5', 'o6']) cookie = await checkout(app, id, cookie);
    expect(JSON.parse(Buffer.from(parts(cookie!).payload, 'base64url').toString())).toEqual(['o2', 'o3', 'o4', 'o5', 'o6']);
    expect(await owns(app, 'o1', cookie)).toBe(false);
    for (const id of ['o2', 'o3', 'o4', 'o5', 'o6']) expect(await owns(app, id, cookie)).toBe(true);
  });

  test('checking out the same order again does not push the others out', async () => {
    const app = shop(binding([NEW_SECRET]));
    let cookie: string | undefined;
    for (const id of ['o1', 'o2', 'o3', 'o4', 'o5', 'o5', 'o5']) cookie = await checkout(app, id, cookie);
    expect(await owns(app, 'o1', cookie)).toBe(true);
  });

  test('two orders captured in the same response both end up in the cookie', async () => {
    const app = shop(binding([NEW_SECRET]));
    const cookie = await checkout(app, 'A,B');
    expect(await owns(app, 'A', cookie)).toBe(true);
    expect(await owns(app, 'B', cookie)).toBe(true);
  });

  test('two orders captured in the same response send one Set-Cookie, not two (RFC 6265 §3)', async () => {
    // "Servers SHOULD NOT include more than one Set-Cookie header field in the same
    // response with the same cookie-name."
    const headers = setCookies(await request(shop(binding([NEW_SECRET]))).post('/checkout/A,B').expect(204));
    expect(headers.filter((h) => h.startsWith('mst_checkout='))).toHaveLength(1);
  });
});

describe('CheckoutBinding without a configured secret', () => {
  test('the generated secret is shared through the store: two instances verify each other’s cookies', async () => {
    const store = new MemoryClaimStore();
    const warnings: Warning[] = [];
    const first = shop(binding(null, { store, warn: (w) => warnings.push(w) }));
    const second = shop(binding(null, { store, warn: (w) => warnings.push(w) }));

    const cookieFromFirst = await checkout(first, 'A');
    expect(await owns(second, 'A', cookieFromFirst)).toBe(true);
    const cookieFromSecond = await checkout(second, 'B');
    expect(await owns(first, 'B', cookieFromSecond)).toBe(true);

    expect(warnings.length).toBeGreaterThanOrEqual(1);
    expect(warnings.every((w) => w.code === 'WRN_MST_GENERATED_CHECKOUT_SECRET')).toBe(true);
  });

  test('an instance on another store has another secret and rejects the cookie', async () => {
    const cookie = await checkout(shop(binding(null, { store: new MemoryClaimStore() })), 'A');
    expect(await owns(shop(binding(null, { store: new MemoryClaimStore() })), 'A', cookie)).toBe(false);
  });

  test('with a configured secret there is no warning', async () => {
    const warn = jest.fn();
    const app = shop(binding([NEW_SECRET], { warn }));
    const cookie = await checkout(app, 'A');
    expect(await owns(app, 'A', cookie)).toBe(true);
    expect(warn).not.toHaveBeenCalled();
  });
});
