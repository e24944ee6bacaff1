import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Request, Response } from 'express';
import { keys, type ClaimStore } from './claims';
import type { ResolvedConfig } from './config';
import { parseCookies } from './cookies';
import { Warnings, type Warn } from './logger';

/** Orders one browser stays bound to; older ones drop out (a buyer rarely has more in flight). */
const MAX_ORDERS_PER_COOKIE = 5;
const VERSION = 'v1';
const SECRET_TTL_MS = 10 * 365 * 24 * 60 * 60 * 1000;

/**
 * The signed, httpOnly checkout cookie: `v1.<base64url(JSON order ids)>.<base64url(HMAC-SHA256)>`.
 * It proves that this browser checked out these orders, so that nobody else can
 * open `/success?id=<someone's order>` and claim (and thereby suppress) its tracking.
 * Verification needs no store round-trip once the secret is known.
 */
export class CheckoutBinding {
  private secrets: Promise<string[]> | null = null;

  constructor(
    private readonly config: ResolvedConfig['checkoutCookie'],
    private readonly store: ClaimStore,
    private readonly warn: Warn,
  ) {
    if (config.secrets) this.secrets = Promise.resolve(config.secrets);
  }

  /** Adds `orderId` to the browser's cookie (keeping the newest few). */
  async bind(req: Request, res: Response, orderId: string): Promise<void> {
    const secrets = await this.getSecrets();
    const current = this.readOrderIds(req, secrets) ?? [];
    const orderIds = [...current.filter((id) => id !== orderId), orderId].slice(-MAX_ORDERS_PER_COOKIE);
    // Remember it on the request too: a second captureCheckout in the same response must see the first.
    (req as RequestWithBinding).mstCheckoutOrders = orderIds;
    const payload = Buffer.from(JSON.stringify(orderIds)).toString('base64url');
    this.dropPendingCookie(res); // one Set-Cookie per name (RFC 6265 §3): the new value lists every order
    res.cookie(this.config.name, `${VERSION}.${payload}.${sign(secrets[0]!, payload)}`, {
      httpOnly: true,
      sameSite: 'lax',
      secure: this.config.secure === 'auto' ? req.secure : this.config.secure,
      path: '/',
      maxAge: this.config.maxAgeMs,
    });
  }

  private dropPendingCookie(res: Response): void {
    const current = res.getHeader('set-cookie');
    if (current === undefined) return;
    const prefix = `${this.config.name}=`;
    const kept = (Array.isArray(current) ? current : [String(current)]).filter((cookie) => !cookie.startsWith(prefix));
    if (kept.length) res.setHeader('set-cookie', kept);
    else res.removeHeader('set-cookie');
  }

  /**
   * Loads a generated secret ahead of the first page view, so that a store outage later
   * does not leave this instance unable to recognise buyers. Failures are retried on use.
   */
  preload(): void {
    this.getSecrets().catch(() => {});
  }

  /** Did this browser check out `orderId`? */
  async owns(req: Request, orderId: string): Promise<boolean> {
    return (this.readOrderIds(req, await this.getSecrets()) ?? []).includes(orderId);
  }

  private readOrderIds(req: Request, secrets: string[]): string[] | null {
    const pending = (req as RequestWithBinding).mstCheckoutOrders;
    if (pending) return pending;
    const value = parseCookies(req.headers).get(this.config.name);
    if (!value) return null;
    const [version, payload, signature, ...rest] = value.split('.');
    if (version !== VERSION || !payload || !signature || rest.length) return null;
    if (!secrets.some((secret) => safeEqual(sign(secret, payload), signature))) return null;
    try {
      const ids: unknown = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
      return Array.isArray(ids) && ids.every((id) => typeof id === 'string') ? (ids as string[]) : null;
    } catch {
      return null;
    }
  }

  private getSecrets(): Promise<string[]> {
    // Without a configured secret, the first instance to start generates one and the
    // store hands the same one to every other instance (set-if-absent), so a cookie
    // set by one instance verifies on another.
    this.secrets ??= (async () => {
      await this.store.claim(keys.checkoutSecret(), randomBytes(32).toString('base64url'), SECRET_TTL_MS);
      const secret = await this.store.get(keys.checkoutSecret());
      if (!secret) throw new Error('the generated checkout secret vanished from the store');
      this.warn(Warnings.GENERATED_CHECKOUT_SECRET);
      return [secret];
    })().catch((error: unknown) => {
      this.secrets = null; // try again on the next request
      throw error;
    });
    return this.secrets;
  }
}

interface RequestWithBinding extends Request {
  mstCheckoutOrders?: string[];
}

function sign(secret: string, payload: string): string {
  return createHmac('sha256', secret).update(`${VERSION}.${payload}`).digest('base64url');
}

function safeEqual(a: string, b: string): boolean {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.length === right.length && timingSafeEqual(left, right);
}
