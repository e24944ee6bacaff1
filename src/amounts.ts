/**
 * Money as Matomo and gateways need it. Matomo stores amounts with 4 decimals
 * at most and reads them as plain decimals, so `1e-7` or `1e21` must never be sent.
 */

const SCALE = 10_000; // 4 decimals
const MAX_AMOUNT = 1e12; // far above any real order, far below 2^53 / SCALE

/** True for a finite, non-negative amount Matomo can store. */
export function isValidAmount(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 && value < MAX_AMOUNT;
}

/** `12.5` → `"12.5"`, `3.55` → `"3.55"`, `0.00004` → `"0"`: plain decimal, ≤ 4 decimals. */
export function formatAmount(value: number): string {
  if (!isValidAmount(value)) throw new RangeError(`not a valid amount: ${String(value)}`);
  const scaled = Math.round(value * SCALE);
  const whole = Math.floor(scaled / SCALE);
  const fraction = String(scaled % SCALE).padStart(4, '0').replace(/0+$/, '');
  return fraction ? `${whole}.${fraction}` : String(whole);
}

/**
 * Parses an amount a gateway sent ("12.50", "12", 12.5) into units of 1/10000,
 * or `null` when it is not a plain non-negative decimal.
 */
export function toScaledAmount(value: string | number): number | null {
  if (typeof value === 'number') {
    return isValidAmount(value) ? Math.round(value * SCALE) : null;
  }
  const text = value.trim();
  if (!/^\d{1,12}(\.\d{1,8})?$/.test(text)) return null;
  return Math.round(Number(text) * SCALE);
}

/** Same money? Compares at 4 decimals so that "12.50" equals 12.5 and 0.1 + 0.2 equals 0.3. */
export function sameAmount(a: string | number, b: string | number): boolean {
  const left = toScaledAmount(a);
  const right = toScaledAmount(b);
  return left !== null && right !== null && left === right;
}
