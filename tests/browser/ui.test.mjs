// The web UI against the real binary in real headless Chromium: every
// page loads without console errors, live tiles update within seconds
// of events being produced, Explore renders a table and a chart and
// shows SQL errors in place, Operations shows the numbers of /metrics.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { openBrowser, postJSON, startFreshet } from './harness.mjs';

const CONFIG = `
[[topic]]
name = "clicks"
partitions = 1

[[table]]
name = "clicks"
topic = "clicks"
time_column = "ts"
columns = [
  { name = "user", type = "string" },
  { name = "page", type = "string" },
  { name = "ms", type = "long" },
  { name = "ts", type = "datetime" },
]

[[view]]
name = "hits_per_page"
query = "SELECT page, count(*) AS hits FROM clicks GROUP BY page"

[[job]]
name = "per-page"
query = """
SELECT page, COUNT(*) AS hits, SUM(ms) AS total_ms, System.Timestamp() AS WindowEnd
INTO [page-hits]
FROM clicks TIMESTAMP BY ts
GROUP BY page, TumblingWindow(second, 1)"""

[[dashboard]]
name = "web"
title = "Web traffic"

[[dashboard.tile]]
title = "Hits, newest window"
kind = "value"
output = "page-hits"
y = ["hits"]

[[dashboard.tile]]
title = "Top pages"
kind = "top"
output = "page-hits"
key = "page"
value = "hits"

[[dashboard.tile]]
title = "Window feed"
kind = "alerts"
output = "page-hits"

[[dashboard.tile]]
title = "Clicks per second"
kind = "timeseries"
query = "SELECT date_bin(INTERVAL '1 second', ts) AS t, count(*) AS clicks FROM clicks GROUP BY t ORDER BY t"
refresh = "1s"

[[dashboard.tile]]
title = "Hits per page (view)"
kind = "table"
query = "SELECT page, hits FROM hits_per_page ORDER BY hits DESC"
refresh = "1s"

[[dashboard.tile]]
title = "Slowest pages (KQL)"
kind = "top"
kql = "clicks | summarize slowest = max(ms) by page | top 5 by slowest"
key = "page"
value = "slowest"
refresh = "1s"
`;

let freshet;
let browser;

before(async () => {
  freshet = await startFreshet('serve', CONFIG);
  browser = await openBrowser();
});

after(async () => {
  if (browser) await browser.close();
  if (freshet) assert.equal(await freshet.stop(), 0, freshet.output());
});

/** Clicks on `/checkout` and `/home` now, then one event 2 s later that closes their window. */
async function produceClicks(count) {
  const now = Date.now();
  const events = [];
  for (let i = 0; i < count; i++) {
    events.push({ user: `u${i % 7}`, page: i % 3 === 0 ? '/home' : '/checkout', ms: 10 + i, ts: new Date(now).toISOString() });
  }
  events.push({ user: 'u0', page: '/home', ms: 1, ts: new Date(now + 2000).toISOString() });
  const answer = await postJSON(freshet.base, '/api/v1/topics/clicks/events', events);
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  return now;
}

async function visit(hash) {
  const { page } = browser;
  browser.problems.length = 0;
  await page.goto(`${freshet.base}/#/${hash}`);
  await page.waitForLoadState('networkidle').catch(() => {});
}

test('the API answers what the UI asks, and unknown paths get JSON errors', async () => {
  for (const path of ['topics', 'jobs', 'tables', 'views', 'dashboards', 'openapi.json']) {
    const response = await fetch(`${freshet.base}/api/v1/${path}`);
    assert.equal(response.status, 200, path);
    assert.match(response.headers.get('content-type'), /application\/json/);
  }
  const { dashboards } = await (await fetch(`${freshet.base}/api/v1/dashboards`)).json();
  assert.deepEqual(dashboards.map((d) => d.name), ['web']);
  assert.deepEqual(dashboards[0].tiles.map((t) => t.kind), ['value', 'top', 'alerts', 'timeseries', 'table', 'top']);
  assert.equal(dashboards[0].tiles[5].kql, 'clicks | summarize slowest = max(ms) by page | top 5 by slowest');
  assert.equal(dashboards[0].tiles[3].refresh_ms, 1000);
  const openapi = await (await fetch(`${freshet.base}/api/v1/openapi.json`)).json();
  for (const path of ['/api/v1/query', '/api/v1/outputs/{output}/stream', '/api/v1/dashboards', '/metrics']) {
    assert.ok(openapi.paths[path], `${path} is documented`);
  }
  const missing = await fetch(`${freshet.base}/api/v1/nothing-here`);
  assert.equal(missing.status, 404);
  assert.equal((await missing.json()).error.code, 'not_found');
  const wrongMethod = await fetch(`${freshet.base}/api/v1/query`);
  assert.equal(wrongMethod.status, 405);
  assert.equal((await wrongMethod.json()).error.code, 'method_not_allowed');
  const badSql = await postJSON(freshet.base, '/api/v1/query', { sql: 'SELECT FROM WHERE' });
  assert.equal(badSql.status, 400);
  assert.ok(badSql.body.error.message);
  const asset = await fetch(`${freshet.base}/ui/app.js`);
  assert.match(asset.headers.get('content-type'), /javascript/);
});

test('Overview lists topics, jobs, tables, views and dashboards', async () => {
  await visit('overview');
  const { page } = browser;
  await page.getByRole('heading', { name: /^Jobs \(1\)/ }).waitFor();
  const text = await page.locator('main').innerText();
  for (const name of ['clicks', 'per-page', 'hits_per_page', 'page-hits', 'Web traffic']) {
    assert.ok(text.includes(name), `Overview shows ${name}`);
  }
  await browser.screenshot('overview');
  assert.deepEqual(browser.problems, []);
});

test('a live tile updates within seconds of events being produced', async () => {
  await visit('live/web');
  const { page } = browser;
  const value = page.locator('.tile-value');
  await value.waitFor();
  await page.locator('.tile .status', { hasText: 'live' }).first().waitFor({ timeout: 10_000 });
  assert.equal(await value.getAttribute('data-updates'), '0', 'no row before any event');
  const produced = Date.now();
  await produceClicks(30);
  // 30 events: 10 on /home, 20 on /checkout, in one one-second window.
  const liveTop = page.locator('.tile-top', { hasText: 'Top pages' });
  await liveTop.locator('li', { hasText: '/checkout' }).waitFor({ timeout: 10_000 });
  const seconds = (Date.now() - produced) / 1000;
  assert.ok(seconds < 10, `the tile updated ${seconds} s after the events`);
  const top = await liveTop.locator('li').allInnerTexts();
  assert.match(top[0], /\/checkout\s+20/);
  assert.match(top[1], /\/home\s+10/);
  await page.locator('.tile-alerts li').first().waitFor();
  assert.ok(Number(await value.getAttribute('data-updates')) > 0);
  // Query tiles: the chart over the table and the view's rows.
  await page.waitForFunction(() => Number(document.querySelector('.tile-timeseries .chart')?.dataset.points) > 0, null, { timeout: 10_000 });
  await page.locator('.tile-table td', { hasText: '/checkout' }).waitFor({ timeout: 10_000 });
  const kqlTile = page.locator('.tile-top', { hasText: 'Slowest pages (KQL)' });
  await kqlTile.locator('li', { hasText: '/checkout' }).waitFor({ timeout: 10_000 });
  await browser.screenshot('live');
  assert.deepEqual(browser.problems, []);
});

test('Explore renders a table and a chart, and shows bad SQL in place', async () => {
  await visit('explore');
  const { page } = browser;
  const editor = page.getByLabel('Query');
  await editor.fill("SELECT date_bin(INTERVAL '1 second', ts) AS t, page, count(*) AS clicks\nFROM clicks GROUP BY t, page ORDER BY t");
  await page.getByRole('button', { name: 'Run' }).click();
  await page.locator('.result table.rows tbody tr').first().waitFor({ timeout: 10_000 });
  const cells = await page.locator('.result table.rows tbody').innerText();
  assert.match(cells, /\/checkout/);
  await page.waitForFunction(() => Number(document.querySelector('.result .chart')?.dataset.points) > 0);
  await browser.screenshot('explore');

  await editor.fill('SELECT page,\n  count(* AS n\nFROM clicks');
  await editor.press('Control+Enter');
  const error = page.locator('.sql-error');
  await error.waitFor({ timeout: 10_000 });
  const message = await error.innerText();
  assert.match(message, /line \d+, column \d+/);
  await browser.screenshot('explore-error');
  await editor.fill('SELECT nope FROM clicks');
  await page.getByRole('button', { name: 'Run' }).click();
  await page.locator('.sql-error', { hasText: 'nope' }).waitFor({ timeout: 10_000 });

  // KQL: a table by default, a chart when render asks, errors in place.
  await page.getByLabel('Language').selectOption('kql');
  await editor.fill('clicks\n| summarize clicks = count() by page\n| sort by clicks');
  await page.getByRole('button', { name: 'Run' }).click();
  await page.locator('.result table.rows th', { hasText: 'clicks' }).waitFor({ timeout: 10_000 });
  assert.match(await page.locator('.result table.rows tbody').innerText(), /\/checkout/);
  assert.equal(await page.locator('.result .chart').count(), 0);
  await editor.fill('clicks\n| summarize clicks = count() by bin(ts, 1s), page\n| render timechart');
  await page.getByRole('button', { name: 'Run' }).click();
  await page.waitForFunction(() => Number(document.querySelector('.result .chart')?.dataset.points) > 0, null, { timeout: 10_000 });
  await editor.fill('clicks\n| where nope > 1');
  await page.getByRole('button', { name: 'Run' }).click();
  const kqlError = page.locator('.sql-error', { hasText: 'nope' });
  await kqlError.waitFor({ timeout: 10_000 });
  assert.match(await kqlError.innerText(), /line 2, column 9/);
  // The browser logs each refused query's status; nothing else may appear.
  assert.deepEqual(browser.problems, Array(3).fill('console error: Failed to load resource: the server responded with a status of 400 (Bad Request)'));
});

test('Operations shows the numbers of /metrics', async () => {
  await visit('operations');
  const { page } = browser;
  await page.locator('[data-metric="ingest:clicks"]').waitFor({ timeout: 10_000 });
  await page.locator('[data-metric="deadletters:clicks"]').waitFor();
  await page.locator('[data-metric="watermark:per-page"]').waitFor();
  await page.locator('[data-metric="freshness:clicks"]').waitFor();
  const metrics = await (await fetch(`${freshet.base}/metrics`)).text();
  const deadLetters = /freshet_store_dead_letters_total\{table="clicks"\} (\d+)/.exec(metrics)[1];
  assert.equal(await page.locator('[data-metric="deadletters:clicks"] strong').innerText(), deadLetters);
  const queries = await page.locator('[data-metric="queries:count"] strong').innerText();
  assert.ok(Number(queries) > 0, 'the queries run so far are counted');
  await browser.screenshot('operations');
  assert.deepEqual(browser.problems, []);
});
