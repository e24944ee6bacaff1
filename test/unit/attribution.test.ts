import { ATTRIBUTION_LIMITS, attributionFromCookies, parseAttribution, truncate } from '../../src/attribution';
import { parseCookies } from '../../src/cookies';

/** 2025-12-03T12:00:00Z, a little after the cookies below were written. */
const NOW = 1_764_763_200_000;
const WRITTEN = 1_764_761_000; // seconds, as matomo.js writes `_refts`

function jar(header: string): Map<string, string> {
  return parseCookies({ cookie: header });
}

/** A `_pk_ref` value exactly as matomo.js writes it: `encodeURIComponent(JSON.stringify(array))`. */
function matomoJsValue(array: unknown): string {
  return encodeURIComponent(JSON.stringify(array));
}

describe('attributionFromCookies: the matomo.js _pk_ref cookie', () => {
  test('a campaign with keyword and referrer, as matomo.js writes it (URL-encoded JSON)', () => {
    const cookies = jar(
      '_pk_id.3.1fff=0123456789abcdef.1764761000.; ' +
        '_pk_ref.3.1fff=%5B%22spring-sale%22%2C%22shoes%22%2C1764761000%2C%22https%3A%2F%2Fnews.example.org%2Farticle%22%5D; ' +
        '_pk_ses.3.1fff=1',
    );
    expect(attributionFromCookies(cookies, 3, NOW)).toEqual({
      campaignName: 'spring-sale',
      campaignKeyword: 'shoes',
      timestampSeconds: 1764761000,
      referrerUrl: 'https://news.example.org/article',
    });
  });

  test('a referrer without campaign (a search engine)', () => {
    const cookies = jar('_pk_ref.3.1fff=%5B%22%22%2C%22%22%2C1764761000%2C%22https%3A%2F%2Fwww.google.com%2F%22%5D');
    expect(attributionFromCookies(cookies, 3, NOW)).toEqual({
      campaignName: '',
      campaignKeyword: '',
      timestampSeconds: 1764761000,
      referrerUrl: 'https://www.google.com/',
    });
  });

  test('a campaign without referrer (a link in an e-mail app)', () => {
    const cookies = jar('_pk_ref.3.1fff=%5B%22newsletter-2026-03%22%2C%22%22%2C1764761000%2C%22%22%5D');
    expect(attributionFromCookies(cookies, 3, NOW)).toMatchObject({ campaignName: 'newsletter-2026-03', referrerUrl: '' });
  });

  test('accented campaign names and keywords are decoded', () => {
    const cookies = jar('_pk_ref.3.1fff=%5B%22saldi-estivi-caff%C3%A8%22%2C%22tazze%20da%20t%C3%A8%22%2C1764761000%2C%22https%3A%2F%2Fwww.facebook.com%2F%22%5D');
    expect(attributionFromCookies(cookies, 3, NOW)).toMatchObject({ campaignName: 'saldi-estivi-caffè', campaignKeyword: 'tazze da tè' });
  });

  test('several sites’ cookies side by side: each site reads its own, site 31 is not site 3', () => {
    const cookies = jar(
      [
        `_pk_ref.1.abcd=${matomoJsValue(['site-one', '', WRITTEN, ''])}`,
        `_pk_ref.31.abcd=${matomoJsValue(['site-thirty-one', '', WRITTEN, ''])}`,
        `_pk_ref.3.abcd=${matomoJsValue(['site-three', '', WRITTEN, ''])}`,
      ].join('; '),
    );
    expect(attributionFromCookies(cookies, 3, NOW)?.campaignName).toBe('site-three');
    expect(attributionFromCookies(cookies, 1, NOW)?.campaignName).toBe('site-one');
    expect(attributionFromCookies(cookies, 31, NOW)?.campaignName).toBe('site-thirty-one');
    expect(attributionFromCookies(cookies, 7, NOW)).toBeUndefined();
    expect(attributionFromCookies(jar(`_pk_ref.31.abcd=${matomoJsValue(['x', '', WRITTEN, ''])}`), 3, NOW)).toBeUndefined();
  });

  test('two cookies of one site (two cookie paths): a broken first one does not hide a valid second one', () => {
    const cookies = jar(`_pk_ref.3.aaaa=${matomoJsValue(['', '', 0, ''])}; _pk_ref.3.bbbb=${matomoJsValue(['later', '', WRITTEN, ''])}`);
    expect(attributionFromCookies(cookies, 3, NOW)?.campaignName).toBe('later');
  });

  test('no _pk_ref cookie: no attribution', () => {
    expect(attributionFromCookies(jar('_pk_id.3.1fff=0123456789abcdef.1764761000.'), 3, NOW)).toBeUndefined();
  });

  test('a cookie over 4 KiB is dropped by the cookie parser before it is read', () => {
    const cookies = jar(`_pk_ref.3.1fff=${matomoJsValue(['big', 'x'.repeat(5000), WRITTEN, ''])}`);
    expect(attributionFromCookies(cookies, 3, NOW)).toBeUndefined();
  });
});

describe('parseAttribution: anything matomo.js would not have written gives no attribution', () => {
  const valid = ['spring-sale', 'shoes', WRITTEN, 'https://news.example.org/article'];
  const withEntry = (index: number, value: unknown) => JSON.stringify(valid.map((entry, i) => (i === index ? value : entry)));

  test('the valid baseline parses', () => {
    expect(parseAttribution(JSON.stringify(valid), NOW)).toBeDefined();
  });

  test.each<[string, string]>([
    ['not JSON (the pre-1.3 format)', 'spring-sale|shoes|1764761000'],
    ['a broken percent-encoding left as it is', '%5B%22spring'],
    ['an empty value', ''],
    ['an object instead of an array', JSON.stringify({ 0: 'spring-sale', 1: 'shoes', 2: WRITTEN, 3: '' })],
    ['three entries', JSON.stringify(valid.slice(0, 3))],
    ['five entries', JSON.stringify([...valid, 'extra'])],
    ['a number as campaign name', withEntry(0, 42)],
    ['null as keyword', withEntry(1, null)],
    ['an array as referrer', withEntry(3, ['https://x.example/'])],
    ['the time as a string', withEntry(2, String(WRITTEN))],
    ['the time in milliseconds', withEntry(2, WRITTEN * 1000)],
    ['time 0 (matomo.js’s “nothing yet”)', withEntry(2, 0)],
    ['a negative time', withEntry(2, -WRITTEN)],
    ['a fractional time', withEntry(2, WRITTEN + 0.5)],
    ['a time before 2000', withEntry(2, 946_684_799)],
    ['a time more than a day ahead of our clock', withEntry(2, NOW / 1000 + 86_401)],
    ['a relative referrer', withEntry(3, '/store/cart')],
    ['a referrer that is not a URL', withEntry(3, '<script>alert(1)</script>')],
    ['a referrer longer than matomo.js writes (1024)', withEntry(3, `https://x.example/${'a'.repeat(1024)}`)],
    ['neither campaign nor referrer', JSON.stringify(['', 'keyword-only', WRITTEN, ''])],
    ['matomo.js’s empty default', JSON.stringify(['', '', 0, ''])],
  ])('%s', (_what, json) => {
    expect(parseAttribution(json, NOW)).toBeUndefined();
  });

  test('a browser clock up to a day ahead is tolerated', () => {
    expect(parseAttribution(withEntry(2, NOW / 1000 + 3600), NOW)?.timestampSeconds).toBe(NOW / 1000 + 3600);
  });

  test('a referrer of exactly 1024 characters is kept whole; other schemes (android-app) are accepted', () => {
    const url = `https://x.example/${'a'.repeat(1024 - 'https://x.example/'.length)}`;
    expect(url).toHaveLength(ATTRIBUTION_LIMITS.referrerUrl);
    expect(parseAttribution(withEntry(3, url), NOW)?.referrerUrl).toBe(url);
    expect(parseAttribution(withEntry(3, 'android-app://com.google.android.gm/'), NOW)?.referrerUrl).toBe('android-app://com.google.android.gm/');
  });

  test('campaign name and keyword longer than Matomo stores (255) are cut, not refused', () => {
    const parsed = parseAttribution(JSON.stringify(['n'.repeat(300), 'k'.repeat(256), WRITTEN, '']), NOW);
    expect(parsed?.campaignName).toBe('n'.repeat(255));
    expect(parsed?.campaignKeyword).toBe('k'.repeat(255));
  });
});

describe('truncate', () => {
  test('keeps short strings, cuts long ones', () => {
    expect(truncate('abc', 3)).toBe('abc');
    expect(truncate('abcd', 3)).toBe('abc');
  });

  test('never leaves half of a surrogate pair at the end', () => {
    expect(truncate('ab☕☕', 3)).toBe('ab☕'); // ☕ is one UTF-16 unit
    expect(truncate('ab😀', 3)).toBe('ab'); // 😀 is two
    expect(truncate('ab😀', 4)).toBe('ab😀');
  });
});
