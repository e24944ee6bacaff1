import { parseCookies } from '../../src/cookies';
import { consentFromMatomoCookies, visitorIdFromCookies } from '../../src/visitor';

function cookies(header: string | undefined): Map<string, string> {
  return parseCookies(header === undefined ? {} : { cookie: header });
}

describe('parseCookies', () => {
  test('several cookies, with the spaces browsers put after ";"', () => {
    const parsed = cookies('_pk_id.3.1fff=0123456789abcdef.1764761000.; _pk_ses.3.1fff=1;mtm_consent=1764761000000');
    expect([...parsed]).toEqual([
      ['_pk_id.3.1fff', '0123456789abcdef.1764761000.'],
      ['_pk_ses.3.1fff', '1'],
      ['mtm_consent', '1764761000000'],
    ]);
  });

  test('a quoted value loses its quotes', () => {
    expect(cookies('a="hello world"; b=""').get('a')).toBe('hello world');
    expect(cookies('b=""').get('b')).toBe('');
  });

  test('percent-encoded values are decoded', () => {
    const parsed = cookies('_pk_ref.3.1fff=%5B%22spring-sale%22%2C%22shoes%22%2C1764761000%2C%22https%3A%2F%2Fnews.example.org%2F%22%5D; name=caff%C3%A8');
    expect(JSON.parse(parsed.get('_pk_ref.3.1fff')!)).toEqual(['spring-sale', 'shoes', 1764761000, 'https://news.example.org/']);
    expect(parsed.get('name')).toBe('caffè');
  });

  test('a broken percent-encoding is kept as it is rather than dropping the cookie', () => {
    expect(cookies('a=100%; b=%E2%9C').get('a')).toBe('100%');
    expect(cookies('a=100%; b=%E2%9C').get('b')).toBe('%E2%9C');
  });

  test('a value containing "=" keeps everything after the first "="', () => {
    expect(cookies('token=abc==; x=1').get('token')).toBe('abc==');
  });

  test('malformed pairs are skipped, the good ones kept', () => {
    const parsed = cookies('novalue; =orphan; ; ok=1;  =; spaced = 2 ');
    expect([...parsed]).toEqual([
      ['ok', '1'],
      ['spaced', '2'],
    ]);
  });

  test('the first of two cookies with the same name wins', () => {
    expect(cookies('a=first; a=second').get('a')).toBe('first');
  });

  test('an oversized value is ignored, the others are kept', () => {
    const parsed = cookies(`big=${'x'.repeat(4097)}; small=1`);
    expect(parsed.has('big')).toBe(false);
    expect(parsed.get('small')).toBe('1');
    expect(cookies(`edge=${'x'.repeat(4096)}`).get('edge')).toHaveLength(4096);
  });

  test('no Cookie header, or a repeated one (an array), gives no cookies', () => {
    expect(cookies(undefined).size).toBe(0);
    expect(parseCookies({ cookie: ['a=1', 'b=2'] as unknown as string }).size).toBe(0);
  });
});

describe('visitorIdFromCookies: the matomo.js visitor id', () => {
  test('reads a real _pk_id cookie (value ends with a dot)', () => {
    expect(visitorIdFromCookies(cookies('_pk_id.3.1fff=0123456789abcdef.1764761000.'), 3)).toBe('0123456789abcdef');
  });

  test('reads the long pre-4.0 _pk_id format too', () => {
    expect(visitorIdFromCookies(cookies('_pk_id.3.1fff=0123456789abcdef.1764761000.4.1764762000.1764761500.'), 3)).toBe('0123456789abcdef');
  });

  test('picks this site’s cookie when several sites share the domain', () => {
    const jar = cookies('_pk_id.1.abcd=1111111111111111.1764761000.; _pk_id.3.abcd=3333333333333333.1764761000.; _pk_id.31.abcd=3131313131313131.1764761000.');
    expect(visitorIdFromCookies(jar, 3)).toBe('3333333333333333');
    expect(visitorIdFromCookies(jar, 1)).toBe('1111111111111111');
    expect(visitorIdFromCookies(jar, 31)).toBe('3131313131313131');
    expect(visitorIdFromCookies(jar, 7)).toBeUndefined();
  });

  test('a site 31 cookie is not mistaken for site 3', () => {
    expect(visitorIdFromCookies(cookies('_pk_id.31.abcd=3131313131313131.1764761000.'), 3)).toBeUndefined();
  });

  test('upper-case hex is normalised to lower case', () => {
    expect(visitorIdFromCookies(cookies('_pk_id.3.1fff=0123456789ABCDEF.1764761000.'), 3)).toBe('0123456789abcdef');
  });

  test.each([
    ['15 hex digits', '0123456789abcde.1764761000.'],
    ['17 hex digits', '0123456789abcdef0.1764761000.'],
    ['a non-hex digit', '0123456789abcdeg.1764761000.'],
    ['no dot after the id', '0123456789abcdef'],
    ['an empty value', ''],
    ['a script', '<script>0123456789abcdef.</script>'],
  ])('%s gives no visitor id', (_what, value) => {
    expect(visitorIdFromCookies(cookies(`_pk_id.3.1fff=${value}`), 3)).toBeUndefined();
  });

  test('no _pk_id cookie at all gives no visitor id', () => {
    expect(visitorIdFromCookies(cookies('_pk_ses.3.1fff=1'), 3)).toBeUndefined();
  });
});

describe('consentFromMatomoCookies', () => {
  test('mtm_consent set: consent', () => {
    expect(consentFromMatomoCookies(cookies('mtm_consent=1764761000000'))).toBe(true);
  });

  test('no consent cookie: no consent', () => {
    expect(consentFromMatomoCookies(cookies('_pk_id.3.1fff=0123456789abcdef.1764761000.'))).toBe(false);
  });

  test('consent withdrawn (mtm_consent_removed): no consent, even if mtm_consent lingers', () => {
    expect(consentFromMatomoCookies(cookies('mtm_consent_removed=1764762000000'))).toBe(false);
    expect(consentFromMatomoCookies(cookies('mtm_consent=1764761000000; mtm_consent_removed=1764762000000'))).toBe(false);
  });

  test('only mtm_consent counts: mtm_cookie_consent (consent to cookies only) is not consent to personal data', () => {
    expect(consentFromMatomoCookies(cookies('mtm_cookie_consent=1764761000000'))).toBe(false);
  });
});
