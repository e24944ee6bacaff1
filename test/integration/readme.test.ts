/**
 * README examples that compile: every ```ts block of README.md is type-checked
 * against the built package, as a shop's TypeScript would see it. The shop's own
 * functions the examples call (createOrder, …) are declared, nothing else.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const root = resolve(__dirname, '../..');

/** What a shop would have in scope; declared only where a block uses but does not define it. */
const SHOP_SCOPE: Record<string, string> = {
  express: "import express from 'express';",
  orders: "declare const orders: import('matomo-server-tracking').OrderRepository;",
  createOrder: "declare function createOrder(req: import('express').Request): Promise<import('matomo-server-tracking').Order>;",
  paymentPageUrl: "declare function paymentPageUrl(order: import('matomo-server-tracking').Order): string;",
  renderConfirmation: "declare function renderConfirmation(order: import('matomo-server-tracking').Order | null, script: string): string;",
  tracking: "declare const tracking: import('matomo-server-tracking').MatomoServerTracking;",
  GatewayAdapter: "import type { GatewayAdapter } from 'matomo-server-tracking';",
  PaymentEvent: "import type { PaymentEvent } from 'matomo-server-tracking';",
  txId: 'declare const txId: string;',
  status: 'declare const status: string;',
  orderId: 'declare const orderId: string;',
};

function codeBlocks(markdown: string): Array<{ line: number; code: string }> {
  const blocks: Array<{ line: number; code: string }> = [];
  const pattern = /^```ts\n([\s\S]*?)^```$/gm;
  for (let match = pattern.exec(markdown); match; match = pattern.exec(markdown)) {
    blocks.push({ line: markdown.slice(0, match.index).split('\n').length, code: match[1]! });
  }
  return blocks;
}

function defines(code: string, name: string): boolean {
  return new RegExp(`(?:const|let|function|interface|type)\\s+${name}\\b|import\\s+${name}\\b|import\\s*(?:type\\s*)?\\{[^}]*\\b${name}\\b[^}]*\\}`).test(code);
}

describe('README.md', () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const blocks = codeBlocks(readme);

  test('has TypeScript examples', () => {
    expect(blocks.length).toBeGreaterThanOrEqual(4);
  });

  test('every TypeScript example compiles against the built package', async () => {
    if (!existsSync(join(root, 'dist/index.d.ts'))) throw new Error('dist/ is missing: run `npm run build` (npm test does it first)');
    const dir = mkdtempSync(join(tmpdir(), 'mst-readme-'));
    try {
      mkdirSync(join(dir, 'node_modules'));
      symlinkSync(root, join(dir, 'node_modules', 'matomo-server-tracking'), 'dir');
      // what a shop installs beside us
      for (const name of ['express', 'keyv', '@keyv', '@types']) symlinkSync(join(root, 'node_modules', name), join(dir, 'node_modules', name), 'dir');
      writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'readme', private: true, type: 'module' }));
      const files = blocks.map(({ line, code }) => {
        const scope = Object.entries(SHOP_SCOPE)
          .filter(([name]) => new RegExp(`\\b${name}\\b`).test(code) && !defines(code, name))
          .map(([, declaration]) => declaration);
        const file = `readme-line-${line}.ts`;
        writeFileSync(join(dir, file), `${scope.join('\n')}\n${code}\nexport {};\n`);
        return file;
      });
      const tsc = join(root, 'node_modules/typescript/bin/tsc');
      const args = [
        '--noEmit', '--strict', '--target', 'es2022', '--module', 'node16', '--moduleResolution', 'node16', '--skipLibCheck',
        '--esModuleInterop', '--types', 'node', '--noUnusedLocals', 'false', ...files,
      ];
      const result = await run(process.execPath, [tsc, ...args], { cwd: dir }).then(
        () => '',
        (error: { stdout?: string }) => error.stdout ?? String(error),
      );
      expect(result).toBe('');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
