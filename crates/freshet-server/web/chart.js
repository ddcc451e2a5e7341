// A small canvas line chart for time series: a few hundred points per
// line, redrawn whole on every update, sized to its container.

const PALETTE = ['#2f81f7', '#f0883e', '#3fb950', '#db61a2', '#a371f7', '#e3b341', '#56d4dd', '#f85149', '#8b949e', '#7ee787'];

export function colour(index) {
  return PALETTE[index % PALETTE.length];
}

/** Round steps for an axis spanning `span` with about `count` ticks. */
function niceStep(span, count) {
  const raw = span / Math.max(1, count);
  const power = 10 ** Math.floor(Math.log10(raw));
  const fraction = raw / power;
  const nice = fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10;
  return nice * power;
}

const TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400].map((s) => s * 1000);

function timeStep(spanMs, count) {
  const raw = spanMs / Math.max(1, count);
  return TIME_STEPS.find((step) => step >= raw) || niceStep(spanMs, count);
}

export function formatNumber(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return '–';
  const magnitude = Math.abs(value);
  if (magnitude >= 1e9) return `${(value / 1e9).toFixed(magnitude >= 1e10 ? 0 : 1)}G`;
  if (magnitude >= 1e6) return `${(value / 1e6).toFixed(magnitude >= 1e7 ? 0 : 1)}M`;
  if (magnitude >= 1e4) return `${(value / 1e3).toFixed(magnitude >= 1e5 ? 0 : 1)}k`;
  if (Number.isInteger(value)) return String(value);
  if (magnitude >= 100) return value.toFixed(0);
  if (magnitude >= 1) return value.toFixed(2);
  return value.toPrecision(2);
}

function formatTime(ms, step) {
  const date = new Date(ms);
  const pad = (n) => String(n).padStart(2, '0');
  const hm = `${pad(date.getUTCHours())}:${pad(date.getUTCMinutes())}`;
  if (step >= 86400000) return date.toISOString().slice(5, 10);
  return step < 60000 ? `${hm}:${pad(date.getUTCSeconds())}` : hm;
}

/**
 * A chart in `container`. `update(series)` takes
 * `[{name, points: [[timeMs, value], …]}]`; `xIsTime` false plots plain
 * numbers on x.
 */
export class LineChart {
  constructor(container, { xIsTime = true, height = 180 } = {}) {
    this.xIsTime = xIsTime;
    this.series = [];
    this.wrapper = document.createElement('div');
    this.wrapper.className = 'chart';
    this.canvas = document.createElement('canvas');
    this.canvas.height = height;
    this.canvas.style.height = `${height}px`;
    this.legend = document.createElement('div');
    this.legend.className = 'legend';
    this.wrapper.append(this.canvas, this.legend);
    container.append(this.wrapper);
    this.observer = new ResizeObserver(() => this.draw());
    this.observer.observe(this.wrapper);
  }

  update(series) {
    this.series = series.filter((line) => line.points.length > 0);
    this.legend.replaceChildren(
      ...this.series.slice(0, PALETTE.length).map((line, index) => {
        const item = document.createElement('span');
        item.innerHTML = `<i style="background:${colour(index)}"></i>`;
        item.append(String(line.name));
        return item;
      }),
    );
    this.draw();
  }

  /** Number of points drawn, for tests and the empty state. */
  get pointCount() {
    return this.series.reduce((sum, line) => sum + line.points.length, 0);
  }

  draw() {
    const canvas = this.canvas;
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(120, this.wrapper.clientWidth);
    const height = parseInt(canvas.style.height, 10);
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    canvas.style.width = `${width}px`;
    const ctx = canvas.getContext('2d');
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const style = getComputedStyle(document.documentElement);
    const muted = style.getPropertyValue('--muted').trim() || '#888';
    const grid = style.getPropertyValue('--grid').trim() || '#333';
    ctx.font = '11px system-ui, sans-serif';
    const points = this.series.flatMap((line) => line.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));
    this.wrapper.dataset.points = String(points.length);
    if (points.length === 0) {
      ctx.fillStyle = muted;
      ctx.textAlign = 'center';
      ctx.fillText('waiting for data…', width / 2, height / 2);
      return;
    }
    let [xMin, xMax, yMin, yMax] = [Infinity, -Infinity, 0, 0];
    for (const [x, y] of points) {
      if (x < xMin) xMin = x;
      if (x > xMax) xMax = x;
      if (y < yMin) yMin = y;
      if (y > yMax) yMax = y;
    }
    if (xMin === xMax) [xMin, xMax] = [xMin - 1000, xMax + 1000];
    if (yMin === yMax) yMax = yMin + 1;
    if (!Number.isFinite(yMax - yMin) || !Number.isFinite(xMax - xMin)) return;
    const yStep = niceStep(yMax - yMin, 4);
    yMax = Math.ceil(yMax / yStep) * yStep;
    yMin = Math.floor(yMin / yStep) * yStep;
    const yTicks = Math.min(50, Math.round((yMax - yMin) / yStep));
    const left = 8 + Math.max(ctx.measureText(formatNumber(yMax)).width, ctx.measureText(formatNumber(yMin)).width) + 6;
    const [top, right, bottom] = [8, 10, 20];
    const plotWidth = width - left - right;
    const plotHeight = height - top - bottom;
    const sx = (x) => left + ((x - xMin) / (xMax - xMin)) * plotWidth;
    const sy = (y) => top + plotHeight - ((y - yMin) / (yMax - yMin)) * plotHeight;

    ctx.strokeStyle = grid;
    ctx.fillStyle = muted;
    ctx.lineWidth = 1;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (let i = 0; i <= yTicks; i++) {
      const y = yMin + i * yStep;
      ctx.beginPath();
      ctx.moveTo(left, Math.round(sy(y)) + 0.5);
      ctx.lineTo(width - right, Math.round(sy(y)) + 0.5);
      ctx.stroke();
      ctx.fillText(formatNumber(Number(y.toPrecision(12))), left - 6, sy(y));
    }
    const ticks = Math.max(2, Math.floor(plotWidth / 90));
    const xStep = this.xIsTime ? timeStep(xMax - xMin, ticks) : niceStep(xMax - xMin, ticks);
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    const firstTick = Math.ceil(xMin / xStep) * xStep;
    for (let i = 0, x = firstTick; x <= xMax && i < 50; i++, x = firstTick + i * xStep) {
      const label = this.xIsTime ? formatTime(x, xStep) : formatNumber(x);
      // Keep labels inside the canvas rather than cut at its edge.
      const half = ctx.measureText(label).width / 2;
      ctx.fillText(label, Math.min(Math.max(sx(x), half), width - half), top + plotHeight + 5);
    }

    this.series.forEach((line, index) => {
      const sorted = line.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)).sort((a, b) => a[0] - b[0]);
      ctx.strokeStyle = colour(index);
      ctx.fillStyle = colour(index);
      ctx.lineWidth = 1.6;
      ctx.beginPath();
      sorted.forEach(([x, y], i) => (i === 0 ? ctx.moveTo(sx(x), sy(y)) : ctx.lineTo(sx(x), sy(y))));
      ctx.stroke();
      if (sorted.length < 40) {
        for (const [x, y] of sorted) {
          ctx.beginPath();
          ctx.arc(sx(x), sy(y), 2.2, 0, Math.PI * 2);
          ctx.fill();
        }
      }
    });
  }

  destroy() {
    this.observer.disconnect();
  }
}
