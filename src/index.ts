export { matomoServerTracking } from './middleware';
export type { MatomoServerTracking, TrackingStats, DeadLetterApi } from './middleware';
export type { DeadLetter, OutboxItem } from './claims';
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
export type { Attribution } from './attribution';
export type { UserIdResolver } from './user-id';
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
export { stripeGateway } from './payments/stripe';
export type { StripeGatewayOptions, StripeObject } from './payments/stripe';
export { paypalIpnGateway, PAYPAL_IPN_LIVE_VERIFY_URL, PAYPAL_IPN_SANDBOX_VERIFY_URL } from './payments/paypal-ipn';
export type { PaypalIpnGatewayOptions, PaypalIpnHttp, PaypalIpnVerifyRequest } from './payments/paypal-ipn';
export { nexiXPayGateway, computeNexiMac } from './payments/nexi-xpay';
export type { NexiXPayGatewayOptions, NexiMacAlgorithm } from './payments/nexi-xpay';
export { adyenGateway } from './payments/adyen';
export type { AdyenGatewayOptions } from './payments/adyen';
export { MatomoTrackingError, ConfigError, StoreError, InvalidOrderError } from './errors';
export type { ErrorCode, ConfigIssue } from './errors';
export { buildOrderQuery } from './matomo/request';
export { buildOrderSnippet } from './matomo/snippet';
