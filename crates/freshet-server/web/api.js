// The public HTTP API, as the UI uses it. Nothing here is private to the
// UI: every call is documented in /api/v1/openapi.json.

/** An error answered by the API: `{"error": {"code", "message", line?, column?}}`. */
export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || 'http';
    this.line = error.line;
    this.column = error.column;
  }
}

async function answer(response) {
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = { error: { code: 'http', message: text || `HTTP ${response.status}` } };
  }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

export async function getJSON(path, signal) {
  return answer(await fetch(path, { headers: { accept: 'application/json' }, signal }));
}

/** Runs a store query (`language` 'sql' or 'kql'); rows come back as
 * objects keyed by column name. */
export async function query(text, signal, language = 'sql') {
  const response = await fetch('/api/v1/query', {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({ [language]: text }),
    signal,
  });
  const result = await answer(response);
  const names = result.columns.map((column) => column.name);
  result.objects = result.rows.map((row) => Object.fromEntries(names.map((name, i) => [name, row[i]])));
  return result;
}

/** One EventSource per output, shared by every tile that follows it (a
 * browser allows only six HTTP/1.1 connections per server). */
const streams = new Map();

function openStream(output) {
  const source = new EventSource(`/api/v1/outputs/${encodeURIComponent(output)}/stream`);
  const stream = { source, rows: [], followers: new Set() };
  const tell = (status) => stream.followers.forEach((f) => f.onStatus(status));
  let opened = false;
  source.addEventListener('open', () => {
    // A reconnect replays the output's recent rows: start over with them.
    if (opened) {
      stream.rows = [];
      stream.followers.forEach((f) => f.onReset());
    }
    opened = true;
    tell('live');
  });
  source.addEventListener('error', () => tell(source.readyState === EventSource.CLOSED ? 'closed' : 'reconnecting'));
  source.addEventListener('row', (event) => {
    let row;
    try {
      row = JSON.parse(event.data);
    } catch (error) {
      console.warn('a row that is not JSON', error);
      return;
    }
    // Kept so that a tile added later starts from the same rows.
    stream.rows.push(row);
    if (stream.rows.length > 2000) stream.rows.splice(0, stream.rows.length - 2000);
    stream.followers.forEach((f) => f.onRow(row));
  });
  source.addEventListener('lagged', (event) => tell(`skipped ${event.data} rows`));
  return stream;
}

/**
 * Follows a job output's server-sent events. `onRow` gets each row as an
 * object (the most recent rows first arrive as a backlog); `onReset` is
 * called when a reconnect is about to replay that backlog. Returns a
 * function that stops following; the stream closes with its last follower.
 */
export function follow(output, onRow, onStatus = () => {}, onReset = () => {}) {
  if (!streams.has(output)) streams.set(output, openStream(output));
  const stream = streams.get(output);
  const follower = { onRow, onStatus, onReset };
  stream.followers.add(follower);
  stream.rows.forEach(onRow);
  if (stream.source.readyState === EventSource.OPEN) onStatus('live');
  let done = false;
  return () => {
    if (done) return;
    done = true;
    stream.followers.delete(follower);
    if (stream.followers.size === 0) {
      stream.source.close();
      if (streams.get(output) === stream) streams.delete(output);
    }
  };
}

/**
 * Reads `/metrics` (Prometheus text format) into
 * `[{name, labels: {…}, value}]`: the Operations page shows the very
 * numbers a Prometheus server would scrape.
 */
export async function scrapeMetrics(signal) {
  const response = await fetch('/metrics', { signal });
  if (!response.ok) throw new ApiError(response.status, null);
  return parseMetrics(await response.text());
}

export function parseMetrics(text) {
  const samples = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const labels = {};
    if (match[3]) {
      for (const pair of match[3].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
        labels[pair[1]] = pair[2].replace(/\\"/g, '"').replace(/\\n/g, '\n').replace(/\\\\/g, '\\');
      }
    }
    samples.push({ name: match[1], labels, value: Number(match[4]) });
  }
  return samples;
}
