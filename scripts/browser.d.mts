// Types of browser.mjs, for test/report.test.ts.

import type { Page } from 'playwright-core';

export const CHROMIUM: string;
export function browserMissing(): string | null;
export function withPage<T>(
  file: string,
  use: (page: Page, problems: string[]) => Promise<T>,
  viewport?: { width: number; height: number },
): Promise<T>;
