// Starts the real `freshet` binary on free loopback ports and opens pages
// in real headless Chromium (Debian's, driven by playwright-core).

import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const BIN = process.env.FRESHET_BIN || join(process.env.CARGO_TARGET_DIR || join(root, 'target'), 'debug/freshet');
/** Screenshots land here; CI keeps the folder as the run's artifacts. */
export const ARTIFACTS = process.env.FRESHET_ARTIFACTS || join(process.env.CARGO_TARGET_DIR || join(root, 'target'), 'browser-artifacts');

const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

/** Runs `freshet <command>` with a config (or none) until `stop()`. */
export async function startFreshet(command, config) {
  const dir = mkdtempSync(join(tmpdir(), 'freshet-ui-'));
  const portsFile = join(dir, 'ports.json');
  const args = [command, '--data-dir', join(dir, 'data'), '--http-listen', '127.0.0.1:0', '--kafka-listen', '127.0.0.1:0', '--ports-file', portsFile];
  if (config) {
    writeFileSync(join(dir, 'freshet.toml'), config);
    args.push('--config', join(dir, 'freshet.toml'));
  }
  let output = '';
  const child = spawn(BIN, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: 'warn' } });
  child.stdout.on('data', (chunk) => (output += chunk));
  child.stderr.on('data', (chunk) => (output += chunk));
  const deadline = Date.now() + 60_000;
  while (!existsSync(portsFile)) {
    if (child.exitCode !== null) throw new Error(`freshet ${command} exited: ${output}`);
    if (Date.now() > deadline) throw new Error(`freshet ${command} did not start: ${output}`);
    await sleep(100);
  }
  const ports = JSON.parse(readFileSync(portsFile, 'utf8'));
  const base = `http://${ports.http}`;
  return {
    base,
    ports,
    output: () => output,
    async stop() {
      child.kill('SIGTERM');
      const exited = await Promise.race([new Promise((done) => child.once('exit', () => done(true))), sleep(30_000).then(() => false)]);
      if (!exited) child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
      return child.exitCode;
    },
  };
}

/** A browser page that records console errors and uncaught exceptions. */
export async function openBrowser() {
  mkdirSync(ARTIFACTS, { recursive: true });
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox'] });
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const problems = [];
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console error: ${message.text()}`);
  });
  page.on('pageerror', (error) => problems.push(`uncaught: ${error.message}`));
  return {
    page,
    problems,
    screenshot: (name) => page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true }),
    close: () => browser.close(),
  };
}

export async function postJSON(base, path, body) {
  const response = await fetch(`${base}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: response.status, body: await response.json() };
}
