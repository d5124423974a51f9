// The dashboard in headless Chromium against a running server with seeded data
// (the fake server, or the daemon at SENTINEL_URL). See README.md.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import zlib from 'node:zlib';
import {
  setup, openPage, loadDashboard, unexpected, fixClock, recordResponses, chartOption, screenshot, startFakeProcess, REAL, ARTIFACTS,
} from './harness.mjs';
import path from 'node:path';
import { fmtBytes } from './fake-api-server.mjs';

const T = { timeout: 90_000 };
const QUICK = ['today', 'yesterday', '7days', '30days', 'thisMonth', 'lastMonth', 'thisYear'];
// Chromium's own line for a deliberately failed response; allowed only where a test fails one.
const failedResource = /Failed to load resource: (the server responded with a status of (4|5)\d\d|net::ERR_[A-Z_]+)/;

let env;
before(async () => {
  env = await setup();
});
after(async () => {
  if (env) await env.close();
});

/** Wait for the query the page is running to finish and return its request and JSON body. */
async function clickAndQuery(page, selector) {
  const [req] = await Promise.all([
    page.waitForRequest((r) => new URL(r.url()).pathname.endsWith('/api/query')),
    page.click(selector),
  ]);
  const res = await req.response();
  const body = await res.json();
  const p = new URL(req.url()).searchParams;
  await page.waitForFunction(
    ([s, e, g]) => {
      const box = document.getElementById('query-result');
      return !box.hidden && box.dataset.start === s && box.dataset.end === e && box.dataset.gran === g &&
        !document.getElementById('query-btn').hasAttribute('aria-busy');
    },
    [p.get('start'), p.get('end'), p.get('granularity')],
  );
  return { params: p, body, status: res.status() };
}

// The element's text as written (textContent), not as CSS transforms it (innerText).
/** The top-10 table as [rank, ip, bytes_fmt] rows (the bytes cell also holds the ▲/▼ split). */
const topRows = (page, body = '#top-ips') =>
  page.locator(`${body} tr`).evaluateAll((trs) =>
    trs.map((tr) => {
      const td = [...tr.children];
      return [td[0].textContent, td[1] && td[1].textContent, td[2] && td[2].firstChild.textContent];
    }),
  );

/** The server's fmt_bytes, as the fake server implements it (reference 2.1). */
const fmt = fmtBytes;

const text = (page, sel) => page.locator(sel).evaluate((el) => el.textContent.trim());

describe('dashboard', () => {
  it('loads with no console error and no request outside the server; first render and page weight', T, async () => {
    // One load to warm up the freshly launched browser (process start-up is not the page's cost).
    {
      const { ctx, page } = await openPage(env);
      await loadDashboard(env, page);
      await ctx.close();
    }
    const renders = [];
    for (let i = 0; i < 5; i += 1) {
      const { ctx, page, log } = await openPage(env); // new context: empty cache, as a first visit
      const responses = [];
      page.on('response', (r) => responses.push(r));
      await loadDashboard(env, page);
      await page.waitForLoadState('load');
      const t = await page.evaluate(() => {
        const mark = (n) => Math.round((performance.getEntriesByName(`sentinel:${n}`)[0] || {}).startTime);
        return {
          render: performance.getEntriesByName('sentinel:first-render')[0].startTime,
          fcp: (performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime,
          steps: ['start', 'clock-known', 'echarts-loaded', 'charts-drawn'].map((n) => `${n} ${mark(n)}`).join(', '),
        };
      });
      renders.push(t);
      assert.deepEqual(log.external, [], 'no request may leave the server');
      assert.deepEqual(unexpected(log), [], 'no console error, page error or failed request');
      if (i === 0) {
        // Page weight of a first visit: everything the page fetched until it was complete.
        let transfer = 0;
        let raw = 0;
        let gz = 0;
        for (const r of responses) {
          const body = await r.body();
          raw += body.length;
          gz += zlib.gzipSync(body, { level: 6 }).length;
          transfer += (await r.request().sizes()).responseBodySize;
        }
        console.log(
          `page weight: ${responses.length} responses, ${(gz / 1024).toFixed(1)} KiB gzip-compressed, ` +
            `${(transfer / 1024).toFixed(1)} KiB as transferred, ${(raw / 1024).toFixed(1)} KiB uncompressed`,
        );
        assert.ok(gz < 1_000_000, `page weight ${gz} B compressed must stay under 1 MB`);
        const paths = responses.map((r) => new URL(r.url()).pathname);
        for (const p of ['/', '/static/style.css', '/static/vendor/echarts.common.min.js', '/api/summary', '/api/query']) {
          assert.ok(paths.includes(p), `the page loaded ${p}`);
        }
      }
      await ctx.close();
    }
    const ms = renders.map((r) => Math.round(r.render)).sort((a, b) => a - b);
    const median = ms[2];
    const load = os.loadavg()[0];
    const cpus = os.cpus().length;
    console.log(
      `first render (every panel filled, from navigation start, cold cache): ${ms.join(' / ')} ms, median ${median} ms; ` +
        `first contentful paint ${renders.map((r) => Math.round(r.fcp)).join(' / ')} ms; load average ${load.toFixed(1)} on ${cpus} CPUs`,
    );
    console.log(`first-render steps (ms) of the median load: ${renders.find((r) => Math.round(r.render) === median).steps}`);
    // The 1 s goal is a measurement to print, not a test to fail on a shared machine (timed
    // assertions make CI flaky): report it, and only guard against a page that never renders.
    const verdict = median < 1000 ? 'met' : 'NOT met';
    console.log(`first render goal (median under 1 s on localhost): ${verdict} (median ${median} ms, fastest ${ms[0]} ms, load ${load.toFixed(1)} on ${cpus} CPUs)`);
    assert.ok(ms[0] < 10_000, `the page rendered (fastest of five loads: ${ms[0]} ms)`);
  });

  it('shows the API values: cards, header, status strip, charts and the top-10 table', T, async () => {
    const { ctx, page, log } = await openPage(env);
    const bodies = recordResponses(page);
    await loadDashboard(env, page);
    // Compare with what the page itself received (the daemon's data may move between two requests).
    const s = bodies.get('/api/summary');
    assert.ok(s, 'the page read /api/summary');
    await page.waitForFunction((v) => document.getElementById('s-today-total').textContent === v, s.today.total_fmt);
    assert.equal(await text(page, '#s-today-total'), s.today.total_fmt);
    assert.equal(await text(page, '#s-today-up'), s.today.up_fmt);
    assert.equal(await text(page, '#s-today-down'), s.today.down_fmt);
    assert.equal(await text(page, '#s-month-total'), s.month.total_fmt);
    assert.equal(await text(page, '#s-month-up'), s.month.up_fmt);
    assert.equal(await text(page, '#s-month-down'), s.month.down_fmt);
    assert.equal(await text(page, '#s-year-total'), s.year.total_fmt);
    assert.equal(await text(page, '#s-up2'), s.today.up_fmt);
    assert.equal(await text(page, '#s-down2'), s.today.down_fmt);
    const nasDate = s.now.slice(0, 10);
    assert.equal(await text(page, '#s-year-sub'), `${nasDate.slice(0, 4)}年累计`);
    assert.equal(await text(page, '#today-lbl'), nasDate);
    assert.match(await text(page, '#last-update'), /^\d{2}:\d{2}:\d{2}$/, 'the footer shows the update time');
    assert.match(await text(page, '#clock'), /^\d{2}:\d{2}:\d{2}$/);
    assert.match(await text(page, '#clock-zone'), new RegExp(`^${s.tz.replace('/', '\\/')} UTC[+-]\\d{2}:\\d{2}$`));

    const rt = bodies.get('/api/realtime');
    assert.ok(rt, 'the page read /api/realtime');
    assert.notEqual(await text(page, '#hdr-up'), '--');
    assert.match(await text(page, '#hdr-down-u'), /^(B|KB|MB|GB)\/s$/);
    assert.equal(await page.getAttribute('#live-badge', 'data-state'), 'ok');

    const st = bodies.get('/api/status');
    assert.ok(st, 'the page read /api/status');
    const cap = await text(page, '#st-capture-v');
    assert.ok(cap.includes(st.backend === 'ebpf' ? 'eBPF' : 'AF_PACKET'), cap);
    assert.ok(cap.includes(st.iface), cap);
    assert.equal((await text(page, '#st-drops')).replace(/\D/g, ''), String(st.capture.drops));
    assert.equal(await text(page, '#st-durable-v'), st.capture.counters_survive_restart ? '是' : '否');
    const errTotal = Object.values(st.capture.errors || {}).reduce((a, b) => a + b, 0);
    assert.equal((await text(page, '#st-errors-v')).replace(/\D/g, ''), String(errTotal));
    assert.equal(await page.getAttribute('#st-storage', 'data-state'), st.storage.state === 'ok' ? 'ok' : 'bad');
    const h = bodies.get('/api/health');
    const trouble = st.capture.state === 'down' || st.storage.state !== 'ok' || Boolean(h && h.status !== 'ok');
    assert.equal(await page.locator('#banners').isVisible(), trouble, 'a banner exactly when something is down');

    const d30 = bodies.get('/api/history/30days');
    const o30 = await chartOption(page, 'chart-30days');
    assert.equal(o30.labels.length, 30);
    assert.deepEqual(o30.labels, d30.days.map((d) => d.day.slice(5)));
    assert.deepEqual(o30.series[0].data, d30.days.map((d) => d.up_bytes));
    assert.deepEqual(o30.series[1].data, d30.days.map((d) => d.down_bytes));
    assert.equal(o30.series[0].stack, o30.series[1].stack, 'stacked bars');

    const m12 = bodies.get('/api/history/12months');
    const o12 = await chartOption(page, 'chart-12months');
    assert.deepEqual(o12.labels, m12.months.map((m) => m.month));
    assert.deepEqual(o12.series[1].data, m12.months.map((m) => m.down_bytes));

    const th = bodies.get('/api/history/today_hours');
    const oh = await chartOption(page, 'chart-today-hours');
    assert.equal(oh.labels.length, 24);
    assert.equal(oh.labels[0], '00:00');
    const nowHour = Number(s.now.slice(11, 13));
    for (const h of th.hours) {
      const i = oh.labels.indexOf(h.hour_ts.slice(11, 16));
      // An hour the page's clock has not reached yet (a request that crossed the hour) is empty.
      const later = Number(h.hour_ts.slice(11, 13)) > nowHour;
      assert.equal(oh.series[0].data[i], later ? null : h.up_bytes);
      assert.equal(oh.series[1].data[i], later ? null : h.down_bytes);
    }
    assert.equal(oh.series[0].type, 'line');

    const top = bodies.get('/api/top_ips');
    const rows = await topRows(page);
    assert.equal(rows.length, Math.min(10, top.top_ips.length) || 1);
    top.top_ips.slice(0, 10).forEach((ip, i) => {
      assert.deepEqual(rows[i].slice(0, 3), [String(i + 1), ip.ip, ip.bytes_fmt]);
    });

    // The services panel beside it (same row, to the right, at 1440 px): the same day, rank,
    // "name · proto/port · role", total.
    const ipBox = await page.locator('#top-ips').boundingBox();
    const svcBox = await page.locator('#top-services').boundingBox();
    assert.ok(Math.abs(ipBox.y - svcBox.y) < 2 && svcBox.x > ipBox.x + ipBox.width, `${JSON.stringify(ipBox)} ${JSON.stringify(svcBox)}`);
    const svc = bodies.get('/api/services');
    const srows = await topRows(page, '#top-services');
    assert.equal(srows.length, Math.min(10, svc.services.length) || 1);
    svc.services.slice(0, 10).forEach((x, i) => {
      assert.equal(srows[i][0], String(i + 1));
      assert.equal(srows[i][2], x.total_fmt);
      const where = x.port ? `${x.proto}/${x.port}` : x.proto;
      assert.ok(srows[i][1].includes(where), `${srows[i][1]} names ${where}`);
      if (x.name) assert.ok(srows[i][1].startsWith(x.name), srows[i][1]);
    });
    assert.deepEqual(log.external, []);
    assert.deepEqual(unexpected(log), []);
    await ctx.close();
  });

  it('runs the default query on load: last 30 days by day, with its summary and chart', T, async () => {
    const { ctx, page, log } = await openPage(env);
    const bodies = recordResponses(page);
    await fixClock(page, '2025-03-15T14:37:21+08:00', 'Asia/Shanghai');
    await loadDashboard(env, page);
    const box = page.locator('#query-result');
    assert.ok(await box.isVisible());
    assert.equal(await box.getAttribute('data-start'), '2025-02-14');
    assert.equal(await box.getAttribute('data-end'), '2025-03-15');
    assert.equal(await box.getAttribute('data-gran'), 'day');
    assert.equal(await page.getAttribute('.shortcut-btn.active', 'data-quick'), '30days');
    const q = bodies.get('/api/query');
    assert.equal(await text(page, '#qr-total'), q.summary.total_fmt);
    assert.equal(await text(page, '#qr-up'), q.summary.up_fmt);
    assert.equal(await text(page, '#qr-down'), q.summary.down_fmt);
    assert.equal(await text(page, '#qr-period'), '2025-02-14  →  2025-03-15  ·  按天');
    const o = await chartOption(page, 'chart-query');
    assert.equal(o.labels.length, 30);
    assert.equal(o.labels[0], '02-14');
    assert.deepEqual(o.series.map((x) => x.type), ['bar', 'bar']);
    assert.deepEqual(o.series[0].data, q.series.map((x) => x.up_bytes));
    assert.deepEqual(unexpected(log), []);
    await ctx.close();
  });

  // Expected ranges written out by hand (not computed by the page's code), with the
  // NAS clock at the given instant in Asia/Shanghai and the browser in Los Angeles,
  // where it is still the previous day for the 00:30 instants.
  const EDGES = {
    '2025-01-01T00:30:00+08:00': {
      today: '2025-01-01 2025-01-01 hour', yesterday: '2024-12-31 2024-12-31 hour', '7days': '2024-12-26 2025-01-01 day',
      '30days': '2024-12-03 2025-01-01 day', thisMonth: '2025-01-01 2025-01-01 day', lastMonth: '2024-12-01 2024-12-31 day',
      thisYear: '2025-01-01 2025-01-01 month',
    },
    '2025-03-01T00:30:00+08:00': {
      today: '2025-03-01 2025-03-01 hour', yesterday: '2025-02-28 2025-02-28 hour', '7days': '2025-02-23 2025-03-01 day',
      '30days': '2025-01-31 2025-03-01 day', thisMonth: '2025-03-01 2025-03-01 day', lastMonth: '2025-02-01 2025-02-28 day',
      thisYear: '2025-01-01 2025-03-01 month',
    },
    '2024-02-29T00:30:00+08:00': {
      today: '2024-02-29 2024-02-29 hour', yesterday: '2024-02-28 2024-02-28 hour', '7days': '2024-02-23 2024-02-29 day',
      '30days': '2024-01-31 2024-02-29 day', thisMonth: '2024-02-01 2024-02-29 day', lastMonth: '2024-01-01 2024-01-31 day',
      thisYear: '2024-01-01 2024-02-29 month',
    },
    '2024-03-01T00:30:00+08:00': {
      today: '2024-03-01 2024-03-01 hour', yesterday: '2024-02-29 2024-02-29 hour', '7days': '2024-02-24 2024-03-01 day',
      '30days': '2024-02-01 2024-03-01 day', thisMonth: '2024-03-01 2024-03-01 day', lastMonth: '2024-02-01 2024-02-29 day',
      thisYear: '2024-01-01 2024-03-01 month',
    },
    '2025-03-31T00:30:00+08:00': {
      today: '2025-03-31 2025-03-31 hour', yesterday: '2025-03-30 2025-03-30 hour', '7days': '2025-03-25 2025-03-31 day',
      '30days': '2025-03-02 2025-03-31 day', thisMonth: '2025-03-01 2025-03-31 day', lastMonth: '2025-02-01 2025-02-28 day',
      thisYear: '2025-01-01 2025-03-31 month',
    },
    '2025-12-31T23:30:00+08:00': {
      today: '2025-12-31 2025-12-31 hour', yesterday: '2025-12-30 2025-12-30 hour', '7days': '2025-12-25 2025-12-31 day',
      '30days': '2025-12-02 2025-12-31 day', thisMonth: '2025-12-01 2025-12-31 day', lastMonth: '2025-11-01 2025-11-30 day',
      thisYear: '2025-01-01 2025-12-31 month',
    },
  };

  for (const [now, table] of Object.entries(EDGES)) {
    it(`quick buttons at ${now}: range, granularity, query summary and chart`, T, async () => {
      const { ctx, page, log } = await openPage(env, { timezoneId: 'America/Los_Angeles' });
      await fixClock(page, now, 'Asia/Shanghai');
      await loadDashboard(env, page);
      for (const key of QUICK) {
        const [start, end, gran] = table[key].split(' ');
        const { params, body, status } = await clickAndQuery(page, `.shortcut-btn[data-quick="${key}"]`);
        assert.equal(status, 200, `${key}: /api/query answered ${status}`);
        assert.equal(`${params.get('start')} ${params.get('end')} ${params.get('granularity')}`, table[key], `${key} at ${now}`);
        assert.equal(await page.inputValue('#q-start'), start);
        assert.equal(await page.inputValue('#q-end'), end);
        assert.equal(await page.getAttribute('.gran-btn.active', 'data-gran'), gran);
        assert.equal(await page.getAttribute('.shortcut-btn.active', 'data-quick'), key);
        // The result: the API's summary and one chart point per series item.
        assert.equal(await text(page, '#qr-total'), body.summary.total_fmt);
        assert.equal(await text(page, '#qr-up'), body.summary.up_fmt);
        assert.equal(await text(page, '#qr-down'), body.summary.down_fmt);
        const o = await chartOption(page, 'chart-query');
        assert.equal(o.labels.length, body.series.length);
        // Hours and days after the NAS's "now" are left empty; the rest are the API's values.
        const nowHour = `${now.slice(0, 10)} ${now.slice(11, 13)}:00:00`;
        const later = (x) => (gran === 'hour' ? x.hour_ts > nowHour : gran === 'day' && x.day > now.slice(0, 10));
        assert.deepEqual(o.series[1].data, body.series.map((x) => (later(x) ? null : x.down_bytes)));
        if (key === 'today' && now.slice(11, 13) === '00') assert.equal(o.series[0].data[1], null, 'at 00:30, 01:00 is still to come');
        assert.equal(o.series[0].type, gran === 'hour' ? 'line' : 'bar');
        if (gran === 'hour') assert.match(o.labels[0], /^00:00( [+-]\d{2}:\d{2})?$/, 'one day: hour labels without the date');
        if (gran === 'month') assert.equal(o.labels[0], start.slice(0, 7));
      }
      assert.deepEqual(log.external, []);
      assert.deepEqual(unexpected(log), []);
      await ctx.close();
    });
  }

  it('granularity buttons run the query; hour labels carry the date when the range spans days', T, async () => {
    const { ctx, page, log } = await openPage(env, { locale: 'en-US' });
    await fixClock(page, '2025-03-15T14:37:21+08:00', 'Asia/Shanghai');
    await loadDashboard(env, page);
    await page.fill('#q-start', '2025-03-13');
    await page.fill('#q-end', '2025-03-15');
    assert.equal(await page.locator('.shortcut-btn.active').count(), 0, 'editing the dates clears the quick button');
    const multi = await clickAndQuery(page, '.gran-btn[data-gran="hour"]');
    assert.equal(multi.params.get('granularity'), 'hour');
    let o = await chartOption(page, 'chart-query');
    assert.equal(o.labels.length, multi.body.series.length);
    assert.ok(o.labels.length >= 24 * 3 - 1, `zero-filled hours: ${o.labels.length}`);
    assert.ok(o.labels.every((l) => /^\d{2}-\d{2} \d{2}:00/.test(l)), `labels with the date: ${o.labels.slice(0, 3)}`);
    assert.equal(o.labels[0], '03-13 00:00');
    assert.deepEqual(o.series.map((x) => x.type), ['line', 'line']);
    assert.equal(await text(page, '#qr-period'), '2025-03-13  →  2025-03-15  ·  Hour');

    const monthly = await clickAndQuery(page, '.gran-btn[data-gran="month"]');
    assert.equal(monthly.params.get('granularity'), 'month');
    o = await chartOption(page, 'chart-query');
    assert.deepEqual(o.labels, ['2025-03']);

    await page.fill('#q-start', '2025-03-15');
    const single = await clickAndQuery(page, '.gran-btn[data-gran="hour"]');
    assert.equal(single.params.get('start'), '2025-03-15');
    o = await chartOption(page, 'chart-query');
    assert.ok(o.labels.every((l) => /^\d{2}:00( [+-]\d{2}:\d{2})?$/.test(l)), `one day: ${o.labels.slice(0, 3)}`);

    // Tooltips: the full date and hour with its offset, both values and the total (and no CSP
    // violation from their markup, which the console check below would catch).
    await page.fill('#q-start', '2025-03-13');
    const withTip = await clickAndQuery(page, '#query-btn');
    const box = await page.locator('#chart-query').boundingBox();
    await page.mouse.move(box.x + 70 + 5, box.y + box.height / 2); // the first point: 2025-03-13 00:00
    await page.waitForSelector('#chart-query .tt-title', { state: 'visible' });
    const first = withTip.body.series[0];
    const off = first.utc_offset ? ` (UTC${first.utc_offset})` : '';
    assert.equal(await text(page, '#chart-query .tt-title'), `2025-03-13 00:00${off}`);
    assert.equal(await text(page, '#chart-query .tt-up'), `Upload: ${fmt(first.up_bytes)}`);
    assert.equal(await text(page, '#chart-query .tt-down'), `Download: ${fmt(first.down_bytes)}`);
    assert.equal(await text(page, '#chart-query .tt-total'), `Total: ${fmt(first.up_bytes + first.down_bytes)}`);
    await page.locator('#chart-30days').scrollIntoViewIfNeeded();
    const b30 = await page.locator('#chart-30days').boundingBox();
    await page.mouse.move(b30.x + b30.width - 20, b30.y + b30.height / 2); // the last bar: today
    await page.waitForSelector('#chart-30days .tt-title', { state: 'visible' });
    assert.match(await text(page, '#chart-30days .tt-title'), /^\d{4}-\d{2}-\d{2}$/);

    // The query button and Enter run the query too.
    await page.fill('#q-start', '2025-03-10');
    const viaButton = await clickAndQuery(page, '#query-btn');
    assert.equal(viaButton.params.get('start'), '2025-03-10');
    await page.fill('#q-start', '2025-03-11');
    const [viaEnter] = await Promise.all([
      page.waitForRequest((r) => r.url().includes('/api/query?')),
      page.press('#q-start', 'Enter'),
    ]);
    assert.equal(new URL(viaEnter.url()).searchParams.get('start'), '2025-03-11');
    await page.waitForSelector('#query-result[data-start="2025-03-11"]');
    assert.equal(new URL(page.url()).pathname, '/', 'the form never navigates');
    assert.deepEqual(unexpected(log), []);
    await ctx.close();
  });

  it('legend colours match the series colours in every chart (line charts included)', T, async () => {
    const { ctx, page, log } = await openPage(env);
    await fixClock(page, '2025-03-15T14:37:21+08:00', 'Asia/Shanghai');
    await loadDashboard(env, page);
    await clickAndQuery(page, '.shortcut-btn[data-quick="today"]'); // the query chart as a line chart
    // Count pixels of a colour in the legend corner (top right) of a chart's canvas.
    const legendPixels = (id) =>
      page.evaluate((i) => {
        const near = (d, k, [r, g, b]) => Math.abs(d[k] - r) < 8 && Math.abs(d[k + 1] - g) < 8 && Math.abs(d[k + 2] - b) < 8 && d[k + 3] > 40;
        const want = { amber: [245, 166, 35], teal: [0, 200, 180], echartsBlue: [84, 112, 198], echartsGreen: [145, 204, 117] };
        const counts = { amber: 0, teal: 0, echartsBlue: 0, echartsGreen: 0 };
        for (const canvas of document.querySelectorAll(`#${i} canvas`)) {
          const w = canvas.width;
          const x0 = Math.max(0, w - 220);
          const d = canvas.getContext('2d').getImageData(x0, 0, w - x0, 20).data;
          for (let k = 0; k < d.length; k += 4) for (const [name, rgb] of Object.entries(want)) if (near(d, k, rgb)) counts[name] += 1;
        }
        return counts;
      }, id);
    for (const id of ['chart-30days', 'chart-12months', 'chart-today-hours', 'chart-query']) {
      const c = await legendPixels(id);
      assert.ok(c.amber >= 20, `${id}: the upload legend icon is amber (${JSON.stringify(c)})`);
      assert.ok(c.teal >= 20, `${id}: the download legend icon is teal (${JSON.stringify(c)})`);
      assert.equal(c.echartsBlue + c.echartsGreen, 0, `${id}: no ECharts default palette in the legend (${JSON.stringify(c)})`);
    }
    assert.deepEqual(unexpected(log), []);
    await ctx.close();
  });

  it('shows API errors to the user instead of swallowing them', T, async () => {
    const { ctx, page, log } = await openPage(env, { locale: 'en-US' });
    await page.route('**/api/history/30days', (r) => r.fulfill({ status: 500, json: { error: 'database is locked' } }));
    await page.route('**/api/history/12months', (r) => r.fulfill({ status: 200, contentType: 'application/json', body: '<html>oops' }));
    await page.route('**/api/top_ips*', (r) => r.fulfill({ status: 404, contentType: 'text/html', body: '<h1>Not Found</h1>' }));
    await loadDashboard(env, page);
    assert.equal(await text(page, '#err-30days'), 'Failed to load: api/history/30days: HTTP 500 · database is locked');
    assert.equal(await text(page, '#err-12months'), 'Failed to load: api/history/12months: the service did not return valid JSON');
    assert.match(await text(page, '#err-top'), /^Failed to load: api\/top_ips: HTTP 404/);
    assert.ok(await page.locator('#err-summary').isHidden(), 'the other panels still load');
    assert.notEqual(await text(page, '#s-today-total'), '--');

    // A query the server rejects: its message, and the old result marked stale.
    await page.route('**/api/query*', (r) =>
      r.fulfill({ status: 400, json: { error: 'range too long for hour granularity (max 92 days)' } }),
    );
    await page.fill('#q-start', '2024-01-01');
    await page.click('.gran-btn[data-gran="hour"]');
    await page.waitForSelector('#err-query:not([hidden])');
    assert.equal(
      await text(page, '#err-query'),
      'Query failed: api/query: HTTP 400 · range too long for hour granularity (max 92 days)',
    );
    assert.ok(await page.locator('#query-result.stale').isVisible(), 'the previous result is marked stale');

    // Invalid input never reaches the server.
    let sent = 0;
    page.on('request', (r) => (sent += r.url().includes('/api/query') ? 1 : 0));
    await page.fill('#q-start', '2025-03-20');
    await page.fill('#q-end', '2025-03-10');
    await page.click('#query-btn');
    assert.equal(await text(page, '#err-query'), 'The start date is after the end date');
    assert.equal(await page.getAttribute('#q-start', 'aria-invalid'), 'true');
    assert.equal(sent, 0);

    // The service unreachable: a banner and the badge say so.
    await page.route('**/api/realtime', (r) => r.abort('connectionrefused'));
    await page.waitForSelector('#banners:not([hidden])', { timeout: 10_000 });
    assert.match(await text(page, '#banners'), /Cannot reach the NetTraffic Sentinel service: api\/realtime: network error/);
    assert.equal(await text(page, '#live-text'), 'OFFLINE');
    assert.equal(await text(page, '#hdr-up'), '--');
    await page.unroute('**/api/realtime');
    await page.waitForSelector('#banners[hidden]', { state: 'attached', timeout: 10_000 });
    assert.equal(await text(page, '#live-text'), 'LIVE', 'the banner goes once the service answers again');

    assert.deepEqual(unexpected(log, [failedResource, /requestfailed: .*\/api\/realtime/]), []);
    await ctx.close();
  });

  it('shows the capture status and a clear banner when capture or storage is down', T, async () => {
    const { ctx, page, log } = await openPage(env);
    await page.route('**/api/status', async (route) => {
      const res = await route.fetch();
      const body = await res.json();
      body.capture = {
        ...body.capture, state: 'down', error: 'interface eth0 is gone', drops: 1234, errors: { truncated_l3: 3, bad_ip_header: 2 },
        counters_survive_restart: false, counters_survive_restart_reason: 'the daemon mounted bpffs inside its container',
      };
      body.storage = { ...body.storage, state: 'failing', error: 'disk I/O error', last_flush: null };
      await route.fulfill({ response: res, json: body });
    });
    await page.route('**/api/health', (r) => r.fulfill({ status: 503, json: { status: 'unhealthy', reason: 'capture down' } }));
    await loadDashboard(env, page);
    const banners = await page.locator('#banners .banner').allInnerTexts();
    assert.deepEqual(banners, [
      '流量采集已停止：interface eth0 is gone',
      '数据库写入失败：disk I/O error（数据保留在内存中，稍后重试）',
    ]);
    assert.equal(await page.getAttribute('#st-capture', 'data-state'), 'bad');
    assert.equal(await page.getAttribute('#st-storage', 'data-state'), 'bad');
    assert.equal((await text(page, '#st-drops')).replace(/\D/g, ''), '1234');
    assert.equal(await text(page, '#st-durable-v'), '否', 'pins that die with the daemon are flagged');
    assert.ok(await page.locator('#st-durable-v.warn').isVisible());
    assert.match(await page.getAttribute('#st-durable', 'title'), /container/);
    assert.equal(await text(page, '#st-errors-v'), '5');
    assert.equal(await text(page, '#st-flush'), '尚未写入');
    assert.equal(await text(page, '#live-text'), 'CAPTURE DOWN');
    await page.click('#st-errors summary');
    assert.deepEqual(await page.locator('#st-errors-list li').allInnerTexts(), ['bad_ip_header\t2', 'truncated_l3\t3'].map((s) => s.replace('\t', '\n')));
    await screenshot(page, 'state-capture-down-zh-1440');

    // Unhealthy with nothing in the status to explain it: the health reason is shown.
    await page.unroute('**/api/status');
    await page.unroute('**/api/health');
    await page.route('**/api/health', (r) => r.fulfill({ status: 503, json: { status: 'unhealthy', reason: 'no flush for 900 s' } }));
    await page.reload();
    await page.waitForSelector('html[data-ready="true"]', { state: 'attached' });
    assert.deepEqual(await page.locator('#banners .banner').allInnerTexts(), ['服务状态异常：no flush for 900 s']);
    assert.equal(await page.getAttribute('#st-capture', 'data-state'), 'ok');

    // Capture still attaching: amber, said so, and no alarm.
    await page.unroute('**/api/health');
    await page.route('**/api/status', async (route) => {
      const res = await route.fetch();
      const body = await res.json();
      body.capture = { ...body.capture, state: 'starting', error: null };
      await route.fulfill({ response: res, json: body });
    });
    await page.reload();
    await page.waitForSelector('html[data-ready="true"]', { state: 'attached' });
    assert.equal(await page.getAttribute('#st-capture', 'data-state'), 'warn');
    assert.match(await text(page, '#st-capture-v'), /启动中$/);
    assert.ok(await page.locator('#banners').isHidden());
    assert.equal(await page.getAttribute('#live-badge', 'data-state'), 'pending');
    assert.deepEqual(unexpected(log, [failedResource]), []);
    await ctx.close();
  });

  it('times are the NAS clock and zone, labelled, whatever the browser zone', T, async () => {
    const { ctx, page, log } = await openPage(env, { timezoneId: 'America/Los_Angeles' });
    await fixClock(page, '2025-03-01T07:00:05+08:00', 'Asia/Shanghai'); // Los Angeles: Feb 28, 15:00
    await loadDashboard(env, page);
    assert.match(await text(page, '#clock'), /^07:00:(0[5-9]|[1-5]\d)$/);
    assert.equal(await text(page, '#clock-zone'), 'Asia/Shanghai UTC+08:00');
    assert.equal(await text(page, '#today-lbl'), '2025-03-01');
    assert.equal(await text(page, '#s-year-sub'), '2025年累计');
    assert.match(await text(page, '#last-update'), /^07:0\d:\d\d$/);
    assert.equal(await page.getAttribute('#query-result', 'data-end'), '2025-03-01');
    assert.equal(await page.getAttribute('#q-end', 'max') >= '2025-03-01', true);
    await ctx.close();

    // A zone with DST, on its fall-back night.
    const p2 = await openPage(env, { timezoneId: 'Asia/Tokyo' });
    await fixClock(p2.page, '2024-11-03T01:30:00-04:00', 'America/New_York');
    await loadDashboard(env, p2.page);
    assert.match(await text(p2.page, '#clock'), /^01:3\d:\d\d$/);
    assert.equal(await text(p2.page, '#clock-zone'), 'America/New_York UTC-04:00');
    assert.equal(await p2.page.getAttribute('#query-result', 'data-end'), '2024-11-03');
    assert.deepEqual(unexpected(log), []);
    assert.deepEqual(unexpected(p2.log), []);
    await p2.ctx.close();
  });

  it('degrades gracefully with an API that lacks the new fields (the seed API)', T, async () => {
    const { ctx, page, log } = await openPage(env, { timezoneId: 'UTC' });
    const strip = (keys) => async (route) => {
      const res = await route.fetch();
      const body = await res.json();
      const walk = (o) => {
        if (Array.isArray(o)) o.forEach(walk);
        else if (o && typeof o === 'object') for (const k of Object.keys(o)) (keys.includes(k) ? delete o[k] : walk(o[k]));
      };
      walk(body);
      await route.fulfill({ response: res, json: body });
    };
    await page.route('**/api/summary', strip(['tz', 'tz_offset', 'now', 'today_date']));
    await page.route('**/api/top_ips*', strip(['up_bytes', 'down_bytes', 'start', 'end']));
    await page.route('**/api/history/today_hours', strip(['total_bytes', 'utc_offset']));
    await page.route('**/api/query*', strip(['utc_offset']));
    await page.route('**/api/status', (r) => r.fulfill({ status: 404, contentType: 'text/html', body: '<h1>Not Found</h1>' }));
    // The seed has no /api/services: the services panel says so, the rest works.
    await page.route('**/api/services*', (r) => r.fulfill({ status: 404, contentType: 'text/html', body: '<h1>Not Found</h1>' }));
    await page.route('**/api/health', (r) => r.fulfill({ json: { status: 'ok', ts: '2025-03-15T14:37:22.183521' } }));
    await loadDashboard(env, page);
    assert.notEqual(await text(page, '#s-today-total'), '--');
    assert.equal(await text(page, '#clock-zone'), '浏览器时间（未取得 NAS 时区）');
    assert.equal(await text(page, '#st-note'), '服务未提供采集状态（/api/status）');
    assert.ok(await page.locator('#st-capture').isHidden());
    assert.ok(await page.locator('#query-result').isVisible(), 'the default query still runs');
    assert.ok((await page.locator('#top-ips tr').count()) >= 1);
    assert.equal(await page.locator('#top-ips .ip-split').count(), 0);
    assert.match(await text(page, '#err-services'), /api\/services: HTTP 404/);
    await clickAndQuery(page, '.shortcut-btn[data-quick="today"]');
    // Only the browser's own lines for the 404s of /api/status and /api/services.
    assert.deepEqual(unexpected(log, [/status of 404/]), []);
    await ctx.close();
  });

  it('speaks zh-CN and English: chosen from the browser, switchable, remembered', T, async () => {
    const en = await openPage(env, { locale: 'en-US' });
    await loadDashboard(env, en.page);
    assert.equal(await en.page.getAttribute('html', 'lang'), 'en');
    assert.equal(await text(en.page, '.s-today-total .stat-label [data-i18n]'), 'Today');
    assert.equal(await text(en.page, '[data-quick="lastMonth"]'), 'Last month');
    assert.equal((await chartOption(en.page, 'chart-30days')).series[0].name, 'Upload');
    assert.deepEqual(unexpected(en.log), []);
    await en.ctx.close();

    const { ctx, page, log } = await openPage(env, { locale: 'zh-CN' });
    await loadDashboard(env, page);
    assert.equal(await page.getAttribute('html', 'lang'), 'zh-CN');
    assert.equal(await text(page, '.s-today-total .stat-label [data-i18n]'), '今日总流量');
    assert.equal(await text(page, '#lang-btn'), 'EN');
    await page.click('#lang-btn');
    assert.equal(await page.getAttribute('html', 'lang'), 'en');
    assert.equal(await text(page, '.s-month-total .stat-label [data-i18n]'), 'This month');
    assert.equal(await text(page, '#query-btn-text'), 'Query');
    assert.match(await text(page, '#qr-period'), /·  Day$/);
    assert.deepEqual((await chartOption(page, 'chart-query')).legend, ['Upload', 'Download']);
    assert.deepEqual((await chartOption(page, 'chart-today-hours')).series.map((s) => s.name), ['Upload', 'Download']);
    assert.equal(await page.evaluate(() => localStorage.getItem('sentinel.lang')), 'en');
    await page.reload();
    await page.waitForSelector('html[data-ready="true"]', { state: 'attached' });
    assert.equal(await page.getAttribute('html', 'lang'), 'en', 'the choice is remembered over the browser language');
    assert.equal(await text(page, '#lang-btn'), '中文');
    await page.click('#lang-btn');
    assert.equal(await text(page, '.s-year-total .stat-label [data-i18n]'), '本年总流量');
    assert.deepEqual(unexpected(log), []);
    await ctx.close();
  });

  it('shows the billing-cycle card as the fifth card, in both languages', T, async () => {
    const { ctx, page, log } = await openPage(env);
    await loadDashboard(env, page);
    await page.waitForSelector('#s-billing');
    const columns = () => page.evaluate(() => getComputedStyle(document.getElementById('summary-row')).gridTemplateColumns.split(' ').length);
    assert.equal(await columns(), 5);
    const tops = await page.locator('#summary-row > .stat-card').evaluateAll((cs) => cs.map((c) => Math.round(c.getBoundingClientRect().top)));
    assert.equal(new Set(tops).size, 1, 'five cards in one row on a desktop');
    // The card shows what /api/cycle says (quota, days left, the bar at the percentage).
    const cycle = await page.evaluate(() => fetch('api/cycle').then((r) => r.json()));
    assert.equal(cycle.enabled, true);
    assert.equal(await text(page, '#b-quota'), cycle.quota_fmt);
    assert.equal(await text(page, '#b-days'), `剩余 ${cycle.days_left} 天`);
    assert.equal(await text(page, '.s-billing .stat-label [data-i18n]'), '计费周期');
    assert.match(await text(page, '#b-used'), /^\d+\.\d\d [KMGTP]?B$/);
    const width = await page.evaluate(() => document.getElementById('b-fill').style.width);
    assert.match(width, /^\d+(\.\d+)?%$/);
    assert.ok(Math.abs(parseFloat(width) - Math.min(100, cycle.percent)) < 1, `${width} vs ${cycle.percent}`);
    assert.equal(await page.locator('#b-upload-line').isVisible(), cycle.upload_today.limit != null);
    await page.locator('#s-billing').screenshot({ path: path.join(ARTIFACTS, 'billing-card-zh.png') });
    await page.click('#lang-btn');
    assert.equal(await text(page, '.s-billing .stat-label [data-i18n]'), 'Billing cycle');
    assert.equal(await text(page, '#b-days'), `${cycle.days_left} days left`);
    assert.match(await text(page, '#b-percent'), /^\d+\.\d% used$/);
    await page.locator('#s-billing').screenshot({ path: path.join(ARTIFACTS, 'billing-card-en.png') });
    await page.setViewportSize({ width: 390, height: 844 });
    assert.equal(await columns(), 2);
    const billing = await page.locator('.s-billing').boundingBox();
    const row = await page.locator('#summary-row').boundingBox();
    assert.ok(Math.abs(billing.width - row.width) < 1, 'the fifth card spans the row on a phone');
    assert.deepEqual(unexpected(log), []);
    await ctx.close();
  });

  it('leaves the billing card out when no quota is set', T, async () => {
    const { ctx, page, log } = await openPage(env);
    await page.route('**/api/cycle', (route) => route.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify({ enabled: false }) }));
    await loadDashboard(env, page);
    assert.equal(await page.locator('#s-billing').count(), 0);
    const columns = await page.evaluate(() => getComputedStyle(document.getElementById('summary-row')).gridTemplateColumns.split(' ').length);
    assert.equal(columns, 4);
    assert.deepEqual(unexpected(log), []);
    await ctx.close();
  });

  it('saves screenshots: both languages, desktop and mobile', T, async () => {
    for (const [locale, tag] of [['zh-CN', 'zh'], ['en-US', 'en']]) {
      for (const viewport of [{ width: 1440, height: 900 }, { width: 390, height: 844 }]) {
        const { ctx, page, log } = await openPage(env, { locale, viewport });
        await loadDashboard(env, page);
        const file = await screenshot(page, `dashboard-${tag}-${viewport.width}`);
        console.log(`screenshot: ${file}`);
        // Nothing may stick out sideways on a phone.
        const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        assert.ok(overflow <= 0, `${tag} ${viewport.width}px: the page is ${overflow}px wider than the screen`);
        assert.deepEqual(unexpected(log), []);
        await ctx.close();
      }
    }
    const { ctx, page } = await openPage(env, { locale: 'en-US' });
    await loadDashboard(env, page);
    await clickAndQuery(page, '.shortcut-btn[data-quick="yesterday"]');
    await screenshot(page, 'query-yesterday-hour-en-1440');
    await ctx.close();
  });
});

// Against a daemon this needs SENTINEL_FIXTURE=seed and a daemon prepared as README.md says.
const SEED_ON_DAEMON = process.env.SENTINEL_FIXTURE === 'seed';
describe('seed fixture (reference 2.2) through the page', { skip: REAL && !SEED_ON_DAEMON && 'SENTINEL_URL is set without SENTINEL_FIXTURE=seed' }, () => {
  let seed;
  before(async () => {
    seed = REAL ? { url: process.env.SENTINEL_URL.replace(/\/+$/, ''), stop: async () => {} } : await startFakeProcess(['--dataset', 'seed', '--frozen']);
  });
  after(async () => {
    if (seed) await seed.stop();
  });

  it('shows the reference example values exactly', T, async () => {
    const { ctx, page, log } = await openPage({ ...env, url: seed.url });
    await loadDashboard({ url: seed.url }, page);
    assert.equal(await text(page, '#s-today-total'), '5.35 GB');
    assert.equal(await text(page, '#s-today-up'), '1.05 GB');
    assert.equal(await text(page, '#s-today-down'), '4.30 GB');
    assert.equal(await text(page, '#s-month-total'), '6.55 GB');
    assert.equal(await text(page, '#s-year-total'), '31.55 GB');
    assert.equal(await text(page, '#s-year-sub'), '2025年累计');
    assert.equal(await text(page, '#today-lbl'), '2025-03-15');
    assert.match(await text(page, '#clock'), REAL ? /^1[45]:\d\d:\d\d$/ : /^14:37:2\d$/);
    const rows = await topRows(page);
    assert.deepEqual(rows.map((r) => r.slice(0, 3)), [
      ['1', '203.0.113.1', '11.00 MB'],
      ['2', '8.8.8.8', '768.00 KB'],
      ['3', '2001:4860:4860::8888', '512.00 KB'],
    ]);
    // Default query, 2025-02-14 .. 2025-03-15 by day: the three rows of March (and Feb 14-28: none).
    assert.equal(await text(page, '#qr-total'), '6.55 GB');
    const { body } = await clickAndQuery(page, '.shortcut-btn[data-quick="today"]');
    assert.equal(body.summary.total_fmt, '5.35 GB');
    assert.equal(await text(page, '#qr-total'), '5.35 GB');
    const o = await chartOption(page, 'chart-query');
    assert.equal(o.labels.length, 24);
    assert.equal(o.series[0].data[13], 1073741824);
    assert.deepEqual(unexpected(log), []);
    await ctx.close();
  });
});
