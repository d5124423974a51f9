// Unit tests of the dashboard's pure logic (static/js/core.js, static/js/i18n.js),
// loaded exactly as the browser loads them (classic scripts) into a node vm context.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import vm from 'node:vm';
import { fileURLToPath } from 'node:url';

const STATIC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../static');
const ctx = vm.createContext({});
for (const f of ['js/core.js', 'js/i18n.js', 'js/charts.js']) {
  vm.runInContext(fs.readFileSync(path.join(STATIC, f), 'utf8'), ctx, { filename: f });
}
const Core = ctx.SentinelCore;
const I18N = ctx.SentinelI18n;
const Charts = ctx.SentinelCharts;

test('fmtBytes follows the server rule of reference 2.1 exactly', () => {
  // The reference's verified table, plus the ties-to-even cases.
  const table = [
    [null, '0.00 B'], [0, '0.00 B'], [1, '1.00 B'], [1023, '1023.00 B'], [1024, '1.00 KB'],
    [1152, '1.12 KB'], [1536, '1.50 KB'], [1048575, '1024.00 KB'], [1048576, '1.00 MB'],
    [1073741823, '1024.00 MB'], [1073741824, '1.00 GB'], [2 ** 40, '1.00 TB'], [2 ** 50, '1.00 PB'],
    [2 ** 60, '1024.00 PB'], [1.9, '1.00 B'],
    [1126170624 + 1048576, '1.05 GB'], [5748555776, '5.35 GB'], [33875583400, '31.55 GB'],
    [1664, '1.62 KB'], // 1.625 -> 1.62 (even)
    [1688, '1.65 KB'], // 1.6484375 -> 1.65
    [-5, '0.00 B'], [undefined, '0.00 B'], ['2048', '2.00 KB'],
  ];
  for (const [input, want] of table) assert.equal(Core.fmtBytes(input), want, `fmtBytes(${input})`);
});

test('UNITS: si and iec families as the server prints them, seed by default', () => {
  try {
    assert.equal(Core.setUnits('si'), true);
    assert.equal(Core.fmtBytes(1_500_000_000_000), '1.50 TB'); // the server's Units::Si
    assert.equal(Core.fmtBytes(999), '999.00 B');
    assert.deepEqual([...Core.fmtSpeed(8_000_000)], ['1.00', 'MB/s']);
    assert.deepEqual([...Core.fmtSpeed(8_000)], ['1.00', 'kB/s']);
    assert.equal(Core.setUnits('iec'), true);
    assert.equal(Core.fmtBytes(2 ** 30), '1.00 GiB');
    assert.equal(Core.setUnits('nonsense'), false, 'unknown names change nothing');
    assert.equal(Core.fmtBytes(2 ** 30), '1.00 GiB');
  } finally {
    Core.setUnits('seed');
  }
  assert.equal(Core.fmtBytes(2 ** 30), '1.00 GB');
});

test('chart y axis: binary steps and short labels', () => {
  assert.equal(Charts.axisLabel(0), '0');
  assert.equal(Charts.axisLabel(512), '512');
  assert.equal(Charts.axisLabel(1536), '1.5K');
  assert.equal(Charts.axisLabel(2 ** 30), '1G');
  assert.equal(Charts.axisLabel(768 * 2 ** 20), '768M');
  assert.deepEqual({ ...Charts.binaryAxis(0) }, {});
  // 23.3 GiB peak: steps of 5 GiB up to 25 GiB.
  assert.deepEqual({ ...Charts.binaryAxis(23.3 * 2 ** 30) }, { min: 0, max: 25 * 2 ** 30, interval: 5 * 2 ** 30 });
  // 476.8 MiB peak: steps of 100 MiB.
  assert.deepEqual({ ...Charts.binaryAxis(476.8 * 2 ** 20) }, { min: 0, max: 500 * 2 ** 20, interval: 100 * 2 ** 20 });
  // Just over a unit boundary: 1.1 GiB -> 0.25 GiB steps.
  assert.deepEqual({ ...Charts.binaryAxis(1.1 * 2 ** 30) }, { min: 0, max: 1.25 * 2 ** 30, interval: 0.25 * 2 ** 30 });
  const o = Charts.option({
    kind: 'bar', labels: ['a', 'b'], titles: ['a', 'b'], up: [1, 2 ** 30], down: [0, 2 ** 30], names: { up: 'U', down: 'D', total: 'T' },
    grid: { top: 0, bottom: 0, left: 0, right: 0 },
  });
  assert.equal(o.yAxis.max, 2 * 2 ** 30, 'stacked bars: the peak is the sum');
  assert.equal(o.series[0].itemStyle.color.colorStops[0].color, '#f5a623dd');
  assert.equal(o.series[1].stack, 's');
  const l = Charts.option({ ...o, kind: 'line', labels: ['a', 'b'], titles: null, up: [1, 2 ** 30], down: [0, 2 ** 30], names: { up: 'U', down: 'D', total: 'T' }, grid: {} });
  assert.equal(l.yAxis.max, 2 ** 30, 'lines: the peak is the largest value');
  assert.equal(l.series[0].itemStyle.color, '#f5a623', 'the legend takes the line colour (D44)');
  assert.equal(l.series[1].itemStyle.color, '#00c8b4');
});

test('fmtSpeed and fmtDuration', () => {
  assert.deepEqual([...Core.fmtSpeed(0)], ['0.0', 'B/s']);
  assert.deepEqual([...Core.fmtSpeed(8)], ['1.0', 'B/s']);
  assert.deepEqual([...Core.fmtSpeed(8192)], ['1.00', 'KB/s']);
  assert.deepEqual([...Core.fmtSpeed(8 * 1024 * 1024 * 3.5)], ['3.50', 'MB/s']);
  assert.equal(Core.fmtDuration(3 * 86400 + 4 * 3600 + 25 * 60 + 7), '3d 04:25:07');
  assert.equal(Core.fmtDuration(59), '00:00:59');
});

test('calendar arithmetic across month, year and leap-day edges', () => {
  assert.equal(Core.addDays('2025-03-01', -1), '2025-02-28');
  assert.equal(Core.addDays('2024-03-01', -1), '2024-02-29');
  assert.equal(Core.addDays('2025-01-01', -1), '2024-12-31');
  assert.equal(Core.monthStart('2025-01-15', -1), '2024-12-01');
  assert.equal(Core.monthEnd('2025-03-31', -1), '2025-02-28');
  assert.equal(Core.monthEnd('2024-03-31', -1), '2024-02-29');
  assert.equal(Core.daysBetween('2025-01-01', '2025-03-01'), 60);
  assert.equal(Core.isDate('2024-02-29'), true);
  assert.equal(Core.isDate('2025-02-29'), false);
  assert.equal(Core.isDate('2025-3-1'), false);
  assert.equal(Core.isDate(''), false);
});

test('quick ranges: fixed granularity per button, at the edges', () => {
  const r = (k, today) => {
    const x = Core.quickRange(k, today);
    return `${x.start} ${x.end} ${x.gran}`;
  };
  assert.equal(r('today', '2025-01-01'), '2025-01-01 2025-01-01 hour');
  assert.equal(r('yesterday', '2025-01-01'), '2024-12-31 2024-12-31 hour');
  assert.equal(r('7days', '2025-01-01'), '2024-12-26 2025-01-01 day');
  assert.equal(r('30days', '2025-01-01'), '2024-12-03 2025-01-01 day');
  assert.equal(r('thisMonth', '2025-01-01'), '2025-01-01 2025-01-01 day');
  assert.equal(r('lastMonth', '2025-01-01'), '2024-12-01 2024-12-31 day');
  assert.equal(r('thisYear', '2025-01-01'), '2025-01-01 2025-01-01 month');
  assert.equal(r('lastMonth', '2024-03-31'), '2024-02-01 2024-02-29 day');
  assert.equal(r('thisYear', '2025-03-02'), '2025-01-01 2025-03-02 month');
  assert.throws(() => Core.quickRange('nope', '2025-01-01'));
});

test('NasClock: IANA zone, fixed offset, or the browser zone, labelled', () => {
  const c = new Core.NasClock();
  const received = Date.parse('2025-03-15T06:37:21Z');
  c.update({ now: '2025-03-15T14:37:21+08:00', tz: 'Asia/Shanghai', tz_offset: '+08:00' }, received);
  const at = received; // no time has passed
  assert.equal(c.today(at), '2025-03-15');
  assert.equal(c.time(at), '14:37:21');
  assert.equal(c.zoneLabel(at), 'Asia/Shanghai UTC+08:00');

  // DST: New York on the fall-back day, both 01:30s.
  const ny = new Core.NasClock();
  ny.update({ now: '2024-11-03T01:30:00-04:00', tz: 'America/New_York' }, 0);
  assert.equal(ny.time(Date.parse('2024-11-03T01:30:00-04:00')), '01:30:00');
  assert.equal(ny.zoneLabel(Date.parse('2024-11-03T01:30:00-04:00')), 'America/New_York UTC-04:00');
  assert.equal(ny.zoneLabel(Date.parse('2024-11-03T01:30:00-05:00')), 'America/New_York UTC-05:00');

  // Unknown zone name: the offset of "now" is used.
  const off = new Core.NasClock();
  off.update({ now: '2025-01-01T00:30:00+05:45', tz: 'Not/AZone' }, Date.parse('2024-12-31T18:45:00Z'));
  assert.equal(off.today(Date.parse('2024-12-31T18:45:00Z')), '2025-01-01');
  assert.equal(off.zoneLabel(Date.parse('2024-12-31T18:45:00Z')), 'UTC+05:45');

  // Nothing known (the seed's API): browser time, no label.
  const none = new Core.NasClock();
  none.update({ today: {} });
  assert.equal(none.known, false);
  assert.equal(none.zoneLabel(), null);
});

test('seriesLabels: hours carry the date only when the range spans days; DST repeats carry the offset', () => {
  const one = Core.seriesLabels([{ hour_ts: '2025-03-15 00:00:00' }, { hour_ts: '2025-03-15 01:00:00' }], 'hour');
  assert.deepEqual([...one.labels], ['00:00', '01:00']);
  const two = Core.seriesLabels([{ hour_ts: '2025-03-14 23:00:00' }, { hour_ts: '2025-03-15 00:00:00' }], 'hour');
  assert.deepEqual([...two.labels], ['03-14 23:00', '03-15 00:00']);
  assert.deepEqual([...two.titles], ['2025-03-14 23:00', '2025-03-15 00:00']);
  const dst = Core.seriesLabels(
    [
      { hour_ts: '2024-11-03 01:00:00', utc_offset: '-04:00' },
      { hour_ts: '2024-11-03 01:00:00', utc_offset: '-05:00' },
      { hour_ts: '2024-11-03 02:00:00', utc_offset: '-05:00' },
    ],
    'hour',
  );
  assert.deepEqual([...dst.labels], ['01:00 -04:00', '01:00 -05:00', '02:00']);
  assert.equal(dst.titles[1], '2024-11-03 01:00 (UTC-05:00)');
  assert.deepEqual([...Core.seriesLabels([{ day: '2024-12-31' }, { day: '2025-01-01' }], 'day').labels], ['2024-12-31', '2025-01-01']);
  assert.deepEqual([...Core.seriesLabels([{ day: '2025-03-01' }], 'day').labels], ['03-01']);
  assert.deepEqual([...Core.seriesLabels([{ month: '2025-03' }], 'month').labels], ['2025-03']);
});

test('todayHourPoints: 24 slots, zero-filled, the future left empty', () => {
  const p = Core.todayHourPoints([{ hour_ts: '2025-03-15 00:00:00', up_bytes: 5, down_bytes: 7 }], 14);
  assert.equal(p.labels.length, 24);
  assert.equal(p.labels[23], '23:00');
  assert.equal(p.up[0], 5);
  assert.equal(p.down[0], 7);
  assert.equal(p.up[14], 0);
  assert.equal(p.up[15], null);
  const dst = Core.todayHourPoints(
    [
      { hour_ts: '2024-11-03 01:00:00', up_bytes: 1, down_bytes: 1, utc_offset: '-04:00' },
      { hour_ts: '2024-11-03 01:00:00', up_bytes: 2, down_bytes: 2, utc_offset: '-05:00' },
    ],
    null,
  );
  assert.equal(dst.labels.length, 25);
  assert.deepEqual([...dst.labels.slice(1, 3)], ['01:00 -04:00', '01:00 -05:00']);
});

test('i18n: detection, fallback and complete tables', () => {
  assert.equal(I18N.detect(['zh-TW', 'en'], null), 'zh-CN');
  assert.equal(I18N.detect(['en-GB', 'zh-CN'], null), 'en');
  assert.equal(I18N.detect(['fr-FR', 'de'], null), 'en');
  assert.equal(I18N.detect(['en-US'], 'zh-CN'), 'zh-CN');
  assert.equal(I18N.detect(['en-US'], 'xx'), 'en');
  assert.equal(I18N.t('zh-CN', 'card.yearSub', { year: 2025 }), '2025年累计');
  assert.equal(I18N.t('en', 'card.yearSub', { year: 2025 }), '2025 year to date');
  const zh = Object.keys(I18N.STRINGS['zh-CN']).sort();
  const en = Object.keys(I18N.STRINGS.en).sort();
  assert.deepEqual(en, zh, 'both languages have the same keys');
});

test('every data-i18n key in index.html exists', () => {
  const html = fs.readFileSync(path.join(STATIC, 'index.html'), 'utf8');
  const keys = [...html.matchAll(/data-i18n="([^"]+)"/g)].map((m) => m[1]);
  for (const m of html.matchAll(/data-i18n-attr="([^"]+)"/g)) {
    for (const pair of m[1].split(',')) keys.push(pair.split(':')[1]);
  }
  assert.ok(keys.length > 40);
  for (const k of keys) assert.ok(k in I18N.STRINGS.en, `missing key ${k}`);
});

test('the vendored ECharts is the pinned npm package, byte for byte, as recorded', async () => {
  const { createHash } = await import('node:crypto');
  const { createRequire } = await import('node:module');
  const require = createRequire(import.meta.url);
  const pkg = require('echarts/package.json');
  const lock = JSON.parse(fs.readFileSync(new URL('./package.json', import.meta.url), 'utf8'));
  assert.equal(lock.devDependencies.echarts, pkg.version, 'package.json pins the installed version exactly');
  const sha = (p) => createHash('sha256').update(fs.readFileSync(p)).digest('hex');
  const vendored = sha(path.join(STATIC, 'vendor/echarts.common.min.js'));
  const fromNpm = sha(path.join(path.dirname(require.resolve('echarts/package.json')), 'dist/echarts.common.min.js'));
  assert.equal(vendored, fromNpm, 'static/vendor/echarts.common.min.js is dist/echarts.common.min.js of the npm package');
  const readme = fs.readFileSync(path.join(STATIC, 'vendor/README.md'), 'utf8');
  assert.ok(readme.includes(vendored), 'static/vendor/README.md records its sha256');
  assert.ok(readme.includes(`**${pkg.version}**`), 'static/vendor/README.md records its version');
  assert.ok(fs.readFileSync(path.join(STATIC, 'index.html'), 'utf8').includes('static/vendor/echarts.common.min.js'));
});
