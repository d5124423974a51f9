// Shared set-up for the browser tests: headless Chromium (Debian's, through
// playwright-core), the server under test, and per-page bookkeeping of console
// errors and of every request the page makes.
//
// Server under test:
//   SENTINEL_URL unset: fake-api-server.mjs, started as a child process on
//                        127.0.0.1 and a free port, stopped at the end;
//   SENTINEL_URL=http://127.0.0.1:8080: a running sentinel daemon (seeded DB).
// Chromium: CHROMIUM_PATH, default /usr/bin/chromium (apt-get install -y chromium).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ARTIFACTS = process.env.SENTINEL_ARTIFACTS || path.resolve(HERE, '../../artifacts/screenshots');
export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
export const REAL = Boolean(process.env.SENTINEL_URL);

/** Flags for a closed network and root: nothing may reach for the internet. */
const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-default-apps', '--disable-domain-reliability',
  '--no-default-browser-check', '--metrics-recording-only', '--disable-features=Translate,OptimizationHints,MediaRouter',
];

/** Start the fake server in its own process; resolves with { url, stop }. */
export function startFakeProcess(args = []) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(HERE, 'fake-api-server.mjs'), '--port', '0', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`fake server did not start in 10 s: ${out}${err}`));
    }, 10_000);
    child.stderr.on('data', (d) => (err += d));
    child.stdout.on('data', (d) => {
      out += d;
      const m = /on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({
          url: m[1],
          stop: () =>
            new Promise((res) => {
              if (child.exitCode !== null) return res();
              child.once('exit', () => res());
              child.kill('SIGTERM');
              setTimeout(() => child.kill('SIGKILL'), 3000).unref();
            }),
        });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`fake server exited (${code}): ${err}`));
    });
  });
}

/** Browser and server for one test file. */
export async function setup() {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`Chromium not found at ${CHROMIUM}: install it (apt-get install -y chromium) or set CHROMIUM_PATH. These tests never download a browser.`);
  }
  const server = REAL ? { url: process.env.SENTINEL_URL.replace(/\/+$/, ''), stop: async () => {} } : await startFakeProcess();
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 30_000 });
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  return {
    browser,
    url: server.url,
    async close() {
      await browser.close();
      await server.stop();
    },
  };
}

/**
 * A fresh context and page (cold cache, fresh storage) that records console
 * errors, page errors and requests. opts: locale, timezoneId, viewport, origin
 * (the only origin requests may go to).
 */
export async function openPage(env, opts = {}) {
  const ctx = await env.browser.newContext({
    locale: opts.locale || 'zh-CN',
    timezoneId: opts.timezoneId || 'America/Los_Angeles', // deliberately not the NAS's zone
    viewport: opts.viewport || { width: 1440, height: 900 },
    deviceScaleFactor: 1,
  });
  const page = await ctx.newPage();
  page.setDefaultTimeout(15_000);
  const log = { errors: [], requests: [], external: [] };
  const origin = new URL(env.url).origin;
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') log.errors.push(`${m.type()}: ${m.text()} (${m.location().url})`);
  });
  page.on('pageerror', (e) => log.errors.push(`pageerror: ${e.message}`));
  page.on('request', (r) => {
    log.requests.push(r.url());
    const u = r.url();
    if (!u.startsWith(`${origin}/`) && !u.startsWith('data:')) log.external.push(u);
  });
  page.on('requestfailed', (r) => {
    // Aborts made by a test's own route are expected; those tests allow them.
    log.errors.push(`requestfailed: ${r.url()} ${r.failure() && r.failure().errorText}`);
  });
  return { ctx, page, log };
}

/** Load the dashboard and wait until every panel has its first data. */
export async function loadDashboard(env, page) {
  await page.goto(`${env.url}/`, { waitUntil: 'domcontentloaded' });
  await page.waitForSelector('html[data-ready="true"]', { state: 'attached', timeout: 15_000 });
}

/** Only the errors that are not matched by one of the allowed patterns. */
export function unexpected(log, allowed = []) {
  return log.errors.filter((e) => !allowed.some((re) => re.test(e)));
}

/**
 * Fix the NAS clock the page sees: /api/summary answers with this "now" and
 * zone (the rest of the body comes from the server). The page takes every date
 * from these fields, so this is all a test needs to put the page on any day,
 * against the fake server or a real daemon alike.
 */
export async function fixClock(page, now, tz) {
  const offset = /([+-]\d{2}:\d{2}|Z)$/.exec(now)[1];
  await page.route('**/api/summary', async (route) => {
    const res = await route.fetch();
    const body = await res.json();
    Object.assign(body, { now, tz, tz_offset: offset === 'Z' ? '+00:00' : offset, today_date: now.slice(0, 10) });
    await route.fulfill({ response: res, json: body });
  });
}

/** The last JSON body the page received from an endpoint (path prefix), recorded as it arrives. */
export function recordResponses(page) {
  const bodies = new Map();
  page.on('response', async (r) => {
    const u = new URL(r.url());
    // Good answers only, except health, whose 503 body is an answer too.
    if (!u.pathname.startsWith('/api/') || (!r.ok() && u.pathname !== '/api/health')) return;
    try {
      bodies.set(u.pathname, await r.json());
    } catch (_) {
      /* not JSON: the page reports it */
    }
  });
  return bodies;
}

/** The option of the ECharts instance in a container. */
export function chartOption(page, id) {
  return page.evaluate((i) => {
    const c = window.echarts.getInstanceByDom(document.getElementById(i));
    if (!c) return null;
    const o = c.getOption();
    return {
      labels: o.xAxis[0].data,
      series: o.series.map((s) => ({ name: s.name, type: s.type, data: s.data, stack: s.stack })),
      legend: o.legend[0].data.map((d) => (typeof d === 'string' ? d : d.name)),
    };
  }, id);
}

/** Resolve when every chart has finished its animation (at most 3 s). */
export function chartsSettled(page) {
  return page.evaluate(
    () =>
      Promise.all(
        [...document.querySelectorAll('.chart-wrap')].map((el) => {
          const c = window.echarts && window.echarts.getInstanceByDom(el);
          if (!c) return null;
          return new Promise((resolve) => {
            const done = () => resolve();
            c.on('finished', done);
            setTimeout(done, 3000);
            c.resize({ animation: { duration: 0 } }); // triggers a "finished" once all is drawn
          });
        }),
      ),
  );
}

export async function screenshot(page, name) {
  await chartsSettled(page);
  const file = path.join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}
