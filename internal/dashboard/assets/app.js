// kubectl ramp dashboard: the list of Rollouts and a Rollout's page, redrawn from the
// server's Server-Sent Events (the server watches the Rollouts). Plain DOM, no libraries.
'use strict';

const SVG = 'http://www.w3.org/2000/svg';
const view = document.getElementById('view');
const live = document.getElementById('live');
let source = null;  // the EventSource of the page shown
let busy = null;    // the action a button is running, until the server answers
let outcome = null; // the last action's answer, shown on the Rollout's page: {key, action, code, message}
let lastDetail = null; // the Rollout's page's last data

// el builds an element: el('td', {class: 'x', dataset: {k: 'v'}}, 'text', child, ...).
function el(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}
function svg(tag, attrs, ...children) {
  return build(document.createElementNS(SVG, tag), attrs, children);
}
function build(e, attrs, children) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k === 'style') Object.assign(e.style, v); // CSSOM: allowed by the page's CSP
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function age(t, now) {
  const s = Math.max(0, Math.round((now - new Date(t)) / 1000));
  if (s < 120) return s + 's';
  const m = Math.round(s / 60);
  if (m < 120) return m + 'm';
  const h = Math.round(m / 60);
  return h < 48 ? h + 'h' : Math.round(h / 24) + 'd';
}
function clock(t) { return new Date(t).toLocaleTimeString([], {hour12: false}); }
function phaseClass(p) {
  switch (p) {
    case 'Succeeded': case 'Idle': return 'ok';
    case 'Failed': case 'RollingBack': return 'bad';
    case '': case undefined: return 'none';
  }
  return 'busy';
}
function badge(phase) { return el('span', {class: 'badge ' + phaseClass(phase), text: phase || '-'}); }
function stepText(r) { return r.steps ? r.step + '/' + r.steps : '-'; }

// connect replaces the page's stream; render draws each event's data.
function connect(url, event, render) {
  if (source) source.close();
  live.dataset.state = 'connecting';
  live.textContent = 'connecting';
  source = new EventSource(url);
  source.addEventListener(event, (e) => {
    live.dataset.state = 'live';
    live.textContent = 'live';
    render(JSON.parse(e.data));
  });
  source.onerror = () => {
    const closed = source.readyState === EventSource.CLOSED;
    live.dataset.state = closed ? 'closed' : 'connecting';
    live.textContent = closed ? 'disconnected: open the URL kubectl ramp dashboard printed' : 'reconnecting';
  };
}

function route() {
  const m = location.hash.match(/^#\/([^/]+)\/([^/]+)$/);
  if (m) {
    const ns = decodeURIComponent(m[1]), name = decodeURIComponent(m[2]);
    view.replaceChildren(el('p', {class: 'muted', text: 'loading ' + ns + '/' + name + '…'}));
    lastDetail = null;
    connect('/api/rollouts/' + encodeURIComponent(ns) + '/' + encodeURIComponent(name), 'rollout', (d) => { lastDetail = d; renderDetail(d); });
  } else {
    view.replaceChildren(el('p', {class: 'muted', text: 'loading rollouts…'}));
    connect('/api/rollouts', 'list', renderList);
  }
}

// ---- the list ----

function renderList(l) {
  document.getElementById('scope').textContent = l.namespace ? 'namespace ' + l.namespace : 'all namespaces';
  const now = Date.now();
  const parts = [el('h1', {text: 'Rollouts'})];
  if (l.error) parts.push(el('p', {class: 'error', id: 'watch-error', text: 'cannot watch rollouts: ' + l.error}));
  if (!l.synced && !l.error) parts.push(el('p', {class: 'muted', text: 'listing rollouts…'}));
  else if (l.rollouts.length === 0) parts.push(el('p', {class: 'muted', id: 'empty', text: 'No rollouts found.'}));
  else {
    parts.push(el('table', {class: 'rollouts', id: 'rollouts'},
      el('thead', {}, el('tr', {}, ['Namespace', 'Name', 'Phase', 'Weight', 'Step', 'Message', 'Age'].map((h) => el('th', {text: h})))),
      el('tbody', {}, l.rollouts.map((r) => {
        const href = '#/' + encodeURIComponent(r.namespace) + '/' + encodeURIComponent(r.name);
        return el('tr', {dataset: {rollout: r.namespace + '/' + r.name}, onclick: () => { location.hash = href; }},
          el('td', {class: 'ns', text: r.namespace}),
          el('td', {class: 'name'}, el('a', {href, text: r.name})),
          el('td', {class: 'phase'}, badge(r.phase)),
          el('td', {class: 'weight'}, weightBar(r.weight)),
          el('td', {class: 'step', text: stepText(r)}),
          el('td', {class: 'message', text: r.message}),
          el('td', {class: 'age', text: age(r.created, now)}));
      }))));
  }
  view.replaceChildren(...parts);
}

function weightBar(w) {
  return el('span', {class: 'wbar', title: 'canary ' + w + '%'},
    el('span', {class: 'wtrack'}, el('span', {class: 'wfill', style: {width: w + '%'}})),
    el('span', {class: 'wtext', text: w + '%'}));
}

// ---- a Rollout ----

const actionHelp = {
  promote: 'Complete the current step now (kubectl ramp promote)',
  pause: 'Hold the rollout where it is (kubectl ramp pause)',
  resume: 'Release a rollout held by kubectl ramp pause (kubectl ramp resume)',
  abort: 'Roll back: all traffic to stable, canary scaled to zero (kubectl ramp abort)',
  retry: 'Roll a failed revision out again from the first step (kubectl ramp retry)',
};

function renderDetail(d) {
  const r = d.rollout, desc = d.description, key = r.namespace + '/' + r.name;
  document.getElementById('scope').textContent = key;
  const now = new Date(d.now).getTime();
  const back = el('a', {href: '#/', class: 'back', text: '← Rollouts'});
  if (!d.found) {
    view.replaceChildren(back, el('h1', {text: key}), el('p', {class: 'muted', id: 'not-found', text: 'No such rollout (deleted, or not in the namespaces this dashboard watches).'}));
    return;
  }
  const enabled = new Set(desc.enabled || []);
  const buttons = ['promote', 'pause', 'resume', 'abort', 'retry'].map((a) =>
    el('button', {type: 'button', class: a === 'abort' ? 'danger' : '', dataset: {action: a}, title: actionHelp[a],
      disabled: busy !== null || !enabled.has(a), onclick: () => request(r.namespace, r.name, a)}, busy === a ? a + '…' : a));
  const out = outcome && outcome.key === key
    ? el('p', {id: 'outcome', class: 'outcome ' + (outcome.code === 0 ? 'ok' : outcome.code === 1 ? 'bad' : 'warn'), dataset: {action: outcome.action, code: outcome.code}},
      'kubectl ramp ' + outcome.action + ': ' + outcome.message)
    : null;

  const facts = [
    ['Phase', el('span', {}, badge(r.phase), ' ', el('span', {id: 'position', text: desc.position}))],
    ['Weight', el('span', {id: 'weight', class: 'big', text: r.weight + '%'})],
    ['Traffic', desc.traffic],
    ['Message', el('span', {id: 'message', text: r.message || '-'})],
    ['Stage', d.stage || '-'],
    ['Target', d.target],
    ['Strategy', desc.strategy],
    ['Stable', 'revision ' + (d.stableRevision || '-')],
    ['Canary', d.canaryRevision ? 'revision ' + d.canaryRevision : '-'],
    ['Checks', 'failed ' + d.failedChecks + ', inconclusive ' + d.inconclusiveChecks],
  ];
  for (const h of desc.holds || []) facts.push(['Holds', el('span', {class: 'warn', text: h})]);

  view.replaceChildren(...[
    back,
    el('div', {class: 'title'}, el('h1', {id: 'title', text: key}), badge(r.phase)),
    el('div', {class: 'actions', id: 'actions'}, buttons),
    out,
    el('div', {class: 'grid'},
      el('section', {class: 'card'}, el('h2', {text: 'Status'}),
        el('dl', {class: 'facts'}, facts.map(([k, v]) => [el('dt', {text: k}), el('dd', {}, v)]))),
      el('section', {class: 'card'}, el('h2', {text: 'Steps'}), timeline(desc.steps))),
    el('section', {class: 'card'}, el('h2', {text: 'Canary weight'}), weightChart(d, now)),
    el('section', {class: 'card'}, el('h2', {text: 'Analysis'}),
      d.metrics.length ? d.metrics.map((m) => metricChart(m, d, now)) : el('p', {class: 'muted', text: 'No analysis metrics.'})),
    el('p', {class: 'muted small', id: 'since'},
      'Charts show what this dashboard has seen since it started at ' + clock(d.since) +
      ': the API server keeps only the current status and the last analysis round.'),
    el('div', {class: 'grid'},
      el('section', {class: 'card'}, el('h2', {text: 'Conditions'}), conditions(d.conditions, now)),
      el('section', {class: 'card'}, el('h2', {text: 'Events'}), events(d, now))),
  ].filter(Boolean));
}

function timeline(steps) {
  const mark = {done: '✔', current: '▶', failed: '✘', pending: '·'};
  return el('ol', {class: 'timeline', id: 'steps'}, steps.map((s) =>
    el('li', {class: 'step ' + s.state, dataset: {state: s.state, label: s.label}},
      el('span', {class: 'mark', text: mark[s.state] || '·'}),
      el('span', {class: 'label', text: s.label}),
      s.traffic ? el('span', {class: 'traffic', text: s.traffic}) : null,
      s.notes ? el('span', {class: 'notes', text: s.notes}) : null,
      s.here ? el('span', {class: 'here', text: '← ' + s.here}) : null)));
}

function conditions(cs, now) {
  if (!cs.length) return el('p', {class: 'muted', text: 'None.'});
  return el('table', {class: 'small-table'},
    el('thead', {}, el('tr', {}, ['Type', 'Status', 'Reason', 'Age', 'Message'].map((h) => el('th', {text: h})))),
    el('tbody', {}, cs.map((c) => el('tr', {dataset: {condition: c.type}},
      el('td', {text: c.type}), el('td', {class: c.type === 'Stalled' && c.status === 'True' ? 'cond-bad' : 'cond-' + c.status, text: c.status}), el('td', {text: c.reason}),
      el('td', {text: age(c.since, now)}), el('td', {text: c.message})))));
}

function events(d, now) {
  if (d.eventsError) return el('p', {class: 'error', text: 'events unavailable: ' + d.eventsError});
  if (!d.events.length) return el('p', {class: 'muted', text: 'None.'});
  return el('table', {class: 'small-table', id: 'events'},
    el('thead', {}, el('tr', {}, ['Age', 'Type', 'Reason', 'Message'].map((h) => el('th', {text: h})))),
    el('tbody', {}, d.events.slice().reverse().map((e) => el('tr', {class: e.type === 'Warning' ? 'warning' : ''},
      el('td', {text: age(e.time, now) + (e.count > 1 ? ' (x' + e.count + ')' : '')}), el('td', {text: e.type}),
      el('td', {text: e.reason}), el('td', {text: e.message})))));
}

// request runs a button's action (the kubectl ramp verb) and shows its answer. Abort asks first.
async function request(ns, name, action) {
  const key = ns + '/' + name;
  if (action === 'abort' && !(await confirmAbort(key))) return;
  busy = action;
  outcome = null;
  rerender();
  try {
    const resp = await fetch('/api/rollouts/' + encodeURIComponent(ns) + '/' + encodeURIComponent(name) + '/' + action,
      {method: 'POST', credentials: 'same-origin'});
    const body = resp.ok ? await resp.json() : {code: 1, message: (await resp.text()).trim()};
    outcome = {key, action, code: body.code, message: body.message};
  } catch (err) {
    outcome = {key, action, code: 1, message: String(err)};
  }
  busy = null;
  rerender();
}

function confirmAbort(key) {
  const dlg = document.getElementById('confirm');
  document.getElementById('confirm-text').textContent =
    'All traffic goes back to the stable revision of ' + key + ' at once and the canary is scaled to zero; the rollout ends Failed.';
  return new Promise((resolve) => {
    const ok = document.getElementById('confirm-ok'), cancel = document.getElementById('confirm-cancel');
    const done = (v) => { ok.onclick = cancel.onclick = dlg.oncancel = null; dlg.close(); resolve(v); };
    ok.onclick = () => done(true);
    cancel.onclick = () => done(false);
    dlg.oncancel = () => done(false);
    dlg.showModal();
  });
}

// rerender redraws the Rollout's page from its last data (button states, the answer).
function rerender() { if (lastDetail) renderDetail(lastDetail); }

// ---- charts (inline SVG) ----

const W = 760, H = 170, L = 46, R = 14, T = 12, B = 26;

// span is the charts' time range: from the first point the dashboard saw to now.
function span(d, now) {
  let t0 = new Date(d.since).getTime();
  for (const p of d.weights) t0 = Math.min(t0, new Date(p.t).getTime());
  for (const m of d.metrics) for (const s of m.samples) t0 = Math.min(t0, new Date(s.t).getTime());
  return [t0, Math.max(now, t0 + 10000)];
}

function axes(g, x0, x1, ymax, unit, ticks) {
  const x = (t) => L + (t - x0) / (x1 - x0) * (W - L - R);
  const y = (v) => T + (H - T - B) * (1 - Math.min(v, ymax) / ymax);
  for (const v of ticks) {
    g.append(svg('line', {x1: L, x2: W - R, y1: y(v), y2: y(v), class: 'grid'}));
    g.append(svg('text', {x: L - 6, y: y(v) + 4, 'text-anchor': 'end', class: 'tick', text: fmt(v) + unit}));
  }
  const n = 5;
  for (let i = 0; i <= n; i++) {
    const t = x0 + (x1 - x0) * i / n;
    g.append(svg('text', {x: x(t), y: H - 8, 'text-anchor': i === 0 ? 'start' : i === n ? 'end' : 'middle', class: 'tick', text: clock(t)}));
  }
  return [x, y];
}

function fmt(v) {
  if (v === 0) return '0';
  const a = Math.abs(v);
  return a >= 100 ? v.toFixed(0) : a >= 10 ? String(+v.toFixed(1)) : String(+v.toPrecision(3));
}

function weightChart(d, now) {
  const [x0, x1] = span(d, now);
  const g = svg('svg', {viewBox: `0 0 ${W} ${H}`, class: 'chart', id: 'weight-chart', dataset: {points: d.weights.length}});
  const [x, y] = axes(g, x0, x1, 100, '%', [0, 25, 50, 75, 100]);
  if (!d.weights.length) return g;
  let path = '', area = '';
  d.weights.forEach((p, i) => {
    const t = new Date(p.t).getTime(), next = i + 1 < d.weights.length ? new Date(d.weights[i + 1].t).getTime() : x1;
    path += (i === 0 ? 'M' : 'L') + x(t) + ',' + y(p.weight) + 'L' + x(next) + ',' + y(p.weight);
  });
  area = path + `L${x(x1)},${y(0)}L${x(new Date(d.weights[0].t).getTime())},${y(0)}Z`;
  g.append(svg('path', {d: area, class: 'weight-area'}), svg('path', {d: path, class: 'weight-line'}));
  // Where the rollout moved to another step or phase: a marker line, labelled unless too close
  // to the last label; where the weight changed: the new weight.
  let lastLabel = -Infinity;
  d.weights.forEach((p, i) => {
    const prev = d.weights[i - 1], t = new Date(p.t).getTime(), px = x(t);
    if (!prev || prev.step !== p.step || prev.phase !== p.phase) {
      const label = p.phase === 'Progressing' || p.phase === 'Paused' ? 'step ' + p.step : p.phase;
      g.append(svg('line', {x1: px, x2: px, y1: T, y2: H - B, class: 'marker'}));
      if (label && px - lastLabel > 70) {
        g.append(svg('text', {x: px + 3, y: T + 9, class: 'marker-label', text: label}));
        lastLabel = px;
      }
    }
    if (!prev || prev.weight !== p.weight) {
      g.append(svg('circle', {cx: px, cy: y(p.weight), r: 3.5, class: 'weight-dot ' + phaseClass(p.phase)},
        svg('title', {text: clock(t) + ' ' + p.phase + ', step ' + p.step + ': ' + p.weight + '%'})));
      if (p.weight > 0) g.append(svg('text', {x: px + 5, y: Math.max(T + 22, y(p.weight) - 6), class: 'point-label', text: p.weight + '%'}));
    }
  });
  return g;
}

function metricChart(m, d, now) {
  const [x0, x1] = span(d, now);
  const vals = m.samples.flatMap((s) => [s.value, m.compareToStable ? s.stable : undefined]).filter((v) => typeof v === 'number');
  let ymax = Math.max(...vals, m.max ?? 0, m.min ?? 0, 0);
  ymax = ymax > 0 ? niceCeil(ymax * 1.15) : 1;
  const last = m.samples[m.samples.length - 1];
  const head = el('div', {class: 'metric-head'},
    el('strong', {text: m.name}), ' ',
    el('span', {class: 'muted', text: threshold(m)}),
    last ? el('span', {class: 'latest'}, ' last ', el('span', {class: 'metric-value', text: last.value === undefined ? 'no value' : fmt(last.value)}),
      ' ', el('span', {class: 'verdict ' + last.verdict, text: last.verdict}), ' ', el('span', {class: 'muted', text: age(last.t, now) + ' ago'})) : el('span', {class: 'muted', text: ' no round yet'}));
  const g = svg('svg', {viewBox: `0 0 ${W} ${H}`, class: 'chart metric-chart', dataset: {metric: m.name, samples: m.samples.length}});
  const ticks = [0, ymax / 4, ymax / 2, 3 * ymax / 4, ymax];
  const [x, y] = axes(g, x0, x1, ymax, '', ticks);
  for (const [bound, name] of [[m.max, 'max'], [m.min, 'min']]) {
    if (typeof bound !== 'number') continue;
    g.append(svg('line', {x1: L, x2: W - R, y1: y(bound), y2: y(bound), class: 'threshold', dataset: {bound: name}}),
      svg('text', {x: W - R - 4, y: y(bound) - 4, 'text-anchor': 'end', class: 'threshold-label', text: name + ' ' + fmt(bound)}));
  }
  const line = (key, cls) => {
    const pts = m.samples.filter((s) => typeof s[key] === 'number').map((s) => x(new Date(s.t).getTime()) + ',' + y(s[key]));
    if (pts.length > 1) g.append(svg('polyline', {points: pts.join(' '), class: cls}));
  };
  if (m.compareToStable) line('stable', 'stable-line');
  line('value', 'value-line');
  for (const s of m.samples) {
    const t = new Date(s.t).getTime();
    const v = typeof s.value === 'number' ? s.value : 0;
    g.append(svg('circle', {cx: x(t), cy: y(v), r: 4, class: 'sample ' + s.verdict + (typeof s.value === 'number' ? '' : ' novalue'), dataset: {verdict: s.verdict}},
      svg('title', {text: `${clock(t)} ${m.name} ${s.value ?? 'no value'}${s.stable !== undefined ? ' (stable ' + s.stable + ')' : ''} ${s.threshold || ''} ${s.verdict}${s.message ? ': ' + s.message : ''}`})));
  }
  return el('div', {class: 'metric'}, head, g);
}

function threshold(m) {
  const parts = [];
  if (typeof m.min === 'number') parts.push('≥ ' + fmt(m.min));
  if (typeof m.max === 'number') parts.push('≤ ' + fmt(m.max));
  if (m.compareToStable) parts.push('compared to stable');
  return parts.join(', ');
}

function niceCeil(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const k of [1, 2, 2.5, 5, 10]) if (k * p >= v) return k * p;
  return 10 * p;
}

window.addEventListener('hashchange', route);
route();
