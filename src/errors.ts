/**
 * Error classes with stable codes. Shops match on `code`, never on the message:
 * messages may be reworded to explain a fix better, codes never change.
 */

export type ErrorCode =
  | 'ERR_MST_CONFIG'
  | 'ERR_MST_BODY_ALREADY_PARSED'
  | 'ERR_MST_STORE'
  | 'ERR_MST_ORDER_INVALID'
  | 'ERR_MST_AMOUNT_MISMATCH'
  | 'ERR_MST_ORDER_REPOSITORY'
  | 'ERR_MST_GATEWAY'
  | 'ERR_MST_DELIVERY';

export class MatomoTrackingError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'MatomoTrackingError';
    this.code = code;
  }
}

/** One problem found in the options, with the fix spelled out. */
export interface ConfigIssue {
  /** Dotted option path, e.g. `matomo.domain`. */
  path: string;
  /** What is wrong and what to write instead. */
  message: string;
}

/**
 * Thrown by `matomoServerTracking()` when the options are wrong. It lists every
 * problem at once so the shop fixes its configuration in one go, and nothing is
 * half-enabled: no router, no timer, no connection exists after it is thrown.
 */
export class ConfigError extends MatomoTrackingError {
  readonly issues: readonly ConfigIssue[];

  constructor(issues: readonly ConfigIssue[]) {
    const lines = issues.map((issue) => `  - ${issue.path || '(options)'}: ${issue.message}`);
    super(
      'ERR_MST_CONFIG',
      `matomo-server-tracking: invalid options, server-side tracking cannot be enabled. Fix ${
        issues.length === 1 ? 'this problem' : `these ${issues.length} problems`
      }:\n${lines.join('\n')}`,
    );
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

/** The store (memory or Redis) failed or timed out. */
export class StoreError extends MatomoTrackingError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_MST_STORE', message, options);
    this.name = 'StoreError';
  }
}

/** An order that cannot be sent to Matomo as it is (bad amount, id too long, bad item). */
export class InvalidOrderError extends MatomoTrackingError {
  constructor(message: string) {
    super('ERR_MST_ORDER_INVALID', message);
    this.name = 'InvalidOrderError';
  }
}

/** Our error as it is, anything else wrapped with `code` (the cause kept for debugging). */
export function asTrackingError(error: unknown, code: ErrorCode): MatomoTrackingError {
  if (error instanceof MatomoTrackingError) return error;
  if (code === 'ERR_MST_STORE') return new StoreError(error instanceof Error ? error.message : String(error), { cause: error });
  return new MatomoTrackingError(code, error instanceof Error ? error.message : String(error), { cause: error });
}
