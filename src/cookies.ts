import type { IncomingHttpHeaders } from 'node:http';

/** Longest cookie value we look at; browsers cap a cookie at 4 KiB anyway. */
const MAX_VALUE_LENGTH = 4096;

/**
 * Parses the Cookie header without cookie-parser (which the shop may not use).
 * The first occurrence of a name wins, as in browsers' ordering by path length.
 */
export function parseCookies(headers: IncomingHttpHeaders): Map<string, string> {
  const cookies = new Map<string, string>();
  const header = headers.cookie;
  if (typeof header !== 'string') return cookies;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    const name = part.slice(0, eq).trim();
    let value = part.slice(eq + 1).trim();
    if (!name || cookies.has(name) || value.length > MAX_VALUE_LENGTH) continue;
    if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) value = value.slice(1, -1);
    try {
      cookies.set(name, decodeURIComponent(value));
    } catch {
      cookies.set(name, value);
    }
  }
  return cookies;
}
