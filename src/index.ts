export { matomoServerTracking } from './middleware';
export type { MatomoServerTracking, TrackingStats } from './middleware';
export type {
  MatomoServerTrackingOptions,
  MatomoOptions,
  PathOptions,
  CheckoutCookieOptions,
  DeliveryOptions,
  ConsentDecider,
} from './config';
export type { Order, OrderItem, OrderRepository, PaymentEvent, PaymentOutcome } from './orders';
export type { TrackingEvents, TrackingEventEmitter, Channel, SkipReason, IgnoredReason } from './events';
export type { MatomoLocals } from './confirmation-page';
export type { Logger } from './logger';
export type { VisitorContext } from './visitor';
export type {
  GatewayAdapter,
  GatewayRequest,
  ParsedPaymentEvent,
  VerificationResult,
  VerificationFailureKind,
  ProcessingResult,
  Acknowledgement,
} from './payments/gateway';
export { hmacGateway, signHmacPayload, computeHmacSignature } from './payments/hmac';
export type { HmacGatewayOptions, SignedHmacPayload } from './payments/hmac';
export { MatomoTrackingError, ConfigError, StoreError, InvalidOrderError } from './errors';
export type { ErrorCode, ConfigIssue } from './errors';
export { buildOrderQuery } from './matomo/request';
export { buildOrderSnippet } from './matomo/snippet';
