import type { Request } from 'express';
import { keys, type ClaimStore } from './claims';
import type { ResolvedConfig } from './config';
import { parseCookies } from './cookies';

/**
 * What we know of the buyer's browser at checkout, stored per order so that the
 * server-side request lands in the buyer's own visit, whichever instance sends it.
 */
export interface VisitorContext {
  /** 16-hex Matomo visitor id from the `_pk_id.<siteId>.*` cookie. */
  visitorId?: string;
  userAgent?: string;
  language?: string;
  /** The checkout page's URL. */
  url?: string;
  /** Whether the visitor agreed to analytics with personal data (or the shop needs no consent). */
  consent: boolean;
  /** When captureCheckout ran (ms). */
  capturedAt: number;
}

const LIMITS = { userAgent: 500, language: 200, url: 1000 };

function bounded(value: unknown, max: number): string | undefined {
  return typeof value === 'string' && value.length > 0 ? value.slice(0, max) : undefined;
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

async function decideConsent(req: Request, cookies: Map<string, string>, consent: ResolvedConfig['consent']): Promise<boolean> {
  if (consent === 'not-required') return true;
  if (consent === 'matomo-cookies') return consentFromMatomoCookies(cookies);
  try {
    return (await consent(req)) === true;
  } catch {
    return false; // when in doubt, no personal data
  }
}

export async function captureVisitor(req: Request, config: Pick<ResolvedConfig, 'consent' | 'now'> & { siteId: number }): Promise<VisitorContext> {
  const cookies = parseCookies(req.headers);
  const host = req.get('host');
  return {
    visitorId: visitorIdFromCookies(cookies, config.siteId),
    userAgent: bounded(req.get('user-agent'), LIMITS.userAgent),
    language: bounded(req.get('accept-language'), LIMITS.language),
    url: host ? bounded(`${req.protocol}://${host}${req.originalUrl}`, LIMITS.url) : undefined,
    consent: await decideConsent(req, cookies, config.consent),
    capturedAt: config.now(),
  };
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
