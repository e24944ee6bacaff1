import fc from 'fast-check';
import { MemoryClaimStore, type OutboxItem } from '../../src/claims';
import { createEmitter, type TrackingEvents } from '../../src/events';
import { Warnings } from '../../src/logger';
import type { MatomoResponse, MatomoTransport } from '../../src/matomo/client';
import { backoffDelay, classify, Delivery, type DeliveryConfig } from '../../src/matomo/delivery';
import { buildOrderQuery } from '../../src/matomo/request';

const TOKEN = 'c0ffee0123456789abcdef0123456789';
const START = 1_764_761_000_000; // ms
const DAY_MS = 24 * 60 * 60 * 1000;

/** What the scripted Matomo does with one POST. */
type Step =
  | MatomoResponse
  | { networkError: string }
  /** Never answers, but gives up when the request is aborted (as undici does). */
  | 'hang'
  /** Never answers and ignores the abort signal (a misbehaving custom transport). */
  | 'hang-forever';

const answer = (status: number, extra: Partial<MatomoResponse> = {}): MatomoResponse => ({ status, body: '', ...extra });

/** A fake Matomo that answers POSTs from a script and records what it received. */
class ScriptedTransport implements MatomoTransport {
  readonly posts: Array<{ body: string; contentType: string; at: number }> = [];

  constructor(
    private readonly steps: Step[],
    private readonly clock: () => number = Date.now,
  ) {}

  async post(body: string, options: { contentType: string; signal?: AbortSignal }): Promise<MatomoResponse> {
    this.posts.push({ body, contentType: options.contentType, at: this.clock() });
    const step = this.steps.shift() ?? answer(204);
    if (step === 'hang-forever') return new Promise<never>(() => {});
    if (step === 'hang') {
      return new Promise<never>((_, reject) => {
        const abort = () => reject(Object.assign(new Error('This operation was aborted'), { name: 'AbortError' }));
        if (options.signal?.aborted) abort();
        options.signal?.addEventListener('abort', abort, { once: true });
      });
    }
    if ('networkError' in step) throw new Error(step.networkError);
    return step;
  }

  async close(): Promise<void> {}
}

interface Setup {
  delivery: Delivery;
  store: MemoryClaimStore;
  transport: ScriptedTransport;
  item: OutboxItem;
  events: Array<{ name: keyof TrackingEvents; payload: unknown }>;
  errors: TrackingEvents['error'][0][];
  warnings: string[];
  logged: string[];
  clock: { now: number };
}

/** One paid order in the outbox, and a Delivery that sends it through `steps`. */
async function setup(steps: Step[], config: Partial<DeliveryConfig> = {}, options: { listenForErrors?: boolean } = {}): Promise<Setup> {
  const clock = { now: START };
  const now = () => clock.now;
  const store = new MemoryClaimStore(now);
  const transport = new ScriptedTransport(steps, now);
  const logged: string[] = [];
  const events: Setup['events'] = [];
  const { events: emitter, emit } = createEmitter(
    { warn: (m) => logged.push(m), error: (m) => logged.push(m) },
    (name, payload) => events.push({ name, payload }),
  );
  const errors: Setup['errors'] = [];
  if (options.listenForErrors !== false) emitter.on('error', (payload) => errors.push(payload));
  const warnings: string[] = [];
  const delivery = new Delivery(
    store,
    transport,
    { attempts: 3, backoffMs: 1, maxBackoffMs: 2, tokenAuth: null, now, ...config },
    emit,
    (warning) => warnings.push(warning.code),
  );
  const query = buildOrderQuery(
    { id: 'IT-1001', revenue: 25, items: [{ sku: 'SKU-1', name: 'Espresso cup', price: 12.5, quantity: 2 }] },
    null,
    { siteId: 3, useUserId: false },
  ).toString();
  const item: OutboxItem = { id: 'IT-1001', orderId: 'IT-1001', query, enqueuedAt: START, attempts: 0, nextAttemptAt: START };
  const settled = await store.settlePaid('IT-1001', item, 90 * DAY_MS);
  expect(settled.enqueued).toBe(true);
  return { delivery, store, transport, item, events, errors, warnings, logged, clock };
}

/** Waits (real time, a few ms at most with the tiny backoffs used here) until no send is in flight. */
async function settled(delivery: Delivery): Promise<void> {
  for (let i = 0; i < 500 && delivery.inFlightCount > 0; i++) await new Promise((resolve) => setTimeout(resolve, 2));
  expect(delivery.inFlightCount).toBe(0);
}

async function outbox(store: MemoryClaimStore): Promise<OutboxItem[]> {
  return store.outbox.due(Number.MAX_SAFE_INTEGER, 100);
}

describe('classify: the retry table', () => {
  test.each([200, 204])('%i: sent', (status) => {
    expect(classify(answer(status)).kind).toBe('sent');
  });

  test.each([500, 502, 503, 504, 408, 429])('%i: retried', (status) => {
    expect(classify(answer(status)).kind).toBe('retry');
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

describe('Delivery: sending one order', () => {
  test('2xx: the item leaves the outbox and order:tracked is emitted for the server channel', async () => {
    const s = await setup([answer(204)]);
    s.delivery.send(s.item);
    await settled(s.delivery);
    expect(s.transport.posts).toHaveLength(1);
    expect(await s.store.outbox.depth()).toBe(0);
    expect(s.events).toEqual([{ name: 'order:tracked', payload: { orderId: 'IT-1001', channel: 'server' } }]);
    expect(s.delivery.counters).toMatchObject({ sent: 1, retried: 0, rejected: 0, deferred: 0 });
  });

  test('the POST is a form body with the order, cdt = when the callback arrived, and a cache buster', async () => {
    const s = await setup([answer(204)]);
    s.delivery.send(s.item);
    await settled(s.delivery);
    const [post] = s.transport.posts;
    expect(post!.contentType).toBe('application/x-www-form-urlencoded');
    const body = new URLSearchParams(post!.body);
    expect(body.get('ec_id')).toBe('IT-1001');
    expect(body.get('idsite')).toBe('3');
    expect(body.get('cdt')).toBe(String(START / 1000));
    expect(body.get('r')).toMatch(/^\d{6}$/);
    expect(body.has('token_auth')).toBe(false);
  });

  test('3 failures: the item stays in the outbox (depth 1, attempts 3) and an error is emitted', async () => {
    const s = await setup([answer(503), { networkError: 'connect ECONNREFUSED 127.0.0.1:443' }, answer(500)]);
    s.delivery.send(s.item);
    await settled(s.delivery);
    expect(s.transport.posts).toHaveLength(3);
    expect(await s.store.outbox.depth()).toBe(1);
    const [left] = await outbox(s.store);
    expect(left).toMatchObject({ id: 'IT-1001', attempts: 3 });
    expect(left!.nextAttemptAt).toBeGreaterThan(START);
    expect(s.errors).toHaveLength(1);
    expect(s.errors[0]).toMatchObject({ code: 'ERR_MST_DELIVERY', orderId: 'IT-1001' });
    expect(s.errors[0]!.error.message).toMatch(/3 tries/);
    expect(s.events.some((e) => e.name === 'order:tracked')).toBe(false);
    expect(s.delivery.counters).toMatchObject({ sent: 0, retried: 2, deferred: 1 });
  });

  test('a failure then a success: tracked once, after one retry', async () => {
    const s = await setup([answer(502), answer(204)]);
    s.delivery.send(s.item);
    await settled(s.delivery);
    expect(s.transport.posts).toHaveLength(2);
    expect(await s.store.outbox.depth()).toBe(0);
    expect(s.events.filter((e) => e.name === 'order:tracked')).toHaveLength(1);
    expect(s.errors).toEqual([]);
  });

  test('400: the item is removed (not retried) and an ERR_MST_DELIVERY error says why', async () => {
    const s = await setup([answer(400, { body: '{"status":"error","message":"invalid idsite"}' })]);
    s.delivery.send(s.item);
    await settled(s.delivery);
    expect(s.transport.posts).toHaveLength(1);
    expect(await s.store.outbox.depth()).toBe(0);
    expect(s.errors).toHaveLength(1);
    expect(s.errors[0]!.code).toBe('ERR_MST_DELIVERY');
    expect((s.errors[0]!.error as Error & { code?: string }).code).toBe('ERR_MST_DELIVERY');
    expect(s.errors[0]!.error.message).toContain('400');
    expect(s.errors[0]!.error.message).toContain('invalid idsite');
    expect(s.delivery.counters.rejected).toBe(1);
  });

  test('a redirect (wrong protocol) is not followed nor retried; the error mentions the protocol', async () => {
    const s = await setup([answer(301, { location: 'https://analytics.myshop.it/matomo.php' })]);
    s.delivery.send(s.item);
    await settled(s.delivery);
    expect(s.transport.posts).toHaveLength(1);
    expect(await s.store.outbox.depth()).toBe(0);
    expect(s.errors[0]!.error.message).toContain('matomo.protocol');
  });

  test('with no error listener, a failure goes to the logger instead of throwing', async () => {
    const s = await setup([answer(400)], {}, { listenForErrors: false });
    s.delivery.send(s.item);
    await settled(s.delivery);
    expect(s.logged).toHaveLength(1);
    expect(s.logged[0]).toContain('ERR_MST_DELIVERY');
  });
});

describe('Delivery: Retry-After', () => {
  test('the delay recorded for the next try is the Retry-After when longer than the backoff', async () => {
    const s = await setup([answer(503, { retryAfterMs: 60_000 })], { attempts: 1 });
    s.delivery.send(s.item);
    await settled(s.delivery);
    const [left] = await outbox(s.store);
    expect(left!.nextAttemptAt).toBe(START + 60_000);
    expect(await s.store.outbox.due(START + 59_999, 10)).toEqual([]);
    expect(await s.store.outbox.due(START + 60_000, 10)).toHaveLength(1);
  });

  test('the backoff wins when it is longer than Retry-After', async () => {
    const s = await setup([answer(503, { retryAfterMs: 10 })], { attempts: 1, backoffMs: 5000, maxBackoffMs: 5000 });
    s.delivery.send(s.item);
    await settled(s.delivery);
    const [left] = await outbox(s.store);
    expect(left!.nextAttemptAt - START).toBeGreaterThanOrEqual(2500);
    expect(left!.nextAttemptAt - START).toBeLessThanOrEqual(5000);
  });

  describe('with fake timers', () => {
    beforeEach(() => jest.useFakeTimers({ doNotFake: ['nextTick', 'setImmediate', 'queueMicrotask'] }));
    afterEach(() => jest.useRealTimers());

    test('the retry waits for Retry-After (60 s), not just the 1 ms backoff', async () => {
      const s = await setup([answer(429, { retryAfterMs: 60_000 }), answer(204)], { attempts: 2 });
      s.delivery.send(s.item);
      await jest.advanceTimersByTimeAsync(0);
      expect(s.transport.posts).toHaveLength(1);
      await jest.advanceTimersByTimeAsync(59_999);
      expect(s.transport.posts).toHaveLength(1);
      await jest.advanceTimersByTimeAsync(1);
      expect(s.transport.posts).toHaveLength(2);
      await jest.advanceTimersByTimeAsync(0);
      expect(s.delivery.inFlightCount).toBe(0);
      expect(await s.store.outbox.depth()).toBe(0);
      expect(s.events.filter((e) => e.name === 'order:tracked')).toHaveLength(1);
    });
  });
});

describe('Delivery: token_auth', () => {
  test('token_auth is in the POST body Matomo receives, and in no error message', async () => {
    const s = await setup(
      [{ networkError: 'socket hang up' }, answer(503), answer(403, { body: 'You must be logged in' })],
      { tokenAuth: TOKEN, attempts: 5 },
    );
    s.delivery.send(s.item);
    await settled(s.delivery);
    expect(s.transport.posts).toHaveLength(3);
    for (const post of s.transport.posts) expect(new URLSearchParams(post.body).get('token_auth')).toBe(TOKEN);
    expect(s.errors).toHaveLength(1);
    for (const { error } of s.errors) {
      expect(error.message).not.toContain(TOKEN);
      expect(String((error as Error & { cause?: unknown }).cause)).not.toContain(TOKEN);
    }
  });

  test('even when Matomo (or a proxy in front of it) echoes the request in its error page', async () => {
    // A WAF block page or a PHP error in debug mode may repeat the request it refused.
    const echo: Step[] = [];
    const s = await setup(echo, { tokenAuth: TOKEN, attempts: 1 }, { listenForErrors: false });
    echo.push(answer(400, { body: `Bad request: ${s.item.query}&token_auth=${TOKEN}` }));
    s.delivery.send(s.item);
    await settled(s.delivery);
    expect(s.logged).toHaveLength(1);
    expect(s.logged[0]).toContain('400');
    expect(s.logged[0]).not.toContain(TOKEN);
  });
});

describe('Delivery: cdt and old orders', () => {
  test('without a token, an order older than 23 h is sent without cdt, with a warning', async () => {
    const s = await setup([answer(204)]);
    s.clock.now = START + 23 * 60 * 60 * 1000 + 1;
    s.delivery.send(s.item);
    await settled(s.delivery);
    expect(new URLSearchParams(s.transport.posts[0]!.body).has('cdt')).toBe(false);
    expect(s.warnings).toEqual([Warnings.CDT_DROPPED.code]);
  });

  test('with a token, the original cdt is kept however old the order', async () => {
    const s = await setup([answer(204)], { tokenAuth: TOKEN });
    s.clock.now = START + 3 * DAY_MS;
    s.delivery.send(s.item);
    await settled(s.delivery);
    expect(new URLSearchParams(s.transport.posts[0]!.body).get('cdt')).toBe(String(START / 1000));
    expect(s.warnings).toEqual([]);
  });
});

describe('Delivery.close(timeoutMs)', () => {
  async function timeClose(delivery: Delivery, timeoutMs: number, guardMs: number): Promise<number | 'still waiting'> {
    const started = Date.now();
    let guard: NodeJS.Timeout | undefined;
    const result = await Promise.race([
      delivery.close(timeoutMs).then(() => Date.now() - started),
      new Promise<'still waiting'>((resolve) => {
        guard = setTimeout(() => resolve('still waiting'), guardMs);
      }),
    ]);
    clearTimeout(guard);
    return result;
  }

  test('a Matomo that never answers: close resolves after about the timeout and the item stays in the outbox', async () => {
    const s = await setup(['hang']);
    s.delivery.send(s.item);
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(s.transport.posts).toHaveLength(1);
    const took = await timeClose(s.delivery, 200, 2000);
    expect(took).not.toBe('still waiting');
    expect(took).toBeGreaterThanOrEqual(190);
    expect(took).toBeLessThan(1000);
    expect(s.delivery.inFlightCount).toBe(0);
    expect(await s.store.outbox.depth()).toBe(1);
    expect(s.events.some((e) => e.name === 'order:tracked')).toBe(false);
  });

  test('close resolves within about the timeout even if the transport ignores the abort', async () => {
    const s = await setup(['hang-forever']);
    s.delivery.send(s.item);
    await new Promise((resolve) => setTimeout(resolve, 5));
    const took = await timeClose(s.delivery, 200, 2000);
    expect(took).not.toBe('still waiting');
    expect(took).toBeLessThan(1000);
    expect(await s.store.outbox.depth()).toBe(1);
  });

  test('a send in flight that finishes before the timeout is completed, not aborted', async () => {
    const s = await setup([answer(503), answer(204)], { backoffMs: 20, maxBackoffMs: 20 });
    s.delivery.send(s.item);
    const took = await timeClose(s.delivery, 2000, 4000);
    expect(took).toBeLessThan(1000);
    expect(s.transport.posts).toHaveLength(2);
    expect(await s.store.outbox.depth()).toBe(0);
  });

  test('with nothing in flight, close resolves at once', async () => {
    const s = await setup([]);
    const took = await timeClose(s.delivery, 5000, 1000);
    expect(took).toBeLessThan(100);
  });
});
