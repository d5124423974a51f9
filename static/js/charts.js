/*
 * charts.js: ECharts options in the seed's style (reference 5.5): up in amber,
 * down in teal, stacked gradient bars, smooth area lines, dark tooltips.
 *
 * Fixes the seed's legend colours (D44): every series sets itemStyle.color to
 * its own colour, so the legend icon of a line series is amber/teal too, not
 * ECharts' default palette.
 */
(function (global) {
  'use strict';

  const { fmtBytes } = global.SentinelCore;

  const C = {
    green: '#3ddc84', teal: '#00c8b4', amber: '#f5a623', red: '#ff5c5c', blue: '#4da6ff',
    text: '#c8ddd6', text2: '#6b897e', text3: '#2e4840',
    grid: 'rgba(31,46,40,0.8)',
    mono: "ui-monospace, 'SFMono-Regular', 'DejaVu Sans Mono', Menlo, Consolas, monospace",
  };
  const UP = C.amber;
  const DOWN = C.teal;

  const axisBase = () => ({
    axisLine: { lineStyle: { color: C.text3 } },
    axisTick: { lineStyle: { color: C.text3 } },
    axisLabel: { color: C.text2, fontFamily: C.mono, fontSize: 10 },
    splitLine: { lineStyle: { color: C.grid, type: 'dashed' } },
  });

  function esc(s) {
    return String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
  }

  /**
   * Axis tooltip: a title row, then "<name>: <bytes>" per series in its colour,
   * then the total. Styled by classes of style.css (.tt-*): the page's
   * Content-Security-Policy allows no inline style attributes.
   */
  function tooltip(titles, totalLabel) {
    return {
      trigger: 'axis',
      backgroundColor: '#0f1612ee',
      borderColor: '#1f2e28',
      textStyle: { color: C.text, fontFamily: C.mono, fontSize: 12 },
      extraCssText: 'border-radius:6px;box-shadow:0 4px 20px rgba(0,0,0,0.5);',
      formatter(params) {
        if (!params.length) return '';
        const i = params[0].dataIndex;
        const title = titles && titles[i] !== undefined ? titles[i] : params[0].axisValue;
        let sum = 0;
        let any = false;
        let rows = '';
        for (const p of params) {
          const v = p.value;
          const missing = v === null || v === undefined || v === '-';
          if (!missing) {
            sum += Number(v) || 0;
            any = true;
          }
          rows += `<div class="${p.seriesIndex === 0 ? 'tt-up' : 'tt-down'}">${esc(p.seriesName)}: ${missing ? '--' : fmtBytes(v)}</div>`;
        }
        const total = any ? `<div class="tt-total">${esc(totalLabel)}: ${fmtBytes(sum)}</div>` : '';
        return `<div class="tt-title">${esc(title)}</div>${rows}${total}`;
      },
    };
  }

  /**
   * A y axis in round binary steps (256M, 512M, 768M, 1G …) instead of
   * ECharts' decimal ones, which give labels like "4.7G" and "9.3G".
   */
  const STEPS = [0.1, 0.2, 0.25, 0.5, 1, 2, 2.5, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000];
  function binaryAxis(maxValue) {
    if (!(maxValue > 0)) return {};
    let unit = 1;
    while (maxValue / unit >= 1024 && unit < 1024 ** 5) unit *= 1024;
    const raw = maxValue / unit / 5;
    const step = STEPS.find((s) => s >= raw) || STEPS[STEPS.length - 1];
    const interval = step * unit;
    return { min: 0, max: Math.ceil(maxValue / interval) * interval, interval };
  }

  /** Axis label: value in its own unit, without trailing zeros ("256M", "1.5G", "0"). */
  function axisLabel(v) {
    if (!(v > 0)) return '0';
    const units = ['', 'K', 'M', 'G', 'T', 'P'];
    let i = 0;
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024;
      i += 1;
    }
    return `${Number(v.toFixed(2))}${units[i]}`;
  }

  function legend(names) {
    return {
      data: names.map((name) => ({ name, icon: 'rect' })),
      top: 0, right: 0, itemWidth: 10, itemHeight: 6,
      textStyle: { color: C.text2, fontFamily: C.mono, fontSize: 10 },
    };
  }

  function gradient(top, bottom) {
    return { type: 'linear', x: 0, y: 0, x2: 0, y2: 1, colorStops: [{ offset: 0, color: top }, { offset: 1, color: bottom }] };
  }

  function barSeries(name, data, colour) {
    return {
      name, type: 'bar', data, stack: 's',
      // color drives the legend icon; the gradient is what the bar shows.
      color: colour,
      itemStyle: { color: gradient(`${colour}dd`, `${colour}44`), borderRadius: [2, 2, 0, 0] },
      emphasis: { focus: 'series' },
    };
  }

  function lineSeries(name, data, colour) {
    return {
      name, type: 'line', data, smooth: true, symbol: 'none', connectNulls: false,
      color: colour,
      itemStyle: { color: colour },
      lineStyle: { color: colour, width: 2 },
      areaStyle: { color: gradient(`${colour}44`, `${colour}05`) },
    };
  }

  /**
   * A complete option for one chart.
   * spec: { kind: 'bar'|'line', labels, titles, up, down, names: {up, down, total},
   *         grid: {top,bottom,left,right}, rotate: bool (allowed if crowded),
   *         width: the container's width in px, interval, animate }
   */
  function option(spec) {
    const line = spec.kind === 'line';
    const mk = line ? lineSeries : barSeries;
    // Rotate the x labels only when they would not fit side by side (about 6.1 px
    // per character of the 10 px monospace font, plus a gap).
    const widest = spec.labels.reduce((m, l) => Math.max(m, String(l).length), 0) * 6.1 + 8;
    const plot = (spec.width || 600) - (spec.grid.left || 0) - (spec.grid.right || 0);
    const rotate = spec.rotate && spec.labels.length * widest > plot ? 30 : 0;
    // Bars are stacked, so their peak is the largest sum; lines are drawn apart.
    const num = (v) => Number(v) || 0;
    const peak = spec.up.reduce((m, u, i) => Math.max(m, line ? Math.max(num(u), num(spec.down[i])) : num(u) + num(spec.down[i])), 0);
    const xLabel = { ...axisBase().axisLabel, rotate, hideOverlap: true };
    if (spec.interval !== undefined) xLabel.interval = spec.interval;
    return {
      backgroundColor: 'transparent',
      // No animation on a chart's first draw (it only slows the first render);
      // later updates animate from the old values to the new.
      animation: spec.animate !== false,
      animationDuration: 400,
      textStyle: { fontFamily: C.mono },
      legend: legend([spec.names.up, spec.names.down]),
      tooltip: tooltip(spec.titles, spec.names.total),
      // Rotated labels need more room below the plot.
      grid: { ...spec.grid, bottom: rotate ? Math.max(spec.grid.bottom || 0, 48) : spec.grid.bottom, containLabel: false },
      xAxis: {
        type: 'category', data: spec.labels, boundaryGap: !line,
        ...axisBase(), splitLine: { show: false }, axisLabel: xLabel,
      },
      yAxis: {
        type: 'value', ...axisBase(), ...binaryAxis(peak),
        axisLabel: { ...axisBase().axisLabel, formatter: axisLabel },
      },
      series: [mk(spec.names.up, spec.up, UP), mk(spec.names.down, spec.down, DOWN)],
    };
  }

  global.SentinelCharts = { COLORS: C, UP, DOWN, option, binaryAxis, axisLabel };
})(typeof window !== 'undefined' ? window : globalThis);
