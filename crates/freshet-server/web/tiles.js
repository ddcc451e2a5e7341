// Dashboard tiles: each is bound to a job output (rows pushed over
// server-sent events) or to a store query (re-run on an interval), and
// shows its rows as a value, a time series, a top list, an alert feed
// or a table.

import { follow, query } from './api.js';
import { LineChart, formatNumber } from './chart.js';

const ISO_TIME = /^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}/;
/** Rows a live tile remembers. */
const LIVE_ROWS = 2000;

export function isTime(value) {
  return typeof value === 'string' && ISO_TIME.test(value);
}

export function timeOf(value) {
  return isTime(value) ? Date.parse(value.endsWith('Z') || /[+-]\d\d:?\d\d$/.test(value) ? value : `${value}Z`) : NaN;
}

function numeric(value) {
  return typeof value === 'number' ? value : typeof value === 'string' && value.trim() !== '' && !Number.isNaN(Number(value)) ? Number(value) : NaN;
}

/** The first field of `rows` whose values are times. */
function timeField(rows) {
  const row = rows.find((r) => Object.values(r).some(isTime));
  return row ? Object.keys(row).find((key) => isTime(row[key])) : undefined;
}

function numericFields(rows, except) {
  const row = rows[rows.length - 1] || {};
  return Object.keys(row).filter((key) => !except.includes(key) && typeof row[key] === 'number');
}

export function renderValue(text) {
  if (text === null || text === undefined) return '–';
  if (typeof text === 'number') return formatNumber(text);
  if (isTime(text)) return text.replace('T', ' ').replace(/\.\d+/, '').replace('Z', ' UTC');
  return String(text);
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function rowsTable(rows, fields) {
  const table = element('table', 'rows');
  const head = table.createTHead().insertRow();
  for (const field of fields) head.append(element('th', '', field));
  const body = table.createTBody();
  for (const row of rows) {
    const tr = body.insertRow();
    for (const field of fields) {
      const td = tr.insertCell();
      td.textContent = renderValue(row[field]);
      if (typeof row[field] === 'number') td.className = 'num';
    }
  }
  return table;
}

/** One tile of a dashboard. `destroy()` stops its stream or timer. */
export class Tile {
  constructor(spec) {
    this.spec = spec;
    this.rows = [];
    this.updates = 0;
    this.node = element('section', `tile tile-${spec.kind}`);
    this.node.dataset.kind = spec.kind;
    this.node.dataset.updates = '0';
    const head = element('header');
    head.append(element('h3', '', spec.title));
    this.status = element('span', 'status', spec.output ? 'connecting…' : 'loading…');
    this.status.title = spec.output ? `live: job output ${spec.output}` : `query, every ${spec.refresh_ms / 1000} s`;
    head.append(this.status);
    this.body = element('div', 'body');
    this.node.append(head, this.body);
    if (spec.kind === 'timeseries') this.chart = new LineChart(this.body);
    this.pending = false;
    if (spec.output) this.startLive();
    else this.startQuery();
  }

  startLive() {
    this.close = follow(
      this.spec.output,
      (row) => {
        this.rows.push(row);
        if (this.rows.length > LIVE_ROWS) this.rows.splice(0, this.rows.length - LIVE_ROWS);
        this.schedule();
      },
      (status) => this.setStatus(status),
      () => {
        this.rows = [];
      },
    );
    this.render();
  }

  startQuery() {
    const run = async () => {
      this.controller = new AbortController();
      try {
        const result = this.spec.kql
          ? await query(this.spec.kql, this.controller.signal, 'kql')
          : await query(this.spec.query, this.controller.signal);
        this.rows = result.objects;
        this.setStatus(`${result.row_count} rows · ${Math.round(result.elapsed_ms)} ms`);
        this.node.classList.remove('failed');
        this.render();
      } catch (error) {
        if (error.name === 'AbortError') return;
        this.node.classList.add('failed');
        this.setStatus('query failed');
        this.body.replaceChildren(element('p', 'error', error.message));
      }
      if (!this.stopped) this.timer = setTimeout(run, this.spec.refresh_ms);
    };
    run();
  }

  setStatus(text) {
    this.status.textContent = text;
  }

  /** Live rows come in bursts; draw at most once per frame. */
  schedule() {
    if (this.pending) return;
    this.pending = true;
    this.frame = requestAnimationFrame(() => {
      this.pending = false;
      this.render();
    });
  }

  render() {
    if (this.stopped) return;
    const spec = this.spec;
    const live = Boolean(spec.output);
    if (this.rows.length === 0) {
      if (!this.chart) this.body.replaceChildren(element('p', 'empty', live ? 'waiting for the first row…' : 'no rows'));
      else this.chart.update([]);
      return;
    }
    this.updates += 1;
    this.node.dataset.updates = String(this.updates);
    // Live rows arrive oldest first; query rows come in the query's order.
    const newestFirst = live ? [...this.rows].reverse() : this.rows;
    switch (spec.kind) {
      case 'value': {
        const row = newestFirst[0];
        const field = spec.y[0] || numericFields([row], [])[0] || Object.keys(row)[0];
        const big = element('div', 'value', renderValue(row[field]));
        if (spec.unit) big.append(element('small', '', spec.unit));
        const time = timeField([row]);
        const caption = element('div', 'caption', time ? `${field} · ${renderValue(row[time])}` : field);
        this.body.replaceChildren(big, caption);
        break;
      }
      case 'timeseries': {
        const x = spec.x || timeField(this.rows);
        const ys = spec.y.length > 0 ? spec.y : numericFields(this.rows, [x, spec.series]);
        const lines = new Map();
        for (const row of this.rows) {
          const t = timeOf(row[x]);
          for (const y of ys) {
            const name = spec.series ? (ys.length > 1 ? `${row[spec.series]} ${y}` : String(row[spec.series])) : y;
            if (!lines.has(name)) lines.set(name, []);
            lines.get(name).push([t, numeric(row[y])]);
          }
        }
        const series = [...lines].map(([name, points]) => ({ name, points }));
        series.sort((a, b) => String(a.name).localeCompare(String(b.name), undefined, { numeric: true }));
        this.chart.update(series.slice(0, spec.limit > 10 ? spec.limit : 10));
        break;
      }
      case 'top': {
        const x = spec.x || timeField(this.rows);
        let rows = this.rows;
        let caption = '';
        rows = rows.filter((row) => Number.isFinite(numeric(row[spec.value])));
        const times = x && live ? rows.map((row) => timeOf(row[x])).filter(Number.isFinite) : [];
        if (times.length > 0) {
          // The newest window only, one row per key.
          const newest = times.reduce((a, b) => (b > a ? b : a));
          rows = rows.filter((row) => timeOf(row[x]) === newest);
          caption = `window ending ${renderValue(new Date(newest).toISOString())}`;
        }
        const ranked = [...rows].sort((a, b) => numeric(b[spec.value]) - numeric(a[spec.value])).slice(0, spec.limit);
        const top = ranked.reduce((most, row) => Math.max(most, numeric(row[spec.value])), 0) || 1;
        const list = element('ol', 'top');
        for (const row of ranked) {
          const item = element('li');
          const bar = element('span', 'bar');
          bar.style.width = `${Math.max(0, (numeric(row[spec.value]) / top) * 100)}%`;
          item.append(bar, element('span', 'label', renderValue(row[spec.key])), element('span', 'num', renderValue(row[spec.value])));
          list.append(item);
        }
        this.body.replaceChildren(list);
        if (caption) this.body.append(element('div', 'caption', caption));
        break;
      }
      case 'alerts': {
        const feed = element('ul', 'alerts');
        for (const row of newestFirst.slice(0, spec.limit)) {
          const item = element('li');
          const fields = spec.y.length > 0 ? spec.y : Object.keys(row);
          for (const field of fields) {
            const part = element('span', 'field');
            part.append(element('b', '', field), ` ${renderValue(row[field])}`);
            item.append(part);
          }
          feed.append(item);
        }
        this.body.replaceChildren(feed);
        break;
      }
      default: {
        const rows = newestFirst.slice(0, spec.limit);
        const fields = spec.y.length > 0 ? spec.y : Object.keys(rows[0]);
        this.body.replaceChildren(rowsTable(rows, fields));
      }
    }
  }

  destroy() {
    this.stopped = true;
    cancelAnimationFrame(this.frame);
    if (this.close) this.close();
    if (this.controller) this.controller.abort();
    clearTimeout(this.timer);
    if (this.chart) this.chart.destroy();
  }
}

export { rowsTable, element };
