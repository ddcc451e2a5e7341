// The four pages. Each `render(main, rest)` fills `main` and returns a
// function that stops its timers and streams when the page is left.

import { getJSON, query, scrapeMetrics } from './api.js';
import { LineChart, formatNumber } from './chart.js';
import { Tile, element, isTime, renderValue, rowsTable, timeOf } from './tiles.js';

function card(title, ...children) {
  const node = element('section', 'card');
  node.append(element('h2', '', title), ...children);
  return node;
}

function stat(label, value, metric) {
  const node = element('div', 'stat');
  const number = element('strong', '', value);
  if (metric) node.dataset.metric = metric;
  node.append(number, element('span', '', label));
  return node;
}

function every(ms, task) {
  let stopped = false;
  let timer;
  const run = async () => {
    try {
      await task();
    } catch (error) {
      console.warn(error);
    }
    if (!stopped) timer = setTimeout(run, ms);
  };
  run();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

function errorBox(message) {
  return element('p', 'error', message);
}

// ---------------------------------------------------------------- Overview

export function overview(main) {
  const grid = element('div', 'grid');
  main.replaceChildren(element('h1', '', 'Overview'), grid);
  return every(3000, async () => {
    const [topics, jobs, tables, views, dashboards] = await Promise.all(
      ['topics', 'jobs', 'tables', 'views', 'dashboards'].map((name) => getJSON(`/api/v1/${name}`)),
    );
    const cards = [];
    cards.push(
      card(
        `Topics (${topics.topics.length})`,
        rowsTable(
          topics.topics.map((topic) => ({
            topic: topic.name,
            partitions: topic.partitions.length,
            records: topic.partitions.reduce((sum, p) => sum + (p.end_offset - p.start_offset), 0),
            bytes: topic.partitions.reduce((sum, p) => sum + p.bytes, 0),
          })),
          ['topic', 'partitions', 'records', 'bytes'],
        ),
      ),
    );
    cards.push(
      card(
        `Jobs (${jobs.jobs.length})`,
        jobs.jobs.length === 0
          ? element('p', 'empty', 'No [[job]] is configured.')
          : rowsTable(
              jobs.jobs.map((job) => ({
                job: job.name,
                state: job.error ? `failed: ${job.error}` : job.state,
                'events in': job.input_events,
                'rows out': job.output_rows,
                late: job.late_adjusted + job.late_dropped,
                watermark: job.watermark,
                outputs: job.outputs.map((output) => output.name).join(', '),
              })),
              ['job', 'state', 'events in', 'rows out', 'late', 'watermark', 'outputs'],
            ),
      ),
    );
    cards.push(
      card(
        `Tables (${tables.tables.length})`,
        tables.tables.length === 0
          ? element('p', 'empty', 'No [[table]] is configured.')
          : rowsTable(
              tables.tables.map((table) => ({
                table: table.name,
                topic: table.topic,
                rows: table.rows,
                lag: table.lag,
                duplicates: table.duplicates_dropped,
                'dead letters': table.dead_letters,
                extents: table.extents,
              })),
              ['table', 'topic', 'rows', 'lag', 'duplicates', 'dead letters', 'extents'],
            ),
      ),
    );
    cards.push(
      card(
        `Views (${views.views.length})`,
        views.views.length === 0
          ? element('p', 'empty', 'No [[view]] is configured.')
          : rowsTable(
              views.views.map((view) => ({
                view: view.name,
                table: view.table,
                materialized: view.materialized_rows,
                delta: view.delta_rows,
                state: view.error || 'fresh',
              })),
              ['view', 'table', 'materialized', 'delta', 'state'],
            ),
      ),
    );
    const links = element('ul', 'links');
    for (const dashboard of dashboards.dashboards) {
      const item = element('li');
      const link = element('a', '', dashboard.title);
      link.href = `#/live/${encodeURIComponent(dashboard.name)}`;
      item.append(link, ` · ${dashboard.tiles.length} tiles`);
      links.append(item);
    }
    cards.push(
      card(`Dashboards (${dashboards.dashboards.length})`, dashboards.dashboards.length ? links : element('p', 'empty', 'No [[dashboard]] is configured; Live shows every job output.')),
    );
    grid.replaceChildren(...cards);
  });
}

// ---------------------------------------------------------------- Live

/** Without a `[[dashboard]]`, one table per job output. */
function outputsDashboard(jobs) {
  return {
    name: 'outputs',
    title: 'Job outputs',
    tiles: jobs.flatMap((job) =>
      job.outputs.map((output) => ({ title: `${job.name} → ${output.name}`, kind: 'table', output: output.name, y: [], limit: 10 })),
    ),
  };
}

export function live(main, rest) {
  let tiles = [];
  let stopped = false;
  main.replaceChildren(element('h1', '', 'Live'));
  (async () => {
    const [{ dashboards }, { jobs }] = await Promise.all([getJSON('/api/v1/dashboards'), getJSON('/api/v1/jobs')]);
    if (stopped) return;
    const all = dashboards.length > 0 ? dashboards : [outputsDashboard(jobs)];
    const chosen = all.find((d) => d.name === rest[0]) || all[0];
    const tabs = element('nav', 'tabs');
    for (const dashboard of all) {
      const link = element('a', dashboard === chosen ? 'active' : '', dashboard.title);
      link.href = `#/live/${encodeURIComponent(dashboard.name)}`;
      tabs.append(link);
    }
    const grid = element('div', 'tiles');
    if (chosen.tiles.length === 0) grid.append(element('p', 'empty', 'This dashboard has no tiles.'));
    tiles = chosen.tiles.map((spec) => new Tile(spec));
    grid.append(...tiles.map((tile) => tile.node));
    main.replaceChildren(element('h1', '', chosen.title), tabs, grid);
  })().catch((error) => {
    if (!stopped) main.append(errorBox(error.message));
  });
  return () => {
    stopped = true;
    tiles.forEach((tile) => tile.destroy());
  };
}

// ---------------------------------------------------------------- Explore

/** Shows where a query failed: the message, then the line with a caret. */
function sqlError(error, sql) {
  const box = element('div', 'error sql-error');
  box.append(element('strong', '', error.code ? `${error.code}: ` : ''), error.message);
  if (error.line) {
    const text = sql.split('\n')[error.line - 1] ?? '';
    const where = element('pre', 'caret');
    where.textContent = `line ${error.line}, column ${error.column}\n${text}\n${' '.repeat(Math.max(0, (error.column || 1) - 1))}^`;
    box.append(where);
  }
  return box;
}

/** A chart of a result when it has a time column and numbers. */
function resultChart(container, result) {
  const rows = result.objects;
  if (rows.length < 2) return null;
  const columns = result.columns.map((column) => column.name);
  const x = columns.find((name) => rows.some((row) => isTime(row[name])));
  if (!x) return null;
  const numbers = columns.filter((name) => name !== x && rows.every((row) => row[name] === null || typeof row[name] === 'number'));
  if (numbers.length === 0) return null;
  const labels = columns.filter((name) => name !== x && !numbers.includes(name) && rows.every((row) => typeof row[name] === 'string'));
  const series = labels.find((name) => new Set(rows.map((row) => row[name])).size <= 12);
  const lines = new Map();
  for (const row of rows) {
    for (const y of numbers) {
      const name = series ? (numbers.length > 1 ? `${row[series]} ${y}` : row[series]) : y;
      if (!lines.has(name)) lines.set(name, []);
      lines.get(name).push([timeOf(row[x]), row[y]]);
    }
  }
  const chart = new LineChart(container, { height: 240 });
  try {
    chart.update([...lines].map(([name, points]) => ({ name, points })));
  } catch (error) {
    chart.destroy();
    throw error;
  }
  return chart;
}

/** KQL's `render` kinds drawn as lines over time. */
const LINE_RENDERS = ['timechart', 'linechart', 'areachart', 'stackedareachart'];

export function explore(main) {
  const editor = element('textarea', 'sql');
  editor.spellcheck = false;
  editor.setAttribute('aria-label', 'Query');
  const language = element('select');
  language.setAttribute('aria-label', 'Language');
  for (const [value, label] of [['sql', 'SQL'], ['kql', 'KQL']]) {
    const option = element('option', '', label);
    option.value = value;
    language.append(option);
  }
  const run = element('button', 'primary', 'Run');
  run.title = 'Ctrl+Enter';
  const info = element('span', 'muted');
  const output = element('div', 'result');
  const schema = element('aside', 'schema');
  const bar = element('div', 'toolbar');
  bar.append(language, run, info);
  const work = element('div', 'work');
  work.append(editor, bar, output);
  const layout = element('div', 'explore');
  layout.append(work, schema);
  main.replaceChildren(element('h1', '', 'Explore'), layout);
  let chart = null;
  let controller = null;

  getJSON('/api/v1/tables')
    .then(({ tables }) => {
      if (!editor.value && tables.length > 0) {
        const table = tables[0];
        editor.value = table.time_column
          ? `SELECT date_bin(INTERVAL '10 seconds', "${table.time_column}") AS t, count(*) AS events\nFROM ${table.name}\nGROUP BY t\nORDER BY t`
          : `SELECT * FROM ${table.name} LIMIT 100`;
      }
      schema.replaceChildren(element('h2', '', 'Tables'));
      for (const table of tables) {
        const details = element('details');
        details.open = tables.length <= 3;
        details.append(element('summary', '', `${table.name} (${formatNumber(table.rows)} rows)`));
        const list = element('ul');
        for (const column of table.columns) {
          const item = element('li');
          item.append(element('code', '', column.name), ` ${column.type}`);
          item.addEventListener('click', () => editor.setRangeText(`"${column.name}"`, editor.selectionStart, editor.selectionEnd, 'end'));
          list.append(item);
        }
        details.append(list);
        schema.append(details);
      }
    })
    .catch((error) => schema.replaceChildren(errorBox(error.message)));

  async function execute() {
    const sql = editor.value;
    if (controller) controller.abort();
    controller = new AbortController();
    run.disabled = true;
    info.textContent = 'running…';
    if (chart) chart.destroy();
    chart = null;
    try {
      const result = await query(sql, controller.signal, language.value);
      info.textContent = `${result.row_count} rows${result.truncated ? ' (truncated)' : ''} · ${Math.round(result.elapsed_ms)} ms`;
      output.replaceChildren();
      // SQL answers over time are charted; KQL ones when `render` asks.
      const drawn = language.value === 'sql' || LINE_RENDERS.includes(result.render?.kind);
      chart = drawn ? resultChart(output, result) : null;
      const shown = result.objects.slice(0, 1000);
      output.append(rowsTable(shown, result.columns.map((column) => column.name)));
      if (result.objects.length > shown.length) output.append(element('p', 'muted', `first ${shown.length} rows shown`));
    } catch (error) {
      if (error.name === 'AbortError') return;
      info.textContent = '';
      output.replaceChildren(sqlError(error, sql));
    } finally {
      run.disabled = false;
    }
  }
  run.addEventListener('click', execute);
  editor.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      execute();
    }
  });
  return () => {
    if (controller) controller.abort();
    if (chart) chart.destroy();
  };
}

// ---------------------------------------------------------------- Operations

function sum(samples, name, by) {
  const totals = new Map();
  for (const sample of samples) {
    if (sample.name !== name) continue;
    const key = by.map((label) => sample.labels[label]).join(' / ');
    totals.set(key, (totals.get(key) || 0) + sample.value);
  }
  return totals;
}

/** The upper bound of the bucket holding quantile `q` of a histogram. */
export function quantile(buckets, q) {
  const sorted = [...buckets].sort((a, b) => a[0] - b[0]);
  const total = sorted.length ? sorted[sorted.length - 1][1] : 0;
  if (!(total > 0)) return null;
  const wanted = q * total;
  const found = sorted.find(([, count]) => count >= wanted);
  return found ? found[0] : null;
}

function histograms(samples, name, by) {
  const result = new Map();
  for (const sample of samples) {
    if (sample.name !== `${name}_bucket`) continue;
    const key = by.map((label) => sample.labels[label]).join(' / ') || 'all';
    if (!result.has(key)) result.set(key, []);
    result.get(key).push([sample.labels.le === '+Inf' ? Infinity : Number(sample.labels.le), sample.value]);
  }
  return result;
}

/** `now` minus `before`, bucket by bucket (the observations in between). */
function difference(now, before) {
  if (!before) return now;
  const delta = now.map(([le, count]) => [le, count - ((before.find(([l]) => l === le) || [le, 0])[1])]);
  // A counter that went backwards: the server restarted; count from zero.
  return delta.some(([, count]) => count < 0) ? now : delta;
}

function seconds(value) {
  if (value === null || value === undefined) return '–';
  if (value === Infinity) return '> 30 s';
  return value < 1 ? `≤ ${Math.round(value * 1000)} ms` : `≤ ${value} s`;
}

export function operations(main) {
  const HISTORY_MS = 5 * 60 * 1000;
  const panels = {};
  const grid = element('div', 'grid ops');
  main.replaceChildren(element('h1', '', 'Operations'), element('p', 'muted', 'From /metrics, every 2 s; rates over the last interval.'), grid);
  const panel = (id, title, chart) => {
    const body = element('div', 'stats');
    const node = card(title, body);
    node.id = `ops-${id}`;
    grid.append(node);
    panels[id] = { body, chart: chart ? new LineChart(node, { height: 140 }) : null, history: new Map() };
  };
  panel('ingest', 'Ingest rate (records/s per topic)', true);
  panel('lag', 'Consumer lag (records per group)', true);
  panel('watermark', 'Watermark delay (seconds per job)', true);
  panel('freshness', 'Freshness p99 (event to queryable, per table)', false);
  panel('deadletters', 'Dead letters (per table)', false);
  panel('queries', 'Store query durations', false);

  const remember = (id, now, values) => {
    const { history, chart } = panels[id];
    for (const [key, value] of values) {
      if (!history.has(key)) history.set(key, []);
      history.get(key).push([now, value]);
    }
    for (const points of history.values()) while (points.length && points[0][0] < now - HISTORY_MS) points.shift();
    if (chart) chart.update([...history].map(([name, points]) => ({ name, points })));
  };
  const show = (id, values, format, metric) => {
    const stats = [...values].map(([key, value]) => stat(key || 'all', format(value), `${metric}:${key}`));
    panels[id].body.replaceChildren(...(stats.length ? stats : [element('p', 'empty', 'nothing to show yet')]));
  };

  let previous = null;
  const stop = every(2000, async () => {
    const samples = await scrapeMetrics();
    const now = Date.now();
    const ends = sum(samples, 'freshet_log_partition_end_offset', ['topic']);
    for (const key of [...ends.keys()]) if (key.startsWith('__')) ends.delete(key);
    if (previous) {
      const elapsed = (now - previous.time) / 1000;
      const rates = new Map([...ends].map(([topic, end]) => [topic, Math.max(0, (end - (previous.ends.get(topic) ?? end)) / elapsed)]));
      show('ingest', rates, (v) => `${formatNumber(v)}/s`, 'ingest');
      remember('ingest', now, rates);
    }
    const lag = sum(samples, 'freshet_kafka_consumer_group_lag', ['group']);
    show('lag', lag, formatNumber, 'lag');
    remember('lag', now, lag);
    const watermark = sum(samples, 'freshet_job_watermark_delay_seconds', ['job']);
    show('watermark', watermark, (v) => `${v.toFixed(1)} s`, 'watermark');
    remember('watermark', now, watermark);
    const freshness = histograms(samples, 'freshet_store_freshness_seconds', ['table']);
    show(
      'freshness',
      // Over the last interval; a table that ingested nothing in it shows –.
      new Map([...freshness].map(([table, buckets]) => [table, quantile(difference(buckets, previous?.freshness.get(table)), 0.99)])),
      seconds,
      'freshness',
    );
    show('deadletters', sum(samples, 'freshet_store_dead_letters_total', ['table']), formatNumber, 'deadletters');
    const queries = histograms(samples, 'freshet_store_query_duration_seconds', []).get('all') || [];
    const count = queries.length ? Math.max(...queries.map(([, c]) => c)) : 0;
    panels.queries.body.replaceChildren(
      stat('queries', formatNumber(count), 'queries:count'),
      stat('p50', seconds(quantile(queries, 0.5)), 'queries:p50'),
      stat('p99', seconds(quantile(queries, 0.99)), 'queries:p99'),
      stat('failed', formatNumber([...sum(samples, 'freshet_store_queries_failed_total', []).values()][0] ?? 0), 'queries:failed'),
    );
    previous = { time: now, ends, freshness };
  });
  return () => {
    stop();
    Object.values(panels).forEach((panel) => panel.chart?.destroy());
  };
}

export { renderValue };
