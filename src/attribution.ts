/**
 * The campaign or referrer a conversion is credited to, as matomo.js remembers it in
 * the `_pk_ref.<siteId>.<hash>` cookie. Without it, Matomo credits a server-side order
 * to "direct entry" (or to the payment provider that called us back).
 */
export interface Attribution {
  /** `_rcn`; may be empty when only a referrer was seen. */
  campaignName: string;
  /** `_rck`. */
  campaignKeyword: string;
  /** `_refts`: when matomo.js saw the referrer or campaign (unix seconds). */
  timestampSeconds: number;
  /** `_ref`; may be empty for a campaign without a referrer (e.g. a link in an e-mail app). */
  referrerUrl: string;
}

/**
 * Matomo keeps campaign names and keywords in varchar(255) columns; matomo.js copies them
 * from the landing URL without a limit, so longer ones are cut, not refused. matomo.js cuts
 * the referrer URL at 1024 characters before writing the cookie, so a longer one was not
 * written by matomo.js and is refused.
 */
export const ATTRIBUTION_LIMITS = { campaignName: 255, campaignKeyword: 255, referrerUrl: 1024 } as const;

/** matomo.js (and so `_refts`) did not exist before this; a smaller number is not seconds since 1970. */
const EARLIEST_SECONDS = Date.UTC(2000, 0, 1) / 1000;
/** A browser clock may run ahead of ours; more than a day ahead is not a clock, it is garbage (or milliseconds). */
const CLOCK_SKEW_SECONDS = 24 * 60 * 60;

/**
 * Reads this site's attribution cookie. The value, already percent-decoded by `parseCookies`,
 * is matomo.js's `JSON.stringify([campaignName, campaignKeyword, tsSeconds, referrerUrl])`.
 * The cookie comes from the browser, so anyone can forge it: anything that matomo.js would
 * not have written gives no attribution at all rather than a half-trusted one.
 * With several `_pk_ref.<siteId>.*` cookies (one per cookie domain or path), the first valid one wins.
 */
export function attributionFromCookies(cookies: ReadonlyMap<string, string>, siteId: number, nowMs: number): Attribution | undefined {
  const prefix = `_pk_ref.${siteId}.`;
  for (const [name, value] of cookies) {
    if (!name.startsWith(prefix)) continue;
    const attribution = parseAttribution(value, nowMs);
    if (attribution) return attribution;
  }
  return undefined;
}

/** One `_pk_ref` value (decoded JSON text) → attribution, or `undefined` when it is not matomo.js's format. */
export function parseAttribution(json: string, nowMs: number): Attribution | undefined {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    return undefined; // matomo.js before 1.3 wrote no JSON; today's matomo.js reads that as no attribution too
  }
  if (!Array.isArray(value) || value.length !== 4) return undefined;
  const [campaignName, campaignKeyword, timestamp, referrerUrl] = value as unknown[];
  if (typeof campaignName !== 'string' || typeof campaignKeyword !== 'string' || typeof referrerUrl !== 'string') return undefined;
  if (referrerUrl.length > ATTRIBUTION_LIMITS.referrerUrl) return undefined;
  if (referrerUrl !== '' && !isAbsoluteUrl(referrerUrl)) return undefined;
  // Matomo attributes by campaign name or referrer URL; a keyword alone means nothing to it.
  if (campaignName === '' && referrerUrl === '') return undefined;
  if (!isPlausibleSeconds(timestamp, nowMs)) return undefined;
  return {
    campaignName: truncate(campaignName, ATTRIBUTION_LIMITS.campaignName),
    campaignKeyword: truncate(campaignKeyword, ATTRIBUTION_LIMITS.campaignKeyword),
    timestampSeconds: timestamp,
    referrerUrl,
  };
}

/** Cuts at `max` UTF-16 units without leaving half of a surrogate pair behind (Matomo would store U+FFFD). */
export function truncate(value: string, max: number): string {
  if (value.length <= max) return value;
  const cut = value.slice(0, max);
  return /[\ud800-\udbff]$/.test(cut) ? cut.slice(0, -1) : cut;
}

/** `document.referrer` is always absolute; any scheme, since Matomo recognises e.g. `android-app://` referrers. */
function isAbsoluteUrl(value: string): boolean {
  return URL.canParse(value);
}

function isPlausibleSeconds(value: unknown, nowMs: number): value is number {
  return (
    typeof value === 'number' &&
    Number.isSafeInteger(value) &&
    value >= EARLIEST_SECONDS &&
    value <= Math.floor(nowMs / 1000) + CLOCK_SKEW_SECONDS
  );
}
