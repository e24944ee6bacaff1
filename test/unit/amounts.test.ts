import fc from 'fast-check';
import { formatAmount, sameAmount, toScaledAmount } from '../../src/amounts';

describe('formatAmount: plain decimals Matomo can store', () => {
  test.each<[number, string]>([
    [123.45, '123.45'],
    [12.5, '12.5'],
    [3.55, '3.55'],
    [0, '0'],
    [249, '249'],
    [0.1 + 0.2, '0.3'],
    [1e-7, '0'],
    [0.00004, '0'],
    [0.00005, '0.0001'],
    [1.23456, '1.2346'],
    [1e11, '100000000000'],
  ])('%p is written %p', (value, text) => {
    expect(formatAmount(value)).toBe(text);
  });

  test('never writes an exponent, and at most 4 decimals', () => {
    for (const value of [1e-7, 5e-5, 1e11, 123456789.123456, 0.1 + 0.2]) {
      expect(formatAmount(value)).toMatch(/^\d+(\.\d{1,4})?$/);
    }
  });

  test.each([NaN, Infinity, -Infinity, -0.01, -1, 1e21])('rejects %p', (value) => {
    expect(() => formatAmount(value)).toThrow(RangeError);
  });
});

describe('sameAmount: the gateway confirms the order total', () => {
  test('"12.50" from the gateway equals the order revenue 12.5', () => {
    expect(sameAmount('12.50', 12.5)).toBe(true);
  });

  test('"12.51" does not equal 12.5', () => {
    expect(sameAmount('12.51', 12.5)).toBe(false);
  });

  test('0.1 + 0.2 equals "0.3"', () => {
    expect(sameAmount(0.1 + 0.2, '0.3')).toBe(true);
  });

  test.each(['12,50', '-12.50', '1e3', '', ' ', 'abc', '12.5.0'])('an amount written %p matches nothing', (text) => {
    expect(toScaledAmount(text)).toBeNull();
    expect(sameAmount(text, 12.5)).toBe(false);
  });

  test('NaN never matches, not even itself', () => {
    expect(sameAmount(NaN, NaN)).toBe(false);
  });
});

describe('properties over every amount in cents', () => {
  const cents = fc.integer({ min: 0, max: 1e9 });

  test('a gateway amount written with two decimals matches the same number of cents', () => {
    fc.assert(
      fc.property(cents, (c) => {
        expect(sameAmount((c / 100).toFixed(2), c / 100)).toBe(true);
      }),
    );
  });

  test('one cent more never matches', () => {
    fc.assert(
      fc.property(cents, (c) => {
        expect(sameAmount(((c + 1) / 100).toFixed(2), c / 100)).toBe(false);
      }),
    );
  });

  test('formatAmount parses back to the same amount and is a plain decimal', () => {
    fc.assert(
      fc.property(cents, (c) => {
        const text = formatAmount(c / 100);
        expect(text).toMatch(/^\d+(\.\d{1,2})?$/);
        expect(Number(text)).toBe(c / 100);
      }),
    );
  });
});
