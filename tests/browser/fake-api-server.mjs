// A stand-in for the sentinel daemon's HTTP side, for the dashboard's browser tests:
// serves ../../static/ like the daemon does (index at "/", files under "/static/",
// gzip) and answers every endpoint of ../../static/API-CONTRACT.md from a seeded,
// deterministic data set, with a settable clock and time zone.
//
// Data sets:
//   "seed": exactly the reference fixture of docs/compatibility.md (six hourly rows and
//           the unflushed memory, TZ=Asia/Shanghai, now 2025-03-15 14:37:21), so the
//           summary equals the reference's example byte for byte;
//   "demo": 15 months of generated traffic ending at "now", for realistic charts.
//
// Library:  const srv = await startFakeServer({ now, tz, dataset }); srv.url; await srv.close();
// CLI:      node fake-api-server.mjs [--port 8080] [--now 2025-03-15T14:37:21+08:00]
//                                    [--tz Asia/Shanghai] [--dataset demo|seed] [--frozen]
// It listens on 127.0.0.1 only.

import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const STATIC_DIR = path.resolve(HERE, '../../static');
export const DEFAULT_NOW = '2025-03-15T14:37:21+08:00';
export const DEFAULT_TZ = 'Asia/Shanghai';

/** The Content-Security-Policy the daemon should send with the page (see API-CONTRACT.md). */
export const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
  "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'";

const HOUR = 3600_000;
const DAY_RE = /^\d{4}-\d{2}-\d{2}$/;
const pad2 = (n) => String(n).padStart(2, '0');

/* ── Byte formatting: the server's fmt_bytes (reference 2.1) ─────────────── */

export function fmtBytes(b) {
  let n = BigInt(Math.max(0, Math.trunc(Number(b) || 0)));
  const units = ['B', 'KB', 'MB', 'GB', 'TB', 'PB'];
  let u = 0;
  let den = 1n;
  while (u < units.length - 1 && n >= den * 1024n) {
    den *= 1024n;
    u += 1;
  }
  const num = n * 100n;
  let q = num / den;
  const r2 = (num % den) * 2n;
  if (r2 > den || (r2 === den && q % 2n === 1n)) q += 1n;
  return `${q / 100n}.${String(q % 100n).padStart(2, '0')} ${units[u]}`;
}

const period = (up, down) => ({
  down_bytes: down, down_fmt: fmtBytes(down),
  total_bytes: up + down, total_fmt: fmtBytes(up + down),
  up_bytes: up, up_fmt: fmtBytes(up),
});

/* ── Time zone arithmetic with Intl (handles DST) ────────────────────────── */

function zoneTools(tz) {
  const f = new Intl.DateTimeFormat('en-US', {
    timeZone: tz, hourCycle: 'h23',
    year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
  });
  /** Local wall clock of epoch ms: { date, hour, minute, second, offsetMin }. */
  function local(ms) {
    const p = {};
    for (const x of f.formatToParts(new Date(ms))) p[x.type] = x.value;
    const H = +p.hour % 24;
    const wall = Date.UTC(+p.year, +p.month - 1, +p.day, H, +p.minute, +p.second);
    return {
      date: `${p.year}-${p.month}-${p.day}`, hour: H, minute: +p.minute, second: +p.second,
      offsetMin: Math.round((wall - Math.floor(ms / 1000) * 1000) / 60000),
    };
  }
  const dayCache = new Map();
  /** The local hours of a calendar day: [{ t (UTC ms of the hour's start), label, offset }]. 23, 24 or 25. */
  function hoursOfDay(date) {
    if (dayCache.has(date)) return dayCache.get(date);
    const [y, m, d] = date.split('-').map(Number);
    const out = [];
    // Local hour starts fall on a quarter hour of UTC in every zone in use.
    for (let t = Date.UTC(y, m - 1, d) - 15 * HOUR; t <= Date.UTC(y, m - 1, d) + 15 * HOUR + 24 * HOUR; t += 15 * 60_000) {
      const l = local(t);
      if (l.date === date && l.minute === 0 && l.second === 0) {
        out.push({ t, label: `${date} ${pad2(l.hour)}:00:00`, offset: fmtOffset(l.offsetMin) });
      }
    }
    dayCache.set(date, out);
    return out;
  }
  return { local, hoursOfDay };
}

function fmtOffset(min) {
  const a = Math.abs(min);
  return `${min < 0 ? '-' : '+'}${pad2(Math.floor(a / 60))}:${pad2(a % 60)}`;
}

function addDays(date, n) {
  const [y, m, d] = date.split('-').map(Number);
  const t = new Date(Date.UTC(y, m - 1, d + n));
  return `${t.getUTCFullYear()}-${pad2(t.getUTCMonth() + 1)}-${pad2(t.getUTCDate())}`;
}

function validDate(s) {
  if (typeof s !== 'string' || !DAY_RE.test(s)) return false;
  const [y, m, d] = s.split('-').map(Number);
  const t = new Date(Date.UTC(y, m - 1, d));
  return t.getUTCFullYear() === y && t.getUTCMonth() === m - 1 && t.getUTCDate() === d;
}

function rfc3339(ms, tools) {
  const l = tools.local(ms);
  return `${l.date}T${pad2(l.hour)}:${pad2(l.minute)}:${pad2(l.second)}${fmtOffset(l.offsetMin)}`;
}

/* ── Deterministic data ─────────────────────────────────────────────────── */

function rng(seed) {
  // mulberry32
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function hash(s) {
  let h = 2166136261;
  for (let i = 0; i < s.length; i += 1) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

/** The reference's fixture rows (local labels) and unflushed memory (2.2). */
const SEED_ROWS = [
  ['2024-12-31 23:00:00', 7, 9],
  ['2025-02-10 10:00:00', 5368709120, 21474836480],
  ['2025-03-01 08:00:00', 1000, 24000],
  ['2025-03-14 21:00:00', 209715200, 1073741824],
  ['2025-03-15 00:00:00', 52428800, 314572800],
  ['2025-03-15 13:00:00', 1073741824, 4294967296],
];
const SEED_MEMORY = { label: '2025-03-15 14:00:00', up: 1048576, down: 11796480 };
const SEED_TOP = [
  { ip: '203.0.113.1', up: 1048576, down: 10485760 },
  { ip: '8.8.8.8', up: 0, down: 786432 },
  { ip: '2001:4860:4860::8888', up: 0, down: 524288 },
];

/** Demo services: [proto, port, role, name, share of the range's bytes, share of it uploaded]. */
const DEMO_SERVICES = [
  ['tcp', 32400, 'server', 'Plex', 0.41, 0.95],
  ['tcp', 443, 'client', 'HTTPS', 0.22, 0.08],
  ['udp', 51413, 'server', 'Transmission (BitTorrent)', 0.14, 0.7],
  ['tcp', 6690, 'server', 'Synology Drive', 0.09, 0.4],
  ['udp', 51820, 'server', 'WireGuard', 0.05, 0.5],
  ['udp', 443, 'client', 'QUIC', 0.03, 0.1],
  ['tcp', 22, 'server', 'SSH', 0.01, 0.6],
  ['udp', 53, 'client', 'DNS', 0.005, 0.5],
  ['icmp', 0, 'none', 'ICMP', 0.001, 0.5],
];

const DEMO_IPS = [
  ['203.0.113.10', 0.2, 0.15], ['198.51.100.23', 0.14, 0.6], ['2001:db8:4860::8888', 0.11, 0.1],
  ['203.0.113.77', 0.09, 0.3], ['198.51.100.4', 0.07, 0.05], ['2001:db8:a0b:12f0::1', 0.06, 0.5],
  ['192.0.2.55', 0.05, 0.2], ['203.0.113.200', 0.04, 0.1], ['2001:db8:1234:5678::abcd', 0.03, 0.4],
  ['198.51.100.99', 0.025, 0.3], ['192.0.2.8', 0.02, 0.2], ['203.0.113.5', 0.015, 0.1],
];

function demoHour(t, localHour, date) {
  const r = rng(hash(`h${t}`));
  const dow = new Date(`${date}T00:00:00Z`).getUTCDay();
  const evening = Math.exp(-(((localHour - 21 + 24) % 24) ** 2) / 8) + Math.exp(-(((localHour - 21 - 24) % 24) ** 2) / 8);
  const noon = 0.35 * Math.exp(-((localHour - 12) ** 2) / 6);
  const w = 0.18 + evening + noon;
  const dayR = rng(hash(`d${date}`))();
  const dayFactor = (dow === 0 || dow === 6 ? 1.4 : 1) * (dayR < 0.06 ? 3.5 : 0.6 + dayR);
  const down = Math.round(420 * 1024 * 1024 * w * dayFactor * (0.55 + 0.9 * r()));
  let up = Math.round(down * (0.12 + 0.3 * r()));
  if (r() < 0.012) up += Math.round(2.5 * 1024 ** 3 * r()); // an off-site backup now and then
  return { up, down };
}

/** Build the data set: rows keyed by UTC hour start, and per-day totals. */
function buildData({ dataset, tools, nowMs }) {
  const rows = new Map(); // t -> { t, label, date, offset, up, down }
  const add = (hour, up, down) => {
    const r = rows.get(hour.t) || { t: hour.t, label: hour.label, date: hour.label.slice(0, 10), offset: hour.offset, up: 0, down: 0 };
    r.up += up;
    r.down += down;
    rows.set(hour.t, r);
  };
  const byLabel = (label) => tools.hoursOfDay(label.slice(0, 10)).find((h) => h.label === label);

  let top = SEED_TOP;
  const today = tools.local(nowMs).date;
  if (dataset === 'seed') {
    for (const [label, up, down] of SEED_ROWS) add(byLabel(label), up, down);
    const h = byLabel(SEED_MEMORY.label);
    if (h) add(h, SEED_MEMORY.up, SEED_MEMORY.down);
  } else {
    top = null; // computed per range from DEMO_IPS
    const first = addDays(today, -460);
    for (let date = first; date <= today; date = addDays(date, 1)) {
      for (const h of tools.hoursOfDay(date)) {
        if (h.t > nowMs) break;
        const v = demoHour(h.t, +h.label.slice(11, 13), date);
        // The current hour holds only the part that has passed.
        const frac = Math.min(1, (nowMs - h.t) / HOUR);
        add(h, Math.round(v.up * frac), Math.round(v.down * frac));
      }
    }
  }
  const days = new Map(); // date -> { up, down }
  for (const r of rows.values()) {
    const d = days.get(r.date) || { up: 0, down: 0 };
    d.up += r.up;
    d.down += r.down;
    days.set(r.date, d);
  }
  return { rows, days, top };
}

/* ── HTTP ───────────────────────────────────────────────────────────────── */

const MIME = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml', '.json': 'application/json', '.md': 'text/markdown; charset=utf-8', '.txt': 'text/plain; charset=utf-8',
};

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export async function startFakeServer(opts = {}) {
  const cfg = {
    now: opts.now || DEFAULT_NOW,
    tz: opts.tz || DEFAULT_TZ,
    dataset: opts.dataset || 'demo',
    frozen: Boolean(opts.frozen),
    staticDir: opts.staticDir || STATIC_DIR,
    // The billing card's settings, as the browser tier gives the daemon (QUOTA=1TB,
    // UPLOAD_DAILY_LIMIT=50GB, BILLING_DAY=1); `quota: null` hides the card.
    quota: opts.quota === undefined ? 1e12 : opts.quota,
    uploadLimit: opts.uploadLimit === undefined ? 50e9 : opts.uploadLimit,
  };
  const tools = zoneTools(cfg.tz);
  const baseNow = Date.parse(cfg.now);
  if (!Number.isFinite(baseNow)) throw new Error(`bad --now: ${cfg.now}`);
  const startedAt = Date.now();
  const nowMs = () => (cfg.frozen ? baseNow : baseNow + (Date.now() - startedAt));
  const data = buildData({ dataset: cfg.dataset, tools, nowMs: baseNow });
  const requests = [];

  const dayTotal = (date) => data.days.get(date) || { up: 0, down: 0 };
  const sumDays = (from, to) => {
    let up = 0;
    let down = 0;
    for (let d = from; d <= to; d = addDays(d, 1)) {
      const v = dayTotal(d);
      up += v.up;
      down += v.down;
    }
    return { up, down };
  };
  const series = (items) => {
    let up = 0;
    let down = 0;
    for (const i of items) {
      up += i.up_bytes;
      down += i.down_bytes;
    }
    return { series: items, summary: period(up, down) };
  };
  const dayItem = (date) => {
    const v = dayTotal(date);
    return { day: date, down_bytes: v.down, total_bytes: v.up + v.down, up_bytes: v.up };
  };

  function parseRange(q, { required }) {
    let start = q.get('start');
    let end = q.get('end');
    const today = tools.local(nowMs()).date;
    if (!start && !end && !required) return { start: today, end: today };
    if (!start || !end) throw new HttpError(400, 'start and end are required');
    if (!validDate(start) || !validDate(end)) throw new HttpError(400, 'Invalid date format, use YYYY-MM-DD');
    if (start > end) throw new HttpError(400, 'start must not be after end');
    return { start, end };
  }

  function api(p, q) {
    const now = nowMs();
    const here = tools.local(now);
    const today = here.date;
    switch (p) {
      case '/api/summary': {
        const m = sumDays(`${today.slice(0, 7)}-01`, today);
        const y = sumDays(`${today.slice(0, 4)}-01-01`, today);
        const d = dayTotal(today);
        return {
          month: period(m.up, m.down), today: period(d.up, d.down), year: period(y.up, y.down),
          tz: cfg.tz, tz_offset: fmtOffset(here.offsetMin), now: rfc3339(now, tools), today_date: today,
        };
      }
      case '/api/cycle': {
        // Billing day 1: the cycle is the calendar month (the daemon's arithmetic is tested in Rust).
        const first = `${today.slice(0, 7)}-01`;
        const next = addDays(`${today.slice(0, 7)}-28`, 7).slice(0, 7) + '-01';
        const last = addDays(next, -1);
        const used = (() => { const m = sumDays(first, today); return m.up + m.down; })();
        const startMs = Date.parse(`${first}T00:00:00${fmtOffset(here.offsetMin)}`);
        const endMs = Date.parse(`${next}T00:00:00${fmtOffset(here.offsetMin)}`);
        const elapsed = Math.max(HOUR, now - startMs);
        const projection = Math.round((used * (endMs - startMs)) / elapsed);
        const q = cfg.quota;
        const daysLeft = Math.round((Date.parse(next) - Date.parse(today)) / 86_400_000);
        const remaining = q == null ? null : Math.max(0, q - used);
        const up = dayTotal(today).up;
        const lim = cfg.uploadLimit;
        const fmtOrNull = (v) => (v == null ? null : fmtBytes(v));
        return {
          enabled: q != null, billing_day: 1, basis: 'total', units: 'seed', tz: cfg.tz,
          now: rfc3339(now, tools), start: rfc3339(startMs, tools), end: rfc3339(endMs, tools),
          start_date: first, end_date: last,
          used, used_fmt: fmtBytes(used), quota: q, quota_fmt: fmtOrNull(q),
          remaining, remaining_fmt: fmtOrNull(remaining),
          percent: q == null ? null : Math.round((used * 10000) / q) / 100,
          daily_average: Math.round((used * 86_400_000) / elapsed),
          projection: { bytes: projection, fmt: fmtBytes(projection), exceeds_quota: q == null ? null : projection > q },
          safe_daily_budget: remaining == null ? null : Math.floor(remaining / daysLeft),
          safe_daily_budget_fmt: remaining == null ? null : fmtBytes(Math.floor(remaining / daysLeft)),
          days_left: daysLeft, seconds_left: Math.round((endMs - now) / 1000), thresholds: [80, 95, 100],
          upload_today: {
            date: today, bytes: up, fmt: fmtBytes(up), limit: lim, limit_fmt: fmtOrNull(lim),
            percent: lim == null ? null : Math.round((up * 10000) / lim) / 100, exceeded: lim == null ? null : up >= lim,
          },
          previous: [],
        };
      }
      case '/api/query': {
        const { start, end } = parseRange(q, { required: true });
        const gran = q.get('granularity') || 'day';
        const days = Math.round((Date.parse(end) - Date.parse(start)) / 86400_000) + 1;
        if (gran === 'day') {
          if (days > 3700) throw new HttpError(400, 'range too long for day granularity (max 3700 days)');
          const items = [];
          for (let d = start; d <= end; d = addDays(d, 1)) items.push(dayItem(d));
          return series(items);
        }
        if (gran === 'month') {
          const items = [];
          for (let mo = start.slice(0, 7); mo <= end.slice(0, 7); ) {
            const from = `${mo}-01` < start ? start : `${mo}-01`;
            const [yy, mm] = mo.split('-').map(Number);
            const last = addDays(`${yy + (mm === 12 ? 1 : 0)}-${pad2((mm % 12) + 1)}-01`, -1);
            const v = sumDays(from, last > end ? end : last);
            items.push({ down_bytes: v.down, month: mo, total_bytes: v.up + v.down, up_bytes: v.up });
            mo = `${yy + (mm === 12 ? 1 : 0)}-${pad2((mm % 12) + 1)}`;
          }
          return series(items);
        }
        if (gran === 'hour') {
          if (days > 92) throw new HttpError(400, 'range too long for hour granularity (max 92 days)');
          const items = [];
          for (let d = start; d <= end; d = addDays(d, 1)) {
            for (const h of tools.hoursOfDay(d)) {
              const r = data.rows.get(h.t) || { up: 0, down: 0 };
              items.push({ down_bytes: r.down, hour_ts: h.label, total_bytes: r.up + r.down, up_bytes: r.up, utc_offset: h.offset });
            }
          }
          return series(items);
        }
        throw new HttpError(400, 'granularity must be hour, day or month');
      }
      case '/api/history/30days': {
        const items = [];
        for (let d = addDays(today, -29); d <= today; d = addDays(d, 1)) items.push(dayItem(d));
        return { days: items };
      }
      case '/api/history/12months': {
        const months = [];
        const [yy, mm] = today.split('-').map(Number);
        for (let i = 11; i >= 0; i -= 1) {
          const total = mm - 1 - i;
          const y = yy + Math.floor(total / 12);
          const mo = `${y}-${pad2((((total % 12) + 12) % 12) + 1)}`;
          const v = sumDays(`${mo}-01`, lastOfMonth(mo));
          months.push({ down_bytes: v.down, month: mo, total_bytes: v.up + v.down, up_bytes: v.up });
        }
        return { months };
      }
      case '/api/history/today_hours': {
        const hours = [];
        for (const h of tools.hoursOfDay(today)) {
          const r = data.rows.get(h.t);
          if (r) hours.push({ down_bytes: r.down, hour_ts: h.label, total_bytes: r.up + r.down, up_bytes: r.up, utc_offset: h.offset });
        }
        return { hours };
      }
      case '/api/date_range': {
        const dates = [...data.days.keys()].sort();
        return dates.length ? { max: dates[dates.length - 1], min: dates[0] } : { max: today, min: today };
      }
      case '/api/realtime': {
        const sec = Math.floor(now / 1000);
        const samples = [];
        for (let i = 29; i >= 0; i -= 1) {
          const ts = sec - i;
          const r = rng(hash(`s${ts}`));
          const wave = 1 + 0.5 * Math.sin(ts / 7);
          const down = cfg.dataset === 'seed' ? 0 : Math.round(2.6 * 1024 * 1024 * wave * (0.5 + r()));
          const up = cfg.dataset === 'seed' ? 0 : Math.round(310 * 1024 * wave * (0.4 + r()));
          samples.push({ down, ts, up });
        }
        const last = samples[samples.length - 1];
        return {
          current_down_Bps: last.down, current_down_bps: last.down * 8,
          current_up_Bps: last.up, current_up_bps: last.up * 8, samples,
        };
      }
      case '/api/top_ips': {
        const { start, end } = parseRange(q, { required: false });
        const limit = q.has('limit') ? Number(q.get('limit')) : 10;
        if (!Number.isInteger(limit) || limit < 1 || limit > 100) throw new HttpError(400, 'limit must be an integer from 1 to 100');
        let list;
        if (data.top) {
          list = start <= today && today <= end ? data.top.map((x) => ({ ...x })) : [];
        } else {
          const total = sumDays(start, end);
          const all = total.up + total.down;
          list = DEMO_IPS.map(([ip, share, upRatio]) => {
            const jitter = 0.85 + 0.3 * rng(hash(`${ip}${start}${end}`))();
            const bytes = Math.round(all * share * jitter);
            const up = Math.round(bytes * upRatio);
            return { ip, up, down: bytes - up };
          });
        }
        const top = list
          .map((x) => ({ bytes: x.up + x.down, bytes_fmt: fmtBytes(x.up + x.down), down_bytes: x.down, ip: x.ip, up_bytes: x.up }))
          .filter((x) => x.bytes > 0)
          .sort((a, b) => b.bytes - a.bytes)
          .slice(0, limit);
        return { end, start, top_ips: top };
      }
      case '/api/services': {
        const { start, end } = parseRange(q, { required: false });
        const limit = q.has('limit') ? Number(q.get('limit')) : 10;
        if (!Number.isInteger(limit) || limit < 1 || limit > 100) throw new HttpError(400, 'limit must be an integer from 1 to 100');
        const total = sumDays(start, end);
        const all = total.up + total.down;
        const counters = (up, down) => ({
          down_bytes: down, down_fmt: fmtBytes(down), down_packets: Math.round(down / 1200),
          total_bytes: up + down, total_fmt: fmtBytes(up + down),
          up_bytes: up, up_fmt: fmtBytes(up), up_packets: Math.round(up / 1200),
        });
        const list = DEMO_SERVICES.map(([proto, port, role, name, share, upRatio]) => {
          const bytes = Math.round(all * share);
          const up = Math.round(bytes * upRatio);
          return { ...counters(up, bytes - up), name, port, proto, role };
        })
          .filter((x) => x.total_bytes > 0)
          .sort((a, b) => b.total_bytes - a.total_bytes);
        const listed = list.slice(0, limit);
        const rest = all - listed.reduce((n, x) => n + x.total_bytes, 0);
        return { end, other: counters(Math.round(rest / 2), rest - Math.round(rest / 2)), services: listed, start };
      }
      case '/api/health':
        return { status: 'ok', ts: rfc3339(now, tools) };
      case '/api/status': {
        const flush = Math.floor(now / 300_000) * 300_000;
        return {
          attach_mode: 'tcx', backend: 'ebpf',
          capture: {
            counters_survive_restart: true, counters_survive_restart_reason: 'bpffs was already mounted at the pin directory',
            drops: 0, error: null, errors: { bad_ip_header: 0, truncated_l3: 0, unknown_ethertype_vlan: 0 }, state: 'running',
          },
          iface: 'eth0',
          storage: { db_path: '/data/traffic.db', db_size_bytes: 1_687_552, error: null, last_flush: rfc3339(flush, tools), state: 'ok' },
          uptime_s: Math.floor((Date.now() - startedAt) / 1000) + 3 * 86400 + 4 * 3600 + 25 * 60,
          version: '0.1.0',
        };
      }
      case '/api/debug/local_ips':
        return {
          iface: 'eth0', ipv4: ['192.168.1.100'], ipv6: ['2001:db8:2f08:d601::1', 'fe80::211:32ff:fe12:3456'],
          ipv6_lan_filter: { mode: 'auto-gua-/56', note: 'auto', prefixes: ['2001:db8:2f08:d600::/56'] },
          note: 'debug', total: 3,
        };
      default:
        throw new HttpError(404, `no such endpoint: ${p}`);
    }
  }

  function lastOfMonth(mo) {
    const [y, m] = mo.split('-').map(Number);
    return addDays(`${y + (m === 12 ? 1 : 0)}-${pad2((m % 12) + 1)}-01`, -1);
  }

  // Static files are compressed once, as a daemon serving embedded files would.
  const gzCache = new Map();
  function gzipCached(buf) {
    if (buf.length < 65536) return zlib.gzipSync(buf, { level: 6 });
    const key = buf.length + ':' + hash(buf.subarray(0, 4096).toString('latin1'));
    if (!gzCache.has(key)) gzCache.set(key, zlib.gzipSync(buf, { level: 6 }));
    return gzCache.get(key);
  }

  function send(req, res, status, type, body, extra = {}) {
    let buf = Buffer.isBuffer(body) ? body : Buffer.from(body);
    const headers = { 'Content-Type': type, 'Cache-Control': 'no-cache', 'X-Content-Type-Options': 'nosniff', ...extra };
    const compressible = /^(text\/|application\/json|image\/svg)/.test(type);
    if (compressible && buf.length > 256 && /\bgzip\b/.test(req.headers['accept-encoding'] || '')) {
      buf = gzipCached(buf);
      headers['Content-Encoding'] = 'gzip';
      headers.Vary = 'Accept-Encoding';
    }
    headers['Content-Length'] = buf.length;
    res.writeHead(status, headers);
    res.end(req.method === 'HEAD' ? undefined : buf);
  }

  const json = (req, res, status, obj) => send(req, res, status, 'application/json', `${JSON.stringify(obj)}\n`);

  const server = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://x');
    requests.push({ method: req.method, path: u.pathname, query: u.search });
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      if (u.pathname.startsWith('/api/')) return json(req, res, 405, { error: 'method not allowed' });
      return send(req, res, 405, 'text/plain; charset=utf-8', 'method not allowed\n');
    }
    if (u.pathname.startsWith('/api/')) {
      try {
        return json(req, res, 200, api(u.pathname, u.searchParams));
      } catch (e) {
        if (e instanceof HttpError) return json(req, res, e.status, { error: e.message });
        return json(req, res, 500, { error: String(e && e.message) });
      }
    }
    let file = null;
    if (u.pathname === '/') file = 'index.html';
    else if (u.pathname.startsWith('/static/')) file = decodeURIComponent(u.pathname.slice('/static/'.length));
    const full = file && path.resolve(cfg.staticDir, file);
    if (!full || !full.startsWith(cfg.staticDir + path.sep) || !fs.existsSync(full) || !fs.statSync(full).isFile()) {
      return send(req, res, 404, 'text/plain; charset=utf-8', 'not found\n');
    }
    const type = MIME[path.extname(full)] || 'application/octet-stream';
    const extra = type.startsWith('text/html') ? { 'Content-Security-Policy': CSP, 'Referrer-Policy': 'no-referrer' } : {};
    return send(req, res, 200, type, fs.readFileSync(full), extra);
  });

  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port || 0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    config: { ...cfg },
    requests,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

// CLI
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const opt = (name, def) => {
    const i = args.indexOf(`--${name}`);
    return i >= 0 ? args[i + 1] : def;
  };
  const srv = await startFakeServer({
    port: Number(opt('port', 8080)),
    now: opt('now', DEFAULT_NOW),
    tz: opt('tz', DEFAULT_TZ),
    dataset: opt('dataset', 'demo'),
    frozen: args.includes('--frozen'),
  });
  console.log(`fake sentinel API on ${srv.url} (now ${srv.config.now}, ${srv.config.tz}, data set ${srv.config.dataset})`);
  const stop = () => srv.close().then(() => process.exit(0));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}
