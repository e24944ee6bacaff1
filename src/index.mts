// ESM entry: the CommonJS build re-exported, so that ESM and CommonJS consumers share one instance.
export * from './index.js';
