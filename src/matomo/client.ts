import { Pool } from 'undici';

/** What Matomo answered to one POST. */
export interface MatomoResponse {
  status: number;
  body: string;
  /** `Retry-After` in ms, when Matomo (or a proxy in front of it) sent one. */
  retryAfterMs?: number;
  /** `Location`, for a redirect: usually a wrong `protocol` or `domain`. */
  location?: string;
}

/** How requests reach Matomo; injectable so tests can script answers. */
export interface MatomoTransport {
  /** POSTs a form-encoded (or JSON bulk) body. Rejects on network errors and timeouts. */
  post(body: string, options: { contentType: string; signal?: AbortSignal }): Promise<MatomoResponse>;
  close(): Promise<void>;
}

const USER_AGENT = 'matomo-server-tracking';

/** `Retry-After` is seconds or an HTTP date. */
export function parseRetryAfter(value: string | string[] | undefined, now: number): number | undefined {
  const text = Array.isArray(value) ? value[0] : value;
  if (!text) return undefined;
  if (/^\d+$/.test(text.trim())) return Number(text.trim()) * 1000;
  const date = Date.parse(text);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/**
 * undici keep-alive pool to the Matomo host. Every request has one overall
 * deadline (`timeoutMs`, connect to last byte) besides undici's own timeouts.
 */
export function createUndiciTransport(endpoint: URL, timeoutMs: number): MatomoTransport {
  const pool = new Pool(endpoint.origin, {
    connections: 16,
    keepAliveTimeout: 30_000,
    connect: { timeout: timeoutMs },
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
  });
  const path = `${endpoint.pathname}${endpoint.search}`;

  return {
    async post(body, { contentType, signal }) {
      const deadline = AbortSignal.timeout(timeoutMs);
      const response = await pool.request({
        method: 'POST',
        path,
        headers: { 'content-type': contentType, 'user-agent': USER_AGENT },
        body,
        signal: signal ? AbortSignal.any([signal, deadline]) : deadline,
      });
      const text = await response.body.text();
      const location = response.headers.location;
      return {
        status: response.statusCode,
        body: text.slice(0, 2000),
        retryAfterMs: parseRetryAfter(response.headers['retry-after'], Date.now()),
        location: Array.isArray(location) ? location[0] : location,
      };
    },
    async close() {
      await pool.close();
    },
  };
}
