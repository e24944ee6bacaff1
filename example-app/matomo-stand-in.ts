import express, { type Request, type Response, Router } from 'express';

/** One tracking request as the stand-in saw it. */
export interface ReceivedRequest {
  /** `server` when our middleware sent it (its User-Agent), `browser` otherwise (matomo.js). */
  channel: 'server' | 'browser';
  params: Record<string, string>;
  /** True when Matomo would have recorded it. */
  accepted: boolean;
  /** Why it was refused. */
  reason?: string;
  /** A `token_auth` travelled in the URL (a leak: it must only ever be in the body). */
  tokenInUrl: boolean;
  bulk: boolean;
  at: number;
}

/** What a fault rule sees of one `/matomo.php` request, before the stand-in handles it. */
export interface FaultRequest {
  req: Request;
  /** The `ec_id`s the request carries: one for a single order, several for a bulk request. */
  ecIds: string[];
  bulk: boolean;
}

/**
 * An injected failure: answer `status` (with `headers`, e.g. `Retry-After`, and `body`),
 * or `'hang'`: keep the connection open and never answer (close the server with
 * `closeAllConnections()` to end it).
 */
export type Fault = { status: number; headers?: Record<string, string>; body?: string } | 'hang';

/** Decides, per request, whether to fail it; `null` lets the stand-in handle it normally. */
export type FaultRule = (request: FaultRequest) => Fault | null;

/** A request answered by the fault rule instead of being tracked. */
export interface FaultedRequest {
  ecIds: string[];
  bulk: boolean;
  /** The status answered, or `'hang'`. */
  fault: number | 'hang';
  at: number;
}

export interface MatomoStandIn {
  /** Mount at the root: serves `/matomo.php`, `/matomo.js`, `/matomo/received(.json)`. */
  router: Router;
  received: ReceivedRequest[];
  /** Accepted ecommerce orders by `ec_id`, with the channel that recorded each. */
  orders(): Map<string, ReceivedRequest>;
  /** Every request for `ecId`, accepted or refused. */
  requestsFor(ecId: string): ReceivedRequest[];
  /** Answer the next `count` requests with `status` (to test retries). */
  failNext(count: number, status: number): void;
  /** Consults `rule` before handling each `/matomo.php` request (fault injection); `null` removes it. */
  setFault(rule: FaultRule | null): void;
  /** Requests the fault rule answered (or left hanging), in order of arrival. */
  faulted: FaultedRequest[];
  /**
   * Refuses single tracking requests for which `rule` returns a reason, as Matomo refuses
   * invalid ones: a single request gets 400 with the reason, a bulk request lists it in
   * `invalid_indices`. `null` removes it (the cause is fixed).
   */
  setRefusal(rule: ((params: Record<string, string>) => string | null) | null): void;
}

const SERVER_USER_AGENT = /^matomo-server-tracking/;

/**
 * A Matomo stand-in good enough to watch the middleware work: it accepts single
 * (GET/POST) and bulk tracking requests and, like Matomo, refuses a second
 * ecommerce order with the same `ec_id` for a site.
 */
export function createMatomoStandIn(): MatomoStandIn {
  const received: ReceivedRequest[] = [];
  const seen = new Map<string, ReceivedRequest>(); // `${idsite}:${ec_id}`
  let failures: { count: number; status: number } = { count: 0, status: 500 };
  let faultRule: FaultRule | null = null;
  let refusalRule: ((params: Record<string, string>) => string | null) | null = null;
  const faulted: FaultedRequest[] = [];

  function track(params: Record<string, string>, req: Request, bulk: boolean, tokenInUrl: boolean): ReceivedRequest {
    const entry: ReceivedRequest = {
      channel: SERVER_USER_AGENT.test(req.get('user-agent') ?? '') ? 'server' : 'browser',
      params,
      accepted: true,
      tokenInUrl,
      bulk,
      at: Date.now(),
    };
    const refusal = refusalRule?.(params) ?? null;
    if (!/^[1-9]\d*$/.test(params.idsite ?? '')) {
      entry.accepted = false;
      entry.reason = 'invalid idsite';
    } else if (params.rec !== '1') {
      entry.accepted = false;
      entry.reason = 'rec=1 missing';
    } else if (refusal !== null) {
      entry.accepted = false;
      entry.reason = refusal;
    } else if (params.idgoal === '0' && params.ec_id !== undefined) {
      const key = `${params.idsite}:${params.ec_id}`;
      if (seen.has(key)) {
        entry.accepted = false;
        entry.reason = `order ${params.ec_id} was already recorded`;
      } else {
        seen.set(key, entry);
      }
    }
    received.push(entry);
    return entry;
  }

  const router = Router();
  const form = express.urlencoded({ extended: false, limit: '1mb' });
  const text = express.text({ type: ['application/json', 'text/plain'], limit: '5mb' });

  router.all('/matomo.php', form, text, function matomoTrackingEndpoint(req: Request, res: Response) {
    if (faultRule) {
      const { ecIds, bulk } = describeRequest(req);
      const fault = faultRule({ req, ecIds, bulk });
      if (fault) {
        faulted.push({ ecIds, bulk, fault: fault === 'hang' ? 'hang' : fault.status, at: Date.now() });
        if (fault === 'hang') return;
        res.status(fault.status).set(fault.headers ?? {}).send(fault.body ?? 'stand-in fault');
        return;
      }
    }
    if (failures.count > 0) {
      failures.count--;
      res.status(failures.status).send('stand-in failure');
      return;
    }
    const query = Object.fromEntries(new URL(req.originalUrl, 'http://x').searchParams);
    const tokenInUrl = 'token_auth' in query;
    if (typeof req.body === 'string' && req.body.trim().startsWith('{')) {
      let bulk: { requests?: unknown; token_auth?: unknown };
      try {
        bulk = JSON.parse(req.body) as typeof bulk;
      } catch {
        res.status(400).send('invalid JSON');
        return;
      }
      if (!Array.isArray(bulk.requests)) {
        res.status(400).send('requests missing');
        return;
      }
      const invalidIndices: number[] = [];
      bulk.requests.forEach((request: unknown, index: number) => {
        const valid = typeof request === 'string' && request.startsWith('?');
        const entry = valid
          ? track(Object.fromEntries(new URLSearchParams(request.slice(1))), req, true, tokenInUrl)
          : null;
        if (!entry?.accepted) invalidIndices.push(index);
      });
      res.json({
        status: 'success',
        tracked: bulk.requests.length - invalidIndices.length,
        invalid: invalidIndices.length,
        invalid_indices: invalidIndices,
      });
      return;
    }
    const body = typeof req.body === 'object' && req.body !== null ? (req.body as Record<string, string>) : {};
    const entry = track({ ...query, ...body }, req, false, tokenInUrl);
    if (!entry.accepted) {
      res.status(400).type('text/plain').send(entry.reason);
      return;
    }
    res.status(204).end();
  });

  router.get('/matomo.js', function matomoJsStandIn(_req, res) {
    res.type('application/javascript').send(BROWSER_TRACKER);
  });

  router.get('/matomo/received.json', (_req, res) => {
    res.json(received.map(({ params, ...rest }) => ({ ...rest, params: redact(params) })));
  });

  router.get('/matomo/received', (_req, res) => {
    const rows = received
      .filter((entry) => entry.params.ec_id !== undefined)
      .map(
        (entry) =>
          `<tr><td>${escapeHtml(entry.params.ec_id ?? '')}</td><td>${entry.channel}</td><td>${escapeHtml(entry.params.revenue ?? '')}</td>` +
          `<td>${entry.accepted ? 'recorded' : `refused: ${escapeHtml(entry.reason ?? '')}`}</td><td>${new Date(entry.at).toISOString()}</td></tr>`,
      )
      .join('');
    res.type('html').send(
      `<!doctype html><meta charset="utf-8"><title>Matomo stand-in</title><h1>Orders received by the Matomo stand-in</h1>` +
        `<p>Server: sent by matomo-server-tracking after the gateway's callback. Browser: sent by matomo.js from the confirmation page.</p>` +
        `<table border="1" cellpadding="4"><tr><th>ec_id</th><th>channel</th><th>revenue</th><th>result</th><th>at</th></tr>${rows}</table>` +
        `<p><a href="/">Back to the shop</a></p>`,
    );
  });

  return {
    router,
    received,
    orders: () => new Map([...seen].map(([key, entry]) => [key.slice(key.indexOf(':') + 1), entry])),
    requestsFor: (ecId) => received.filter((entry) => entry.params.ec_id === ecId),
    failNext(count, status) {
      failures = { count, status };
    },
    setFault(rule) {
      faultRule = rule;
    },
    faulted,
    setRefusal(rule) {
      refusalRule = rule;
    },
  };
}

/** The `ec_id`s of a tracking request, read without tracking it. */
function describeRequest(req: Request): { ecIds: string[]; bulk: boolean } {
  if (typeof req.body === 'string' && req.body.trim().startsWith('{')) {
    try {
      const { requests } = JSON.parse(req.body) as { requests?: unknown };
      const ecIds = Array.isArray(requests)
        ? requests.flatMap((request: unknown) =>
            typeof request === 'string' ? (new URLSearchParams(request.replace(/^\?/, '')).get('ec_id') ?? []) : [],
          )
        : [];
      return { ecIds, bulk: true };
    } catch {
      return { ecIds: [], bulk: true };
    }
  }
  const query = new URL(req.originalUrl, 'http://x').searchParams;
  const body = typeof req.body === 'object' && req.body !== null ? (req.body as Record<string, string>) : {};
  const ecId = body.ec_id ?? query.get('ec_id');
  return { ecIds: ecId ? [ecId] : [], bulk: false };
}

function redact(params: Record<string, string>): Record<string, string> {
  const { token_auth: token, ...rest } = params;
  return token === undefined ? rest : { ...rest, token_auth: '***' };
}

function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (char) => `&#${char.charCodeAt(0)};`);
}

/**
 * A tiny stand-in for matomo.js: it runs the `_paq` calls our snippet pushes
 * (and the usual setup calls) and POSTs them to the tracker URL. Only for the demo.
 */
const BROWSER_TRACKER = `(function () {
  var trackerUrl = '/matomo.php', siteId = '1', items = [];
  function send(params) {
    params.idsite = siteId; params.rec = '1'; params.send_image = '0';
    fetch(trackerUrl, { method: 'POST', keepalive: true, body: new URLSearchParams(params) });
  }
  var api = {
    setTrackerUrl: function (url) { trackerUrl = url; },
    setSiteId: function (id) { siteId = String(id); },
    trackPageView: function () { send({ action_name: document.title, url: location.href }); },
    enableLinkTracking: function () {},
    addEcommerceItem: function (sku, name, category, price, quantity) { items.push([sku, name || '', category || '', String(price || 0), quantity || 1]); },
    trackEcommerceOrder: function (orderId, total, subTotal, tax, shipping, discount) {
      var p = { idgoal: '0', ec_id: orderId, revenue: String(total), ec_items: JSON.stringify(items), url: location.href };
      if (subTotal !== undefined) p.ec_st = String(subTotal);
      if (tax !== undefined) p.ec_tx = String(tax);
      if (shipping !== undefined) p.ec_sh = String(shipping);
      if (discount !== undefined) p.ec_dt = String(discount);
      items = []; send(p);
    }
  };
  function run(call) { var f = api[call[0]]; if (f) f.apply(null, call.slice(1)); }
  var queue = window._paq || [];
  queue.filter(function (c) { return c[0] === 'setTrackerUrl' || c[0] === 'setSiteId'; }).forEach(run);
  queue.filter(function (c) { return c[0] !== 'setTrackerUrl' && c[0] !== 'setSiteId'; }).forEach(run);
  window._paq = { push: run };
})();`;
