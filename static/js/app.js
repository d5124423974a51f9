/*
 * app.js: the dashboard's wiring: API client, polling, rendering, controls.
 *
 * Fixes of the seed's page (reference 5.9 and 7.7):
 * - each panel loads on its own and shows its own errors (D40, D45); nothing
 *   waits on another panel except the default query, which waits for the NAS
 *   clock;
 * - the default query runs on load, and every quick button and granularity
 *   button runs the query (D41);
 * - all dates and times come from the NAS clock of /api/summary (D38);
 * - the footer's update time and the LIVE badge follow real state (D40, D45).
 *
 * API paths are relative ("api/…"), so the page also works behind a reverse
 * proxy that mounts the service under a sub-path.
 */
(function () {
  'use strict';

  const Core = window.SentinelCore;
  const I18N = window.SentinelI18n;
  const Charts = window.SentinelCharts;
  const { fmtBytes, fmtSpeed, fmtDuration, fmtCount, isDate, quickRange } = Core;

  const $ = (id) => document.getElementById(id);

  /* Poll periods (ms), as the seed's (5.7); status and health go with the summary. */
  const PERIOD = { realtime: 3000, summary: 15000, today: 30000, history: 120000 };

  const state = {
    lang: 'zh-CN',
    clock: new Core.NasClock(),
    gran: 'day',
    quick: null, // the quick button whose range is in the inputs, if any
    data: {}, // last good response per source
    errors: {}, // last error per source (null when the last fetch succeeded)
    charts: {},
    querySeq: 0,
  };

  const t = (key, vars) => I18N.t(state.lang, key, vars);

  /* ── API client ──────────────────────────────────────────────────────── */

  /** An API failure, rendered in the current language when shown. */
  class ApiError extends Error {
    constructor(path, status, detail, kind) {
      super(`${path}: ${kind} ${status} ${detail || ''}`);
      this.path = path;
      this.status = status; // 0 for network errors
      this.detail = detail; // the server's {"error": "..."} text, if any
      this.kind = kind; // 'network' | 'http' | 'json'
    }

    text() {
      const where = this.path.split('?')[0];
      if (this.kind === 'network') return `${where}: ${t('error.network')}`;
      if (this.kind === 'json') return `${where}: ${t('error.badJson')}`;
      return `${where}: HTTP ${this.status}${this.detail ? ` · ${this.detail}` : ''}`;
    }
  }

  /**
   * GET a JSON endpoint. Resolves with the body for 2xx; otherwise rejects with
   * an ApiError carrying the server's {"error": "..."} message when there is one.
   * okStatuses lets /api/health read its 503 body as an answer.
   */
  async function api(path, okStatuses = []) {
    let res;
    try {
      res = await fetch(path, { headers: { Accept: 'application/json' }, cache: 'no-store' });
    } catch (_) {
      throw new ApiError(path, 0, null, 'network');
    }
    let text = '';
    try {
      text = await res.text();
    } catch (_) {
      throw new ApiError(path, 0, null, 'network');
    }
    let body;
    let parsed = true;
    try {
      body = text ? JSON.parse(text) : null;
    } catch (_) {
      parsed = false;
    }
    if (!res.ok && !okStatuses.includes(res.status)) {
      const detail = parsed && body && typeof body === 'object' ? body.error || body.reason || null : null;
      throw new ApiError(path, res.status, detail ? String(detail) : res.statusText || null, 'http');
    }
    if (!parsed || body === null || typeof body !== 'object') throw new ApiError(path, res.status, null, 'json');
    return { body, status: res.status };
  }

  /* ── Small DOM helpers ───────────────────────────────────────────────── */

  function setText(id, text) {
    const el = $(id);
    if (el && el.textContent !== text) el.textContent = text;
  }

  function showError(id, err) {
    const el = $(id);
    if (!el) return;
    if (!err) {
      el.hidden = true;
      el.textContent = '';
      return;
    }
    el.textContent = t('error.load', { msg: err instanceof ApiError ? err.text() : String(err.message || err) });
    el.hidden = false;
  }

  /** Server *_fmt string when present, else the same rule in the browser. */
  const fmtField = (p, key) => (p && typeof p[`${key}_fmt`] === 'string' ? p[`${key}_fmt`] : fmtBytes(p ? p[`${key}_bytes`] : 0));

  /** The ECharts instance of a container, created on first use; null without ECharts. */
  function chart(id) {
    if (!window.echarts) return null;
    if (!state.charts[id]) {
      state.charts[id] = window.echarts.init($(id), null, { renderer: 'canvas' });
      if (resizer) resizer.observe($(id));
    }
    return state.charts[id];
  }

  /** Charts follow their container's size (window resizes, panels growing with the table). */
  const resizer =
    typeof ResizeObserver === 'function'
      ? new ResizeObserver((entries) => {
          for (const e of entries) {
            const c = window.echarts && window.echarts.getInstanceByDom(e.target);
            if (c) c.resize();
          }
        })
      : null;

  /**
   * Draw a chart. Updates are merged into the previous option so that a poll
   * animates from the old values; replace (the query chart, whose type can
   * change between bar and line) starts from a clean option.
   */
  function draw(id, spec, replace = false) {
    const first = !state.charts[id];
    const c = chart(id);
    if (c) c.setOption(Charts.option({ ...spec, animate: !first, width: $(id).clientWidth }), { notMerge: replace || first });
    return c;
  }

  function touchUpdated() {
    setText('last-update', state.clock.time(state.clock.nowMs()));
  }

  /* ── Language ────────────────────────────────────────────────────────── */

  function storedLang() {
    try {
      return window.localStorage.getItem(I18N.STORAGE_KEY);
    } catch (_) {
      return null; // storage disabled: fall back to the browser's languages
    }
  }

  function setLang(lang, remember) {
    state.lang = lang;
    document.documentElement.lang = lang;
    I18N.apply(document, lang);
    if (remember) {
      try {
        window.localStorage.setItem(I18N.STORAGE_KEY, lang);
      } catch (_) {
        /* not remembered; the switch still works for this page */
      }
    }
    renderAll();
  }

  /* ── Clock ───────────────────────────────────────────────────────────── */

  function tick() {
    const c = state.clock;
    setText('clock', c.time());
    const zone = c.zoneLabel();
    const el = $('clock-zone');
    el.classList.toggle('browser', !zone);
    setText('clock-zone', zone || t('clock.browser'));
  }

  /* ── Summary cards (+ clock, today badge, year label) ───────────────── */

  async function loadSummary() {
    try {
      const { body } = await api('api/summary');
      state.clock.update(body);
      state.data.summary = body;
      state.errors.summary = null;
      touchUpdated();
    } catch (e) {
      state.errors.summary = e;
    }
    renderSummary();
    tick();
    renderBanners();
    renderHours(); // which hours are still to come depends on the clock
  }

  function renderSummary() {
    const s = state.data.summary;
    showError('err-summary', state.errors.summary);
    const today = state.clock.today();
    setText('today-lbl', today);
    setText('s-year-sub', t('card.yearSub', { year: today.slice(0, 4) }));
    if (!s) return;
    for (const period of ['today', 'month', 'year']) {
      const p = s[period] || {};
      setText(`s-${period}-total`, fmtField(p, 'total'));
      if (period !== 'year') {
        setText(`s-${period}-up`, fmtField(p, 'up'));
        setText(`s-${period}-down`, fmtField(p, 'down'));
      }
    }
    setText('s-up2', fmtField(s.today, 'up'));
    setText('s-down2', fmtField(s.today, 'down'));
  }

  /* ── Billing-cycle card (GET /api/cycle; only when a quota is set) ─────── */

  async function loadCycle() {
    try {
      state.data.cycle = (await api('api/cycle')).body;
      state.errors.cycle = null;
      // UNITS: every size on the page as the API's *_fmt strings print them.
      if (Core.setUnits(state.data.cycle.units)) renderAll();
    } catch (e) {
      // The card is optional: on failure it keeps its last figures (or stays away).
      state.errors.cycle = e;
    }
    renderCycle();
  }

  function renderCycle() {
    const c = state.data.cycle;
    let card = $('s-billing');
    if (!c || !c.enabled) {
      if (card) card.remove();
      return;
    }
    if (!card) {
      const tpl = $('tpl-billing');
      $('summary-row').append(tpl.content.cloneNode(true));
      card = $('s-billing');
      I18N.apply(card, state.lang);
    }
    const pct = typeof c.percent === 'number' ? c.percent : 0;
    const over = c.projection && c.projection.exceeds_quota;
    card.classList.toggle('over', pct >= 100);
    card.classList.toggle('warn', pct < 100 && (pct >= 80 || Boolean(over)));
    setText('b-range', `${c.start_date.slice(5)} – ${c.end_date.slice(5)}`);
    setText('b-used', c.used_fmt);
    setText('b-quota', c.quota_fmt || '--');
    $('b-fill').style.width = `${Math.min(100, Math.max(0, pct))}%`;
    $('b-bar').setAttribute('aria-valuenow', String(Math.round(pct)));
    setText('b-percent', t('billing.used', { p: `${pct.toFixed(1)}%` }));
    setText('b-days', t('billing.daysLeft', { n: c.days_left }));
    const projection = $('b-projection');
    setText('b-projection', c.projection.fmt + (over ? t('billing.overQuota') : ''));
    projection.classList.toggle('bad', Boolean(over));
    setText('b-budget', c.safe_daily_budget_fmt || '--');
    const up = c.upload_today || {};
    $('b-upload-line').hidden = up.limit == null;
    if (up.limit != null) {
      setText('b-upload', `${up.fmt} / ${up.limit_fmt}`);
      $('b-upload').classList.toggle('bad', Boolean(up.exceeded));
    }
  }

  /* ── Header speed ────────────────────────────────────────────────────── */

  async function loadRealtime() {
    try {
      const { body } = await api('api/realtime');
      state.data.realtime = body;
      state.errors.realtime = null;
    } catch (e) {
      state.errors.realtime = e;
    }
    renderRealtime();
    renderBanners();
  }

  function renderRealtime() {
    const r = state.data.realtime;
    if (state.errors.realtime || !r) {
      for (const id of ['hdr-up', 'hdr-down']) setText(id, '--');
      for (const id of ['hdr-up-u', 'hdr-down-u']) setText(id, '');
      return;
    }
    const [uv, uu] = fmtSpeed(r.current_up_bps);
    const [dv, du] = fmtSpeed(r.current_down_bps);
    setText('hdr-up', uv);
    setText('hdr-up-u', uu);
    setText('hdr-down', dv);
    setText('hdr-down-u', du);
  }

  /* ── Capture and storage status, health ─────────────────────────────── */

  async function loadStatus() {
    const [st, hl] = await Promise.allSettled([api('api/status'), api('api/health', [503])]);
    if (st.status === 'fulfilled') {
      state.data.status = st.value.body;
      state.errors.status = null;
    } else {
      state.data.status = null;
      state.errors.status = st.reason;
    }
    if (hl.status === 'fulfilled') {
      state.data.health = { ...hl.value.body, httpStatus: hl.value.status };
      state.errors.health = null;
    } else {
      state.data.health = null;
      state.errors.health = hl.reason;
    }
    renderStatus();
    renderBanners();
  }

  function renderStatus() {
    const s = state.data.status;
    const strip = $('status-strip');
    const note = $('st-note');
    const items = strip.querySelectorAll('.st-group');
    if (!s) {
      for (const el of items) el.hidden = true;
      const e = state.errors.status;
      note.hidden = !e;
      if (e) note.textContent = e.status === 404 ? t('status.unavailable') : t('error.load', { msg: e.text() });
      setText('ft-version', '');
      return;
    }
    for (const el of items) el.hidden = false;
    note.hidden = true;

    const cap = s.capture || {};
    const backend = s.backend === 'ebpf' ? 'eBPF' : s.backend === 'afpacket' ? 'AF_PACKET' : s.backend || '?';
    const capParts = [backend, s.attach_mode, s.iface].filter(Boolean);
    // "running" and "down" as the contract says; "starting" (and anything newer) is not an alarm.
    const capState = { running: 'ok', down: 'bad' }[cap.state] || 'warn';
    const known = { running: 'status.running', starting: 'status.starting', down: 'status.down' }[cap.state];
    capParts.push(known ? t(known) : String(cap.state || '?'));
    setText('st-capture-v', capParts.join(' · '));
    $('st-capture').dataset.state = capState;
    $('st-capture').title = cap.error || '';

    // Whether counts survive a daemon restart (durable pins); absent in older daemons: hide it.
    const durable = cap.counters_survive_restart;
    $('st-durable').hidden = typeof durable !== 'boolean';
    setText('st-durable-v', durable ? t('status.durableYes') : t('status.durableNo'));
    $('st-durable-v').classList.toggle('warn', durable === false);
    $('st-durable').title = cap.counters_survive_restart_reason || '';

    const drops = Number(cap.drops) || 0;
    setText('st-drops', fmtCount(drops));
    $('st-drops').classList.toggle('warn', drops > 0);

    const errs = cap.errors && typeof cap.errors === 'object' ? cap.errors : {};
    const names = Object.keys(errs).sort();
    const total = names.reduce((a, k) => a + (Number(errs[k]) || 0), 0);
    setText('st-errors-v', fmtCount(total));
    $('st-errors-v').classList.toggle('warn', total > 0);
    const list = $('st-errors-list');
    list.replaceChildren();
    for (const k of names.length ? names : [null]) {
      const li = document.createElement('li');
      const a = document.createElement('span');
      const b = document.createElement('span');
      a.textContent = k === null ? t('status.errorsNone') : k;
      b.textContent = k === null ? '' : fmtCount(errs[k]);
      li.append(a, b);
      list.append(li);
    }

    const sto = s.storage || {};
    const stoOk = sto.state === 'ok';
    setText('st-storage-v', stoOk ? t('status.ok') : t('status.failing'));
    $('st-storage').dataset.state = stoOk ? 'ok' : 'bad';
    $('st-storage').title = sto.error || '';

    let flush = t('status.never');
    const fl = sto.last_flush ? Date.parse(sto.last_flush) : NaN;
    if (Number.isFinite(fl)) {
      const c = state.clock;
      flush = c.today(fl) === c.today() ? c.time(fl) : `${c.today(fl)} ${c.time(fl)}`;
    }
    setText('st-flush', flush);
    setText('st-db', sto.db_size_bytes !== undefined && sto.db_size_bytes !== null ? fmtBytes(sto.db_size_bytes) : '--');
    $('st-db').title = sto.db_path || '';
    setText('st-uptime', s.uptime_s !== undefined ? fmtDuration(s.uptime_s) : '--');
    setText('ft-version', s.version ? ` · v${s.version}` : '');
  }

  /** The red banners and the LIVE badge, from every source's latest state. */
  function renderBanners() {
    const msgs = [];
    if (state.chartsFailed) msgs.push(t('banner.charts', { src: state.chartsFailed }));
    const unreachable = ['summary', 'realtime'].map((k) => state.errors[k]).find((e) => e && e.status === 0);
    const s = state.data.status;
    const h = state.data.health;
    if (unreachable) {
      msgs.push(t('banner.offline', { msg: unreachable.text() }));
    } else {
      const capDown = s && s.capture && s.capture.state === 'down';
      const stoBad = s && s.storage && s.storage.state && s.storage.state !== 'ok';
      if (capDown) msgs.push(t('banner.captureDown', { msg: s.capture.error || t('banner.noReason') }));
      if (stoBad) msgs.push(t('banner.storageFailing', { msg: s.storage.error || t('banner.noReason') }));
      // Health adds a banner only when the status does not already explain it.
      if (h && h.status && h.status !== 'ok' && !capDown && !stoBad) {
        msgs.push(t('banner.unhealthy', { msg: h.reason || h.status }));
      }
    }
    const box = $('banners');
    box.replaceChildren(
      ...msgs.map((m) => {
        const d = document.createElement('div');
        d.className = 'banner';
        d.textContent = m;
        return d;
      }),
    );
    box.hidden = msgs.length === 0;

    const badge = $('live-badge');
    let live = 'pending';
    let text = t('live');
    if (unreachable) {
      live = 'down';
      text = t('live.offline');
    } else if (s && s.capture && s.capture.state === 'down') {
      live = 'down';
      text = t('live.down');
    } else if (s && s.capture && s.capture.state && s.capture.state !== 'running') {
      live = 'pending'; // starting
    } else if (state.data.realtime && !state.errors.realtime) {
      live = 'ok';
    }
    badge.dataset.state = live;
    setText('live-text', text);
  }

  /* ── History charts ──────────────────────────────────────────────────── */

  const names = () => ({ up: t('series.up'), down: t('series.down'), total: t('qr.total') });

  async function loadHistory() {
    await Promise.all([
      load30(),
      load12(),
    ]);
  }

  async function load30() {
    try {
      state.data.d30 = (await api('api/history/30days')).body;
      state.errors.d30 = null;
      touchUpdated();
    } catch (e) {
      state.errors.d30 = e;
    }
    render30();
  }

  function render30() {
    showError('err-30days', state.errors.d30);
    const rows = (state.data.d30 && state.data.d30.days) || [];
    if (!state.data.d30) return;
    const { labels, titles } = Core.seriesLabels(rows, 'day');
    draw('chart-30days', {
      kind: 'bar', labels, titles, names: names(), rotate: true,
      up: rows.map((r) => Number(r.up_bytes) || 0),
      down: rows.map((r) => Number(r.down_bytes) || 0),
      grid: { top: 28, bottom: 38, left: 68, right: 16 },
    });
  }

  async function load12() {
    try {
      state.data.m12 = (await api('api/history/12months')).body;
      state.errors.m12 = null;
      touchUpdated();
    } catch (e) {
      state.errors.m12 = e;
    }
    render12();
  }

  function render12() {
    showError('err-12months', state.errors.m12);
    if (!state.data.m12) return;
    const rows = state.data.m12.months || [];
    const { labels, titles } = Core.seriesLabels(rows, 'month');
    draw('chart-12months', {
      kind: 'bar', labels, titles, names: names(),
      up: rows.map((r) => Number(r.up_bytes) || 0),
      down: rows.map((r) => Number(r.down_bytes) || 0),
      grid: { top: 28, bottom: 36, left: 68, right: 16 },
    });
  }

  /* ── Today by hour and top remote IPs ───────────────────────────────── */

  async function loadToday() {
    await Promise.all([loadHours(), loadTop(), loadServices()]);
  }

  async function loadHours() {
    try {
      state.data.hours = (await api('api/history/today_hours')).body;
      state.errors.hours = null;
      touchUpdated();
    } catch (e) {
      state.errors.hours = e;
    }
    renderHours();
  }

  function renderHours() {
    showError('err-today', state.errors.hours);
    if (!state.data.hours) return;
    const c = state.clock;
    const current = c.known ? c.parts().H : null;
    const p = Core.todayHourPoints(state.data.hours.hours, current);
    draw('chart-today-hours', {
      kind: 'line', labels: p.labels, titles: p.titles, up: p.up, down: p.down, names: names(),
      // Every third hour as in the seed; on a phone ECharts thins them out itself.
      interval: $('chart-today-hours').clientWidth < 560 ? 'auto' : 2,
      grid: { top: 28, bottom: 36, left: 68, right: 16 },
    });
  }

  async function loadTop() {
    try {
      state.data.top = (await api('api/top_ips?limit=10')).body;
      state.errors.top = null;
      touchUpdated();
    } catch (e) {
      state.errors.top = e;
    }
    renderTop();
  }

  /** A cell of a ranked table. */
  function rankCell(cls, text) {
    const td = document.createElement('td');
    td.className = cls;
    td.textContent = text;
    return td;
  }

  /**
   * One ranked table (top remotes, top services): rank, a label cell, bytes with the up/down split,
   * and a bar relative to #1 (as in the seed: the share of #1 is 100 %).
   * opts: errId, bodyId, error, data (the response, or null while loading), items (the rows),
   * label (row -> the second cell), bytes (row -> total), fmt (row -> total as text).
   */
  function renderRanked(opts) {
    showError(opts.errId, opts.error);
    const body = $(opts.bodyId);
    const message = (key) => {
      const tr = document.createElement('tr');
      const td = rankCell('ip-msg', t(key));
      td.colSpan = 4;
      tr.append(td);
      body.replaceChildren(tr);
    };
    if (!opts.data) {
      if (!opts.error) message('top.loading');
      else body.replaceChildren();
      return;
    }
    const items = opts.items.slice(0, 10);
    if (!items.length) {
      message('top.empty');
      return;
    }
    const max = Math.max(1, Number(opts.bytes(items[0])) || 0);
    const rows = items.map((x, i) => {
      const tr = document.createElement('tr');
      const rank = ['gold', 'silver', 'bronze'][i] || '';
      tr.append(rankCell(`ip-rank ${rank}`, String(i + 1)), opts.label(x));
      const bytes = rankCell('ip-bytes', opts.fmt(x));
      if (x.up_bytes !== undefined && x.down_bytes !== undefined) {
        const split = document.createElement('span');
        split.className = 'ip-split';
        const u = document.createElement('span');
        u.className = 'up';
        u.textContent = '▲';
        const d = document.createElement('span');
        d.className = 'down';
        d.textContent = '▼';
        split.append(u, fmtBytes(x.up_bytes), d, fmtBytes(x.down_bytes));
        bytes.append(split);
      }
      tr.append(bytes);
      const barTd = rankCell('ip-bar-wrap', '');
      const bar = document.createElement('div');
      bar.className = 'ip-bar';
      const fill = document.createElement('div');
      fill.className = 'ip-bar-fill';
      fill.style.width = `${Math.round(((Number(opts.bytes(x)) || 0) / max) * 100)}%`;
      bar.append(fill);
      barTd.append(bar);
      tr.append(barTd);
      return tr;
    });
    body.replaceChildren(...rows);
  }

  function renderTop() {
    const data = state.data.top;
    renderRanked({
      errId: 'err-top', bodyId: 'top-ips', error: state.errors.top, data,
      items: (data && data.top_ips) || [],
      label: (ip) => {
        const addr = rankCell('ip-addr', '');
        // Long IPv6 addresses may wrap, but only after a colon.
        String(ip.ip).split(':').forEach((part, k) => {
          if (k > 0) addr.append(':', document.createElement('wbr'));
          addr.append(part);
        });
        return addr;
      },
      bytes: (ip) => ip.bytes,
      fmt: (ip) => (typeof ip.bytes_fmt === 'string' ? ip.bytes_fmt : fmtBytes(ip.bytes)),
    });
  }

  async function loadServices() {
    try {
      state.data.services = (await api('api/services?limit=10')).body;
      state.errors.services = null;
      touchUpdated();
    } catch (e) {
      state.errors.services = e;
    }
    renderServices();
  }

  /** "Jellyfin · tcp/8096 · server", or "tcp/443 · client" when the port has no name. */
  function serviceLabel(s) {
    const where = s.port ? `${s.proto}/${s.port}` : String(s.proto);
    const role = t(`svc.${['server', 'client'].includes(s.role) ? s.role : 'none'}`);
    return [s.name, where, role].filter((x) => x).join(' · ');
  }

  function renderServices() {
    const data = state.data.services;
    renderRanked({
      errId: 'err-services', bodyId: 'top-services', error: state.errors.services, data,
      items: (data && data.services) || [],
      label: (x) => rankCell('ip-addr svc-name', serviceLabel(x)),
      bytes: (x) => x.total_bytes,
      fmt: (x) => (typeof x.total_fmt === 'string' ? x.total_fmt : fmtBytes(x.total_bytes)),
    });
  }

  /* ── Custom query ────────────────────────────────────────────────────── */

  function setGran(g) {
    state.gran = g;
    for (const b of document.querySelectorAll('.gran-btn')) {
      const on = b.dataset.gran === g;
      b.classList.toggle('active', on);
      b.setAttribute('aria-pressed', String(on));
    }
  }

  function setQuick(key) {
    state.quick = key;
    for (const b of document.querySelectorAll('.shortcut-btn')) b.classList.toggle('active', b.dataset.quick === key);
  }

  function applyQuick(key) {
    const r = quickRange(key, state.clock.today());
    $('q-start').value = r.start;
    $('q-end').value = r.end;
    setGran(r.gran);
    setQuick(key);
    return runQuery();
  }

  function queryError(message) {
    const el = $('err-query');
    el.textContent = message;
    el.hidden = false;
    $('query-result').classList.add('stale');
  }

  async function runQuery() {
    const start = $('q-start').value;
    const end = $('q-end').value;
    const badStart = !isDate(start);
    const badEnd = !isDate(end);
    $('q-start').setAttribute('aria-invalid', String(badStart || (!badEnd && start > end)));
    $('q-end').setAttribute('aria-invalid', String(badEnd || (!badStart && start > end)));
    if (badStart || badEnd) return queryError(t('query.errDates'));
    if (start > end) return queryError(t('query.errOrder'));

    const gran = state.gran;
    const seq = ++state.querySeq;
    const btn = $('query-btn');
    btn.setAttribute('aria-busy', 'true');
    setText('query-btn-text', t('query.running'));
    try {
      const q = new URLSearchParams({ start, end, granularity: gran });
      const { body } = await api(`api/query?${q}`);
      if (seq !== state.querySeq) return; // a newer query replaced this one
      if (!body.summary || !Array.isArray(body.series)) throw new ApiError('api/query', 200, 'unexpected response', 'http');
      state.data.query = { body, start, end, gran };
      state.errors.query = null;
      $('err-query').hidden = true;
      renderQuery();
    } catch (e) {
      if (seq !== state.querySeq) return;
      state.errors.query = e;
      queryError(t('query.failed', { msg: e instanceof ApiError ? e.text() : String(e.message || e) }));
    } finally {
      if (seq === state.querySeq) {
        btn.removeAttribute('aria-busy');
        setText('query-btn-text', t('query.run'));
      }
    }
  }

  function renderQuery() {
    const q = state.data.query;
    if (!q) return;
    const box = $('query-result');
    box.hidden = false;
    box.classList.remove('stale');
    box.dataset.start = q.start;
    box.dataset.end = q.end;
    box.dataset.gran = q.gran;
    const s = q.body.summary;
    setText('qr-total', fmtField(s, 'total'));
    setText('qr-up', fmtField(s, 'up'));
    setText('qr-down', fmtField(s, 'down'));
    setText('qr-period', `${q.start}  →  ${q.end}  ·  ${t(`gran.${q.gran}`)}`);
    const rows = q.body.series;
    const { labels, titles } = Core.seriesLabels(rows, q.gran);
    // Hours and days still to come (the API zero-fills them) are left empty, not drawn as zero.
    const c = state.clock;
    const now = c.known ? `${c.today()} ${String(c.parts().H).padStart(2, '0')}:00:00` : null;
    const future = (r) => now !== null && (q.gran === 'hour' ? String(r.hour_ts) > now : q.gran === 'day' && String(r.day) > now.slice(0, 10));
    draw('chart-query', {
      kind: q.gran === 'hour' ? 'line' : 'bar', labels, titles, names: names(), rotate: true,
      up: rows.map((r) => (future(r) ? null : Number(r.up_bytes) || 0)),
      down: rows.map((r) => (future(r) ? null : Number(r.down_bytes) || 0)),
      grid: { top: 30, bottom: 32, left: 70, right: 16 },
    }, true);
  }

  /** Date inputs: min from the first stored day, max the later of the last stored day and today. */
  function applyDateLimits(range) {
    if (!range) return; // only the pickers' limits depend on it; the inputs work without
    const today = state.clock.today();
    if (isDate(range.min)) $('q-start').min = $('q-end').min = range.min;
    const max = isDate(range.max) && range.max > today ? range.max : today;
    $('q-start').max = $('q-end').max = max;
  }

  /* ── Everything at once (language switch) ───────────────────────────── */

  function renderAll() {
    tick();
    renderSummary();
    renderCycle();
    renderRealtime();
    renderStatus();
    renderBanners();
    render30();
    render12();
    renderHours();
    renderTop();
    renderServices();
    if (state.errors.query && !$('err-query').hidden) {
      const e = state.errors.query;
      queryError(t('query.failed', { msg: e instanceof ApiError ? e.text() : String(e.message || e) }));
    }
    renderQuery();
    if (!$('query-btn').hasAttribute('aria-busy')) setText('query-btn-text', t('query.run'));
  }

  /* ── Polling ─────────────────────────────────────────────────────────── */

  /** Run fn now and then every ms, never overlapping; paused while the tab is hidden. */
  function every(ms, fn) {
    let timer = null;
    let running = false;
    const run = async () => {
      if (running) return; // the run in flight schedules the next one
      clearTimeout(timer);
      if (document.hidden) {
        timer = setTimeout(run, ms);
        return;
      }
      running = true;
      try {
        await fn();
      } finally {
        running = false;
        timer = setTimeout(run, ms);
      }
    };
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden) run();
    });
    return run;
  }

  /* ── Start ───────────────────────────────────────────────────────────── */

  function bind() {
    $('lang-btn').addEventListener('click', () => setLang(state.lang === 'zh-CN' ? 'en' : 'zh-CN', true));
    $('query-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      runQuery();
    });
    for (const b of document.querySelectorAll('.gran-btn')) {
      b.addEventListener('click', () => {
        setGran(b.dataset.gran);
        setQuick(null);
        runQuery();
      });
    }
    for (const b of document.querySelectorAll('.shortcut-btn')) {
      b.addEventListener('click', () => applyQuick(b.dataset.quick));
    }
    for (const id of ['q-start', 'q-end']) $(id).addEventListener('input', () => setQuick(null));
    if (!resizer) {
      window.addEventListener('resize', () => {
        for (const c of Object.values(state.charts)) c.resize();
      });
    }
  }

  /**
   * ECharts: preloaded by index.html, run from here once the first API
   * requests are on their way (or after 1.5 s at the latest); every chart is
   * drawn as soon as it is there.
   */
  const ECHARTS_SRC = 'static/vendor/echarts.common.min.js';
  let startCharts = null;
  const chartsReady = new Promise((resolve) => {
    startCharts = () => {
      if (startCharts.done) return;
      startCharts.done = true;
      const s = document.createElement('script');
      s.src = ECHARTS_SRC;
      performance.mark('sentinel:echarts-start');
      s.onload = () => {
        performance.mark('sentinel:echarts-loaded');
        resolve(Boolean(window.echarts));
      };
      s.onerror = () => resolve(false);
      document.head.append(s);
    };
  }).then((ok) => {
    if (!ok) {
      // The vendored file is part of the binary; if it is missing the build is broken. Say so.
      state.chartsFailed = ECHARTS_SRC;
      renderBanners();
      return;
    }
    render30();
    render12();
    renderHours();
    renderQuery();
    performance.mark('sentinel:charts-drawn');
  });

  async function init() {
    performance.mark('sentinel:start');
    setLang(I18N.detect(navigator.languages || [navigator.language], storedLang()), false);
    bind();
    setGran('day');
    setInterval(tick, 1000);

    // Every source loads in parallel and handles and shows its own failure, so
    // none of these promises rejects. Only the default query waits: for the
    // summary, which sets the NAS clock that "today" comes from.
    const range = api('api/date_range').then((r) => r.body, () => null);
    let clockKnown;
    const summary = new Promise((resolve) => (clockKnown = resolve));
    const firsts = [
      every(PERIOD.summary, () => Promise.all([loadSummary().then(clockKnown), loadStatus(), loadCycle()]))(),
      every(PERIOD.realtime, loadRealtime)(),
      every(PERIOD.today, loadToday)(),
      every(PERIOD.history, loadHistory)(),
      chartsReady,
    ];
    setTimeout(startCharts, 1500);
    await summary;
    performance.mark('sentinel:clock-known');
    firsts.push(applyQuick('30days')); // the seed's default range, run at once (D40)
    startCharts(); // the query's request is out: now the charts library may take the CPU
    applyDateLimits(await range);
    await Promise.all(firsts);
    // First render: every panel has its first data (or its error) on screen.
    performance.mark('sentinel:first-render');
    document.documentElement.dataset.ready = 'true';
  }

  init();
})();
