import type { VerificationResult } from '../../src/payments/gateway';

/** Asserts a refused verification and returns it narrowed, for checking `kind` and `reason`. */
export function failure(result: VerificationResult): Extract<VerificationResult, { ok: false }> {
  expect(result.ok).toBe(false);
  return result as Extract<VerificationResult, { ok: false }>;
}

/** The events of an accepted verification; a refusal fails the test with its reason. */
export function events(result: VerificationResult) {
  if (!result.ok) throw new Error(`${result.kind}: ${result.reason}`);
  return result.events;
}
