/*
 * core.js: the dashboard's pure logic, no DOM and no network.
 *
 * - byte and speed formatters (fmtBytes follows the server's fmt_bytes exactly,
 *   docs/compatibility.md "The byte formatter", so the page and the API never disagree);
 * - calendar-date arithmetic on "YYYY-MM-DD" strings (done in UTC, so no DST);
 * - the NAS clock: the server's "now", IANA zone and offset from /api/summary,
 *   so every date the page shows or computes is the NAS's, whatever the
 *   browser's own zone is;
 * - the seven quick ranges and the chart labels.
 *
 * Loaded as a classic script in the page (window.SentinelCore) and with
 * node's vm module in tests/browser/core.test.mjs.
 */
(function (global) {
  'use strict';

  /* ── Bytes ─────────────────────────────────────────────────────────────── */

  const UNITS = ['B', 'KB', 'MB', 'GB', 'TB', 'PB'];

  /**
   * The server's fmt_bytes: base 1024, unit picked before rounding, always two
   * decimals, PB for everything from 1024^5 up, ties rounded to even (Python's
   * and Rust's "{:.2}" on the exact binary value). Done in BigInt so that it is
   * exact for every integer the API can send. Non-integers are truncated like
   * the server's int(b); null, undefined, NaN and negatives give "0.00 B".
   */
  /**
   * UNITS of the daemon (GET /api/cycle "units"): 'seed' (the default above), 'si' (base 1000,
   * kB..PB) or 'iec' (base 1024, KiB..PiB), so the page prints sizes as the API's *_fmt do.
   */
  const UNIT_SETS = {
    seed: { base: 1024n, labels: UNITS },
    si: { base: 1000n, labels: ['B', 'kB', 'MB', 'GB', 'TB', 'PB'] },
    iec: { base: 1024n, labels: ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'] },
  };
  let unitSet = UNIT_SETS.seed;

  /** Switches the unit family; unknown names keep the current one. Returns true on a change. */
  function setUnits(name) {
    const next = UNIT_SETS[name];
    if (!next || next === unitSet) return false;
    unitSet = next;
    return true;
  }

  function fmtBytes(b) {
    const { base, labels } = unitSet;
    let n;
    try {
      n = typeof b === 'bigint' ? b : BigInt(Math.trunc(Number(b) || 0));
    } catch (_) {
      n = 0n; // Infinity and the like
    }
    if (n < 0n) n = 0n;
    let unit = 0;
    let den = 1n;
    while (unit < labels.length - 1 && n >= den * base) {
      den *= base;
      unit += 1;
    }
    // hundredths = round_half_even(n * 100 / den)
    const num = n * 100n;
    let q = num / den;
    const r2 = (num % den) * 2n;
    if (r2 > den || (r2 === den && q % 2n === 1n)) q += 1n;
    const whole = q / 100n;
    const frac = String(q % 100n).padStart(2, '0');
    return `${whole}.${frac} ${labels[unit]}`;
  }

  /** Header speed from bits per second: [number, unit] in bytes per second. */
  function fmtSpeed(bps) {
    const Bps = (Number(bps) || 0) / 8;
    const k = Number(unitSet.base);
    const l = unitSet.labels;
    if (Bps <= 0) return ['0.0', 'B/s'];
    if (Bps < k) return [Bps.toFixed(1), 'B/s'];
    if (Bps < k ** 2) return [(Bps / k).toFixed(2), `${l[1]}/s`];
    if (Bps < k ** 3) return [(Bps / k ** 2).toFixed(2), `${l[2]}/s`];
    return [(Bps / k ** 3).toFixed(2), `${l[3]}/s`];
  }

  /** "1d 02:03:04" style uptime; locale-free on purpose. */
  function fmtDuration(seconds) {
    let s = Math.max(0, Math.floor(Number(seconds) || 0));
    const d = Math.floor(s / 86400);
    s -= d * 86400;
    const hms = [Math.floor(s / 3600), Math.floor((s % 3600) / 60), s % 60]
      .map((x) => String(x).padStart(2, '0'))
      .join(':');
    return d > 0 ? `${d}d ${hms}` : hms;
  }

  /** Integers with thin grouping ("1 234 567"), same in both languages. */
  function fmtCount(n) {
    const v = Math.trunc(Number(n) || 0);
    return String(v).replace(/\B(?=(\d{3})+(?!\d))/g, '\u202f');
  }

  /* ── Calendar dates ("YYYY-MM-DD"), computed in UTC ───────────────────── */

  const DATE_RE = /^(\d{4})-(\d{2})-(\d{2})$/;
  const pad2 = (n) => String(n).padStart(2, '0');

  function isDate(s) {
    const m = DATE_RE.exec(String(s));
    if (!m) return false;
    const t = new Date(Date.UTC(+m[1], +m[2] - 1, +m[3]));
    return t.getUTCFullYear() === +m[1] && t.getUTCMonth() === +m[2] - 1 && t.getUTCDate() === +m[3];
  }

  function dateFromUTC(t) {
    return `${String(t.getUTCFullYear()).padStart(4, '0')}-${pad2(t.getUTCMonth() + 1)}-${pad2(t.getUTCDate())}`;
  }

  function parseDate(s) {
    const m = DATE_RE.exec(s);
    if (!m) throw new Error(`not a date: ${s}`);
    return { y: +m[1], m: +m[2], d: +m[3] };
  }

  /** s + n days. */
  function addDays(s, n) {
    const { y, m, d } = parseDate(s);
    return dateFromUTC(new Date(Date.UTC(y, m - 1, d + n)));
  }

  /** First day of the month of s, moved by n months. */
  function monthStart(s, n = 0) {
    const { y, m } = parseDate(s);
    return dateFromUTC(new Date(Date.UTC(y, m - 1 + n, 1)));
  }

  /** Last day of the month of s, moved by n months. */
  function monthEnd(s, n = 0) {
    const { y, m } = parseDate(s);
    return dateFromUTC(new Date(Date.UTC(y, m + n, 0)));
  }

  /** Number of calendar days from a to b, both included. */
  function daysBetween(a, b) {
    const pa = parseDate(a);
    const pb = parseDate(b);
    return Math.round((Date.UTC(pb.y, pb.m - 1, pb.d) - Date.UTC(pa.y, pa.m - 1, pa.d)) / 86400000) + 1;
  }

  /**
   * The seven quick ranges, from the NAS's "today". Each button has the fixed
   * granularity of the seed README's table (今天/昨天 hour, 近7天/近30天/本月/
   * 上月 day, 今年 month) instead of the seed's ≤2/>60-day rule, which gave
   * hourly data for 本月 on the 1st and 2nd and for 今年 on Jan 1-2
   * (reference 5.4, D41).
   */
  const QUICK_KEYS = ['today', 'yesterday', '7days', '30days', 'thisMonth', 'lastMonth', 'thisYear'];

  function quickRange(key, today) {
    switch (key) {
      case 'today':
        return { start: today, end: today, gran: 'hour' };
      case 'yesterday': {
        const y = addDays(today, -1);
        return { start: y, end: y, gran: 'hour' };
      }
      case '7days':
        return { start: addDays(today, -6), end: today, gran: 'day' };
      case '30days':
        return { start: addDays(today, -29), end: today, gran: 'day' };
      case 'thisMonth':
        return { start: monthStart(today), end: today, gran: 'day' };
      case 'lastMonth':
        return { start: monthStart(today, -1), end: monthEnd(today, -1), gran: 'day' };
      case 'thisYear':
        return { start: `${today.slice(0, 4)}-01-01`, end: today, gran: 'month' };
      default:
        throw new Error(`unknown quick range: ${key}`);
    }
  }

  /* ── Time zones and the NAS clock ─────────────────────────────────────── */

  /** "+08:00" / "-05:30" / "Z" → minutes east of UTC, or null. */
  function parseOffset(s) {
    if (typeof s !== 'string') return null;
    if (s === 'Z' || s === 'z') return 0;
    const m = /^([+-])(\d{2}):?(\d{2})$/.exec(s);
    if (!m) return null;
    const v = +m[2] * 60 + +m[3];
    return m[1] === '-' ? -v : v;
  }

  function formatOffset(min) {
    const sign = min < 0 ? '-' : '+';
    const a = Math.abs(min);
    return `${sign}${pad2(Math.floor(a / 60))}:${pad2(a % 60)}`;
  }

  /** A formatter for the IANA zone, or null if this browser does not know it. */
  const fmtCache = new Map();
  function zoneFormatter(tz) {
    if (!tz || typeof tz !== 'string') return null;
    if (fmtCache.has(tz)) return fmtCache.get(tz);
    let f = null;
    try {
      f = new Intl.DateTimeFormat('en-US', {
        timeZone: tz,
        hourCycle: 'h23',
        year: 'numeric', month: '2-digit', day: '2-digit',
        hour: '2-digit', minute: '2-digit', second: '2-digit',
      });
    } catch (_) {
      f = null; // RangeError: unknown zone
    }
    fmtCache.set(tz, f);
    return f;
  }

  /**
   * The NAS clock. It learns the server's time and zone from /api/summary
   * ("now", "tz", "tz_offset"; all optional) and keeps ticking locally:
   * nowMs() = browser time + the skew measured at the last update.
   * Zone resolution, best first: the IANA zone (follows DST by itself), the
   * fixed offset ("tz_offset", else the one inside "now"), else the
   * browser's own zone, labelled as such.
   */
  class NasClock {
    constructor() {
      this.skewMs = 0;
      this.tz = null;
      this.offsetMin = null;
      this.known = false; // true once the server told us anything about time
    }

    update(summary, receivedAt = Date.now()) {
      if (!summary || typeof summary !== 'object') return;
      const nowStr = typeof summary.now === 'string' ? summary.now : null;
      if (nowStr) {
        const t = Date.parse(nowStr);
        if (Number.isFinite(t)) {
          this.skewMs = t - receivedAt;
          this.known = true;
        }
      }
      if (zoneFormatter(summary.tz)) {
        this.tz = summary.tz;
        this.known = true;
      }
      let off = parseOffset(summary.tz_offset);
      if (off === null && nowStr) off = parseOffset((/(Z|[+-]\d{2}:?\d{2})$/.exec(nowStr) || [])[1]);
      if (off !== null) {
        this.offsetMin = off;
        this.known = true;
      }
    }

    nowMs() {
      return Date.now() + this.skewMs;
    }

    /** Wall-clock fields of epoch ms in the NAS zone, with the offset. */
    parts(ms = this.nowMs()) {
      const f = zoneFormatter(this.tz);
      if (f) {
        const p = {};
        for (const x of f.formatToParts(new Date(ms))) p[x.type] = x.value;
        const r = { y: +p.year, m: +p.month, d: +p.day, H: +p.hour % 24, M: +p.minute, S: +p.second };
        // The offset is what separates the wall clock from UTC at this instant.
        const wall = Date.UTC(r.y, r.m - 1, r.d, r.H, r.M, r.S);
        r.offsetMin = Math.round((wall - Math.floor(ms / 1000) * 1000) / 60000);
        return r;
      }
      if (this.offsetMin !== null) {
        const t = new Date(ms + this.offsetMin * 60000);
        return {
          y: t.getUTCFullYear(), m: t.getUTCMonth() + 1, d: t.getUTCDate(),
          H: t.getUTCHours(), M: t.getUTCMinutes(), S: t.getUTCSeconds(),
          offsetMin: this.offsetMin,
        };
      }
      const t = new Date(ms);
      return {
        y: t.getFullYear(), m: t.getMonth() + 1, d: t.getDate(),
        H: t.getHours(), M: t.getMinutes(), S: t.getSeconds(),
        offsetMin: -t.getTimezoneOffset(),
      };
    }

    today(ms) {
      const p = this.parts(ms);
      return `${String(p.y).padStart(4, '0')}-${pad2(p.m)}-${pad2(p.d)}`;
    }

    time(ms) {
      const p = this.parts(ms);
      return `${pad2(p.H)}:${pad2(p.M)}:${pad2(p.S)}`;
    }

    /** "Asia/Shanghai UTC+08:00", "UTC+08:00", or null when only the browser's zone is known. */
    zoneLabel(ms) {
      const off = `UTC${formatOffset(this.parts(ms).offsetMin)}`;
      if (this.tz) return `${this.tz} ${off}`;
      if (this.offsetMin !== null) return off;
      return null;
    }
  }

  /* ── Chart labels ──────────────────────────────────────────────────────── */

  /**
   * Category labels and tooltip titles for a /api/query series.
   * hour: "HH:00" when the series stays within one day, "MM-DD HH:00" when it
   * spans days (D42); a label that repeats (the DST fall-back hour) carries its
   * UTC offset when the API gives one. day: "MM-DD", or the full date when the
   * range crosses a year. month: "YYYY-MM".
   */
  function seriesLabels(series, gran) {
    const items = Array.isArray(series) ? series : [];
    if (gran === 'hour') {
      const ts = items.map((r) => String(r.hour_ts || ''));
      const multiDay = new Set(ts.map((t) => t.slice(0, 10))).size > 1;
      const seen = new Map();
      for (const t of ts) seen.set(t, (seen.get(t) || 0) + 1);
      const labels = ts.map((t, i) => {
        let l = multiDay ? `${t.slice(5, 10)} ${t.slice(11, 16)}` : t.slice(11, 16);
        const off = items[i].utc_offset;
        if (seen.get(t) > 1 && off) l += ` ${off}`;
        return l;
      });
      const titles = ts.map((t, i) => {
        const off = items[i].utc_offset;
        return `${t.slice(0, 16)}${off ? ` (UTC${off})` : ''}`;
      });
      return { labels, titles };
    }
    if (gran === 'month') {
      const labels = items.map((r) => String(r.month || ''));
      return { labels, titles: labels.slice() };
    }
    const days = items.map((r) => String(r.day || ''));
    const multiYear = new Set(days.map((d) => d.slice(0, 4))).size > 1;
    return { labels: days.map((d) => (multiYear ? d : d.slice(5))), titles: days.slice() };
  }

  /**
   * 24 points for today's chart (00:00 … 23:00) from /api/history/today_hours,
   * which may list only the hours that have data. Hours after the NAS's
   * current hour are null, so the line stops at "now" instead of dropping to
   * zero. An hour listed twice (DST fall-back) gets two points, each labelled
   * with its offset.
   */
  function todayHourPoints(hours, currentHour) {
    const byHour = new Map();
    for (const h of Array.isArray(hours) ? hours : []) {
      const hh = parseInt(String(h.hour_ts || '').slice(11, 13), 10);
      if (!(hh >= 0 && hh < 24)) continue;
      if (!byHour.has(hh)) byHour.set(hh, []);
      byHour.get(hh).push(h);
    }
    const labels = [];
    const titles = [];
    const up = [];
    const down = [];
    for (let hh = 0; hh < 24; hh += 1) {
      const list = byHour.get(hh) || [null];
      for (const h of list) {
        const base = `${pad2(hh)}:00`;
        const off = h && list.length > 1 && h.utc_offset ? ` ${h.utc_offset}` : '';
        labels.push(base + off);
        titles.push(h && h.hour_ts ? `${String(h.hour_ts).slice(0, 16)}${h.utc_offset ? ` (UTC${h.utc_offset})` : ''}` : base);
        const future = currentHour !== null && currentHour !== undefined && hh > currentHour;
        up.push(h ? Number(h.up_bytes) || 0 : future ? null : 0);
        down.push(h ? Number(h.down_bytes) || 0 : future ? null : 0);
      }
    }
    return { labels, titles, up, down };
  }

  global.SentinelCore = {
    fmtBytes, fmtSpeed, fmtDuration, fmtCount, setUnits,
    isDate, addDays, monthStart, monthEnd, daysBetween,
    QUICK_KEYS, quickRange,
    parseOffset, formatOffset, NasClock,
    seriesLabels, todayHourPoints,
  };
})(typeof window !== 'undefined' ? window : globalThis);
