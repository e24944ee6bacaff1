import type { MatomoOptions } from 'matomo-server-tracking';
import { createShop, DEMO_ACME_SECRET, type ShopOptions } from './shop';

/**
 * The example shop. Environment:
 *   PORT (3000), HOST (127.0.0.1), ACME_SECRET (a demo secret), MST_CHECKOUT_SECRET (generated),
 *   REDIS_URL (in-memory store when unset),
 *   MATOMO_DOMAIN, MATOMO_SITE_ID, MATOMO_PROTOCOL (https), MATOMO_TOKEN_AUTH:
 *   a real Matomo; without MATOMO_DOMAIN the shop serves a Matomo stand-in itself.
 */
function optionsFromEnvironment(env: NodeJS.ProcessEnv): ShopOptions {
  const port = Number(env.PORT ?? 3000);
  const matomo: MatomoOptions | undefined = env.MATOMO_DOMAIN
    ? {
        domain: env.MATOMO_DOMAIN,
        // Both checked by the library, whose ConfigError explains a missing or wrong value.
        siteId: env.MATOMO_SITE_ID ?? '',
        ...(env.MATOMO_PROTOCOL && { protocol: env.MATOMO_PROTOCOL as MatomoOptions['protocol'] }),
        ...(env.MATOMO_TOKEN_AUTH && { tokenAuth: env.MATOMO_TOKEN_AUTH }),
      }
    : undefined;
  return {
    port,
    log: true,
    acmeSecret: env.ACME_SECRET ?? DEMO_ACME_SECRET,
    ...(env.HOST && { host: env.HOST }),
    ...(matomo && { matomo }),
    ...(env.REDIS_URL && { redisUrl: env.REDIS_URL }),
    ...(env.MST_CHECKOUT_SECRET && { checkoutSecret: env.MST_CHECKOUT_SECRET }),
  };
}

async function main(): Promise<void> {
  const options = optionsFromEnvironment(process.env);
  const shop = await createShop(options);
  const port = new URL(shop.url).port;
  console.log(`Example shop running at http://localhost:${port}/`);
  if (shop.standIn) console.log(`Matomo stand-in: http://localhost:${port}/matomo/received`);
  else console.log(`Tracking into Matomo at ${options.matomo?.domain} (site ${String(options.matomo?.siteId)})`);
  if (options.redisUrl) console.log('Claims are kept in Redis');

  const stop = (signal: string) => {
    console.log(`${signal}: closing the shop…`);
    shop.close().then(
      () => process.exit(0),
      (error: unknown) => {
        console.error(error);
        process.exit(1);
      },
    );
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
}

main().catch((error: unknown) => {
  // A ConfigError's message lists every wrong option with its fix.
  console.error(error instanceof Error ? error.message : error);
  process.exit(1);
});
