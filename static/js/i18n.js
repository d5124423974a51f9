/*
 * i18n.js: the dashboard's two languages, zh-CN (the seed's) and English.
 *
 * The language is, in order: the one the user picked (localStorage
 * "sentinel.lang"), else the first of the browser's languages that we have
 * (any "zh*" → zh-CN, any "en*" → en), else English.
 * Markup carries data-i18n="key" (text) and data-i18n-attr="attr:key,…".
 */
(function (global) {
  'use strict';

  const STORAGE_KEY = 'sentinel.lang';

  const STRINGS = {
    'zh-CN': {
      'brand.sub': 'PUBLIC NETWORK TRAFFIC MONITOR',
      'live': 'LIVE',
      'live.offline': 'OFFLINE',
      'live.down': 'CAPTURE DOWN',
      'clock.browser': '浏览器时间（未取得 NAS 时区）',
      'clock.title': 'NAS 本地时间',
      'lang.other': 'EN',
      'lang.switch': 'Switch to English',
      'speed.up': '上行速率',
      'speed.down': '下行速率',

      'section.overview': '流量总览',
      'card.today': '今日总流量',
      'card.month': '本月总流量',
      'card.year': '本年总流量',
      'card.yearSub': '{year}年累计',
      'card.todayUp': '今日上行',
      'card.todayDown': '今日下行',
      'billing.title': '计费周期',
      'billing.projection': '预计',
      'billing.budget': '每日可用',
      'billing.uploadToday': '今日上传',
      'billing.daysLeft': '剩余 {n} 天',
      'billing.overQuota': '（超出套餐）',
      'billing.used': '已用 {p}',

      'query.title': '自定义日期查询',
      'query.start': '开始日期',
      'query.end': '结束日期',
      'query.gran': '统计粒度',
      'gran.hour': '小时',
      'gran.day': '按天',
      'gran.month': '按月',
      'query.run': '查询',
      'query.running': '查询中…',
      'query.quick': '快捷：',
      'quick.today': '今天',
      'quick.yesterday': '昨天',
      'quick.7days': '近7天',
      'quick.30days': '近30天',
      'quick.thisMonth': '本月',
      'quick.lastMonth': '上月',
      'quick.thisYear': '今年',
      'qr.total': '总流量',
      'qr.up': '▲ 上行',
      'qr.down': '▼ 下行',
      'query.errDates': '请选择有效的开始和结束日期（YYYY-MM-DD）',
      'query.errOrder': '开始日期晚于结束日期',
      'query.failed': '查询失败：{msg}',

      'panel.30days': '最近30天',
      'panel.12months': '近12个月',
      'panel.today': '今日24小时分布',
      'panel.top': '公网IP流量排行',
      'panel.topToday': '今日',
      'top.ip': 'IP 地址',
      'top.bytes': '流量',
      'top.share': '占比',
      'top.loading': '加载中…',
      'top.empty': '暂无数据',
      'panel.services': '服务流量排行',
      'svc.service': '服务',
      'svc.server': '服务端',
      'svc.client': '客户端',
      'svc.none': '无端口',
      'series.up': '上行',
      'series.down': '下行',

      'status.capture': '采集',
      'status.running': '运行中',
      'status.starting': '启动中',
      'status.down': '已停止',
      'status.drops': '丢包',
      'status.durable': '重启保留',
      'status.durableYes': '是',
      'status.durableNo': '否',
      'status.errors': '解析错误',
      'status.storage': '存储',
      'status.ok': '正常',
      'status.failing': '写入失败',
      'status.lastFlush': '上次写入',
      'status.never': '尚未写入',
      'status.db': '数据库',
      'status.uptime': '已运行',
      'status.unavailable': '服务未提供采集状态（/api/status）',
      'status.errorsNone': '无错误',

      'banner.captureDown': '流量采集已停止：{msg}',
      'banner.storageFailing': '数据库写入失败：{msg}（数据保留在内存中，稍后重试）',
      'banner.unhealthy': '服务状态异常：{msg}',
      'banner.offline': '无法连接 NetTraffic Sentinel 服务：{msg}',
      'banner.noReason': '未说明原因',
      'banner.charts': '图表组件 {src} 加载失败，图表无法显示',

      'error.load': '加载失败：{msg}',
      'error.network': '网络错误，服务无响应',
      'error.badJson': '服务返回的不是有效的 JSON',

      'footer.updated': '更新时间',
    },
    en: {
      'brand.sub': 'PUBLIC NETWORK TRAFFIC MONITOR',
      'live': 'LIVE',
      'live.offline': 'OFFLINE',
      'live.down': 'CAPTURE DOWN',
      'clock.browser': 'browser time (NAS time zone unknown)',
      'clock.title': 'NAS local time',
      'lang.other': '中文',
      'lang.switch': '切换到中文',
      'speed.up': 'Upload speed',
      'speed.down': 'Download speed',

      'section.overview': 'Traffic overview',
      'card.today': 'Today',
      'card.month': 'This month',
      'card.year': 'This year',
      'card.yearSub': '{year} year to date',
      'card.todayUp': 'Upload today',
      'card.todayDown': 'Download today',
      'billing.title': 'Billing cycle',
      'billing.projection': 'Projected',
      'billing.budget': 'Safe per day',
      'billing.uploadToday': 'Upload today',
      'billing.daysLeft': '{n} days left',
      'billing.overQuota': ' (over quota)',
      'billing.used': '{p} used',

      'query.title': 'Custom date range',
      'query.start': 'Start date',
      'query.end': 'End date',
      'query.gran': 'Granularity',
      'gran.hour': 'Hour',
      'gran.day': 'Day',
      'gran.month': 'Month',
      'query.run': 'Query',
      'query.running': 'Querying…',
      'query.quick': 'Quick:',
      'quick.today': 'Today',
      'quick.yesterday': 'Yesterday',
      'quick.7days': 'Last 7 days',
      'quick.30days': 'Last 30 days',
      'quick.thisMonth': 'This month',
      'quick.lastMonth': 'Last month',
      'quick.thisYear': 'This year',
      'qr.total': 'Total',
      'qr.up': '▲ Upload',
      'qr.down': '▼ Download',
      'query.errDates': 'Choose a valid start and end date (YYYY-MM-DD)',
      'query.errOrder': 'The start date is after the end date',
      'query.failed': 'Query failed: {msg}',

      'panel.30days': 'Last 30 days',
      'panel.12months': 'Last 12 months',
      'panel.today': 'Today by hour',
      'panel.top': 'Top remote IPs',
      'panel.topToday': 'TODAY',
      'top.ip': 'IP address',
      'top.bytes': 'Traffic',
      'top.share': 'Share',
      'top.loading': 'LOADING...',
      'top.empty': 'NO DATA YET',
      'panel.services': 'Traffic by service',
      'svc.service': 'Service',
      'svc.server': 'server',
      'svc.client': 'client',
      'svc.none': 'no ports',
      'series.up': 'Upload',
      'series.down': 'Download',

      'status.capture': 'Capture',
      'status.running': 'running',
      'status.starting': 'starting',
      'status.down': 'down',
      'status.drops': 'drops',
      'status.durable': 'survives restart',
      'status.durableYes': 'yes',
      'status.durableNo': 'no',
      'status.errors': 'parse errors',
      'status.storage': 'Storage',
      'status.ok': 'ok',
      'status.failing': 'failing',
      'status.lastFlush': 'last flush',
      'status.never': 'not yet',
      'status.db': 'DB',
      'status.uptime': 'uptime',
      'status.unavailable': 'the service reports no capture status (/api/status)',
      'status.errorsNone': 'no errors',

      'banner.captureDown': 'Traffic capture is down: {msg}',
      'banner.storageFailing': 'Database writes are failing: {msg} (data is kept in memory and retried)',
      'banner.unhealthy': 'Service unhealthy: {msg}',
      'banner.offline': 'Cannot reach the NetTraffic Sentinel service: {msg}',
      'banner.noReason': 'no reason given',
      'banner.charts': '{src} did not load: charts are unavailable',

      'error.load': 'Failed to load: {msg}',
      'error.network': 'network error, the service does not answer',
      'error.badJson': 'the service did not return valid JSON',

      'footer.updated': 'UPDATED',
    },
  };

  const LANGS = Object.keys(STRINGS);

  function normalize(tag) {
    const t = String(tag || '').toLowerCase();
    if (t.startsWith('zh')) return 'zh-CN';
    if (t.startsWith('en')) return 'en';
    return null;
  }

  /** The language to use: stored choice, else browser languages, else English. */
  function detect(browserLangs, stored) {
    if (LANGS.includes(stored)) return stored;
    for (const l of browserLangs || []) {
      const n = normalize(l);
      if (n) return n;
    }
    return 'en';
  }

  function t(lang, key, vars) {
    const table = STRINGS[lang] || STRINGS['zh-CN'];
    let s = key in table ? table[key] : STRINGS['zh-CN'][key];
    if (s === undefined) s = key; // a missing key shows itself rather than nothing
    if (vars) s = s.replace(/\{(\w+)\}/g, (m, k) => (k in vars ? String(vars[k]) : m));
    return s;
  }

  /** Translate every [data-i18n] and [data-i18n-attr] element under root. */
  function apply(root, lang) {
    for (const el of root.querySelectorAll('[data-i18n]')) {
      el.textContent = t(lang, el.dataset.i18n);
    }
    for (const el of root.querySelectorAll('[data-i18n-attr]')) {
      for (const pair of el.dataset.i18nAttr.split(',')) {
        const [attr, key] = pair.split(':').map((s) => s.trim());
        if (attr && key) el.setAttribute(attr, t(lang, key));
      }
    }
  }

  global.SentinelI18n = { STORAGE_KEY, STRINGS, LANGS, detect, t, apply };
})(typeof window !== 'undefined' ? window : globalThis);
