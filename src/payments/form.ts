import { TextDecoder } from 'node:util';

/**
 * `application/x-www-form-urlencoded` bodies as gateways send them. Values are kept
 * as the bytes they stand for, because a MAC may be computed over those bytes
 * (Nexi) and the text needs the sender's charset (PayPal IPN defaults to windows-1252).
 */

/** Field name → every value it was given, as bytes. A name given twice is a reason for suspicion, not for picking one. */
export type FormBytes = Map<string, Buffer[]>;

const PLUS = 0x2b;
const PERCENT = 0x25;
const AMPERSAND = 0x26;
const EQUALS = 0x3d;

function hexValue(byte: number | undefined): number {
  if (byte === undefined) return -1;
  if (byte >= 0x30 && byte <= 0x39) return byte - 0x30;
  const lower = byte | 0x20;
  return lower >= 0x61 && lower <= 0x66 ? lower - 0x61 + 10 : -1;
}

/** Percent-decodes one name or value; `+` is a space; a `%` not followed by two hex digits stays as it is (as browsers do). */
function unescapeBytes(raw: Buffer): Buffer {
  const out = Buffer.alloc(raw.length);
  let length = 0;
  for (let i = 0; i < raw.length; i++) {
    const byte = raw[i]!;
    if (byte === PLUS) {
      out[length++] = 0x20;
    } else if (byte === PERCENT && hexValue(raw[i + 1]) >= 0 && hexValue(raw[i + 2]) >= 0) {
      out[length++] = hexValue(raw[i + 1]) * 16 + hexValue(raw[i + 2]);
      i += 2;
    } else {
      out[length++] = byte;
    }
  }
  return out.subarray(0, length);
}

/**
 * Splits the body into fields. Names are read as Latin-1: every gateway field name
 * we use is ASCII, and Latin-1 maps each byte to one character, so nothing is lost.
 */
export function parseFormBytes(body: Buffer): FormBytes {
  const fields: FormBytes = new Map();
  let start = 0;
  while (start <= body.length) {
    let end = body.indexOf(AMPERSAND, start);
    if (end === -1) end = body.length;
    const pair = body.subarray(start, end);
    if (pair.length > 0) {
      const equals = pair.indexOf(EQUALS);
      const name = unescapeBytes(equals === -1 ? pair : pair.subarray(0, equals)).toString('latin1');
      const value = equals === -1 ? Buffer.alloc(0) : unescapeBytes(pair.subarray(equals + 1));
      fields.set(name, [...(fields.get(name) ?? []), value]);
    }
    start = end + 1;
  }
  return fields;
}

/** The `charset` parameter of a Content-Type header, lower-cased, or `null`. */
export function charsetOf(contentType: string | undefined): string | null {
  const match = /;\s*charset\s*=\s*"?([^";\s]+)"?/i.exec(contentType ?? '');
  return match ? match[1]!.toLowerCase() : null;
}

/** A decoder for `charset`, or `null` when the platform does not know the charset. Fatal, so bad bytes are an error, not U+FFFD. */
export function decoderFor(charset: string): TextDecoder | null {
  try {
    return new TextDecoder(charset, { fatal: true });
  } catch {
    return null;
  }
}

/** The fields as text; fields given more than once keep all their values. Throws a `TypeError` on bytes invalid in the charset. */
export function decodeForm(fields: FormBytes, decoder: TextDecoder): Map<string, string[]> {
  const text = new Map<string, string[]>();
  for (const [name, values] of fields) text.set(name, values.map((value) => decoder.decode(value)));
  return text;
}
