/**
 * The outbox worker (DESIGN §5) against a scripted Matomo and the in-memory store.
 * Retry cases are numbered like a spec table (R1…), after @segment/analytics-node's
 * publisher tests. Most tests run on jest's fake clock, so backoffs and Retry-After
 * of minutes cost nothing; the close() tests measure real time with tiny timeouts.
 */
import fc from 'fast-check';
import { MemoryClaimStore, type OutboxItem } from '../../src/claims';
import { createEmitter, type TrackingEvents } from '../../src/events';
import { Warnings } from '../../src/logger';
import { parseRetryAfter, type MatomoResponse, type MatomoTransport } from '../../src/matomo/client';
import { OutboxWorker, type OutboxWorkerConfig } from '../../src/matomo/outbox-worker';
import { buildOrderQuery } from '../../src/matomo/request';
import { backoffDelay, bulkFates, classify } from '../../src/matomo/retry-policy';

const TOKEN = 'c0ffee0123456789abcdef0123456789';
const START = 1_764_761_000_000; // ms
const HOUR_MS = 60 * 60 * 1000;
const DAY_MS = 24 * HOUR_MS;
const FORM = 'application/x-www-form-urlencoded';

/** What the scripted Matomo does with one POST. */
type Step =
  | MatomoResponse
  /** The transport rejects, as undici does on a refused connection or its own timeout. */
  | { throws: Error }
  /** Answers after `afterMs` (on the clock in use); gives up when the request is aborted. */
  | { afterMs: number; then: MatomoResponse }
  /** Never answers, but gives up when the request is aborted (as undici does). */
  | 'hang'
  /** Never answers and ignores the abort signal (a misbehaving custom transport). */
  | 'hang-forever';

const answer = (status: number, extra: Partial<MatomoResponse> = {}): MatomoResponse => ({ status, body: '', ...extra });
const aborted = () => Object.assign(new Error('This operation was aborted'), { name: 'AbortError' });

interface Post {
  body: string;
  contentType: string;
  at: number;
}

/** A fake Matomo that answers POSTs from a script (then `fallback`) and records what it received. */
class ScriptedTransport implements MatomoTransport {
  readonly posts: Post[] = [];

  constructor(
    readonly steps: Step[] = [],
    private readonly fallback: Step = answer(204),
  ) {}

  async post(body: string, options: { contentType: string; signal?: AbortSignal }): Promise<MatomoResponse> {
    this.posts.push({ body, contentType: options.contentType, at: Date.now() });
    const step = this.steps.shift() ?? this.fallback;
    if (step === 'hang-forever') return new Promise<never>(() => {});
    if (step === 'hang' || 'afterMs' in step) {
      return new Promise<MatomoResponse>((resolve, reject) => {
        const timer = step === 'hang' ? undefined : setTimeout(() => resolve(step.then), step.afterMs);
        const abort = () => {
          clearTimeout(timer);
          reject(aborted());
        };
        if (options.signal?.aborted) abort();
        options.signal?.addEventListener('abort', abort, { once: true });
      });
    }
    if ('throws' in step) throw step.throws;
    return step;
  }

  async close(): Promise<void> {}
}

/** The orders one POST carries: one form body, or every request string of a bulk body. */
function ordersIn(post: Post): URLSearchParams[] {
  if (post.contentType === FORM) return [new URLSearchParams(post.body)];
  const { requests } = JSON.parse(post.body) as { requests: string[] };
  return requests.map((request) => new URLSearchParams(request.slice(1)));
}

const ecIds = (post: Post) => ordersIn(post).map((params) => params.get('ec_id'));

function makeItem(id: string, overrides: Partial<OutboxItem> = {}): OutboxItem {
  const query = buildOrderQuery(
    { id, revenue: 25, items: [{ sku: 'SKU-1', name: 'Espresso cup', price: 12.5, quantity: 2 }] },
    null,
    { siteId: 3, useUserId: false },
  ).toString();
  const now = Date.now();
  return { id, orderId: id, query, enqueuedAt: now, attempts: 0, nextAttemptAt: now, ...overrides };
}

/** Puts a paid order in the outbox the way a paid callback does. */
async function enqueue(store: MemoryClaimStore, id: string, overrides: Partial<OutboxItem> = {}): Promise<OutboxItem> {
  const item = makeItem(id, overrides);
  const settled = await store.settlePaid(id, item, 90 * DAY_MS);
  expect(settled.enqueued).toBe(true);
  return item;
}

/** Every item waiting in the outbox, read through the public API without moving its due time. */
async function waiting(store: MemoryClaimStore): Promise<OutboxItem[]> {
  const items = await store.outbox.lease(Number.MAX_SAFE_INTEGER, 1000, 0);
  for (const item of items) await store.outbox.reschedule(item); // back to its own due time
  return items;
}

type Recorded = { [K in keyof TrackingEvents]: { name: K; payload: TrackingEvents[K][0] } }[keyof TrackingEvents];

interface Rig {
  worker: OutboxWorker;
  store: MemoryClaimStore;
  transport: ScriptedTransport;
  events: Recorded[];
  /** The payloads of every `name` event so far. */
  of<K extends keyof TrackingEvents>(name: K): Array<TrackingEvents[K][0]>;
  /** Codes passed to the worker's `warn`. */
  warnings: string[];
  /** Lines that reached the logger (only errors nobody listened to). */
  logged: string[];
}

const defaults = (): OutboxWorkerConfig => ({
  backoffMs: 1000,
  maxBackoffMs: 600_000,
  giveUpAfterMs: 7 * DAY_MS,
  pollIntervalMs: 1000,
  leaseMs: 60_000,
  batchSize: 100,
  tokenAuth: null,
  now: () => Date.now(),
});

function rig(
  transport: ScriptedTransport = new ScriptedTransport(),
  config: Partial<OutboxWorkerConfig> = {},
  options: { store?: MemoryClaimStore; listenForErrors?: boolean } = {},
): Rig {
  const store = options.store ?? new MemoryClaimStore(() => Date.now());
  const events: Recorded[] = [];
  const logged: string[] = [];
  const { events: emitter, emit } = createEmitter(
    { warn: (message) => logged.push(message), error: (message) => logged.push(message) },
    (name, payload) => events.push({ name, payload } as Recorded),
  );
  if (options.listenForErrors !== false) emitter.on('error', () => {});
  const warnings: string[] = [];
  const worker = new OutboxWorker(store, transport, { ...defaults(), ...config }, emit, (warning) => warnings.push(warning.code));
  const of = <K extends keyof TrackingEvents>(name: K) =>
    events.filter((event) => event.name === name).map((event) => event.payload as TrackingEvents[K][0]);
  return { worker, store, transport, events, of, warnings, logged };
}

/** Advances jest's fake clock, running every timer and promise due on the way. */
const tick = (ms: number) => jest.advanceTimersByTimeAsync(ms);

function useFakeClock(): void {
  beforeEach(() => jest.useFakeTimers({ now: START, doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] }));
  afterEach(() => jest.useRealTimers());
}

/** Real time: waits until `condition` holds, for at most `timeoutMs`. */
async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs = 3000): Promise<void> {
  for (const deadline = Date.now() + timeoutMs; Date.now() < deadline; ) {
    if (await condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  throw new Error(`condition not met within ${timeoutMs} ms`);
}

describe('classify: the retry table', () => {
  test.each([200, 204])('%i: sent', (status) => {
    expect(classify(answer(status)).kind).toBe('sent');
  });

  test.each([500, 502, 503, 504, 408, 429])('%i: retried, with its status', (status) => {
    expect(classify(answer(status))).toMatchObject({ kind: 'retry', status });
  });

  test.each([501, 505, 400, 403, 404, 413])('%i: rejected, retrying cannot help', (status) => {
    const result = classify(answer(status, { body: 'Bad request:\n  the  site id is invalid' }));
    expect(result).toEqual({ kind: 'rejected', reason: expect.stringContaining(String(status)) });
    if (result.kind === 'rejected') expect(result.reason).toContain('the site id is invalid');
  });

  test.each([301, 302, 307, 308])('%i: rejected, the reason points at protocol/domain/path', (status) => {
    const result = classify(answer(status, { location: 'https://analytics.myshop.it/matomo.php' }));
    expect(result.kind).toBe('rejected');
    if (result.kind === 'rejected') {
      expect(result.reason).toContain('matomo.protocol');
      expect(result.reason).toContain('https://analytics.myshop.it/matomo.php');
    }
  });

  test('Retry-After travels with a retry', () => {
    expect(classify(answer(503, { retryAfterMs: 120_000 }))).toMatchObject({ kind: 'retry', retryAfterMs: 120_000 });
  });
});

describe('backoffDelay: jittered exponential backoff with a cap', () => {
  test('attempt n waits between ceiling/2 and ceiling, where ceiling = min(max, base·2^(n-1))', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 1, max: 10_000 }),
        fc.integer({ min: 1, max: 1_000_000 }),
        fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
        (attempt, base, max, random) => {
          const ceiling = Math.min(max, base * 2 ** (attempt - 1));
          const delay = backoffDelay(attempt, base, max, () => random);
          expect(delay).toBeGreaterThanOrEqual(Math.floor(ceiling / 2));
          expect(delay).toBeLessThanOrEqual(Math.ceil(ceiling));
        },
      ),
    );
  });

  test('the bounds are reached: no jitter gives half, full jitter gives the ceiling', () => {
    expect(backoffDelay(1, 1000, 600_000, () => 0)).toBe(500);
    expect(backoffDelay(1, 1000, 600_000, () => 1)).toBe(1000);
    expect(backoffDelay(3, 1000, 600_000, () => 0)).toBe(2000);
    expect(backoffDelay(3, 1000, 600_000, () => 1)).toBe(4000);
  });

  test('the cap holds for very late attempts', () => {
    expect(backoffDelay(60, 1000, 600_000, () => 1)).toBe(600_000);
    expect(backoffDelay(60, 1000, 600_000, () => 0)).toBe(300_000);
  });
});

describe('parseRetryAfter: seconds or an HTTP date', () => {
  test('seconds', () => {
    expect(parseRetryAfter('120', START)).toBe(120_000);
    expect(parseRetryAfter(['1', '5'], START)).toBe(1000);
  });

  test('an HTTP date, counted from now, never negative', () => {
    expect(parseRetryAfter(new Date(START + 30_000).toUTCString(), START)).toBe(30_000);
    expect(parseRetryAfter(new Date(START - 30_000).toUTCString(), START)).toBe(0);
  });

  test.each([undefined, '', 'soon'])('%p: none', (value) => {
    expect(parseRetryAfter(value, START)).toBeUndefined();
  });
});

describe('bulkFates: reading Matomo\'s answer to a bulk request', () => {
  test('invalid_indices name the refused requests; out-of-range or odd entries are ignored', () => {
    const body = JSON.stringify({ status: 'success', tracked: 3, invalid: 2, invalid_indices: [1, 3, 7, -1, 'x'] });
    expect(bulkFates(body, 5)).toEqual({ kind: 'known', invalid: new Set([1, 3]) });
  });

  test('without invalid_indices, invalid: 0 (or tracked = all) means every request was recorded', () => {
    expect(bulkFates('{"status":"success","tracked":5,"invalid":0}', 5)).toEqual({ kind: 'known', invalid: new Set() });
    expect(bulkFates('{"status":"success","tracked":5}', 5)).toEqual({ kind: 'known', invalid: new Set() });
  });

  test.each([
    ['invalid > 0 without indices (older Matomo)', '{"status":"success","tracked":4,"invalid":1}'],
    ['not JSON', '<html>GIF89a'],
    ['an error status', '{"status":"error","message":"x"}'],
  ])('%s: unknown, to be learnt one by one', (_case, body) => {
    expect(bulkFates(body, 5)).toEqual({ kind: 'unknown' });
  });
});

describe('OutboxWorker: the retry table, one order per request', () => {
  useFakeClock();

  /** One order in the outbox and a worker sending it through `steps`. */
  async function oneOrder(steps: Step[], config: Partial<OutboxWorkerConfig> = {}, fallback?: Step) {
    const r = rig(new ScriptedTransport(steps, fallback), config);
    const item = await enqueue(r.store, 'IT-1001');
    r.worker.start();
    await tick(0);
    return { ...r, item };
  }

  /** After a first failure: one retry event, the item waits with attempts 1, the next poll delivers it once. */
  async function expectRetriedThenSent(r: Awaited<ReturnType<typeof oneOrder>>, status: number | null) {
    expect(r.transport.posts).toHaveLength(1);
    const [retry] = r.of('delivery:retry');
    expect(r.of('delivery:retry')).toHaveLength(1);
    expect(retry).toMatchObject({ orderId: 'IT-1001', attempt: 1, status });
    // first backoff: between backoffMs/2 and backoffMs (1000)
    expect(retry!.delayMs).toBeGreaterThanOrEqual(500);
    expect(retry!.delayMs).toBeLessThanOrEqual(1000);
    const [left] = await waiting(r.store);
    expect(left).toMatchObject({ id: 'IT-1001', attempts: 1, nextAttemptAt: START + retry!.delayMs });
    expect(r.of('order:tracked')).toEqual([]);
    expect(r.of('delivery:dead')).toEqual([]);

    await tick(1000); // the next poll
    expect(r.transport.posts).toHaveLength(2);
    expect(await r.store.outbox.depth()).toBe(0);
    expect(r.of('order:tracked')).toEqual([{ orderId: 'IT-1001', channel: 'server' }]);
    expect(r.worker.counters).toEqual({ sent: 1, retried: 1, dead: 0 });
  }

  /** A rejection: one request only, the order in the dead letters with `reason`, reported, not silently. */
  async function expectDeadLettered(r: Awaited<ReturnType<typeof oneOrder>>, reason: RegExp | string) {
    await tick(10 * 60_000); // nothing more is tried, however long we wait
    expect(r.transport.posts).toHaveLength(1);
    expect(await r.store.outbox.depth()).toBe(0);
    const letters = await r.store.deadLetters.list(10);
    expect(letters).toEqual([{ item: r.item, reason: expect.stringMatching(reason), deadAt: START }]);
    expect(r.of('delivery:dead')).toEqual([{ orderId: 'IT-1001', reason: letters[0]!.reason }]);
    const errors = r.of('error');
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ code: 'ERR_MST_DELIVERY', orderId: 'IT-1001' });
    expect(errors[0]!.error.message).toContain(letters[0]!.reason);
    expect(r.of('delivery:retry')).toEqual([]);
    expect(r.of('order:tracked')).toEqual([]);
    expect(r.worker.counters).toEqual({ sent: 0, retried: 0, dead: 1 });
  }

  test('R1 204 ⇒ sent: removed from the outbox, order:tracked (server) and delivery:sent {count, ms}', async () => {
    const r = await oneOrder([{ afterMs: 120, then: answer(204) }]);
    await tick(120);
    expect(r.transport.posts).toHaveLength(1);
    expect(await r.store.outbox.depth()).toBe(0);
    expect(r.events.map((event) => event.name)).toEqual(['order:tracked', 'delivery:sent']);
    expect(r.of('order:tracked')).toEqual([{ orderId: 'IT-1001', channel: 'server' }]);
    expect(r.of('delivery:sent')).toEqual([{ count: 1, ms: 120 }]);
    expect(r.worker.counters).toEqual({ sent: 1, retried: 0, dead: 0 });
  });

  test('R1 the single POST is a form body: the order, cdt = when the callback arrived, a cache buster, no token', async () => {
    const r = await oneOrder([answer(204)]);
    const [post] = r.transport.posts;
    expect(post!.contentType).toBe(FORM);
    const body = new URLSearchParams(post!.body);
    expect(body.get('ec_id')).toBe('IT-1001');
    expect(body.get('idsite')).toBe('3');
    expect(body.get('cdt')).toBe(String(START / 1000));
    expect(body.get('r')).toMatch(/^\d{6}$/);
    expect(body.has('token_auth')).toBe(false);
  });

  test('R2 network error ⇒ retry (status null) with backoff, then delivered once', async () => {
    const r = await oneOrder([{ throws: new Error('connect ECONNREFUSED 127.0.0.1:443') }, answer(204)]);
    expect(r.of('delivery:retry')[0]!.reason).toContain('ECONNREFUSED');
    await expectRetriedThenSent(r, null);
  });

  test('R3 timeout ⇒ retry (status null), then delivered once', async () => {
    const timeout = new DOMException('The operation was aborted due to timeout', 'TimeoutError');
    const r = await oneOrder([{ throws: timeout }, answer(204)]);
    expect(r.of('delivery:retry')[0]!.reason).toContain('timeout');
    await expectRetriedThenSent(r, null);
  });

  test.each([500, 502, 503, 504])('R4 %i ⇒ retry, then delivered once', async (status) => {
    const r = await oneOrder([answer(status, { body: 'Service Unavailable' }), answer(204)]);
    expect(r.of('delivery:retry')[0]!.reason).toContain(String(status));
    await expectRetriedThenSent(r, status);
  });

  test.each([501, 505])('R5 %i ⇒ dead letter, not retried', async (status) => {
    const r = await oneOrder([answer(status, { body: 'Not Implemented' })]);
    await expectDeadLettered(r, new RegExp(`${status}: Not Implemented`));
  });

  test('R6 408 ⇒ retry, then delivered once', async () => {
    const r = await oneOrder([answer(408), answer(204)]);
    await expectRetriedThenSent(r, 408);
  });

  test('R7 429 with Retry-After ⇒ retry no sooner than Retry-After (60 s, not the 1 s backoff)', async () => {
    const r = await oneOrder([answer(429, { retryAfterMs: 60_000 }), answer(204)]);
    expect(r.of('delivery:retry')).toEqual([
      { orderId: 'IT-1001', attempt: 1, status: 429, reason: expect.stringContaining('429'), delayMs: 60_000 },
    ]);
    expect((await waiting(r.store))[0]!.nextAttemptAt).toBe(START + 60_000);
    await tick(59_999);
    expect(r.transport.posts).toHaveLength(1);
    await tick(1);
    expect(r.transport.posts).toHaveLength(2);
    expect(r.transport.posts[1]!.at - r.transport.posts[0]!.at).toBe(60_000);
    expect(await r.store.outbox.depth()).toBe(0);
    expect(r.of('order:tracked')).toHaveLength(1);
  });

  test('R7 a Retry-After above maxBackoffMs is still honoured (on a 503 too)', async () => {
    const r = await oneOrder([answer(503, { retryAfterMs: 60_000 })], { maxBackoffMs: 2000 });
    expect(r.of('delivery:retry')[0]!.delayMs).toBe(60_000);
  });

  test('R7 a backoff longer than Retry-After wins', async () => {
    const r = await oneOrder([answer(429, { retryAfterMs: 10 })], { backoffMs: 5000, maxBackoffMs: 5000 });
    const { delayMs } = r.of('delivery:retry')[0]!;
    expect(delayMs).toBeGreaterThanOrEqual(2500);
    expect(delayMs).toBeLessThanOrEqual(5000);
  });

  test('R8 400 on a single order ⇒ dead letter with Matomo\'s reason, error event, not retried', async () => {
    const r = await oneOrder([answer(400, { body: '{"status":"error","message":"Order IT-1001 was already recorded"}' })]);
    await expectDeadLettered(r, /400.*Order IT-1001 was already recorded/);
  });

  test.each([301, 302, 307, 308])('R9 %i ⇒ dead letter mentioning protocol and where Matomo pointed', async (status) => {
    const r = await oneOrder([answer(status, { location: 'https://analytics.myshop.it/matomo.php' })]);
    await expectDeadLettered(r, /matomo\.protocol/);
    const [letter] = await r.store.deadLetters.list(1);
    expect(letter!.reason).toContain('matomo.protocol');
    expect(letter!.reason).toContain('https://analytics.myshop.it/matomo.php');
  });

  test('R10 an order older than giveUpAfterMs ⇒ dead letter without a send, reported, never silently', async () => {
    const r = rig();
    const item = await enqueue(r.store, 'IT-OLD', { enqueuedAt: START - 7 * DAY_MS - 1, nextAttemptAt: START });
    r.worker.start();
    await tick(0);
    expect(r.transport.posts).toEqual([]);
    expect(await r.store.outbox.depth()).toBe(0);
    const letters = await r.store.deadLetters.list(10);
    expect(letters).toEqual([{ item, reason: expect.stringContaining('not delivered within'), deadAt: START }]);
    expect(r.of('delivery:dead')).toEqual([{ orderId: 'IT-OLD', reason: letters[0]!.reason }]);
    expect(r.of('error')).toEqual([expect.objectContaining({ code: 'ERR_MST_DELIVERY', orderId: 'IT-OLD' })]);
  });

  test('R10 a given-up order sent back from the dead letters is sent, not given up again at once', async () => {
    const r = rig();
    await enqueue(r.store, 'IT-REVIVED', { enqueuedAt: START - 7 * DAY_MS - 1, nextAttemptAt: START });
    r.worker.start();
    await tick(0);
    expect(await r.store.deadLetters.count()).toBe(1);
    expect(await r.store.deadLetters.revive('IT-REVIVED', START)).toBe(true);
    r.worker.wake();
    await tick(0);
    expect(r.transport.posts).toHaveLength(1);
    // the payment time is still what Matomo gets as the order time (with a token; without one cdt is dropped when late)
    expect(r.of('order:tracked')).toEqual([{ orderId: 'IT-REVIVED', channel: 'server' }]);
    expect(await r.store.deadLetters.count()).toBe(0);
  });

  test('R10 an order that keeps failing is retried until giveUpAfterMs, then dead-lettered', async () => {
    const r = await oneOrder([], { giveUpAfterMs: 10_000, backoffMs: 1000, maxBackoffMs: 2000, pollIntervalMs: 100 }, answer(503));
    for (let t = 0; t < 15_000; t += 500) {
      await tick(500);
      // at every moment the order is somewhere: in the outbox or in the dead letters
      expect((await r.store.outbox.depth()) + (await r.store.deadLetters.count())).toBe(1);
    }
    const posts = r.transport.posts;
    expect(posts.length).toBeGreaterThanOrEqual(5);
    expect(posts.at(-1)!.at - START).toBeLessThanOrEqual(10_000);
    const retries = r.of('delivery:retry');
    expect(retries.map((retry) => retry.attempt)).toEqual(posts.map((_, i) => i + 1));
    expect(await r.store.deadLetters.list(10)).toEqual([
      expect.objectContaining({ item: expect.objectContaining({ id: 'IT-1001', attempts: posts.length }) }),
    ]);
    expect(r.of('delivery:dead')).toHaveLength(1);
    expect(r.of('error')).toHaveLength(1);
    expect(r.worker.counters).toEqual({ sent: 0, retried: posts.length, dead: 1 });
  });

  test('attempts count up and the backoff grows with each failure, capped by maxBackoffMs', async () => {
    const r = await oneOrder([], { backoffMs: 1000, maxBackoffMs: 4000, pollIntervalMs: 100 }, answer(503));
    await tick(30_000);
    const retries = r.of('delivery:retry');
    expect(retries.length).toBeGreaterThanOrEqual(6);
    retries.forEach((retry, i) => {
      const ceiling = Math.min(4000, 1000 * 2 ** i);
      expect(retry.attempt).toBe(i + 1);
      expect(retry.delayMs).toBeGreaterThanOrEqual(ceiling / 2);
      expect(retry.delayMs).toBeLessThanOrEqual(ceiling);
    });
  });

  test('with no error listener, a dead letter is logged instead of thrown', async () => {
    const r = rig(new ScriptedTransport([answer(400, { body: 'invalid idsite' })]), {}, { listenForErrors: false });
    await enqueue(r.store, 'IT-1001');
    r.worker.start();
    await tick(0);
    expect(r.logged).toHaveLength(1);
    expect(r.logged[0]).toMatch(/ERR_MST_DELIVERY.*IT-1001.*invalid idsite/);
  });

  test('W1 an order enqueued while the worker waits for its next poll goes out at once (wake), not a poll later', async () => {
    const r = rig(new ScriptedTransport(), { pollIntervalMs: 1000 });
    r.worker.start();
    await tick(0); // an empty cycle; the next poll is a second away
    await enqueue(r.store, 'IT-1001');
    r.worker.wake();
    await tick(0);
    expect(r.transport.posts).toHaveLength(1);
  });
});

describe('OutboxWorker: bulk requests', () => {
  useFakeClock();

  async function queued(count: number, transport: ScriptedTransport, config: Partial<OutboxWorkerConfig> = {}) {
    const r = rig(transport, config);
    const ids: string[] = [];
    for (let i = 0; i < count; i++) ids.push((await enqueue(r.store, `B-${i}`)).id);
    r.worker.start();
    await tick(0);
    return { ...r, ids };
  }

  test('several due orders go as ONE bulk POST: JSON {requests:["?…"], token_auth}, the token only in the body', async () => {
    const r = await queued(5, new ScriptedTransport([answer(200, { body: '{"status":"success","tracked":5,"invalid":0}' })]), {
      tokenAuth: TOKEN,
    });
    expect(r.transport.posts).toHaveLength(1);
    const [post] = r.transport.posts;
    expect(post!.contentType).toBe('application/json');
    const body = JSON.parse(post!.body) as { requests: string[]; token_auth: string };
    expect(Object.keys(body).sort()).toEqual(['requests', 'token_auth']);
    expect(body.token_auth).toBe(TOKEN);
    expect(body.requests).toHaveLength(5);
    for (const request of body.requests) {
      expect(request.startsWith('?')).toBe(true);
      expect(request).not.toContain(TOKEN);
      const params = new URLSearchParams(request.slice(1));
      expect(params.has('token_auth')).toBe(false);
      expect(params.get('cdt')).toBe(String(START / 1000));
      expect(params.get('idsite')).toBe('3');
    }
    expect(ecIds(post!).sort()).toEqual([...r.ids].sort());
    expect(await r.store.outbox.depth()).toBe(0);
    expect(r.of('delivery:sent')).toEqual([{ count: 5, ms: 0 }]);
    expect(r.of('order:tracked')).toEqual(r.ids.map((orderId) => ({ orderId, channel: 'server' })));
    expect(r.worker.counters).toEqual({ sent: 5, retried: 0, dead: 0 });
  });

  test('without a token the bulk body has no token_auth at all', async () => {
    const r = await queued(3, new ScriptedTransport([answer(200, { body: '{"status":"success","tracked":3,"invalid":0}' })]));
    expect(Object.keys(JSON.parse(r.transport.posts[0]!.body) as object)).toEqual(['requests']);
  });

  test('at most batchSize orders per request: 25 orders with batchSize 10 ⇒ 10 + 10 + 5, each order once', async () => {
    const ok = (n: number) => answer(200, { body: JSON.stringify({ status: 'success', tracked: n, invalid: 0 }) });
    const r = await queued(25, new ScriptedTransport([ok(10), ok(10), ok(5)]), { batchSize: 10 });
    expect(r.transport.posts.map((post) => ordersIn(post).length)).toEqual([10, 10, 5]);
    const sent = r.of('order:tracked').map((event) => event.orderId);
    expect(sent.sort()).toEqual([...r.ids].sort());
    expect(await r.store.outbox.depth()).toBe(0);
  });

  test('a bulk answer with invalid_indices ⇒ only those orders go to the dead letters; the others are completed', async () => {
    const transport = new ScriptedTransport([
      answer(200, { body: JSON.stringify({ status: 'success', tracked: 3, invalid: 2, invalid_indices: [1, 3] }) }),
    ]);
    const r = await queued(5, transport);
    expect(transport.posts).toHaveLength(1); // nothing resent
    const order = ecIds(transport.posts[0]!) as string[];
    const invalid = [order[1]!, order[3]!];
    const valid = order.filter((id) => !invalid.includes(id));
    expect((await r.store.deadLetters.list(10)).map((letter) => letter.item.id).sort()).toEqual([...invalid].sort());
    expect(r.of('delivery:dead').map((event) => event.orderId).sort()).toEqual([...invalid].sort());
    expect(r.of('delivery:dead')[0]!.reason).toMatch(/invalid/);
    expect(r.of('order:tracked').map((event) => event.orderId).sort()).toEqual([...valid].sort());
    expect(r.of('delivery:sent')).toEqual([{ count: 3, ms: 0 }]);
    expect(await r.store.outbox.depth()).toBe(0);
    expect(r.worker.counters).toEqual({ sent: 3, retried: 0, dead: 2 });
  });

  test('a bulk 200 with invalid > 0 but no indices ⇒ the orders are resent one by one, each to its own fate', async () => {
    const transport = new ScriptedTransport([
      answer(200, { body: '{"status":"success","tracked":4,"invalid":1}' }),
      answer(204),
      answer(400, { body: 'order already recorded' }),
      answer(204),
      answer(204),
      answer(204),
    ]);
    const r = await queued(5, transport);
    expect(transport.posts).toHaveLength(6);
    expect(transport.posts.slice(1).every((post) => post.contentType === FORM)).toBe(true);
    expect(transport.posts.slice(1).map((post) => ecIds(post)[0]).sort()).toEqual([...r.ids].sort());
    const refused = ecIds(transport.posts[2]!)[0];
    expect((await r.store.deadLetters.list(10)).map((letter) => letter.item.id)).toEqual([refused]);
    expect(r.of('order:tracked')).toHaveLength(4);
    expect(await r.store.outbox.depth()).toBe(0);
  });

  test('a bulk 400 ⇒ the orders are resent one by one', async () => {
    const transport = new ScriptedTransport([answer(400, { body: 'bulk tracking disabled' })]);
    const r = await queued(4, transport);
    expect(transport.posts.map((post) => post.contentType)).toEqual(['application/json', FORM, FORM, FORM, FORM]);
    expect(r.of('order:tracked').map((event) => event.orderId).sort()).toEqual([...r.ids].sort());
    expect(r.of('delivery:sent')).toEqual([1, 2, 3, 4].map(() => ({ count: 1, ms: 0 })));
    expect(await r.store.deadLetters.count()).toBe(0);
  });

  test('a bulk 503 or network error ⇒ every order of it retried (one delivery:retry each), then sent in one bulk', async () => {
    const transport = new ScriptedTransport([
      answer(503),
      { throws: new Error('socket hang up') },
      answer(200, { body: '{"status":"success","tracked":3,"invalid":0}' }),
    ]);
    const r = await queued(3, transport, { backoffMs: 100, maxBackoffMs: 100, pollIntervalMs: 100 });
    expect(r.of('delivery:retry').map((retry) => [retry.attempt, retry.status])).toEqual([
      [1, 503],
      [1, 503],
      [1, 503],
    ]);
    await tick(100);
    expect(r.of('delivery:retry').slice(3).map((retry) => [retry.attempt, retry.status])).toEqual([
      [2, null],
      [2, null],
      [2, null],
    ]);
    await tick(200);
    expect(transport.posts).toHaveLength(3);
    expect(transport.posts.every((post) => ordersIn(post).length === 3)).toBe(true);
    expect(r.of('order:tracked')).toHaveLength(3);
    expect(r.worker.counters).toEqual({ sent: 3, retried: 6, dead: 0 });
  });

  test('a bulk redirect ⇒ every order dead-lettered with the protocol hint (resending cannot help)', async () => {
    const r = await queued(2, new ScriptedTransport([answer(301, { location: 'https://a.example/matomo.php' })]));
    const letters = await r.store.deadLetters.list(10);
    expect(letters).toHaveLength(2);
    for (const letter of letters) expect(letter.reason).toContain('matomo.protocol');
  });
});

describe('OutboxWorker: cdt and token_auth', () => {
  useFakeClock();

  async function sendOne(age: number, tokenAuth: string | null) {
    const r = rig(new ScriptedTransport(), { tokenAuth });
    await enqueue(r.store, 'IT-1001', { enqueuedAt: START - age });
    r.worker.start();
    await tick(0);
    return { ...r, body: new URLSearchParams(r.transport.posts[0]!.body) };
  }

  test('without a token, an order older than 23 h is sent without cdt, with a WRN_MST_CDT_DROPPED warning', async () => {
    const r = await sendOne(23 * HOUR_MS + 1, null);
    expect(r.body.has('cdt')).toBe(false);
    expect(r.body.get('ec_id')).toBe('IT-1001');
    expect(r.warnings).toEqual([Warnings.CDT_DROPPED.code]);
  });

  test('without a token, an order younger than 23 h keeps its cdt, no warning', async () => {
    const r = await sendOne(22 * HOUR_MS, null);
    expect(r.body.get('cdt')).toBe(String((START - 22 * HOUR_MS) / 1000));
    expect(r.warnings).toEqual([]);
  });

  test('with a token, the original cdt is kept however old the order, and the token is in the body', async () => {
    const r = await sendOne(3 * DAY_MS, TOKEN);
    expect(r.body.get('cdt')).toBe(String((START - 3 * DAY_MS) / 1000));
    expect(r.body.get('token_auth')).toBe(TOKEN);
    expect(r.warnings).toEqual([]);
  });

  test('an order queued with cip while a token was configured is sent without cip once the token is gone', async () => {
    const r = rig(new ScriptedTransport(), { tokenAuth: null });
    await enqueue(r.store, 'IP-1', { query: `${makeItem('IP-1').query}&cip=203.0.113.7` });
    r.worker.start();
    await tick(0);
    const body = new URLSearchParams(r.transport.posts[0]!.body);
    expect(body.get('ec_id')).toBe('IP-1');
    expect(body.has('cip')).toBe(false);
  });

  test('with a token, a queued cip is sent', async () => {
    const r = rig(new ScriptedTransport(), { tokenAuth: TOKEN });
    await enqueue(r.store, 'IP-2', { query: `${makeItem('IP-2').query}&cip=203.0.113.7` });
    r.worker.start();
    await tick(0);
    expect(new URLSearchParams(r.transport.posts[0]!.body).get('cip')).toBe('203.0.113.7');
  });

  test('in one bulk without a token, only the old order loses its cdt', async () => {
    const r = rig(new ScriptedTransport([answer(200, { body: '{"status":"success","tracked":2,"invalid":0}' })]));
    await enqueue(r.store, 'OLD', { enqueuedAt: START - DAY_MS });
    await enqueue(r.store, 'NEW');
    r.worker.start();
    await tick(0);
    const cdt = Object.fromEntries(ordersIn(r.transport.posts[0]!).map((params) => [params.get('ec_id'), params.get('cdt')]));
    expect(cdt).toEqual({ OLD: null, NEW: String(START / 1000) });
    expect(r.warnings).toContain(Warnings.CDT_DROPPED.code);
  });

  /** Everything the shop can see: events (errors with message and cause), log lines, dead letters. */
  async function everythingEmitted(r: Rig): Promise<string> {
    const replacer = (_key: string, value: unknown) =>
      value instanceof Error ? { message: value.message, cause: String(value.cause), stack: value.stack } : value;
    return JSON.stringify({ events: r.events, logged: r.logged, dead: await r.store.deadLetters.list(100) }, replacer);
  }

  test('the token is in no emitted message, even when Matomo (or a proxy) echoes it back', async () => {
    // A WAF block page or a PHP error in debug mode may repeat the request it refused.
    const echo = (status: number) => answer(status, { body: `Refused: token_auth=${TOKEN}&token=${encodeURIComponent(TOKEN)}` });
    const r = rig(
      new ScriptedTransport([
        { throws: new Error(`getaddrinfo ENOTFOUND matomo?token_auth=${TOKEN}`) },
        echo(503),
        echo(400), // the bulk: resent one by one
        echo(403),
        echo(400),
      ]),
      { tokenAuth: TOKEN, backoffMs: 100, maxBackoffMs: 100, pollIntervalMs: 100 },
      { listenForErrors: false },
    );
    await enqueue(r.store, 'T-1');
    await enqueue(r.store, 'T-2');
    r.worker.start();
    await tick(1000);
    expect(r.transport.posts.length).toBeGreaterThanOrEqual(5);
    expect(await r.store.deadLetters.count()).toBe(2);
    expect(r.of('delivery:retry').length).toBeGreaterThanOrEqual(2);
    expect(r.logged.length).toBeGreaterThanOrEqual(2);
    const emitted = await everythingEmitted(r);
    expect(emitted).toContain('Refused: token_auth=[token_auth]');
    expect(emitted).not.toContain(TOKEN);
  });
});

describe('OutboxWorker.close(timeoutMs)', () => {
  /** Real time: how long close() took, or 'still waiting' after guardMs. */
  async function timeClose(worker: OutboxWorker, timeoutMs: number, guardMs: number): Promise<number | 'still waiting'> {
    const started = Date.now();
    let guard: NodeJS.Timeout | undefined;
    const result = await Promise.race([
      worker.close(timeoutMs).then(() => Date.now() - started),
      new Promise<'still waiting'>((resolve) => {
        guard = setTimeout(() => resolve('still waiting'), guardMs);
      }),
    ]);
    clearTimeout(guard);
    return result;
  }

  test('Matomo never answers: close resolves after about the timeout; the order stays due at once, attempts not counted', async () => {
    const r = rig(new ScriptedTransport(['hang']), { pollIntervalMs: 5 });
    await enqueue(r.store, 'IT-1001');
    r.worker.start();
    await waitFor(() => r.transport.posts.length === 1);
    expect(r.worker.inFlight).toBe(1);
    const took = await timeClose(r.worker, 200, 2000);
    expect(took).not.toBe('still waiting');
    expect(took).toBeGreaterThanOrEqual(190);
    expect(took).toBeLessThan(200 + 500);
    expect(r.worker.inFlight).toBe(0);
    const due = await r.store.outbox.lease(Date.now(), 10, 0);
    expect(due).toEqual([expect.objectContaining({ id: 'IT-1001', attempts: 0 })]);
    expect(r.events.filter((event) => event.name !== 'warning')).toEqual([]);
    expect(r.worker.counters).toEqual({ sent: 0, retried: 0, dead: 0 });
  });

  test('a hanging bulk: every order of it is handed back due at once', async () => {
    const r = rig(new ScriptedTransport(['hang']), { pollIntervalMs: 5 });
    for (let i = 0; i < 5; i++) await enqueue(r.store, `B-${i}`);
    r.worker.start();
    await waitFor(() => r.transport.posts.length === 1);
    expect(await timeClose(r.worker, 150, 2000)).toBeLessThan(150 + 500);
    const due = await r.store.outbox.lease(Date.now(), 10, 0);
    expect(due.map((item) => [item.id, item.attempts]).sort()).toEqual([0, 1, 2, 3, 4].map((i) => [`B-${i}`, 0]));
  });

  test('a transport that ignores the abort: close still resolves within timeout + 0.5 s grace; the order is not lost', async () => {
    const r = rig(new ScriptedTransport(['hang-forever']), { pollIntervalMs: 5, leaseMs: 60_000 });
    await enqueue(r.store, 'IT-1001');
    r.worker.start();
    await waitFor(() => r.transport.posts.length === 1);
    const took = await timeClose(r.worker, 200, 3000);
    expect(took).not.toBe('still waiting');
    expect(took).toBeLessThan(200 + 500 + 150);
    // still in the outbox; it comes due again when the lease of this (stuck) worker ends
    expect(await r.store.outbox.depth()).toBe(1);
    expect(await r.store.outbox.lease(Date.now() + 60_000, 10, 0)).toHaveLength(1);
  });

  test('a backlog is flushed before the timeout when Matomo answers: 250 orders in 3 bulks', async () => {
    const ok = (n: number) => ({ afterMs: 5, then: answer(200, { body: JSON.stringify({ status: 'success', tracked: n, invalid: 0 }) }) });
    const r = rig(new ScriptedTransport([ok(100), ok(100), ok(50)]), { pollIntervalMs: 60_000 });
    for (let i = 0; i < 250; i++) await enqueue(r.store, `F-${i}`);
    // not started: only close() delivers
    const took = await timeClose(r.worker, 2000, 4000);
    expect(took).toBeLessThan(1000);
    expect(r.transport.posts.map((post) => ordersIn(post).length)).toEqual([100, 100, 50]);
    expect(await r.store.outbox.depth()).toBe(0);
    expect(r.worker.counters.sent).toBe(250);
  });

  test('close flushes what is due now; a retry not due yet waits in the outbox for the next start', async () => {
    const r = rig(new ScriptedTransport([answer(503)]), { pollIntervalMs: 5, backoffMs: 20, maxBackoffMs: 20 });
    await enqueue(r.store, 'IT-1001');
    r.worker.start();
    await waitFor(() => r.transport.posts.length === 1);
    const took = await timeClose(r.worker, 2000, 4000);
    expect(took).toBeLessThan(500);
    expect(await r.store.outbox.depth()).toBe(1);
    expect((await waiting(r.store))[0]).toMatchObject({ attempts: 1 });
  });

  test('after close nothing is sent any more, even when woken', async () => {
    const r = rig(new ScriptedTransport(), { pollIntervalMs: 5 });
    r.worker.start();
    await r.worker.close(100);
    await enqueue(r.store, 'LATE');
    r.worker.wake();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(r.transport.posts).toEqual([]);
    expect(await r.store.outbox.depth()).toBe(1);
  });

  test('with nothing to send, close resolves at once', async () => {
    const r = rig(new ScriptedTransport(), { pollIntervalMs: 5 });
    r.worker.start();
    expect(await timeClose(r.worker, 5000, 1000)).toBeLessThan(100);
  });
});

describe('OutboxWorker: two workers on one store', () => {
  /** One Matomo for several workers: it records every order it receives and who held it. */
  class SharedMatomo {
    readonly received = new Map<string, number>();
    readonly inHands = new Set<string>();
    readonly overlaps: string[] = [];

    constructor(private readonly random: () => number) {}

    transport(failRate: number, counter: { posts: number }): MatomoTransport {
      return {
        post: async (body, { contentType }) => {
          counter.posts++;
          const ids = ordersIn({ body, contentType, at: 0 }).map((params) => params.get('ec_id')!);
          for (const id of ids) {
            if (this.inHands.has(id)) this.overlaps.push(id);
            this.inHands.add(id);
          }
          await new Promise((resolve) => setTimeout(resolve, 1 + Math.floor(this.random() * 4)));
          for (const id of ids) this.inHands.delete(id);
          if (this.random() < failRate) return answer(503);
          for (const id of ids) this.received.set(id, (this.received.get(id) ?? 0) + 1);
          return answer(200, { body: JSON.stringify({ status: 'success', tracked: ids.length, invalid: 0 }) });
        },
        close: async () => {},
      };
    }
  }

  test.each([
    ['Matomo always answers', 0],
    ['Matomo answers 503 to 25% of requests', 0.25],
  ])('%s: 300 orders, each sent once, never held by both workers at once', async (_case, failRate) => {
    const store = new MemoryClaimStore();
    const matomo = new SharedMatomo(Math.random);
    const counts = [{ posts: 0 }, { posts: 0 }];
    const config = { pollIntervalMs: 2, backoffMs: 2, maxBackoffMs: 8, batchSize: 7 };
    const [a, b] = counts.map((counter) => {
      const { emit } = createEmitter({ warn: () => {}, error: () => {} });
      return new OutboxWorker(store, matomo.transport(failRate, counter), { ...defaults(), ...config }, emit, () => {});
    });
    for (let i = 0; i < 300; i++) await enqueue(store, `TW-${i}`);
    a!.start();
    b!.start();
    await waitFor(async () => (await store.outbox.depth()) === 0, 10_000);
    await Promise.all([a!.close(1000), b!.close(1000)]);
    expect(matomo.overlaps).toEqual([]);
    expect(matomo.received.size).toBe(300);
    expect([...matomo.received.values()].every((times) => times === 1)).toBe(true);
    expect(a!.counters.sent + b!.counters.sent).toBe(300);
    expect(counts[0]!.posts).toBeGreaterThan(0);
    expect(counts[1]!.posts).toBeGreaterThan(0);
  });

  describe('leases', () => {
    useFakeClock();

    test('a worker that died with an order in hand: another sends it when the lease ends, not before', async () => {
      const store = new MemoryClaimStore(() => Date.now());
      const stuck = rig(new ScriptedTransport(['hang-forever']), { leaseMs: 1000, pollIntervalMs: 50 }, { store });
      await enqueue(store, 'IT-1001');
      stuck.worker.start();
      await tick(0);
      expect(stuck.transport.posts).toHaveLength(1);
      const other = rig(new ScriptedTransport(), { leaseMs: 1000, pollIntervalMs: 50 }, { store });
      other.worker.start();
      await tick(999);
      expect(other.transport.posts).toHaveLength(0);
      await tick(51);
      expect(other.transport.posts).toHaveLength(1);
      expect(other.of('order:tracked')).toEqual([{ orderId: 'IT-1001', channel: 'server' }]);
      expect(await store.outbox.depth()).toBe(0);
    });

    test('a bulk 400 resent one by one by a slow Matomo: no order is sent by both workers', async () => {
      // Each single answer takes 300 ms, well within a 1 s lease; five of them in a row do not.
      const store = new MemoryClaimStore(() => Date.now());
      const slow = rig(
        new ScriptedTransport([answer(400, { body: 'bulk refused' })], { afterMs: 300, then: answer(204) }),
        { leaseMs: 1000, pollIntervalMs: 50 },
        { store },
      );
      for (let i = 0; i < 5; i++) await enqueue(store, `L-${i}`);
      slow.worker.start();
      await tick(0);
      const other = rig(new ScriptedTransport(), { leaseMs: 1000, pollIntervalMs: 50 }, { store });
      other.worker.start();
      await tick(3000);
      const sends = new Map<string, number>();
      for (const post of [...slow.transport.posts.slice(1), ...other.transport.posts]) {
        for (const id of ecIds(post)) sends.set(id!, (sends.get(id!) ?? 0) + 1);
      }
      const twice = [...sends].filter(([, times]) => times > 1).map(([id]) => id);
      expect(twice).toEqual([]);
      expect(await store.outbox.depth()).toBe(0);
    });
  });
});
