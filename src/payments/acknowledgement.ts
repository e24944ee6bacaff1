import type { Acknowledgement, ProcessingResult, VerificationFailureKind } from './gateway';

/** The status of a refusal, whatever the adapter's `acknowledge` returns: gateways retry on 503 only. */
export const FAILURE_STATUS: Readonly<Record<VerificationFailureKind, number>> = { unauthentic: 401, malformed: 400, transient: 503 };

/** Our answer when the adapter does not shape one: JSON, with the status codes gateways retry on. */
export function defaultAcknowledgement(result: ProcessingResult): Acknowledgement {
  if (result.ok) {
    return { status: 200, contentType: 'application/json', body: JSON.stringify({ received: true, duplicate: result.duplicate }) };
  }
  return {
    status: FAILURE_STATUS[result.kind],
    contentType: 'application/json',
    body: JSON.stringify({ error: result.kind, message: result.reason }),
    ...(result.kind === 'transient' && { headers: { 'retry-after': '5' } }),
  };
}
