import type { ClaimStore, OutboxItem } from '../claims';
import { asTrackingError, MatomoTrackingError } from '../errors';
import type { Emit } from '../events';
import { Warnings, type Warn } from '../logger';
import type { MatomoResponse, MatomoTransport } from './client';
import { finalizeQuery } from './request';
import { backoffDelay, bulkFates, classify, type Attempt } from './retry-policy';

const FORM = 'application/x-www-form-urlencoded';
const JSON_TYPE = 'application/json';
/** Matomo accepts a `cdt` older than 24 h only with a token; keep an hour of margin for clock skew. */
const CDT_WITHOUT_TOKEN_MS = 23 * 60 * 60 * 1000;
/** After the deadline and the abort, how long close() still waits for a send to wind down. */
const CLOSE_GRACE_MS = 500;
/** Bulk answers that condemn the batch but not necessarily each order in it: 400 (some invalid), 413 (too large). */
const RESEND_ALONE = new Set([400, 413]);

export interface OutboxWorkerConfig {
  /** First retry delay; doubles with jitter per attempt. */
  backoffMs: number;
  maxBackoffMs: number;
  /** An item older than this goes to the dead letters instead of another try. */
  giveUpAfterMs: number;
  /** How often an idle worker looks for due items (other instances' or retries). */
  pollIntervalMs: number;
  /** How long a leased item stays hidden from other workers; longer than one request can take. */
  leaseMs: number;
  /** Items per bulk request, 1–100. */
  batchSize: number;
  tokenAuth: string | null;
  now: () => number;
}


/**
 * Delivers the durable outbox to Matomo. Every instance runs one; they share the
 * outbox through the store and lease items, so each item is in one worker's hands
 * at a time, and the item of a worker that died comes due again when its lease ends.
 * Several due items go out as one bulk request. Nothing here throws into the shop:
 * failures are retried, dead-lettered and reported through events.
 */
export class OutboxWorker {
  readonly counters = { sent: 0, retried: 0, dead: 0 };
  private readonly stop = new AbortController();
  private timer: NodeJS.Timeout | null = null;
  private cycle: Promise<void> | null = null;
  private again = false;
  private closing = false;
  private sending = 0;

  constructor(
    private readonly store: ClaimStore,
    private readonly transport: MatomoTransport,
    private readonly config: OutboxWorkerConfig,
    private readonly emit: Emit,
    private readonly warn: Warn,
  ) {}

  /** Items in this worker's hands right now. */
  get inFlight(): number {
    return this.sending;
  }

  /** Starts polling. Timers are unref()ed: the worker never keeps the process alive. */
  start(): void {
    this.schedule(0);
  }

  /** Something was enqueued: look now rather than at the next poll. */
  wake(): void {
    if (this.closing) return;
    if (this.cycle) {
      this.again = true;
      return;
    }
    // An idle worker always has its next poll pending: bring it forward.
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.schedule(0);
  }

  /**
   * Stops polling, keeps delivering what is due until `timeoutMs`, then aborts the
   * request in flight. What was not sent stays in the outbox, due at once, for the
   * next start of any instance.
   */
  async close(timeoutMs: number): Promise<void> {
    this.closing = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    let deadline: NodeJS.Timeout | undefined;
    const expired = new Promise<void>((resolve) => {
      deadline = setTimeout(resolve, timeoutMs);
    });
    await Promise.race([this.flush(), expired]);
    clearTimeout(deadline);
    this.stop.abort();
    let grace: NodeJS.Timeout | undefined;
    await Promise.race([
      this.cycle ?? Promise.resolve(),
      new Promise<void>((resolve) => {
        grace = setTimeout(resolve, CLOSE_GRACE_MS);
      }),
    ]);
    clearTimeout(grace);
  }

  private async flush(): Promise<void> {
    while (this.cycle) await this.cycle;
    if (!this.stop.signal.aborted) await this.run();
  }

  private schedule(delayMs: number): void {
    if (this.closing || this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.run();
    }, delayMs);
    this.timer.unref();
  }

  private run(): Promise<void> {
    if (this.cycle) {
      this.again = true;
      return this.cycle;
    }
    this.cycle = (async () => {
      try {
        do {
          this.again = false;
          while (!this.stop.signal.aborted && (await this.deliverDue()) > 0) {
            // keep going while items are due
          }
        } while (this.again && !this.stop.signal.aborted);
      } catch (error) {
        this.fail(asTrackingError(error, 'ERR_MST_STORE'));
      } finally {
        this.cycle = null;
        this.schedule(this.config.pollIntervalMs);
      }
    })();
    return this.cycle;
  }

  /** Leases one batch and delivers it; returns how many items it leased. */
  private async deliverDue(): Promise<number> {
    const now = this.config.now();
    const items = await this.store.outbox.lease(now, this.config.batchSize, this.config.leaseMs);
    if (items.length === 0) return 0;
    this.sending += items.length;
    try {
      const live: OutboxItem[] = [];
      for (const item of items) {
        // from the payment, or from the moment a person sent it back from the dead letters
        if (now - Math.max(item.enqueuedAt, item.revivedAt ?? 0) > this.config.giveUpAfterMs) {
          await this.dead(
            item,
            `not delivered within ${formatDuration(this.config.giveUpAfterMs)} of the payment (delivery.giveUpAfterMs)${item.attempts > 0 ? ` after ${item.attempts} failed tries` : ''}`,
          );
        } else {
          live.push(item);
        }
      }
      if (live.length === 1) await this.sendOne(live[0]!);
      else if (live.length > 1) await this.sendBulk(live);
    } finally {
      this.sending -= items.length;
    }
    return items.length;
  }

  private async sendOne(item: OutboxItem): Promise<void> {
    const started = this.config.now();
    const result = await this.post(this.formBody(item), FORM);
    await this.settle([item], result, started);
  }

  private async sendBulk(items: OutboxItem[]): Promise<void> {
    const started = this.config.now();
    const body = JSON.stringify({
      // each request string must start with '?': Matomo parses it as a URL query
      requests: items.map((item) => `?${this.query(item)}`),
      ...(this.config.tokenAuth && { token_auth: this.config.tokenAuth }),
    });
    const response = await this.postRaw(body, JSON_TYPE);
    if ('error' in response) return this.settle(items, response.error, started);
    const outcome = classify(response.value);
    if (outcome.kind === 'sent') {
      const fates = bulkFates(response.value.body, items.length);
      if (fates.kind === 'known') {
        const accepted = items.filter((_, index) => !fates.invalid.has(index));
        await this.settle(accepted, { kind: 'sent' }, started);
        for (const index of fates.invalid) {
          await this.dead(items[index]!, 'Matomo counted it invalid in a bulk request (usually an order id it already recorded)');
        }
        return;
      }
    } else if (outcome.kind !== 'rejected' || !RESEND_ALONE.has(response.value.status)) {
      return this.settle(items, outcome, started);
    }
    // Matomo refused the batch, or some of it without saying which: learn each item's fate alone.
    // One lease covered one request: renew it for the rest before each send, or another
    // instance would take them up and send them too.
    for (const [index, item] of items.entries()) {
      if (this.stop.signal.aborted) return this.release(items.slice(index));
      await this.store.outbox.renew(items.slice(index).map((i) => i.id), this.config.now(), this.config.leaseMs);
      await this.sendOne(item);
    }
  }

  /** Applies one answer to every item of a request. */
  private async settle(items: OutboxItem[], result: Attempt, started: number): Promise<void> {
    if (result.kind === 'sent') {
      for (const item of items) {
        await this.store.outbox.complete(item.id);
        this.counters.sent++;
        this.emit('order:tracked', { orderId: item.orderId, channel: 'server' });
      }
      if (items.length) this.emit('delivery:sent', { count: items.length, ms: this.config.now() - started });
      return;
    }
    if (result.kind === 'rejected') {
      for (const item of items) await this.dead(item, result.reason);
      return;
    }
    if (this.stop.signal.aborted) return this.release(items);
    for (const item of items) {
      const attempts = item.attempts + 1;
      const delayMs = Math.max(backoffDelay(attempts, this.config.backoffMs, this.config.maxBackoffMs), result.retryAfterMs ?? 0);
      await this.store.outbox.reschedule({ ...item, attempts, nextAttemptAt: this.config.now() + delayMs });
      this.counters.retried++;
      this.emit('delivery:retry', { orderId: item.orderId, attempt: attempts, status: result.status ?? null, reason: result.reason, delayMs });
    }
  }

  /** Shutting down mid-send: hand the items back, due at once, without counting a try. */
  private async release(items: OutboxItem[]): Promise<void> {
    const now = this.config.now();
    for (const item of items) await this.store.outbox.reschedule({ ...item, nextAttemptAt: now });
  }

  private async dead(item: OutboxItem, reason: string): Promise<void> {
    await this.store.outbox.deadLetter({ item, reason, deadAt: this.config.now() });
    this.counters.dead++;
    this.emit('delivery:dead', { orderId: item.orderId, reason });
    this.fail(new MatomoTrackingError('ERR_MST_DELIVERY', `order ${item.orderId} moved to the dead letters: ${reason}`), item.orderId);
  }

  private query(item: OutboxItem, tokenAuth: string | null = null): string {
    const age = this.config.now() - item.enqueuedAt;
    let cdtSeconds: number | null = Math.floor(item.enqueuedAt / 1000);
    if (!this.config.tokenAuth && age > CDT_WITHOUT_TOKEN_MS) {
      cdtSeconds = null;
      this.warn(Warnings.CDT_DROPPED, { orderId: item.orderId });
    }
    let query = item.query;
    if (!this.config.tokenAuth && query.includes('cip=')) {
      // queued while a token was configured: Matomo refuses `cip` without one, so send the order without it
      const params = new URLSearchParams(query);
      params.delete('cip');
      query = params.toString();
    }
    return finalizeQuery(query, { cdtSeconds, tokenAuth });
  }

  private formBody(item: OutboxItem): string {
    return this.query(item, this.config.tokenAuth);
  }

  private async post(body: string, contentType: string): Promise<Attempt> {
    const response = await this.postRaw(body, contentType);
    return 'error' in response ? response.error : classify(response.value);
  }

  private async postRaw(body: string, contentType: string): Promise<{ value: MatomoResponse } | { error: Attempt }> {
    try {
      const value = await this.transport.post(body, { contentType, signal: this.stop.signal });
      // A proxy or debug page may echo the request: the token must not reach our errors and logs.
      return { value: { ...value, body: this.redact(value.body) } };
    } catch (error) {
      return { error: { kind: 'retry', reason: `cannot reach Matomo: ${this.redact(messageOf(error))}` } };
    }
  }

  private redact(text: string): string {
    const token = this.config.tokenAuth;
    return token ? text.split(token).join('[token_auth]').split(encodeURIComponent(token)).join('[token_auth]') : text;
  }

  private fail(error: MatomoTrackingError, orderId?: string): void {
    this.emit('error', { code: error.code, error, ...(orderId !== undefined && { orderId }) });
  }
}

function formatDuration(ms: number): string {
  if (ms >= 86_400_000) return `${+(ms / 86_400_000).toFixed(1)} days`;
  if (ms >= 3_600_000) return `${+(ms / 3_600_000).toFixed(1)} h`;
  if (ms >= 60_000) return `${+(ms / 60_000).toFixed(1)} min`;
  return `${Math.round(ms / 1000)} s`;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
