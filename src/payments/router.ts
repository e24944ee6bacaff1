import express, { type Request, type Response, Router } from 'express';
import { asTrackingError, type ErrorCode, MatomoTrackingError, StoreError } from '../errors';
import type { Emit } from '../events';
import type { PaymentEvent } from '../orders';
import { defaultAcknowledgement, FAILURE_STATUS } from './acknowledgement';
import type { Acknowledgement, GatewayAdapter, ProcessingResult } from './gateway';
import type { SettleOutcome } from './settle';

/** Large enough for any gateway's batch (Adyen sends up to 100 items), small enough to refuse floods. */
const BODY_LIMIT = '1mb';

export const BODY_ALREADY_PARSED_MESSAGE =
  'matomo-server-tracking: the callback body was already parsed by another middleware (usually a global express.json() or ' +
  'express.urlencoded()), so its signature cannot be verified. Mount app.use(matomoServerTracking(...)) before your body ' +
  'parsers, or exclude the callback path from them.';

export interface CallbackRouterOptions {
  path: string;
  gateways: ReadonlyMap<string, GatewayAdapter>;
  now: () => number;
  emit: Emit;
  isClosed(): boolean;
  settle(event: PaymentEvent): Promise<SettleOutcome>;
}

/**
 * `POST <path>` with `:gateway`: raw body → adapter verification → rules → acknowledgement.
 * Nothing changes before the adapter has verified the notification.
 */
export function createCallbackRouter(options: CallbackRouterOptions): Router {
  const router = Router();
  const rawBody = express.raw({ type: () => true, limit: BODY_LIMIT });

  router.post(options.path, rawBody, async function matomoPaymentCallback(req: Request, res: Response) {
    const adapter = options.gateways.get(String(req.params.gateway));
    if (!adapter) {
      res.status(404).json({ error: 'unknown-gateway', message: `no gateway named '${String(req.params.gateway)}' is configured` });
      return;
    }
    const answer = (result: ProcessingResult) => send(res, acknowledgement(adapter, result, options.emit));

    if (options.isClosed()) {
      answer({ ok: false, kind: 'transient', reason: 'shutting down' });
      return;
    }
    const body: unknown = req.body;
    if (body !== undefined && !Buffer.isBuffer(body)) {
      options.emit('error', { code: 'ERR_MST_BODY_ALREADY_PARSED', error: new MatomoTrackingError('ERR_MST_BODY_ALREADY_PARSED', BODY_ALREADY_PARSED_MESSAGE) });
      res.status(500).json({ error: 'body-already-parsed', message: BODY_ALREADY_PARSED_MESSAGE });
      return;
    }

    const gateway = String(req.params.gateway);
    let verification;
    try {
      verification = await adapter.verifyAndParse({
        method: req.method,
        headers: req.headers,
        query: req.query as Record<string, unknown>,
        rawBody: body ?? Buffer.alloc(0),
        receivedAt: options.now(),
      });
    } catch (error) {
      // An adapter that throws has verified nothing: fail closed, and let the gateway retry.
      report(options.emit, error, 'ERR_MST_GATEWAY');
      answer({ ok: false, kind: 'transient', reason: 'the gateway adapter failed' });
      return;
    }
    if (!verification.ok) {
      answer(verification);
      return;
    }

    const events: PaymentEvent[] = verification.events.map((event) => ({ ...event, gateway }));
    let duplicates = 0;
    for (const event of events) {
      let outcome: SettleOutcome;
      try {
        outcome = await options.settle(event);
      } catch (error) {
        // Verified, so whatever failed is ours (store, the shop's repository): the gateway retries.
        // Gateways log our answers: say what kind of problem, never the shop's internals.
        report(options.emit, error, 'ERR_MST_ORDER_REPOSITORY', event.orderId);
        answer({ ok: false, kind: 'transient', reason: error instanceof StoreError ? 'store unavailable' : 'temporary failure, retry later' });
        return;
      }
      if (outcome.status === 'retry') {
        answer({ ok: false, kind: 'transient', reason: outcome.reason });
        return;
      }
      if (outcome.status === 'duplicate') duplicates++;
    }
    answer({ ok: true, duplicate: events.length > 0 && duplicates === events.length, events });
  });

  return router;
}

/**
 * The adapter shapes the answer (Adyen wants `[accepted]`, PayPal an empty 200), but the
 * status of a refusal is ours: a 2xx to an unverifiable callback would hide a wrong secret
 * from the gateway's dashboard, and a 4xx to a transient failure would stop its retries.
 */
function acknowledgement(adapter: GatewayAdapter, result: ProcessingResult, emit: Emit): Acknowledgement {
  let ack: Acknowledgement;
  try {
    ack = adapter.acknowledge ? adapter.acknowledge(result) : defaultAcknowledgement(result);
  } catch (error) {
    report(emit, error, 'ERR_MST_GATEWAY');
    ack = defaultAcknowledgement(result);
  }
  if (result.ok) return ack;
  const forced = { ...ack, status: FAILURE_STATUS[result.kind] };
  if (result.kind === 'transient') forced.headers = { 'retry-after': '5', ...ack.headers };
  return forced;
}

function report(emit: Emit, error: unknown, fallback: ErrorCode, orderId?: string): void {
  const wrapped = asTrackingError(error, fallback);
  emit('error', { code: wrapped.code, error: wrapped, ...(orderId !== undefined && { orderId }) });
}

function send(res: Response, ack: Acknowledgement): void {
  res.status(ack.status);
  for (const [name, value] of Object.entries(ack.headers ?? {})) res.setHeader(name, value);
  if (ack.contentType) res.type(ack.contentType);
  res.send(ack.body ?? '');
}
