import { resolveConfig } from '../../src/config';
import { ConfigError } from '../../src/errors';
import { matomoServerTracking, type MatomoServerTrackingOptions, type OrderRepository } from '../../src';

const orders: OrderRepository = {
  getOrder: async () => null,
  markPaid: async () => {},
  markPaymentUnconfirmed: async () => {},
};

/** The smallest valid options, with `patch` merged into `matomo`. */
function options(matomo: Record<string, unknown> = {}, rest: Record<string, unknown> = {}): unknown {
  return { matomo: { domain: 'analytics.myshop.it', siteId: 3, ...matomo }, orders, ...rest };
}

/** Runs `resolveConfig` and returns the ConfigError it must throw. */
function configError(input: unknown): ConfigError {
  try {
    resolveConfig(input);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('resolveConfig accepted options it should have rejected');
}

function issueAt(error: ConfigError, path: string) {
  const issue = error.issues.find((i) => i.path === path);
  expect(issue).toBeDefined();
  return issue!;
}

describe('resolveConfig: matomo.domain', () => {
  test('a missing domain is reported as required, with an example', () => {
    const error = configError({ matomo: { siteId: 3 }, orders });
    expect(error.code).toBe('ERR_MST_CONFIG');
    expect(error.issues).toHaveLength(1);
    expect(issueAt(error, 'matomo.domain').message).toMatch(/is required/);
    expect(error.message).toContain('matomo.domain');
    expect(error.message).toContain("'analytics.myshop.it'");
  });

  test('a domain with https:// says "remove the protocol" and gives the fixed value', () => {
    const error = configError(options({ domain: 'https://analytics.myshop.it' }));
    const { message } = issueAt(error, 'matomo.domain');
    expect(message).toContain('remove the protocol');
    expect(message).toContain("write 'analytics.myshop.it'");
    expect(error.message).toContain('remove the protocol');
  });

  test('a domain with a path says "remove the path" and names the host to keep', () => {
    const error = configError(options({ domain: 'analytics.myshop.it/matomo' }));
    const { message } = issueAt(error, 'matomo.domain');
    expect(message).toContain('remove the path');
    expect(message).toContain("'analytics.myshop.it'");
    expect(message).toContain('matomo.path');
  });

  test.each(['analytics.myshop.it', '127.0.0.1:8080', 'localhost', 'Analytics.MyShop.IT'])('%s is a valid domain', (domain) => {
    const config = resolveConfig(options({ domain }));
    expect(config.matomo.domain).toBe(domain.toLowerCase());
  });
});

describe('resolveConfig: matomo.siteId', () => {
  test.each<[unknown, string]>([
    [0, 'got 0'],
    [-1, 'got -1'],
    ['abc', "got 'abc'"],
  ])('siteId %p is rejected: the message names siteId and asks for a positive integer', (siteId, got) => {
    const error = configError(options({ siteId }));
    expect(error.issues).toHaveLength(1);
    const { message } = issueAt(error, 'matomo.siteId');
    expect(message).toContain('positive integer');
    expect(message).toContain(got);
    expect(error.message).toContain('matomo.siteId');
    expect(error.message).toContain('positive integer');
  });

  test("siteId '7' (digits from an environment variable) is accepted and becomes the number 7", () => {
    const config = resolveConfig(options({ siteId: '7' }));
    expect(config.matomo.siteId).toBe(7);
    expect(typeof config.matomo.siteId).toBe('number');
  });
});

describe('resolveConfig: unknown options get a "did you mean"', () => {
  test('top-level `serverTraking` suggests `serverTracking`', () => {
    const error = configError(options({}, { serverTraking: false }));
    expect(error.issues).toHaveLength(1);
    expect(issueAt(error, 'serverTraking').message).toContain('Did you mean `serverTracking`');
    expect(error.message).toContain('Did you mean `serverTracking`');
  });

  test('nested `matomo.siteid` suggests `siteId`', () => {
    const error = configError({ matomo: { domain: 'analytics.myshop.it', siteid: 3 }, orders });
    expect(issueAt(error, 'matomo.siteid').message).toContain('Did you mean `siteId`');
    // and the real siteId is, of course, still missing
    expect(issueAt(error, 'matomo.siteId').message).toMatch(/is required/);
  });
});

describe('resolveConfig: orders', () => {
  test('a missing OrderRepository is reported as required', () => {
    const error = configError({ matomo: { domain: 'analytics.myshop.it', siteId: 3 } });
    expect(error.issues).toHaveLength(1);
    const { message } = issueAt(error, 'orders');
    expect(message).toMatch(/is required/);
    expect(message).toContain('OrderRepository');
  });

  test('a repository without markPaymentUnconfirmed() names the missing method', () => {
    const { markPaymentUnconfirmed: _omitted, ...incomplete } = orders;
    const error = configError({ matomo: { domain: 'analytics.myshop.it', siteId: 3 }, orders: incomplete });
    const { message } = issueAt(error, 'orders');
    expect(message).toContain('markPaymentUnconfirmed()');
    expect(message).not.toContain('getOrder()');
  });
});

describe('resolveConfig: several problems', () => {
  test('every problem is listed in one ConfigError', () => {
    const error = configError({
      matomo: { domain: 'https://analytics.myshop.it', siteId: 0 },
      serverTraking: true,
    });
    expect(error.issues.map((i) => i.path).sort()).toEqual(['matomo.domain', 'matomo.siteId', 'orders', 'serverTraking']);
    expect(error.issues).toHaveLength(4);
    expect(error.message).toContain('these 4 problems');
    for (const text of ['remove the protocol', 'positive integer', 'OrderRepository', 'Did you mean `serverTracking`']) {
      expect(error.message).toContain(text);
    }
  });

  test('a non-object is rejected with a ConfigError too', () => {
    expect(configError(undefined).issues).toHaveLength(1);
    expect(configError('analytics.myshop.it').code).toBe('ERR_MST_CONFIG');
  });
});

describe('resolveConfig: defaults', () => {
  test('the optional store, gateways and checkoutCookie.secret may simply be left out', () => {
    // DESIGN §1: only matomo.domain, matomo.siteId and orders are required.
    expect(() => resolveConfig({ matomo: { domain: 'analytics.myshop.it', siteId: 3 }, orders })).not.toThrow();
    const config = resolveConfig({ matomo: { domain: 'analytics.myshop.it', siteId: 3 }, orders, checkoutCookie: { name: 'shop_checkout' } });
    expect(config.store).toBeUndefined();
    expect(config.gateways.size).toBe(0);
    expect(config.checkoutCookie).toMatchObject({ secrets: null, name: 'shop_checkout' });
  });

  test('a valid minimal config gets every default', () => {
    const config = resolveConfig(options());
    expect(config.serverTracking).toBe(true);
    expect(config.useUserId).toBe(false);
    expect(config.paths).toEqual({ callback: '/store/payment/notify/:gateway', confirmation: '/store/cart/checkout/success' });
    expect(config.matomo.protocol).toBe('https');
    expect(config.matomo.path).toBe('/matomo.php');
    expect(config.matomo.tokenAuth).toBeNull();
    expect(config.matomo.siteId).toBe(3);
    expect(config.matomo.endpoint.href).toBe('https://analytics.myshop.it/matomo.php');
    expect(config.orders).toBe(orders);
    expect(config.gateways.size).toBe(0);
    expect(config.consent).toBe('matomo-cookies');
    expect(config.delivery).toEqual({
      backoffMs: 1000,
      maxBackoffMs: 600_000,
      giveUpAfterMs: 7 * 24 * 60 * 60 * 1000,
      pollIntervalMs: 1000,
      leaseMs: 60_000,
      batchSize: 100,
    });
    expect(config.lockTtlMs).toBe(60_000);
    expect(config.checkoutCookie.secrets).toBeNull();
    expect(config.checkoutCookie.name).toBe('mst_checkout');
  });

  test('explicit values win over defaults', () => {
    const config = resolveConfig(options({ protocol: 'http', path: '/js/tracker.php' }, { serverTracking: false, useUserId: true }));
    expect(config.serverTracking).toBe(false);
    expect(config.useUserId).toBe(true);
    expect(config.matomo.endpoint.href).toBe('http://analytics.myshop.it/js/tracker.php');
  });
});

describe('matomoServerTracking()', () => {
  test('invalid options throw a ConfigError (ERR_MST_CONFIG) and start nothing', () => {
    const bad = { matomo: { domain: 'https://analytics.myshop.it', siteId: 3 }, orders } as MatomoServerTrackingOptions;
    let thrown: unknown;
    try {
      matomoServerTracking(bad);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(ConfigError);
    expect((thrown as ConfigError).code).toBe('ERR_MST_CONFIG');
    expect((thrown as ConfigError).message).toContain('remove the protocol');
  });

  test('valid options give a middleware that closes cleanly', async () => {
    const tracking = matomoServerTracking({
      matomo: { domain: '127.0.0.1:9', siteId: 3, protocol: 'http' },
      orders,
      logger: { warn: () => {}, error: () => {} },
    });
    try {
      expect(typeof tracking).toBe('function');
      expect((await tracking.stats()).serverTracking).toBe(true);
    } finally {
      await tracking.close();
    }
  });
});

describe('delivery options', () => {
  const orders = { getOrder: async () => null, markPaid: async () => {}, markPaymentUnconfirmed: async () => {} };
  const base = { matomo: { domain: 'analytics.myshop.it', siteId: 3 }, orders };

  test('a lease not longer than the request timeout is refused: another instance could send an order still in flight', () => {
    expect(() => resolveConfig({ ...base, matomo: { ...base.matomo, timeoutMs: 5000 }, delivery: { leaseMs: 5000 } })).toThrow(
      /delivery\.leaseMs: must be longer than matomo\.timeoutMs \(5000 ms\)/,
    );
  });

  test('batchSize is at most 100 requests per bulk request', () => {
    expect(() => resolveConfig({ ...base, delivery: { batchSize: 101 } })).toThrow(/delivery\.batchSize: must be at most 100/);
  });

  test('the removed `attempts` option is an unknown option, not silently ignored', () => {
    expect(() => resolveConfig({ ...base, delivery: { attempts: 3 } })).toThrow(/delivery\.attempts: unknown option/);
  });
});

describe('start-up warnings', () => {
  const orders = { getOrder: async () => null, markPaid: async () => {}, markPaymentUnconfirmed: async () => {} };

  test.each([
    ['production', true],
    ['development', false],
  ])('NODE_ENV=%s with the in-memory store: WRN_MST_MEMORY_STORE_IN_PRODUCTION logged: %s', async (env, expected) => {
    const previous = process.env.NODE_ENV;
    process.env.NODE_ENV = env;
    const warnings: string[] = [];
    try {
      const tracking = matomoServerTracking({
        matomo: { domain: 'analytics.myshop.it', siteId: 3 },
        orders,
        checkoutCookie: { secret: 'a-checkout-secret-for-tests' },
        logger: { warn: (message) => warnings.push(message), error: () => {} },
      });
      await tracking.close();
    } finally {
      process.env.NODE_ENV = previous;
    }
    expect(warnings.some((message) => message.includes('WRN_MST_MEMORY_STORE_IN_PRODUCTION'))).toBe(expected);
  });
});
