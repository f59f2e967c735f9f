// Loads the status page in Debian's headless chromium, waits until it shows the hit ratio and a
// fill in flight, saves a screenshot and prints {"hitRatio": ..., "fillRow": ...} as the last
// line of stdout. Usage: node status_page.mjs <page url> <screenshot path>
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [url, screenshot] = process.argv.slice(2);
if (!url || !screenshot) {
  console.error('usage: node status_page.mjs <page url> <screenshot path>');
  process.exit(2);
}

const profile = mkdtempSync(join(tmpdir(), 'regcache-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync', '--disable-quic'],
  viewport: { width: 1200, height: 1100 },
});
const problems = [];
try {
  const page = context.pages()[0] ?? await context.newPage();
  // A CSP violation or a script error would leave the page blank: fail on either.
  page.on('console', (m) => { if (m.type() === 'error') problems.push(m.text()); });
  page.on('pageerror', (e) => problems.push(String(e)));

  await page.goto(url, { waitUntil: 'load' });
  await page.waitForFunction(() => /^\d+(\.\d)?%$/.test(
    document.getElementById('hit-ratio').textContent), null, { timeout: 20000 });
  await page.waitForSelector('tr.fill-row', { timeout: 20000 });
  const hitRatio = (await page.textContent('#hit-ratio')).trim();
  const fillRow = (await page.textContent('tr.fill-row')).trim();
  await page.screenshot({ path: screenshot, fullPage: true });
  if (problems.length) throw new Error('page errors: ' + problems.join('; '));
  console.log(JSON.stringify({ hitRatio, fillRow }));
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
