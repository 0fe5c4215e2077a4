// A small SVG line chart for the throughput series (no library). The values are
// oldest first, one every `step` seconds from `start` (Unix seconds).

import {svg, h, fmtNum} from './ui.js';

const W = 600;
const H = 170;
const PAD = {left: 44, right: 8, top: 10, bottom: 22};

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function fmtClock(unixS) {
  const d = new Date(unixS * 1000);
  return d.toLocaleTimeString(undefined, {hour: '2-digit', minute: '2-digit'});
}

// series: [{name, values, cls}]. Returns a <figure> with the chart and a legend.
export function lineChart({title, series, start, step, unit}) {
  const n = Math.max(0, ...series.map((s) => s.values.length));
  const max = niceMax(Math.max(0, ...series.flatMap((s) => s.values)));
  const iw = W - PAD.left - PAD.right;
  const ih = H - PAD.top - PAD.bottom;
  const x = (i) => PAD.left + (n <= 1 ? 0 : (i * iw) / (n - 1));
  const y = (v) => PAD.top + ih - (v / max) * ih;

  const root = svg('svg', {
    viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img',
    'aria-label': `${title}: ${series.map((s) => `${s.name} ${fmtNum(sum(s.values))} in total, peak ${fmtNum(Math.max(0, ...s.values))} ${unit}`).join('; ')}`,
  });
  // grid and y labels
  for (const f of [0, 0.5, 1]) {
    const yy = y(max * f);
    root.append(svg('line', {x1: PAD.left, x2: W - PAD.right, y1: yy, y2: yy, class: 'chart-grid'}));
    root.append(svg('text', {x: PAD.left - 6, y: yy + 4, class: 'chart-label', 'text-anchor': 'end'}, fmtNum(max * f)));
  }
  // x labels: start, middle, end
  if (n > 1 && start) {
    for (const [i, anchor] of [[0, 'start'], [Math.floor((n - 1) / 2), 'middle'], [n - 1, 'end']]) {
      root.append(svg('text', {x: x(i), y: H - 6, class: 'chart-label', 'text-anchor': anchor}, fmtClock(start + i * step)));
    }
  }
  for (const s of series) {
    if (!s.values.length) continue;
    let d = '';
    s.values.forEach((v, i) => {
      d += `${i ? 'L' : 'M'}${x(i).toFixed(1)} ${y(v).toFixed(1)}`;
    });
    root.append(svg('path', {d, class: ['chart-line', s.cls].join(' ')}));
  }
  const legend = h('ul', {class: 'legend'}, series.map((s) => h('li', null,
    h('span', {class: ['swatch', s.cls], 'aria-hidden': 'true'}),
    `${s.name}: ${fmtNum(sum(s.values))} total, peak ${fmtNum(Math.max(0, ...s.values))} ${unit}`)));
  return h('figure', {class: 'chart-box'}, h('figcaption', null, title), root, legend);
}

function sum(a) {
  let t = 0;
  for (const v of a) t += v;
  return t;
}
