import { timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';

/**
 * An event key from its parts, each encoded: `['A:paid', '']` and `['A', 'paid:']`
 * must not both become `A:paid:`, or one notification is dropped as the other's duplicate.
 */
export function joinEventKey(...parts: Array<string | number>): string {
  return parts.map((part) => encodeURIComponent(String(part))).join(':');
}

/**
 * The header's value when it is a single string, else `null` (missing, or an array).
 * Node only hands us an array for the few headers it never joins (`set-cookie`) or when a
 * test builds the headers itself; a signature or timestamp header sent twice usually arrives
 * already joined into one string (`a, b`), and it is the caller's format check that refuses it.
 */
export function singleHeader(headers: IncomingHttpHeaders, name: string): string | null {
  const value = headers[name];
  return typeof value === 'string' ? value : null;
}

/**
 * Whether a signed timestamp (unix seconds) is within `toleranceSec` of when we received the
 * request (ms since epoch), in both directions: the skew in seconds, or why it is refused.
 */
export function withinTolerance(
  timestampSec: number,
  receivedAtMs: number,
  toleranceSec: number,
): { ok: true; skewSec: number } | { ok: false; reason: string } {
  const skewSec = Math.abs(receivedAtMs / 1000 - timestampSec);
  if (skewSec > toleranceSec) {
    return { ok: false, reason: `timestamp is ${Math.round(skewSec)} s away from our clock (tolerance ${toleranceSec} s)` };
  }
  return { ok: true, skewSec };
}

/** Constant-time comparison that tolerates different lengths (which `timingSafeEqual` throws on). */
export function sameBytes(expected: Buffer, given: Buffer): boolean {
  return expected.length === given.length && timingSafeEqual(expected, given);
}

/** `value` as a non-empty list of strings that all pass `valid`, or `null`. */
export function stringList(value: unknown, valid: (item: string) => boolean): string[] | null {
  const list = Array.isArray(value) ? (value as unknown[]) : [value];
  if (list.length === 0 || !list.every((item): item is string => typeof item === 'string' && valid(item))) return null;
  return list as string[];
}

/** A plain JSON object (not an array, not null). */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A non-empty string of at most `max` characters, or `undefined`. */
export function nonEmptyString(value: unknown, max = 200): string | undefined {
  return typeof value === 'string' && value.length > 0 && value.length <= max ? value : undefined;
}

export const ISO_CURRENCY = /^[A-Za-z]{3}$/;
