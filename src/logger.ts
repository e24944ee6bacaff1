/** The logger shape pino, winston and console all fit. Library code logs only through it. */
export interface Logger {
  debug?(message: string): void;
  info?(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

/** Default logger. The only place the library touches `console`. */
export const consoleLogger: Logger = {
  warn: (message) => console.warn(message),
  error: (message) => console.error(message),
};

/**
 * Coded start-up and runtime warnings, each logged at most once per instance
 * (like express-rate-limit's validations) and emitted as a `warning` event.
 */
export const Warnings = {
  MEMORY_STORE_IN_PRODUCTION: {
    code: 'WRN_MST_MEMORY_STORE_IN_PRODUCTION',
    message:
      'the in-memory store is used with NODE_ENV=production: claims are lost on restart and not shared between instances, ' +
      'so an order may be tracked twice or not at all. Pass `store: new Keyv({ store: new KeyvRedis(url) })`.',
  },
  GENERATED_CHECKOUT_SECRET: {
    code: 'WRN_MST_GENERATED_CHECKOUT_SECRET',
    message:
      'no `checkoutCookie.secret` was given: a random one was generated and kept in the store. ' +
      'Set `checkoutCookie: { secret: process.env.MST_CHECKOUT_SECRET }` so that checkout cookies survive a store flush.',
  },
  CDT_DROPPED: {
    code: 'WRN_MST_CDT_DROPPED',
    message:
      'an order older than 23 hours was sent without its original time (cdt), because Matomo accepts an old cdt only with ' +
      'a token: set `matomo.tokenAuth` to keep the real order time.',
  },
} as const;

export type WarningCode = (typeof Warnings)[keyof typeof Warnings]['code'];

export type Warning = (typeof Warnings)[keyof typeof Warnings];
/** Reports a coded warning: a `warning` event every time, a log line once per code. */
export type Warn = (warning: Warning, context?: { orderId?: string }) => void;
