import type { Request } from 'express';
import { z } from 'zod';
import { ConfigError, type ConfigIssue } from './errors';
import { consoleLogger, type Logger } from './logger';
import type { Order, OrderRepository } from './orders';
import type { GatewayAdapter } from './payments/gateway';
import type { UserIdResolver } from './user-id';

/** Where the Matomo server is. */
export interface MatomoOptions {
  /**
   * Host name of the Matomo server, optionally with a port, **without protocol or path**:
   * `'analytics.myshop.it'` or `'127.0.0.1:8080'`. Required.
   */
  domain: string;
  /** The site's id in Matomo (Administration › Websites › Manage). A positive integer, or its digits as a string. Required. */
  siteId: number | string;
  /**
   * A Matomo `token_auth` with write access to the site. Enables sending the buyer's IP
   * and order times older than 24 hours. Sent only in POST bodies, never in a URL or a log.
   * Default: none.
   */
  tokenAuth?: string;
  /** `'http'` only for a local Matomo. Default: `'https'`. */
  protocol?: 'https' | 'http';
  /** Path of the tracking endpoint. Default: `'/matomo.php'`. */
  path?: string;
  /** How long one request to Matomo may take, connect to last byte. Default: `10000` (ms). */
  timeoutMs?: number;
}

/** Where our two routes live. Both are absolute paths inside the app the middleware is mounted on. */
export interface PathOptions {
  /** Server-to-server callbacks; must contain `:gateway`. Default: `'/store/payment/notify/:gateway'`. */
  callback?: string;
  /** The order-confirmation page; the order id comes from `?id=`. Default: `'/store/cart/checkout/success'`. */
  confirmation?: string;
}

/** The signed, httpOnly cookie that binds the buyer's browser to the orders it checked out. */
export interface CheckoutCookieOptions {
  /**
   * HMAC secret(s). The first signs, all verify (rotation). Default: a random secret
   * generated once and shared through the store, with a `WRN_MST_GENERATED_CHECKOUT_SECRET` warning.
   */
  secret?: string | string[];
  /** Cookie name. Default: `'mst_checkout'`. */
  name?: string;
  /** `'auto'` sets `Secure` when the request came over HTTPS (respecting `trust proxy`). Default: `'auto'`. */
  secure?: boolean | 'auto';
  /** How long a browser stays bound to its orders. Default: `30` (days). */
  maxAgeDays?: number;
}

/** Tuning of the server-side sending (the durable outbox, DESIGN §5). */
export interface DeliveryOptions {
  /** Delay before the first retry, doubled (with jitter) for each next one. Default: `1000` (ms). */
  backoffMs?: number;
  /** Upper bound of one backoff delay. Default: `600000` (ms, 10 minutes). */
  maxBackoffMs?: number;
  /** An order still not accepted this long after its payment goes to the dead letters. Default: `604800000` (ms, 7 days). */
  giveUpAfterMs?: number;
  /** How often each instance looks for due orders (retries, or orders a crashed instance left). Default: `1000` (ms). */
  pollIntervalMs?: number;
  /** How long an order being sent stays hidden from other instances; must exceed `matomo.timeoutMs`. Default: `60000` (ms). */
  leaseMs?: number;
  /** Orders per bulk request, 1–100. Default: `100`. */
  batchSize?: number;
}

/** Decides whether the visitor consented to analytics with personal data. */
export type ConsentDecider = (req: Request) => boolean | Promise<boolean>;

/** The options of `matomoServerTracking()`. */
export interface MatomoServerTrackingOptions {
  /** The Matomo server. Required. */
  matomo: MatomoOptions;
  /** How we read orders and record payments. Required. */
  orders: OrderRepository;
  /** Send orders to Matomo from the server. `false`: the confirmation page is the only channel. Default: `true`. */
  serverTracking?: boolean;
  /**
   * Send a User ID (`uid`, and `setUserId` on the confirmation page): the `userId` option's answer,
   * else the order's `userId` — only when the visitor consented (it is personal data). Default: `false`.
   */
  useUserId?: boolean;
  /**
   * The shop's own id of the visitor (e.g. the logged-in customer's id), used as User ID instead of
   * `order.userId`. Called at checkout and again on the confirmation page, so that the server and
   * matomo.js send the same id: return the same value for the same customer. Used only with
   * `useUserId` and consent; an id longer than 200 characters, an empty one or a throw mean "none".
   * Default: none (`order.userId` is used).
   */
  userId?: UserIdResolver;
  /**
   * A Keyv instance shared by every instance of the shop. `@keyv/redis` gives atomic claims
   * across processes; the default is a per-process in-memory store. Default: in-memory.
   */
  store?: unknown;
  /** Payment gateway adapters by the name used in the callback URL. Default: `{}`. */
  gateways?: Record<string, GatewayAdapter>;
  /** Our routes. Default: see `PathOptions`. */
  paths?: PathOptions;
  /** Where warnings and errors go when nobody listens to `events`. Default: `console`. */
  logger?: Logger;
  /**
   * How consent is decided at checkout: `'matomo-cookies'` (the `mtm_consent` cookie is set and
   * `mtm_consent_removed` is not), `'not-required'` (the shop does not ask), or a function.
   * Default: `'matomo-cookies'`.
   */
  consent?: 'matomo-cookies' | 'not-required' | ConsentDecider;
  /**
   * Extra ownership check for the confirmation page, e.g. the logged-in customer owns the order.
   * The page tracks when the checkout cookie matches **or** this returns true. Default: none.
   */
  isOwner?: (req: Request, order: Order) => boolean | Promise<boolean>;
  /** The checkout cookie. Default: see `CheckoutCookieOptions`. */
  checkoutCookie?: CheckoutCookieOptions;
  /** How long claims, payment states and visitor data are kept. Default: `90` (days). */
  retentionDays?: number;
  /** A store operation slower than this counts as failed (503 on callbacks, fail open on the page). Default: `2000` (ms). */
  storeTimeoutMs?: number;
  /** How long a notification waits for another one about the same order to finish before answering 503. Default: `5000` (ms). */
  lockWaitMs?: number;
  /**
   * How long one notification may hold its order while the shop's `markPaid` runs; the lock of
   * an instance that died frees itself after this. Keep it above your slowest `markPaid`. Default: `60000` (ms).
   */
  lockTtlMs?: number;
  /** Tuning of the server-side sending. */
  delivery?: DeliveryOptions;
  /** Clock in ms since epoch, for tests. Default: `Date.now`. */
  now?: () => number;
}

export interface ResolvedConfig {
  matomo: Required<Omit<MatomoOptions, 'tokenAuth' | 'siteId'>> & { siteId: number; tokenAuth: string | null; endpoint: URL };
  orders: OrderRepository;
  serverTracking: boolean;
  useUserId: boolean;
  userId: UserIdResolver | null;
  store: unknown;
  gateways: ReadonlyMap<string, GatewayAdapter>;
  paths: Required<PathOptions>;
  logger: Logger;
  consent: 'matomo-cookies' | 'not-required' | ConsentDecider;
  isOwner: ((req: Request, order: Order) => boolean | Promise<boolean>) | null;
  checkoutCookie: { secrets: string[] | null; name: string; secure: boolean | 'auto'; maxAgeMs: number };
  retentionMs: number;
  storeTimeoutMs: number;
  lockWaitMs: number;
  lockTtlMs: number;
  delivery: Required<DeliveryOptions>;
  now: () => number;
}

const DAY_MS = 24 * 60 * 60 * 1000;

// --- field validators: each message says what is wrong *and* what to write instead ---

const HOST_LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/i;

function domainProblem(value: unknown): string | null {
  if (value === undefined || value === null || value === '') {
    return "is required: the host name of your Matomo server, without protocol, e.g. 'analytics.myshop.it'.";
  }
  if (typeof value !== 'string') return `must be a string like 'analytics.myshop.it', got ${describe(value)}.`;
  const text = value.trim();
  const protocol = /^([a-z][a-z0-9+.-]*):\/\//i.exec(text);
  if (protocol) {
    const rest = text.slice(protocol[0].length).replace(/\/.*$/, '');
    return `remove the protocol: write '${rest}' instead of '${text}' (set matomo.protocol: '${
      protocol[1]!.toLowerCase() === 'http' ? 'http' : 'https'
    }' if you need to choose it).`;
  }
  if (/[/?#]/.test(text)) {
    const host = text.replace(/[/?#].*$/, '');
    return `remove the path: write '${host}' as domain and put the path in matomo.path (default '/matomo.php').`;
  }
  if (/\s/.test(text) || /@/.test(text)) return `'${text}' is not a host name: write only the host, e.g. 'analytics.myshop.it'.`;
  const match = /^(\[[0-9a-f:.]+\]|[^:]+)(?::(\d+))?$/i.exec(text);
  if (!match) return `'${text}' is not 'host' or 'host:port': write e.g. 'analytics.myshop.it' or '127.0.0.1:8080'.`;
  const [, host = '', port] = match;
  if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) {
    return `port ${port} is out of range: use 1–65535, e.g. '${host}:8080'.`;
  }
  if (!host.startsWith('[') && !host.split('.').every((label) => HOST_LABEL.test(label))) {
    return `'${host}' is not a valid host name: use letters, digits, dots and hyphens only, e.g. 'analytics.myshop.it'.`;
  }
  return null;
}

function siteIdProblem(value: unknown): string | null {
  const hint = 'the "Id Sito"/Site ID shown in Matomo under Administration › Websites › Manage';
  if (value === undefined || value === null || value === '') return `is required: ${hint}, e.g. siteId: 3.`;
  if (typeof value === 'number') {
    return Number.isSafeInteger(value) && value > 0 ? null : `must be a positive integer (${hint}), got ${value}.`;
  }
  if (typeof value === 'string') {
    return /^[1-9]\d{0,15}$/.test(value.trim())
      ? null
      : `must be a positive integer (${hint}), got '${value}'.`;
  }
  return `must be a positive integer (${hint}), got ${describe(value)}.`;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'string' ? `'${value}'` : typeof value;
}

/** A field whose validity `problem` decides, with our own message. */
function checked<T>(problem: (value: unknown) => string | null, convert: (value: unknown) => T) {
  return z.unknown().transform((value, ctx) => {
    const message = problem(value);
    if (message) {
      ctx.addIssue({ code: 'custom', message });
      return z.NEVER;
    }
    return convert(value);
  });
}

const positiveInt = (what: string, example: number) =>
  z.number({ error: `must be a positive whole number of ${what}, e.g. ${example}.` }).int({
    error: `must be a whole number of ${what}, e.g. ${example}.`,
  }).positive({ error: `must be a positive number of ${what}, e.g. ${example}.` });

const fn = <T>(message: string) => z.custom<T>((value) => typeof value === 'function', { error: message });

const absolutePath = (example: string) =>
  z.string({ error: `must be a path string like '${example}'.` }).regex(/^\/[^\s?#]*$/, {
    error: `must be an absolute path without query, like '${example}'.`,
  });

const REPOSITORY_METHODS = ['getOrder', 'markPaid', 'markPaymentUnconfirmed'] as const;

function ordersProblem(value: unknown): string | null {
  const example = '{ getOrder(id), markPaid(id, payment), markPaymentUnconfirmed(id, payment) }';
  if (typeof value !== 'object' || value === null) return `is required: pass your OrderRepository, an object with ${example}.`;
  const missing = REPOSITORY_METHODS.filter((name) => typeof (value as Record<string, unknown>)[name] !== 'function');
  return missing.length ? `is missing ${missing.map((m) => `${m}()`).join(', ')}: an OrderRepository has ${example}.` : null;
}

function gatewaysProblem(value: unknown): string | null {
  if (value === undefined) return null;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return "must be an object of adapters by name, e.g. { acme: hmacGateway({ secret }) }.";
  }
  for (const [name, adapter] of Object.entries(value)) {
    if (!/^[a-z0-9][a-z0-9_-]{0,63}$/i.test(name)) {
      return `gateway name '${name}' cannot appear in a URL: use letters, digits, '-' and '_' only.`;
    }
    if (typeof (adapter as { verifyAndParse?: unknown })?.verifyAndParse !== 'function') {
      return `gateways.${name} is not a gateway adapter (no verifyAndParse()): use e.g. hmacGateway({ secret }).`;
    }
  }
  return null;
}

function storeProblem(value: unknown): string | null {
  if (value === undefined) return null;
  if (typeof value !== 'object' || value === null || !('store' in value)) {
    return 'must be a Keyv instance, e.g. new Keyv({ store: new KeyvRedis(url) }), or left out for the in-memory store.';
  }
  return null;
}

function secretsProblem(value: unknown): string | null {
  if (value === undefined) return null;
  const list = Array.isArray(value) ? value : [value];
  if (list.length === 0 || !list.every((s) => typeof s === 'string' && s.length >= 16)) {
    return 'must be a string of at least 16 characters (or a list of them, newest first), e.g. process.env.MST_CHECKOUT_SECRET.';
  }
  return null;
}

const schema = z.strictObject({
  matomo: z.strictObject(
    {
      domain: checked(domainProblem, (value) => String(value).trim().toLowerCase()),
      siteId: checked(siteIdProblem, (value) => Number(value)),
      tokenAuth: z
        .string({ error: 'must be a string (the token_auth from Matomo › Personal › Security).' })
        .min(1, { error: 'is empty: leave it out, or pass a token_auth from Matomo › Personal › Security.' })
        .optional(),
      protocol: z.enum(['https', 'http'], { error: "must be 'https' or 'http'." }).default('https'),
      path: absolutePath('/matomo.php').default('/matomo.php'),
      timeoutMs: positiveInt('milliseconds', 10000).default(10_000),
    },
    {
      error: (issue) =>
        issue.input === undefined
          ? "is required: matomo: { domain: 'analytics.myshop.it', siteId: 3 }."
          : "must be an object: matomo: { domain: 'analytics.myshop.it', siteId: 3 }.",
    },
  ),
  orders: checked(ordersProblem, (value) => value as OrderRepository),
  serverTracking: z.boolean({ error: 'must be true or false.' }).default(true),
  useUserId: z.boolean({ error: 'must be true or false.' }).default(false),
  userId: fn<UserIdResolver>('must be a function (req) => string | undefined, e.g. (req) => req.session?.customerId.').optional(),
  store: checked(storeProblem, (value) => value).optional(),
  gateways: checked(gatewaysProblem, (value) => value as Record<string, GatewayAdapter>).optional(),
  paths: z
    .strictObject({
      callback: absolutePath('/store/payment/notify/:gateway')
        .refine((path) => path.includes(':gateway'), { error: "must contain ':gateway', e.g. '/store/payment/notify/:gateway'." })
        .default('/store/payment/notify/:gateway'),
      confirmation: absolutePath('/store/cart/checkout/success').default('/store/cart/checkout/success'),
    })
    .default({ callback: '/store/payment/notify/:gateway', confirmation: '/store/cart/checkout/success' }),
  logger: z
    .custom<Logger>(
      (value) =>
        typeof value === 'object' && value !== null &&
        typeof (value as Logger).warn === 'function' && typeof (value as Logger).error === 'function',
      { error: 'must have warn() and error() methods (pino, winston and console do).' },
    )
    .default(consoleLogger),
  consent: z
    .union([z.enum(['matomo-cookies', 'not-required']), fn<ConsentDecider>('')], {
      error: "must be 'matomo-cookies', 'not-required' or a function (req) => boolean.",
    })
    .default('matomo-cookies'),
  isOwner: fn<NonNullable<MatomoServerTrackingOptions['isOwner']>>('must be a function (req, order) => boolean.').optional(),
  checkoutCookie: z
    .strictObject({
      secret: checked(secretsProblem, (value) => (Array.isArray(value) ? value : [value]) as string[]).optional(),
      name: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, { error: "must be a cookie name of letters, digits, '_' and '-'." }).default('mst_checkout'),
      secure: z.union([z.boolean(), z.literal('auto')], { error: "must be true, false or 'auto'." }).default('auto'),
      maxAgeDays: positiveInt('days', 30).default(30),
    })
    .default({ name: 'mst_checkout', secure: 'auto', maxAgeDays: 30 }),
  retentionDays: positiveInt('days', 90).default(90),
  storeTimeoutMs: positiveInt('milliseconds', 2000).default(2000),
  lockWaitMs: z.number({ error: 'must be a number of milliseconds, e.g. 5000.' }).int().nonnegative().default(5000),
  lockTtlMs: positiveInt('milliseconds', 60000).default(60_000),
  delivery: z
    .strictObject({
      backoffMs: positiveInt('milliseconds', 1000).default(1000),
      maxBackoffMs: positiveInt('milliseconds', 600000).default(600_000),
      giveUpAfterMs: positiveInt('milliseconds', 604800000).default(7 * DAY_MS),
      pollIntervalMs: positiveInt('milliseconds', 1000).default(1000),
      leaseMs: positiveInt('milliseconds', 60000).default(60_000),
      batchSize: positiveInt('requests', 100).max(100, { error: 'must be at most 100 (requests per bulk request).' }).default(100),
    })
    .default({ backoffMs: 1000, maxBackoffMs: 600_000, giveUpAfterMs: 7 * DAY_MS, pollIntervalMs: 1000, leaseMs: 60_000, batchSize: 100 }),
  now: fn<() => number>('must be a function returning ms since epoch, like Date.now.').default(() => Date.now),
});

/** Known option names at each nested path, for "did you mean" hints. */
function knownKeys(path: readonly PropertyKey[]): string[] {
  let shape: unknown = schema;
  for (const key of path) {
    shape = unwrap(shape);
    shape = (shape as { shape?: Record<string, unknown> }).shape?.[String(key)];
  }
  const object = unwrap(shape) as { shape?: Record<string, unknown> };
  return object?.shape ? Object.keys(object.shape) : [];
}

function unwrap(type: unknown): unknown {
  let current = type as { def?: { innerType?: unknown } } | undefined;
  while (current?.def?.innerType) current = current.def.innerType as typeof current;
  return current;
}

/** Levenshtein distance, for suggestions only. */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, diagonal + (a[i - 1]!.toLowerCase() === b[j - 1]!.toLowerCase() ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length]!;
}

export function suggest(unknown: string, candidates: readonly string[]): string | null {
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const d = distance(unknown, candidate);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best !== null && bestDistance <= Math.max(2, Math.floor(unknown.length / 3)) ? best : null;
}

function toIssues(error: z.ZodError): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  for (const issue of error.issues) {
    const path = issue.path.map(String).join('.');
    if (issue.code === 'unrecognized_keys') {
      const candidates = knownKeys(issue.path);
      for (const key of issue.keys) {
        const hint = suggest(key, candidates);
        issues.push({
          path: path ? `${path}.${key}` : key,
          message: `unknown option.${hint ? ` Did you mean \`${hint}\`?` : ''} Known options here: ${candidates.join(', ')}.`,
        });
      }
    } else {
      issues.push({ path, message: issue.message });
    }
  }
  return issues;
}

/**
 * Validates the options and fills in every default. Throws a `ConfigError` listing
 * every problem with its fix. Defaults live here and nowhere else.
 */
export function resolveConfig(options: unknown): ResolvedConfig {
  if (typeof options !== 'object' || options === null) {
    throw new ConfigError([
      { path: '', message: "pass an options object: matomoServerTracking({ matomo: { domain, siteId }, orders })." },
    ]);
  }
  const result = schema.safeParse(options);
  if (!result.success) throw new ConfigError(toIssues(result.error));
  const o = result.data;
  if (o.delivery.leaseMs <= o.matomo.timeoutMs) {
    throw new ConfigError([
      {
        path: 'delivery.leaseMs',
        message: `must be longer than matomo.timeoutMs (${o.matomo.timeoutMs} ms), or another instance may send an order that is still in flight: e.g. ${o.matomo.timeoutMs * 3}.`,
      },
    ]);
  }
  const endpoint = new URL(`${o.matomo.protocol}://${o.matomo.domain}${o.matomo.path}`);
  return {
    matomo: { ...o.matomo, tokenAuth: o.matomo.tokenAuth ?? null, endpoint },
    orders: o.orders,
    serverTracking: o.serverTracking,
    useUserId: o.useUserId,
    userId: o.userId ?? null,
    store: o.store,
    gateways: new Map(Object.entries(o.gateways ?? {})),
    paths: o.paths,
    logger: o.logger,
    consent: o.consent,
    isOwner: o.isOwner ?? null,
    checkoutCookie: {
      secrets: o.checkoutCookie.secret ?? null,
      name: o.checkoutCookie.name,
      secure: o.checkoutCookie.secure,
      maxAgeMs: o.checkoutCookie.maxAgeDays * DAY_MS,
    },
    retentionMs: o.retentionDays * DAY_MS,
    storeTimeoutMs: o.storeTimeoutMs,
    lockWaitMs: o.lockWaitMs,
    lockTtlMs: o.lockTtlMs,
    delivery: o.delivery,
    now: o.now,
  };
}
