// `freshet demo` in a real browser: with no config, the three dashboards
// fill and every alert feed fires within the first minute or so (the
// simulator's anomalies start 20 s in).

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { openBrowser, startFreshet } from './harness.mjs';

let demo;
let browser;

before(async () => {
  demo = await startFreshet('demo');
  browser = await openBrowser();
});

after(async () => {
  if (browser) await browser.close();
  if (demo) assert.equal(await demo.stop(), 0, demo.output());
});

test('the demo prints the dashboard URL and serves three dashboards', async () => {
  assert.match(demo.output(), new RegExp(`Dashboard: ${demo.base}/`));
  const { dashboards } = await (await fetch(`${demo.base}/api/v1/dashboards`)).json();
  assert.deepEqual(dashboards.map((d) => d.name), ['payments', 'retail', 'iot']);
  const { jobs } = await (await fetch(`${demo.base}/api/v1/jobs`)).json();
  assert.deepEqual(jobs.map((j) => [j.name, j.state]), [['decline-rate', 'running'], ['stock-depletion', 'running'], ['vibration', 'running']]);
});

test('every dashboard fills and its alerts fire', async () => {
  const { page, problems } = browser;
  for (const name of ['payments', 'retail', 'iot']) {
    await page.goto(`${demo.base}/#/live/${name}`);
    // Alerts come once an anomaly's window closes: about 30-60 s after start.
    await page.locator('.tile-alerts li').first().waitFor({ timeout: 100_000 });
    for (const tile of await page.locator('.tile').all()) {
      const title = await tile.locator('h3').innerText();
      // A tile has data once it has drawn rows (query tiles draw after their
      // first answer, live tiles after their first row), or it has failed.
      await page
        .waitForFunction((node) => Number(node.dataset.updates) > 0 || node.classList.contains('failed'), await tile.elementHandle(), { timeout: 20_000 })
        .catch(() => {});
      assert.ok(!(await tile.evaluate((node) => node.classList.contains('failed'))), `${name}: ${title} failed`);
      assert.ok(Number(await tile.getAttribute('data-updates')) > 0, `${name}: ${title} shows data`);
    }
    await browser.screenshot(`demo-${name}`);
  }
  for (const hash of ['overview', 'operations', 'explore']) {
    await page.goto(`${demo.base}/#/${hash}`);
    await page.waitForTimeout(2500);
    await browser.screenshot(`demo-${hash}`);
  }
  assert.deepEqual(problems, []);
});
