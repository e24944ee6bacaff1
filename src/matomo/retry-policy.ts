import type { MatomoResponse } from './client';

export type Attempt =
  | { kind: 'sent' }
  | { kind: 'retry'; reason: string; retryAfterMs?: number; status?: number }
  | { kind: 'rejected'; reason: string };

/**
 * The retry table (as in @segment/analytics-node's publisher), by Matomo's answer:
 * | answer                                   | what we do                          |
 * |------------------------------------------|-------------------------------------|
 * | 2xx                                      | done, remove from the outbox        |
 * | network error, timeout                   | retry with backoff                  |
 * | 408, 429, 5xx except 501 and 505         | retry, at least `Retry-After` later |
 * | 3xx                                      | rejected: wrong protocol/domain     |
 * | other 4xx, 501, 505                      | rejected: retrying cannot help      |
 */
export function classify(response: MatomoResponse): Attempt {
  const { status } = response;
  if (status >= 200 && status < 300) return { kind: 'sent' };
  if (status === 408 || status === 429 || (status >= 500 && status !== 501 && status !== 505)) {
    return { kind: 'retry', reason: `Matomo answered ${status}`, retryAfterMs: response.retryAfterMs, status };
  }
  if (status >= 300 && status < 400) {
    return {
      kind: 'rejected',
      reason: `Matomo answered a redirect (${status}${response.location ? ` to ${response.location}` : ''}): check matomo.protocol, matomo.domain and matomo.path`,
    };
  }
  const detail = response.body.replace(/\s+/g, ' ').trim().slice(0, 300);
  return { kind: 'rejected', reason: `Matomo rejected the order with ${status}${detail ? `: ${detail}` : ''}` };
}

/** Exponential backoff with "equal jitter": half fixed, half random, capped. */
export function backoffDelay(attempt: number, baseMs: number, maxMs: number, random: () => number = Math.random): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}

/** What Matomo said about each request of a bulk POST. */
export type BulkFates =
  /** Each request's fate is known: `invalid` holds the indices Matomo refused. */
  | { kind: 'known'; invalid: Set<number> }
  /** Matomo refused some without saying which (older versions): send them one by one to find out. */
  | { kind: 'unknown' };

/**
 * Reads a 200 answer to a bulk request: `{"status":"success","tracked":N,"invalid":M,"invalid_indices":[…]}`.
 * `invalid_indices` exists only in newer Matomo versions.
 */
export function bulkFates(body: string, count: number): BulkFates {
  let answer: { status?: unknown; tracked?: unknown; invalid?: unknown; invalid_indices?: unknown };
  try {
    answer = JSON.parse(body) as typeof answer;
  } catch {
    return { kind: 'unknown' };
  }
  if (answer.status !== 'success') return { kind: 'unknown' };
  if (Array.isArray(answer.invalid_indices)) {
    const invalid = new Set(answer.invalid_indices.filter((i): i is number => Number.isInteger(i) && i >= 0 && i < count));
    return { kind: 'known', invalid };
  }
  if (answer.invalid === 0 || answer.tracked === count) return { kind: 'known', invalid: new Set() };
  return { kind: 'unknown' };
}
