import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // One fork per core: vitest's default leaves one core free, which on a 2-core machine ran the files one
    // after another (159 s against 121 s).
    maxWorkers: availableParallelism(),
    // No test reaches the real Hugging Face Hub or reads the user's cache: a Hub id named by mistake fails
    // offline against an empty cache. test/hub.test.ts sets its own loopback HF_ENDPOINT and HF_HOME.
    env: {
      HF_HUB_OFFLINE: '1',
      HF_ENDPOINT: 'http://127.0.0.1:1',
      HF_HOME: join(tmpdir(), 'modernbert-ane-tests-no-hf-home'),
      HF_TOKEN: '',
    },
  },
});
