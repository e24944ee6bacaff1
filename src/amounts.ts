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

/**
 * ISO 4217 minor-unit exponents other than 2. A table rather than `Intl`: CLDR's
 * display digits differ from ISO's (e.g. IQD), and gateways follow ISO plus their own exceptions.
 */
const ISO_4217_EXPONENTS: Readonly<Record<string, number>> = {
  BIF: 0, CLP: 0, DJF: 0, GNF: 0, ISK: 0, JPY: 0, KMF: 0, KRW: 0, PYG: 0, RWF: 0, UGX: 0, UYI: 0, VND: 0, VUV: 0, XAF: 0, XOF: 0, XPF: 0,
  BHD: 3, IQD: 3, JOD: 3, KWD: 3, LYD: 3, OMR: 3, TND: 3,
  CLF: 4, UYW: 4,
};

/** Digits after the decimal point of `currency`'s minor unit: ISO 4217, then the gateway's own `exceptions`. */
export function currencyExponent(currency: string, exceptions: Readonly<Record<string, number>> = {}): number {
  const code = currency.toUpperCase();
  return exceptions[code] ?? ISO_4217_EXPONENTS[code] ?? 2;
}

/**
 * A gateway's integer amount in minor units as a major-unit decimal string:
 * `(1250, 'EUR')` → `"12.50"`, `(1250, 'JPY')` → `"1250"`, `(1250, 'KWD')` → `"1.250"`.
 * Done on digits, not by dividing floats, so no amount is ever off by a rounding error.
 * `null` when `minor` is not a non-negative integer.
 */
export function fromMinorUnits(minor: number | string, currency: string, exceptions?: Readonly<Record<string, number>>): string | null {
  const digits = typeof minor === 'number' ? (Number.isSafeInteger(minor) && minor >= 0 ? String(minor) : '') : minor;
  if (!/^\d{1,15}$/.test(digits)) return null;
  const exponent = currencyExponent(currency, exceptions);
  if (exponent === 0) return String(Number(digits));
  const padded = digits.padStart(exponent + 1, '0');
  return `${String(Number(padded.slice(0, -exponent)))}.${padded.slice(-exponent)}`;
}
