/**
 * Two instances on one Redis: what one instance learns at checkout, the other
 * uses when the gateway's callback lands there.
 */
import request from 'supertest';
import { createHarness, createOrders, paid, startMatomo, uniqueSiteId, type Harness } from '../helpers/harness';

describe('two instances sharing one Redis', () => {
  let matomo: Awaited<ReturnType<typeof startMatomo>>;
  let a: Harness;
  let b: Harness;

  beforeEach(async () => {
    matomo = await startMatomo();
    const orders = createOrders();
    const siteId = uniqueSiteId();
    const options = { consent: 'matomo-cookies' as const };
    a = await createHarness({ kind: 'redis', siteId, orders, matomo, options });
    b = await createHarness({ kind: 'redis', siteId, orders, matomo, options });
  });

  afterEach(async () => {
    await a.close();
    await b.close();
    await matomo.close();
  });

  test('the checkout cookie set by one instance proves ownership on the other (generated secret shared via the store)', async () => {
    a.orders.add({ id: 'X-1' });
    const cookie = `${await a.checkout('X-1')}; mtm_consent=1764761000000`;
    expect((await b.page('X-1', cookie)).trackOrder).toBe(true);
    expect((await a.page('X-1', cookie)).trackOrder).toBe(false);
    expect(a.events.map((e) => e.payload)).toContainEqual(expect.objectContaining({ code: 'WRN_MST_GENERATED_CHECKOUT_SECRET' }));
  });

  test('user agent and language captured at checkout on one instance reach Matomo from the other (with consent)', async () => {
    const order = a.orders.add({ id: 'X-2' });
    await request(a.app)
      .post('/test/checkout/X-2')
      .set('User-Agent', 'Mozilla/5.0 (X11; Linux x86_64) TestBrowser/1.0')
      .set('Accept-Language', 'it-IT,it;q=0.9')
      .set('Cookie', 'mtm_consent=1764761000000; _pk_id.' + a.siteId + '.1fff=0123456789abcdef.1764761000.');
    await b.notify(paid(order));
    await b.settled();
    const [sent] = matomo.standIn.requestsFor('X-2');
    expect(sent?.params).toMatchObject({ ua: 'Mozilla/5.0 (X11; Linux x86_64) TestBrowser/1.0', lang: 'it-IT,it;q=0.9', cid: '0123456789abcdef' });
  });

  test('without consent the order is still recorded, without user agent or language', async () => {
    const order = a.orders.add({ id: 'X-3', userId: 'customer-42' });
    await request(a.app).post('/test/checkout/X-3').set('User-Agent', 'TestBrowser/1.0').set('Accept-Language', 'it');
    await b.notify(paid(order));
    await b.settled();
    const [sent] = matomo.standIn.requestsFor('X-3');
    expect(sent?.accepted).toBe(true);
    expect(sent?.params.ua).toBeUndefined();
    expect(sent?.params.lang).toBeUndefined();
    expect(sent?.params.uid).toBeUndefined();
    expect(sent?.params.cid).toMatch(/^[0-9a-f]{16}$/);
  });
});
