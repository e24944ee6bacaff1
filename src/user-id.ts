import type { Request } from 'express';
import type { Order } from './orders';

/** Matomo's `log_visit.user_id` is varchar(200). */
export const MAX_USER_ID_LENGTH = 200;

/** The shop's own id for the visitor of a request (the `userId` option). */
export type UserIdResolver = (req: Request) => string | undefined | Promise<string | undefined>;

/**
 * A User ID Matomo can store as it is. A longer one is refused rather than cut: two
 * customers whose ids share the first 200 characters would become one person in Matomo.
 */
export function validUserId(value: unknown): string | undefined {
  return typeof value === 'string' && value.length > 0 && value.length <= MAX_USER_ID_LENGTH ? value : undefined;
}

/** Asks the shop's `userId` option; a throwing or odd answer means "no id from the request". */
export async function userIdFromRequest(req: Request, resolver: UserIdResolver | null): Promise<string | undefined> {
  if (!resolver) return undefined;
  try {
    return validUserId(await resolver(req));
  } catch {
    return undefined;
  }
}

/**
 * The User ID both channels send for `order`: the id from the `userId` option (captured at
 * checkout for the server, asked again on the confirmation page), else `order.userId`.
 * Only with `useUserId` **and** the visitor's consent: a User ID is personal data even when
 * it is a pseudonymous number, since the shop can tie it back to a customer.
 * The same function serves both channels, so matomo.js and the server never disagree on it.
 */
export function matomoUserId(
  order: Pick<Order, 'userId'>,
  visitor: { consent: boolean; userId?: string } | null,
  useUserId: boolean,
): string | undefined {
  if (!useUserId || !visitor?.consent) return undefined;
  return validUserId(visitor.userId) ?? validUserId(order.userId);
}
