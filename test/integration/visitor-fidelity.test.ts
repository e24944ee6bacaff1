/**
 * Issue 4, end to end: what the buyer's browser tells us at checkout reaches Matomo with
 * the server-side order, so that it lands in the buyer's own visit with its campaign —
 * and nothing personal goes out without consent. Memory and real Redis stores.
 */
import request from 'supertest';
import type { MatomoServerTrackingOptions } from '../../src';
import { STORE_KINDS, createHarness, paid, startMatomo, uniqueSiteId, type Harness } from '../helpers/harness';

const TOKEN = 'c0ffee0123456789abcdef0123456789';
const UA = 'Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0';
const VISITOR_ID = '0123456789abcdef';
/** `encodeURIComponent(JSON.stringify(['spring-sale', 'shoes', 1764761000, 'https://news.example.org/article?id=7']))`, as matomo.js writes it. */
const PK_REF_VALUE = '%5B%22spring-sale%22%2C%22shoes%22%2C1764761000%2C%22https%3A%2F%2Fnews.example.org%2Farticle%3Fid%3D7%22%5D';
const CONSENT = 'mtm_consent=1764761000000';

describe.each(STORE_KINDS)('visitor fidelity (%s store)', (kind) => {
  let matomo: Awaited<ReturnType<typeof startMatomo>>;
  let shop: Harness;

  afterEach(async () => {
    await shop?.close();
    await matomo?.close();
  });

  async function start(options: Partial<MatomoServerTrackingOptions> & { tokenAuth?: string } = {}): Promise<Harness> {
    matomo = await startMatomo();
    const siteId = uniqueSiteId();
    const { tokenAuth, ...rest } = options;
    shop = await createHarness({
      kind,
      siteId,
      matomo,
      options: { matomo: { domain: matomo.domain, siteId, protocol: 'http', ...(tokenAuth && { tokenAuth }) }, consent: 'matomo-cookies', ...rest },
    });
    // Behind the shop's load balancer (here: the loopback hop of supertest).
    shop.app.set('trust proxy', 'loopback');
    return shop;
  }

  /** matomo.js's cookies for this site, as the browser sends them. */
  function matomoCookies(): string {
    return `_pk_id.${shop.siteId}.1fff=${VISITOR_ID}.1764761000.; _pk_ref.${shop.siteId}.1fff=${PK_REF_VALUE}; _pk_ses.${shop.siteId}.1fff=1`;
  }

  /** The shop's checkout as a browser behind a proxy; returns the browser's cookies afterwards. */
  async function checkout(orderId: string, cookie: string, headers: Record<string, string> = {}): Promise<string> {
    const call = request(shop.app)
      .post(`/test/checkout/${orderId}`)
      .set('User-Agent', UA)
      .set('Accept-Language', 'it-IT,it;q=0.9')
      .set('Referer', 'https://shop.example.test/store/cart?coupon=SPRING')
      .set('X-Forwarded-For', '203.0.113.7');
    if (cookie) call.set('Cookie', cookie);
    for (const [name, value] of Object.entries(headers)) call.set(name, value);
    const response = await call;
    expect(response.status).toBe(201);
    const set = ((response.headers['set-cookie'] as unknown as string[] | undefined) ?? []).map((c) => c.split(';')[0]);
    return [cookie, ...set].filter(Boolean).join('; ');
  }

  async function paidAndSent(orderId: string) {
    const order = shop.orders.orders.get(orderId)!;
    expect((await shop.notify(paid(order))).status).toBe(200);
    await shop.settled();
    const sent = matomo.standIn.requestsFor(orderId);
    expect(sent).toHaveLength(1);
    expect(sent[0]).toMatchObject({ channel: 'server', accepted: true });
    return sent[0]!;
  }

  test('checkout with matomo.js cookies behind a proxy: the server’s order carries the buyer’s cid, campaign and IP; the token only in the body', async () => {
    await start({ tokenAuth: TOKEN });
    shop.orders.add({ id: 'V-1' });
    await checkout('V-1', `${matomoCookies()}; ${CONSENT}`);
    const sent = await paidAndSent('V-1');
    expect(sent.params).toMatchObject({
      cid: VISITOR_ID,
      _rcn: 'spring-sale',
      _rck: 'shoes',
      _refts: '1764761000',
      _ref: 'https://news.example.org/article?id=7',
      cip: '203.0.113.7',
      ua: UA,
      lang: 'it-IT,it;q=0.9',
      urlref: 'https://shop.example.test/store/cart?coupon=SPRING',
      token_auth: TOKEN,
    });
    expect(sent.params.url).toMatch(/^http:\/\/127\.0\.0\.1(:\d+)?\/test\/checkout\/V-1$/);
    expect(sent.params.cdt).toMatch(/^\d{10}$/);
    expect(sent.tokenInUrl).toBe(false);
    expect(matomo.standIn.received.filter((entry) => entry.tokenInUrl)).toEqual([]);
  });

  test('orders that go out together in one bulk request keep their own cid and cip; the token sits in the body', async () => {
    // Polls far apart and retries soon: two orders refused once come due together at the next poll.
    await start({ tokenAuth: TOKEN, delivery: { backoffMs: 10, maxBackoffMs: 20, pollIntervalMs: 400 } });
    matomo.standIn.failNext(1000, 503);
    shop.orders.add({ id: 'V-B1' });
    shop.orders.add({ id: 'V-B2' });
    await checkout('V-B1', `${matomoCookies()}; ${CONSENT}`);
    await checkout('V-B2', CONSENT, { 'X-Forwarded-For': '198.51.100.9' });
    for (const id of ['V-B1', 'V-B2']) expect((await shop.notify(paid(shop.orders.orders.get(id)!))).status).toBe(200);
    await new Promise((resolve) => setTimeout(resolve, 100)); // both have been tried and refused by now
    matomo.standIn.failNext(0, 503);
    await shop.settled();

    const [first] = matomo.standIn.requestsFor('V-B1');
    const [second] = matomo.standIn.requestsFor('V-B2');
    expect(first).toMatchObject({ accepted: true, bulk: true, tokenInUrl: false });
    expect(second).toMatchObject({ accepted: true, bulk: true, tokenInUrl: false });
    expect(first!.params).toMatchObject({ cid: VISITOR_ID, cip: '203.0.113.7', _rcn: 'spring-sale' });
    expect(second!.params.cip).toBe('198.51.100.9');
    expect(second!.params.cid).not.toBe(VISITOR_ID);
  });

  test('without a token: no cip (Matomo would refuse the order), the rest still arrives', async () => {
    await start();
    shop.orders.add({ id: 'V-2' });
    await checkout('V-2', `${matomoCookies()}; ${CONSENT}`);
    const sent = await paidAndSent('V-2');
    expect(sent.params.cip).toBeUndefined();
    expect(sent.params.token_auth).toBeUndefined();
    expect(sent.params).toMatchObject({ cid: VISITOR_ID, _rcn: 'spring-sale', ua: UA });
  });

  test('two orders without matomo.js cookies get two different random cids', async () => {
    await start({ tokenAuth: TOKEN });
    shop.orders.add({ id: 'V-3a' });
    shop.orders.add({ id: 'V-3b' });
    await checkout('V-3a', CONSENT);
    await checkout('V-3b', CONSENT);
    const first = await paidAndSent('V-3a');
    const second = await paidAndSent('V-3b');
    expect(first.params.cid).toMatch(/^[0-9a-f]{16}$/);
    expect(second.params.cid).toMatch(/^[0-9a-f]{16}$/);
    expect(first.params.cid).not.toBe(second.params.cid);
    expect(first.params._rcn).toBeUndefined();
  });

  test('consent refused: the order is recorded without IP, User ID, user agent, language or query strings', async () => {
    await start({ tokenAuth: TOKEN, useUserId: true });
    shop.orders.add({ id: 'V-4', userId: 'customer-42' });
    await checkout('V-4', matomoCookies());
    const sent = await paidAndSent('V-4');
    expect(['cip', 'uid', 'ua', 'lang'].filter((key) => key in sent.params)).toEqual([]);
    expect(sent.params.urlref).toBe('https://shop.example.test/store/cart');
    expect(sent.params._ref).toBe('https://news.example.org/article');
    expect(sent.params).toMatchObject({ _rcn: 'spring-sale', ec_id: 'V-4' });
    // the _pk_id cookie id is personal data too: a fresh random one instead
    expect(sent.params.cid).toMatch(/^[0-9a-f]{16}$/);
    expect(sent.params.cid).not.toBe(VISITOR_ID);
  });

  describe('User ID: the page and the server send the same one', () => {
    /** The shop's logged-in customer, read from its own session cookie. */
    const userId = (req: { headers: { cookie?: string } }) => /(?:^|;\s*)shop_session=([^;]+)/.exec(req.headers.cookie ?? '')?.[1];

    test('with useUserId and consent: setUserId on the page equals uid from the server', async () => {
      await start({ tokenAuth: TOKEN, useUserId: true, userId });
      shop.orders.add({ id: 'V-5a' });
      shop.orders.add({ id: 'V-5b' });
      const browser = `${matomoCookies()}; ${CONSENT}; shop_session=customer-42`;
      const cookies = await checkout('V-5a', browser);
      await checkout('V-5b', browser);

      const page = await shop.page('V-5a', cookies);
      expect(page.trackOrder).toBe(true);
      expect(page.script).toContain('_paq.push(["setUserId","customer-42"]);');
      expect(page.script.indexOf('setUserId')).toBeLessThan(page.script.indexOf('trackEcommerceOrder'));

      const sent = await paidAndSent('V-5b');
      expect(sent.params.uid).toBe('customer-42');
    });

    test('without the option, order.userId is the User ID on both channels', async () => {
      await start({ useUserId: true });
      shop.orders.add({ id: 'V-6a', userId: 'erp-1001' });
      shop.orders.add({ id: 'V-6b', userId: 'erp-1001' });
      const cookies = await checkout('V-6a', CONSENT);
      await checkout('V-6b', CONSENT);
      expect((await shop.page('V-6a', cookies)).script).toContain('_paq.push(["setUserId","erp-1001"]);');
      expect((await paidAndSent('V-6b')).params.uid).toBe('erp-1001');
    });

    test('consent refused: the page leaves the order to the server, which sends it without User ID', async () => {
      await start({ useUserId: true, userId });
      shop.orders.add({ id: 'V-7', userId: 'erp-1002' });
      const cookies = await checkout('V-7', 'shop_session=customer-42');
      // matomo.js would hold the order back without consent: the page must not claim it
      expect(await shop.page('V-7', cookies)).toMatchObject({ trackOrder: false, script: '' });
      expect(shop.events).toContainEqual({ name: 'order:skipped', payload: { orderId: 'V-7', channel: 'client', reason: 'no-consent' } });
      const sent = await paidAndSent('V-7');
      expect(sent.accepted).toBe(true);
      expect(sent.params.uid).toBeUndefined();
    });

    test('useUserId off: no setUserId and no uid, whatever the consent', async () => {
      await start({ useUserId: false, userId });
      shop.orders.add({ id: 'V-8a', userId: 'erp-1003' });
      shop.orders.add({ id: 'V-8b', userId: 'erp-1003' });
      const browser = `${CONSENT}; shop_session=customer-42`;
      const cookies = await checkout('V-8a', browser);
      await checkout('V-8b', browser);
      expect((await shop.page('V-8a', cookies)).script).not.toContain('setUserId');
      expect((await paidAndSent('V-8b')).params.uid).toBeUndefined();
    });
  });
});
