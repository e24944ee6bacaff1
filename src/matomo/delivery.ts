import type { ClaimStore, OutboxItem } from '../claims';
import { MatomoTrackingError } from '../errors';
import type { Emit } from '../events';
import { Warnings } from '../logger';
import type { MatomoTransport, MatomoResponse } from './client';
import { finalizeQuery } from './request';

const FORM = 'application/x-www-form-urlencoded';
/** Matomo accepts a `cdt` older than 24 h only with a token; keep an hour of margin for clock skew. */
const CDT_WITHOUT_TOKEN_MS = 23 * 60 * 60 * 1000;
/** After the deadline and the abort, how long close() still waits for sends to wind down. */
const CLOSE_GRACE_MS = 500;

export interface DeliveryConfig {
  attempts: number;
  backoffMs: number;
  maxBackoffMs: number;
  tokenAuth: string | null;
  now: () => number;
}

type Attempt =
  | { kind: 'sent' }
  | { kind: 'retry'; reason: string; retryAfterMs?: number }
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
    return { kind: 'retry', reason: `Matomo answered ${status}`, retryAfterMs: response.retryAfterMs };
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

/**
 * Sends outbox items to Matomo in the background. The caller (the callback
 * router) never waits for Matomo; delivery never throws, it emits. An item
 * leaves the outbox only once Matomo accepted or definitively rejected it; after
 * `attempts` failed tries it stays there, due later, for the durable worker.
 */
export class Delivery {
  private readonly inFlight = new Set<Promise<void>>();
  private readonly stop = new AbortController();
  private readonly sleepers = new Set<() => void>();
  readonly counters = { sent: 0, retried: 0, rejected: 0, deferred: 0 };

  constructor(
    private readonly store: ClaimStore,
    private readonly transport: MatomoTransport,
    private readonly config: DeliveryConfig,
    private readonly emit: Emit,
    private readonly warn: (warning: (typeof Warnings)[keyof typeof Warnings]) => void,
  ) {}

  get inFlightCount(): number {
    return this.inFlight.size;
  }

  /** Starts sending `item`; returns at once. */
  send(item: OutboxItem): void {
    const run: Promise<void> = this.run(item)
      .catch((error: unknown) => this.fail('ERR_MST_DELIVERY', error, item.orderId))
      .finally(() => this.inFlight.delete(run));
    this.inFlight.add(run);
  }

  /**
   * Lets in-flight sends finish until `timeoutMs`, then aborts them; aborted items
   * stay in the outbox. Resolves when nothing runs any more.
   */
  async close(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
    });
    await Promise.race([Promise.allSettled([...this.inFlight]), deadline]);
    clearTimeout(timer);
    this.stop.abort();
    for (const wake of this.sleepers) wake();
    // undici settles an aborted request at once; an injected transport might not, and close() must still return.
    let grace: NodeJS.Timeout | undefined;
    await Promise.race([
      Promise.allSettled([...this.inFlight]),
      new Promise<void>((resolve) => {
        grace = setTimeout(resolve, CLOSE_GRACE_MS);
      }),
    ]);
    clearTimeout(grace);
  }

  private async run(item: OutboxItem): Promise<void> {
    let current = item;
    for (;;) {
      const result = await this.attempt(current);
      if (result.kind === 'sent') {
        this.counters.sent++;
        await this.store.outbox.complete(current.id);
        this.emit('order:tracked', { orderId: current.orderId, channel: 'server' });
        return;
      }
      if (result.kind === 'rejected') {
        this.counters.rejected++;
        await this.store.outbox.complete(current.id);
        this.fail('ERR_MST_DELIVERY', new Error(`order ${current.orderId} not recorded in Matomo, not retried: ${result.reason}`), current.orderId);
        return;
      }
      const attempts = current.attempts + 1;
      const delay = Math.max(backoffDelay(attempts, this.config.backoffMs, this.config.maxBackoffMs), result.retryAfterMs ?? 0);
      current = { ...current, attempts, nextAttemptAt: this.config.now() + delay };
      if (attempts >= this.config.attempts || this.stop.signal.aborted) {
        this.counters.deferred++;
        await this.store.outbox.reschedule(current);
        this.fail(
          'ERR_MST_DELIVERY',
          new Error(`order ${current.orderId} not yet recorded after ${attempts} tries (${result.reason}); it stays in the outbox`),
          current.orderId,
        );
        return;
      }
      this.counters.retried++;
      await this.sleep(delay);
    }
  }

  private async attempt(item: OutboxItem): Promise<Attempt> {
    if (this.stop.signal.aborted) return { kind: 'retry', reason: 'shutting down' };
    const age = this.config.now() - item.enqueuedAt;
    let cdtSeconds: number | null = Math.floor(item.enqueuedAt / 1000);
    if (!this.config.tokenAuth && age > CDT_WITHOUT_TOKEN_MS) {
      cdtSeconds = null;
      this.warn(Warnings.CDT_DROPPED);
    }
    const body = finalizeQuery(item.query, { cdtSeconds, tokenAuth: this.config.tokenAuth });
    try {
      const response = await this.transport.post(body, { contentType: FORM, signal: this.stop.signal });
      // A proxy or debug page may echo the request: the token must not reach our errors and logs.
      return classify({ ...response, body: this.redact(response.body) });
    } catch (error) {
      return { kind: 'retry', reason: `cannot reach Matomo: ${this.redact(error instanceof Error ? error.message : String(error))}` };
    }
  }

  private redact(text: string): string {
    const token = this.config.tokenAuth;
    return token ? text.split(token).join('[token_auth]').split(encodeURIComponent(token)).join('[token_auth]') : text;
  }

  private sleep(ms: number): Promise<void> {
    if (this.stop.signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.sleepers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.sleepers.add(wake);
    });
  }

  private fail(code: 'ERR_MST_DELIVERY', error: unknown, orderId: string): void {
    const wrapped = error instanceof MatomoTrackingError ? error : new MatomoTrackingError(code, error instanceof Error ? error.message : String(error), { cause: error });
    this.emit('error', { code, error: wrapped, orderId });
  }
}
