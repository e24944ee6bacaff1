/**
 * The built package, imported the way shops import it: CommonJS `require`, ESM
 * `import`, and TypeScript in both module systems. `npm test` builds dist/ first.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const root = resolve(__dirname, '../..');

const USAGE = (load: string) => `
${load}
const orders = { getOrder: async () => null, markPaid: async () => {}, markPaymentUnconfirmed: async () => {} };
const tracking = m.matomoServerTracking({ matomo: { domain: '127.0.0.1:9', siteId: '3', protocol: 'http' }, orders,
  gateways: { acme: m.hmacGateway({ secret: 'a-secret-of-16-chars' }) } });
let configError = null;
try { m.matomoServerTracking({ matomo: { domain: 'https://x.example' } }); } catch (e) { configError = e; }
const signed = m.signHmacPayload({ payload: { orderId: '1', status: 'paid' }, secret: 'a-secret-of-16-chars', timestamp: 1 });
tracking.close().then(() => console.log(JSON.stringify({
  middleware: typeof tracking, use: typeof tracking.use, events: typeof tracking.events.on,
  configError: configError instanceof m.ConfigError && configError.code,
  signature: signed.headers['x-signature'].length,
})));
`;

describe('the built package', () => {
  let consumer: string;

  beforeAll(() => {
    if (!existsSync(join(root, 'dist/index.js')) || !existsSync(join(root, 'dist/index.mjs'))) {
      throw new Error('dist/ is missing: run `npm run build` (npm test does it first)');
    }
    consumer = mkdtempSync(join(tmpdir(), 'mst-consumer-'));
    mkdirSync(join(consumer, 'node_modules'));
    symlinkSync(root, join(consumer, 'node_modules', 'matomo-server-tracking'), 'dir');
    writeFileSync(join(consumer, 'package.json'), JSON.stringify({ name: 'consumer', private: true }));
  });
  afterAll(() => rmSync(consumer, { recursive: true, force: true }));

  const expected = { middleware: 'function', use: 'function', events: 'function', configError: 'ERR_MST_CONFIG', signature: 64 };

  test('CommonJS consumers can require() it', async () => {
    writeFileSync(join(consumer, 'app.cjs'), USAGE(`const m = require('matomo-server-tracking');`));
    const { stdout } = await run(process.execPath, ['app.cjs'], { cwd: consumer });
    expect(JSON.parse(stdout)).toEqual(expected);
  });

  test('ESM consumers can import it, and share one module instance with require()', async () => {
    writeFileSync(
      join(consumer, 'app.mjs'),
      USAGE(`import * as m from 'matomo-server-tracking';
import { createRequire } from 'node:module';
if (createRequire(import.meta.url)('matomo-server-tracking').ConfigError !== m.ConfigError) throw new Error('two instances');`),
    );
    const { stdout } = await run(process.execPath, ['app.mjs'], { cwd: consumer });
    expect(JSON.parse(stdout)).toEqual(expected);
  });

  test('TypeScript finds the types from ESM (.mts) and CommonJS (.cts) files', async () => {
    const source = `import { matomoServerTracking, hmacGateway, type Order, type MatomoServerTrackingOptions } from 'matomo-server-tracking';
const order: Order = { id: '1', revenue: 1, items: [] };
const options: MatomoServerTrackingOptions = {
  matomo: { domain: 'a.example', siteId: 1 },
  orders: { getOrder: async () => order, markPaid: async () => {}, markPaymentUnconfirmed: async () => {} },
  gateways: { acme: hmacGateway({ secret: 'a-secret-of-16-chars' }) },
};
export const tracking = matomoServerTracking(options);
// @ts-expect-error siteId must not be a boolean
export const wrong: MatomoServerTrackingOptions = { ...options, matomo: { domain: 'a.example', siteId: true } };
`;
    writeFileSync(join(consumer, 'esm.mts'), source);
    writeFileSync(join(consumer, 'cjs.cts'), source);
    const tsc = join(root, 'node_modules/typescript/bin/tsc');
    const args = ['--noEmit', '--strict', '--module', 'node16', '--moduleResolution', 'node16', '--skipLibCheck', '--types', 'node', '--typeRoots', join(root, 'node_modules/@types'), 'esm.mts', 'cjs.cts'];
    await expect(run(process.execPath, [tsc, ...args], { cwd: consumer })).resolves.toBeDefined();
  }, 60_000);
});
