import { isIP } from 'node:net';
import type { Request } from 'express';
import { attributionFromCookies, truncate, type Attribution } from './attribution';
import { keys, type ClaimStore } from './claims';
import type { ResolvedConfig } from './config';
import { parseCookies } from './cookies';
import { userIdFromRequest } from './user-id';

/**
 * What we know of the buyer's browser at checkout, stored per order so that the
 * server-side request lands in the buyer's own visit, whichever instance sends it.
 * Without consent it holds nothing that identifies a person (see `withoutPersonalData`).
 */
export interface VisitorContext {
  /** 16-hex Matomo visitor id from the `_pk_id.<siteId>.*` cookie. */
  visitorId?: string;
  /** Campaign and referrer from the `_pk_ref.<siteId>.*` cookie. */
  attribution?: Attribution;
  userAgent?: string;
  language?: string;
  /** The buyer's IP as Express sees it (`req.ip`, so `trust proxy` applies); kept only when a token can send it. */
  ip?: string;
  /** The checkout page's URL. */
  url?: string;
  /** The `Referer` of the checkout request. */
  referrer?: string;
  /** From the `userId` option; kept only with `useUserId` and consent. */
  userId?: string;
  /** Whether the visitor agreed to analytics with personal data (or the shop needs no consent). */
  consent: boolean;
  /** When captureCheckout ran (ms). */
  capturedAt: number;
}

const LIMITS = { userAgent: 500, language: 200, url: 1000 };

function bounded(value: unknown, max: number): string | undefined {
  return typeof value === 'string' && value.length > 0 ? truncate(value, max) : undefined;
}

/** `_pk_id.<siteId>.<hash>` = `<16 hex visitor id>.<first visit ts>.` (matomo.js). */
export function visitorIdFromCookies(cookies: Map<string, string>, siteId: number): string | undefined {
  const prefix = `_pk_id.${siteId}.`;
  for (const [name, value] of cookies) {
    if (!name.startsWith(prefix)) continue;
    const match = /^([0-9a-f]{16})\./i.exec(value);
    if (match) return match[1]!.toLowerCase();
  }
  return undefined;
}

/** matomo.js keeps `mtm_consent` while consent is given and sets `mtm_consent_removed` when it is withdrawn. */
export function consentFromMatomoCookies(cookies: Map<string, string>): boolean {
  return cookies.has('mtm_consent') && !cookies.has('mtm_consent_removed');
}

/** The consent decision, the same at checkout and on the confirmation page. */
export async function decideConsent(
  req: Request,
  consent: ResolvedConfig['consent'],
  cookies: Map<string, string> = parseCookies(req.headers),
): Promise<boolean> {
  if (consent === 'not-required') return true;
  if (consent === 'matomo-cookies') return consentFromMatomoCookies(cookies);
  try {
    return (await consent(req)) === true;
  } catch {
    return false; // when in doubt, no personal data
  }
}

/**
 * The client address Express computed: with `trust proxy` set, the address the proxy
 * reports in `X-Forwarded-For`; without it, the socket's peer (the proxy itself, which
 * is why the shop must configure `trust proxy` behind a load balancer).
 */
export function clientIp(req: Request): string | undefined {
  const ip = req.ip;
  if (typeof ip !== 'string') return undefined;
  // Node reports IPv4 peers of a dual-stack socket as `::ffff:a.b.c.d`; Matomo should see the IPv4 address.
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(ip);
  const address = mapped ? mapped[1]! : ip;
  return isIP(address) ? address : undefined;
}

/** An absolute URL cut to `max` characters, or undefined. */
function absoluteUrl(value: unknown, max: number): string | undefined {
  const url = bounded(value, max);
  return url !== undefined && URL.canParse(url) ? url : undefined;
}

/**
 * The URL without query string, fragment and credentials. Query strings carry e-mail
 * addresses, names and tokens often enough (`?email=…`, password-reset links, search
 * terms) that a visitor who refused consent must not have them sent; the path alone still
 * tells Matomo which page and which referring site it was.
 */
export function withoutQuery(url: string | undefined): string | undefined {
  if (url === undefined || !URL.canParse(url)) return undefined;
  const parsed = new URL(url);
  parsed.search = '';
  parsed.hash = '';
  parsed.username = '';
  parsed.password = '';
  return parsed.href;
}

/**
 * What may be kept and sent about a visitor who did not consent: no user agent, language,
 * IP or User ID, and URLs without their query strings. Campaign name and keyword stay:
 * they name a campaign, not a person. The visitor id stays too: matomo.js sets `_pk_id`
 * only when it may set cookies (it deletes them when consent is withdrawn), and it sends
 * the same id with every page view, so the order only joins the visit matomo.js itself
 * recorded. Applied when capturing (nothing more is stored) and again when building the request.
 */
export function withoutPersonalData(visitor: VisitorContext): VisitorContext {
  // The `_pk_id` visitor id is a cookie identifier, personal data too: without consent the
  // order gets a fresh random `cid` and is not linked to the visitor's browsing.
  const { userAgent: _ua, language: _lang, ip: _ip, userId: _uid, visitorId: _vid, url, referrer, attribution, ...rest } = visitor;
  const minimised: VisitorContext = { ...rest };
  const strippedUrl = withoutQuery(url);
  if (strippedUrl) minimised.url = strippedUrl;
  const strippedReferrer = withoutQuery(referrer);
  if (strippedReferrer) minimised.referrer = strippedReferrer;
  if (attribution) {
    const referrerUrl = withoutQuery(attribution.referrerUrl) ?? '';
    if (attribution.campaignName || referrerUrl) minimised.attribution = { ...attribution, referrerUrl };
  }
  return minimised;
}

export type VisitorCaptureConfig = Pick<ResolvedConfig, 'consent' | 'now' | 'useUserId' | 'userId'> & {
  matomo: Pick<ResolvedConfig['matomo'], 'siteId' | 'tokenAuth'>;
};

/**
 * Reads what the checkout request tells about the buyer. Everything comes from the
 * browser, so everything is validated and bounded; what would not be sent (no consent,
 * no token for the IP, `useUserId` off) is not stored either.
 */
export async function captureVisitor(req: Request, config: VisitorCaptureConfig): Promise<VisitorContext> {
  const cookies = parseCookies(req.headers);
  const { siteId, tokenAuth } = config.matomo;
  const now = config.now();
  const consent = await decideConsent(req, config.consent, cookies);
  const host = req.get('host');
  const visitor: VisitorContext = {
    visitorId: visitorIdFromCookies(cookies, siteId),
    attribution: attributionFromCookies(cookies, siteId, now),
    userAgent: bounded(req.get('user-agent'), LIMITS.userAgent),
    language: bounded(req.get('accept-language'), LIMITS.language),
    ip: tokenAuth ? clientIp(req) : undefined,
    url: host ? absoluteUrl(`${req.protocol}://${host}${req.originalUrl}`, LIMITS.url) : undefined,
    referrer: absoluteUrl(req.get('referer'), LIMITS.url),
    userId: config.useUserId && consent ? await userIdFromRequest(req, config.userId) : undefined,
    consent,
    capturedAt: now,
  };
  return consent ? visitor : withoutPersonalData(visitor);
}

/** Kept per order in the shared store, so the instance that receives the callback finds it. */
export async function saveVisitor(store: ClaimStore, orderId: string, visitor: VisitorContext, ttlMs: number): Promise<void> {
  await store.set(keys.visitor(orderId), JSON.stringify(visitor), ttlMs);
}

export async function loadVisitor(store: ClaimStore, orderId: string): Promise<VisitorContext | null> {
  const json = await store.get(keys.visitor(orderId));
  if (!json) return null;
  try {
    return JSON.parse(json) as VisitorContext;
  } catch {
    return null;
  }
}
