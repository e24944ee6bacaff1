import type { IncomingHttpHeaders } from 'node:http';
import type { PaymentEvent } from '../orders';

/** What the callback router hands an adapter: the request as the gateway sent it. */
export interface GatewayRequest {
  method: string;
  headers: IncomingHttpHeaders;
  query: Record<string, unknown>;
  /** The body exactly as received: signatures are computed over these bytes. */
  rawBody: Buffer;
  /** When the router received the request (ms since epoch), from the injectable clock. */
  receivedAt: number;
}

/** Events without the gateway name: the router fills that in from the route. */
export type ParsedPaymentEvent = Omit<PaymentEvent, 'gateway' | 'rejectionReason'>;

export type VerificationFailureKind =
  /** Signature missing or wrong, timestamp outside the tolerance: 401, no state change. */
  | 'unauthentic'
  /** Authentic or not, the body cannot be understood: 400, no state change. */
  | 'malformed'
  /** Verification could not be completed now (e.g. the gateway's verify endpoint is down): 503, the gateway retries. */
  | 'transient';

export type VerificationResult =
  | { ok: true; events: ParsedPaymentEvent[] }
  | { ok: false; kind: VerificationFailureKind; reason: string };

/** The router's verdict on a notification, given to the adapter to shape the answer. */
export type ProcessingResult =
  | {
      ok: true;
      /** Every event of the notification had been processed before (a redelivery). */
      duplicate: boolean;
      events: PaymentEvent[];
    }
  | {
      ok: false;
      /** `transient` also covers an unavailable store or another notification for the same order still in progress. */
      kind: VerificationFailureKind;
      reason: string;
    };

export interface Acknowledgement {
  status: number;
  body?: string;
  contentType?: string;
  headers?: Record<string, string>;
}

/**
 * A payment gateway's server-to-server notification format. Verification must
 * happen before any side effect and must fail closed. Shops can write their own.
 */
export interface GatewayAdapter {
  verifyAndParse(request: GatewayRequest): VerificationResult | Promise<VerificationResult>;
  /**
   * Shapes the HTTP answer (status, body, content type). When absent, the router answers JSON.
   * For a refusal the router keeps its own status whatever this returns: 401 unauthentic,
   * 400 malformed, 503 transient (with `Retry-After`).
   */
  acknowledge?(result: ProcessingResult): Acknowledgement;
}
