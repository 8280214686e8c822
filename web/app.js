// Cortex Bus dashboard: plain JavaScript, no build step. Reads the broker's /api/v1/.
'use strict';

const $ = (s) => document.querySelector(s);
const state = { tab: 'overview', prev: null, history: [], overview: null, stream: null, agent: null, task: null };
const HISTORY = 120;
const LANES = ['critical', 'high', 'normal', 'low', 'heartbeat'];

// ---- API -------------------------------------------------------------------------------------
async function api(path, opts = {}) {
  const headers = { 'content-type': 'application/json' };
  const token = localStorage.getItem('cortex-token');
  if (token) headers.authorization = 'Bearer ' + token;
  const res = await fetch('/api/v1' + path, { ...opts, headers });
  if (res.status === 401) { showLogin(); throw new Error('a token is needed'); }
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error((body.error && body.error.message) || res.statusText);
  return body;
}
const post = (path, body) => api(path, { method: 'POST', body: JSON.stringify(body) });

function showLogin() { $('#login').hidden = false; }
$('#login-form').addEventListener('submit', (e) => {
  e.preventDefault();
  localStorage.setItem('cortex-token', $('#token').value.trim());
  $('#login').hidden = true;
  refresh();
});

// ---- helpers ---------------------------------------------------------------------------------
function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k === 'style') e.style.cssText = v; // CSSOM, allowed by the page's CSP
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(k ?? ''));
  return e;
}
const fmt = (n) => (n === null || n === undefined) ? '–' : Number(n).toLocaleString('en-US', { maximumFractionDigits: 1 });
const time = (ms) => new Date(ms).toISOString().replace('T', ' ').slice(0, 23);
const ago = (ms) => { const s = Math.max(0, (Date.now() - ms) / 1000); return s < 60 ? s.toFixed(0) + ' s ago' : s < 3600 ? (s / 60).toFixed(0) + ' min ago' : (s / 3600).toFixed(1) + ' h ago'; };
const lane = (l) => el('span', { class: 'lane ' + l }, l);
const fieldsText = (f) => Object.entries(f || {}).map(([k, v]) => k + '=' + v).join('  ');
function toast(msg, error) {
  const t = $('#toast');
  t.textContent = msg; t.className = error ? 'error' : ''; t.hidden = false;
  clearTimeout(toast.timer); toast.timer = setTimeout(() => { t.hidden = true; }, 4000);
}
function confirmBox(text) {
  return new Promise((resolve) => {
    const d = $('#confirm');
    $('#confirm-text').textContent = text;
    d.onclose = () => resolve(d.returnValue === 'ok');
    d.returnValue = 'cancel';
    d.showModal();
  });
}
function fillSelect(sel, values, keep) {
  const cur = keep ?? sel.value;
  const list = values.join('\n');
  if (sel.dataset.list === list) return;
  sel.dataset.list = list;
  sel.replaceChildren(...values.map((v) => el('option', { value: v }, v)));
  if (values.includes(cur)) sel.value = cur;
}

// ---- quantiles from histogram bucket deltas (as Prometheus's histogram_quantile) --------------
function quantile(q, bounds, counts) {
  const total = counts.reduce((a, b) => a + b, 0);
  if (!total) return null;
  let rank = q * total, acc = 0;
  for (let i = 0; i < counts.length; i++) {
    const lo = i === 0 ? 0 : bounds[i - 1];
    const hi = i < bounds.length ? bounds[i] : bounds[bounds.length - 1];
    if (acc + counts[i] >= rank) return (lo + (hi - lo) * ((rank - acc) / counts[i])) * 1000;
    acc += counts[i];
  }
  return bounds[bounds.length - 1] * 1000;
}
function latencyDelta(now, prev, name, q) {
  const a = now.latency[name], b = prev && prev.latency[name];
  const counts = a.counts.map((c, i) => c - (b ? b.counts[i] : 0));
  return quantile(q, a.bounds_s, counts);
}

// ---- charts (canvas, no library) -------------------------------------------------------------
function drawChart(canvas, series) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight || 160;
  canvas.width = w * dpr; canvas.height = h * dpr;
  const g = canvas.getContext('2d');
  g.scale(dpr, dpr);
  g.clearRect(0, 0, w, h);
  const all = series.flatMap((s) => s.values.filter((v) => v !== null));
  const max = Math.max(1e-9, ...all) * 1.15;
  const pad = 34;
  const css = getComputedStyle(document.documentElement);
  g.strokeStyle = css.getPropertyValue('--line'); g.fillStyle = css.getPropertyValue('--muted');
  g.font = '11px system-ui'; g.lineWidth = 1;
  for (let i = 0; i <= 3; i++) {
    const y = 6 + (h - 16) * (i / 3);
    g.beginPath(); g.moveTo(pad, y); g.lineTo(w, y); g.stroke();
    g.fillText(fmt(max * (1 - i / 3)), 0, y + 4);
  }
  for (const s of series) {
    g.strokeStyle = css.getPropertyValue(s.color); g.lineWidth = 2; g.beginPath();
    let started = false;
    s.values.forEach((v, i) => {
      if (v === null) { started = false; return; }
      const x = pad + (w - pad) * (i / (HISTORY - 1));
      const y = 6 + (h - 16) * (1 - v / max);
      if (started) g.lineTo(x, y); else { g.moveTo(x, y); started = true; }
    });
    g.stroke();
  }
}

// ---- overview --------------------------------------------------------------------------------
function sums(o) {
  let published = 0, delivered = 0, pending = 0, lag = 0;
  for (const s of o.streams) {
    published += s.published;
    for (const g of s.groups) { delivered += g.delivered + g.redelivered; pending += g.pending; lag += g.lag || 0; }
  }
  return { published, delivered, pending, lag };
}

function rates(o, prev) {
  const out = {};
  if (!prev) return out;
  const dt = (o.now_ms - prev.now_ms) / 1000;
  if (dt <= 0) return out;
  const before = new Map(prev.streams.map((s) => [s.name, s.published]));
  for (const s of o.streams) out[s.name] = Math.max(0, (s.published - (before.get(s.name) ?? s.published)) / dt);
  return out;
}

function renderOverview(o, prev) {
  $('#version').textContent = 'v' + o.version + ' · up ' + Math.floor(o.uptime_s / 60) + ' min';
  const now = sums(o), before = prev ? sums(prev) : null;
  const dt = prev ? (o.now_ms - prev.now_ms) / 1000 : 0;
  const pubRate = before && dt > 0 ? (now.published - before.published) / dt : null;
  const delRate = before && dt > 0 ? (now.delivered - before.delivered) / dt : null;
  $('#k-pub').textContent = fmt(pubRate);
  $('#k-del').textContent = fmt(delRate);
  $('#k-pending').textContent = fmt(now.pending);
  $('#k-lag').textContent = fmt(now.lag);
  const dead = o.dlqs.reduce((a, d) => a + d.length, 0);
  $('#k-dlq').textContent = fmt(dead);
  const badge = $('#dlq-count');
  badge.textContent = dead; badge.className = dead ? 'badge hot' : 'badge';
  const c = o.connections;
  $('#k-conns').textContent = fmt(Object.values(c).reduce((a, b) => a + b, 0));
  $('#k-conns-detail').textContent = Object.entries(c).map(([k, v]) => k + ' ' + v).join(' · ');
  $('#footer').textContent = 'storage ' + fmt(o.storage_bytes / 1048576) + ' MiB · writer queue ' + o.writer_queue + ' · ' + fmt(o.commits) + ' commits · updated ' + time(o.now_ms);

  if (prev) {
    state.history.push({
      pub: pubRate, del: delRate,
      p50: latencyDelta(o, prev, 'publish_durable', 0.5),
      p99: latencyDelta(o, prev, 'publish_durable', 0.99),
      d99: latencyDelta(o, prev, 'delivery', 0.99),
    });
    if (state.history.length > HISTORY) state.history.shift();
  }
  const pick = (k) => state.history.map((h) => h[k]);
  drawChart($('#chart-rate'), [{ values: pick('pub'), color: '--c1' }, { values: pick('del'), color: '--c2' }]);
  drawChart($('#chart-lat'), [{ values: pick('p50'), color: '--c1' }, { values: pick('p99'), color: '--c3' }, { values: pick('d99'), color: '--c2' }]);

  const r = rates(o, prev);
  const rows = o.streams.map((s) => {
    const total = LANES.reduce((a, l) => a + s.lanes[l], 0) || 1;
    const bar = el('div', { class: 'lanebar', title: LANES.map((l) => l + ' ' + s.lanes[l]).join(', ') },
      ...LANES.map((l) => el('span', { class: 'lane ' + l, style: 'width:' + (100 * s.lanes[l] / total) + '%' })));
    const lag = s.groups.reduce((a, g) => a + (g.lag || 0), 0);
    const pending = s.groups.reduce((a, g) => a + g.pending, 0);
    return el('tr', { class: 'click', 'data-stream': s.name, onclick: () => openStream(s.name) },
      el('td', {}, s.name), el('td', { class: 'n' }, fmt(s.length)),
      el('td', { class: 'n rate' }, r[s.name] === undefined ? '–' : fmt(r[s.name])),
      el('td', { class: 'n' }, s.groups.length), el('td', { class: 'n' }, fmt(lag)),
      el('td', { class: 'n' }, fmt(pending)), el('td', {}, bar));
  });
  $('#streams-table tbody').replaceChildren(...rows);
  const names = o.streams.map((s) => s.name);
  fillSelect($('#stream-pick'), names, state.stream);
  fillSelect($('#br-stream'), names);
  fillSelect($('#dlq-pick'), o.dlqs.map((d) => d.name));
}

// ---- one stream ------------------------------------------------------------------------------
function openStream(name) {
  state.stream = name;
  $('#stream-pick').value = name;
  switchTab('streams');
}
$('#stream-pick').addEventListener('change', (e) => openStream(e.target.value));

async function renderStream() {
  const o = state.overview;
  if (!o) return;
  const name = state.stream || (o.streams[0] && o.streams[0].name);
  const s = o.streams.find((x) => x.name === name);
  const box = $('#stream-detail');
  if (!s) { box.replaceChildren(el('p', { class: 'empty' }, 'No streams yet.')); return; }
  state.stream = name;
  const info = el('div', { class: 'cards' },
    ...[['Entries', s.length], ['Published', s.published], ['Bytes', s.bytes], ['Groups', s.groups.length], ['Last ID', s.last_id]]
      .map(([k, v]) => el('div', { class: 'card' }, el('div', { class: 'label' }, k), el('div', { class: 'big' }, typeof v === 'number' ? fmt(v) : v))));
  const head = el('tr', {}, ...['Group', 'Consumers', 'Pending', 'Lag', 'Delivered', 'Redelivered', 'Acked', 'Nacked', 'Dead-lettered', 'Policy']
    .map((h, i) => el('th', { class: i && i < 9 ? 'n' : '' }, h)));
  const rows = s.groups.map((g) => el('tr', { class: 'click', onclick: () => showConsumers(s.name, g.name) },
    el('td', {}, g.name), ...[g.consumers, g.pending, g.lag, g.delivered, g.redelivered, g.acked, g.nacked, g.dead_lettered].map((v) => el('td', { class: 'n' }, fmt(v))),
    el('td', { class: 'small' }, g.policy ? 'max ' + g.policy.max_attempts + ' attempts, DLQ ' + g.policy.dead_letter : 'Redis semantics')));
  const groups = el('div', { class: 'card' }, el('h3', {}, 'Groups'),
    s.groups.length ? el('table', { class: 'data' }, el('thead', {}, head), el('tbody', {}, ...rows)) : el('p', { class: 'empty' }, 'No groups.'));
  box.replaceChildren(info, groups, el('div', { id: 'consumers' }));
}

async function showConsumers(stream, group) {
  const [c, p] = await Promise.all([
    api('/streams/' + encodeURIComponent(stream) + '/groups/' + encodeURIComponent(group) + '/consumers'),
    api('/streams/' + encodeURIComponent(stream) + '/groups/' + encodeURIComponent(group) + '/pending?count=50'),
  ]);
  const ct = el('table', { class: 'data' }, el('thead', {}, el('tr', {}, el('th', {}, 'Consumer'), el('th', { class: 'n' }, 'Pending'), el('th', {}, 'Last seen'))),
    el('tbody', {}, ...c.consumers.map((x) => el('tr', {}, el('td', {}, x.name), el('td', { class: 'n' }, fmt(x.pending)), el('td', {}, ago(Date.now() - x.idle_ms))))));
  const pt = el('table', { class: 'data' }, el('thead', {}, el('tr', {}, ...['ID', 'Consumer', 'Idle', 'Deliveries', 'Failures', 'State'].map((h) => el('th', {}, h)))),
    el('tbody', {}, ...p.pending.map((x) => el('tr', {}, el('td', {}, x.id), el('td', {}, x.consumer), el('td', {}, fmt(x.idle_ms / 1000) + ' s'), el('td', {}, x.deliveries), el('td', {}, x.failures), el('td', {}, x.state)))));
  $('#consumers').replaceChildren(el('div', { class: 'card' }, el('h3', {}, 'Consumers of ' + group), ct),
    el('div', { class: 'card' }, el('h3', {}, 'Pending entries (first 50)'), p.pending.length ? pt : el('p', { class: 'empty' }, 'Nothing pending.')));
}

// ---- dead letters ----------------------------------------------------------------------------
function dlqFilter() {
  const f = { dlq: $('#dlq-pick').value || undefined, count: 200 };
  if ($('#dlq-reason').value) f.reason = $('#dlq-reason').value;
  if ($('#dlq-origin').value.trim()) f.stream = $('#dlq-origin').value.trim();
  return f;
}
async function renderDlq() {
  const f = dlqFilter();
  const qs = new URLSearchParams(Object.entries(f).filter(([, v]) => v !== undefined)).toString();
  const d = await api('/dlq?' + qs);
  const rows = d.dead_letters.map((x) => el('tr', { 'data-id': x.id, 'data-origin': x.origin_stream },
    el('td', { title: x.id }, time(x.dead_at_ms)), el('td', {}, x.origin_stream, el('div', { class: 'small' }, x.origin_id)),
    el('td', {}, x.group), el('td', {}, x.reason), el('td', { class: 'n' }, x.failures),
    el('td', { class: 'error' }, x.last_error || ''), el('td', { class: 'fields' }, fieldsText(x.fields)),
    el('td', {}, el('button', { class: 'small warn redrive', onclick: () => act('redrive', { dlq: d.dlq, id: x.id }, 'Put this message back on ' + x.origin_stream + '?') }, 'Redrive'),
      ' ', el('button', { class: 'small danger purge', onclick: () => act('purge', { dlq: d.dlq, id: x.id }, 'Delete this dead letter for good?') }, 'Purge'))));
  $('#dlq-table tbody').replaceChildren(...rows);
  $('#dlq-empty').hidden = rows.length > 0;
}
async function act(what, filter, question) {
  if (!(await confirmBox(question))) return;
  try {
    const r = await post('/dlq/' + what, filter);
    toast(what === 'redrive' ? 'Redriven: ' + r.redriven : 'Purged: ' + r.purged);
  } catch (e) { toast(e.message, true); }
  renderDlq();
  refresh();
}
$('#dlq-redrive-all').addEventListener('click', () => act('redrive', dlqFilter(), 'Redrive every dead letter shown (up to 200) to its origin stream?'));
$('#dlq-purge-all').addEventListener('click', () => act('purge', dlqFilter(), 'Delete every dead letter shown (up to 200) for good?'));
for (const s of ['#dlq-pick', '#dlq-reason', '#dlq-origin']) $(s).addEventListener('change', renderDlq);

// ---- timeline --------------------------------------------------------------------------------
async function renderTimeline() {
  const t = await api('/timeline?count=200');
  const agents = [...new Set(t.messages.map((m) => m.producer || '(anonymous)'))].sort();
  fillSelect($('#tl-agent'), [''].concat(agents));
  const agent = $('#tl-agent').value, ln = $('#tl-lane').value;
  const rows = t.messages
    .filter((m) => (!agent || (m.producer || '(anonymous)') === agent) && (!ln || m.lane === ln))
    .map((m) => el('tr', {}, el('td', { title: m.id }, time(m.time_ms)), el('td', {}, m.producer || '(anonymous)'),
      el('td', {}, lane(m.lane)), el('td', {}, m.stream), el('td', { class: 'fields' }, fieldsText(m.fields))));
  $('#tl-table tbody').replaceChildren(...rows);
}
$('#tl-agent').addEventListener('change', renderTimeline);
$('#tl-lane').addEventListener('change', renderTimeline);

// ---- browse ----------------------------------------------------------------------------------
$('#browse-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const p = new URLSearchParams({ count: $('#br-count').value || 50, rev: $('#br-rev').checked });
  if ($('#br-from').value.trim()) p.set('from', $('#br-from').value.trim());
  if ($('#br-to').value.trim()) p.set('to', $('#br-to').value.trim());
  try {
    const r = await api('/streams/' + encodeURIComponent($('#br-stream').value) + '/messages?' + p);
    $('#br-table tbody').replaceChildren(...r.messages.map((m) => el('tr', {}, el('td', {}, m.id), el('td', {}, time(m.time_ms)),
      el('td', {}, lane(m.lane)), el('td', {}, m.producer || ''), el('td', { class: 'fields' }, fieldsText(m.fields)))));
  } catch (err) { toast(err.message, true); }
});

// ---- agents (presence) ------------------------------------------------------------------------
// One row per session (an agent may be connected several times); #/agents/NAME shows one.
async function renderAgents() {
  const r = await api('/agents');
  $('#agents-count').textContent = r.agents.length;
  const shown = state.agent ? r.agents.filter((a) => a.agent === state.agent) : r.agents;
  $('#agents-scope').textContent = state.agent ? `Agent ${state.agent}` : 'Agents connected (every node of a cluster)';
  $('#agents-all').hidden = !state.agent;
  const rows = [];
  for (const a of shown) {
    for (const s of a.sessions) {
      rows.push(el('tr', { 'data-agent': a.agent },
        el('td', {}, el('a', { href: '#/agents/' + encodeURIComponent(a.agent) }, a.agent)),
        el('td', {}, s.node ? 'node ' + s.node : 'this node'), el('td', {}, s.front), el('td', {}, s.client), el('td', {}, time(s.connected_ms)),
        el('td', {}, ago(s.last_heard_ms)),
        el('td', {}, s.serves.map((x) => x.stream + ' / ' + x.group).join(', '))));
    }
  }
  $('#agents-table tbody').replaceChildren(...rows);
  $('#agents-empty').hidden = rows.length > 0;
  $('#agents-empty').textContent = state.agent ? `${state.agent} is not connected.` : 'No agent is connected.';
}

// ---- tasks -----------------------------------------------------------------------------------
// #/tasks lists tasks (by state); #/tasks/ID shows one with its whole history, the page an
// alert about a task links to.
const taskState = (s) => el('span', { class: 'task-state ' + s }, s);
async function renderTasks() {
  $('#tasks-all').hidden = !state.task;
  $('#tasks-list').hidden = !!state.task;
  $('#task-card').hidden = !state.task;
  $('#tasks-state').parentElement.hidden = !!state.task;
  if (state.task) {
    $('#tasks-scope').textContent = `Task ${state.task}`;
    let t;
    try { t = await api('/tasks/' + encodeURIComponent(state.task)); } catch (e) {
      $('#task-facts').replaceChildren(el('dt', {}, 'Not found'), el('dd', {}, e.message));
      $('#task-history tbody').replaceChildren();
      return;
    }
    const fact = (k, v) => [el('dt', {}, k), el('dd', {}, v)];
    $('#task-facts').replaceChildren(
      ...fact('State', taskState(t.state)), ...fact('Stream', t.stream + ' ' + t.id),
      ...fact('Submitter', t.submitter || ''), ...fact('Holder', t.consumer ? `${t.consumer} (${t.group})` : ''),
      ...fact('Created', time(t.created_ms)), ...fact('Updated', time(t.updated_ms)),
      ...fact('Changes', String(t.changes)));
    $('#task-history tbody').replaceChildren(...t.history.map((c) => el('tr', { 'data-seq': c.seq },
      el('td', { class: 'n' }, String(c.seq)), el('td', {}, time(c.at_ms)), el('td', {}, taskState(c.state)),
      el('td', {}, c.event + (c.late ? ' (late)' : '')), el('td', {}, c.detail))));
    return;
  }
  $('#tasks-scope').textContent = 'Tasks';
  const st = $('#tasks-state').value;
  const r = await api('/tasks?count=200' + (st ? '&state=' + encodeURIComponent(st) : ''));
  $('#tasks-table tbody').replaceChildren(...r.tasks.map((t) => el('tr', { 'data-task': t.task },
    el('td', {}, el('a', { href: '#/tasks/' + encodeURIComponent(t.task) }, t.task)), el('td', {}, taskState(t.state)),
    el('td', {}, t.stream), el('td', {}, t.submitter || ''), el('td', {}, t.consumer || ''), el('td', {}, ago(t.updated_ms)))));
  $('#tasks-empty').hidden = r.tasks.length > 0;
}
$('#tasks-state').addEventListener('change', () => renderTasks().catch((e) => toast(e.message, true)));

// ---- tabs and the refresh loop ---------------------------------------------------------------
// Every view has a URL an alert or a colleague can link to: #/overview, #/streams/NAME,
// #/dlq, #/agents, #/agents/NAME, #/tasks, #/tasks/ID, #/timeline, #/browse. The hash is the one source of truth: a tab click or a
// stream opened sets it, and the view follows it (so Back works too).
function show(tab) {
  state.tab = tab;
  for (const b of document.querySelectorAll('#tabs button')) b.classList.toggle('active', b.dataset.tab === tab);
  for (const s of document.querySelectorAll('section.tab')) s.hidden = s.id !== tab;
  refreshTab();
}
function hashOf(tab) {
  if (tab === 'streams' && state.stream) return `#/streams/${encodeURIComponent(state.stream)}`;
  return `#/${tab}`;
}
function switchTab(tab) {
  const h = hashOf(tab);
  if (location.hash !== h) location.hash = h; // the hashchange shows it
  else show(tab);
}
function route() {
  const [, tab = 'overview', ...rest] = location.hash.replace(/^#/, '').split('/');
  const tabs = [...document.querySelectorAll('#tabs button')].map((b) => b.dataset.tab);
  if (tab === 'streams' && rest.length) {
    state.stream = decodeURIComponent(rest.join('/'));
    $('#stream-pick').value = state.stream;
  }
  if (tab === 'agents') state.agent = rest.length ? decodeURIComponent(rest.join('/')) : null;
  if (tab === 'tasks') state.task = rest.length ? decodeURIComponent(rest.join('/')) : null;
  show(tabs.includes(tab) ? tab : 'overview');
}
for (const b of document.querySelectorAll('#tabs button')) b.addEventListener('click', () => switchTab(b.dataset.tab));
window.addEventListener('hashchange', route);

async function refreshTab() {
  try {
    if (state.tab === 'streams') await renderStream();
    else if (state.tab === 'dlq') await renderDlq();
    else if (state.tab === 'agents') await renderAgents();
    else if (state.tab === 'tasks') await renderTasks();
    else if (state.tab === 'timeline' && $('#tl-live').checked) await renderTimeline();
  } catch (e) { toast(e.message, true); }
}

async function refresh() {
  try {
    const o = await api('/overview');
    $('#health').className = 'dot ok';
    renderOverview(o, state.prev);
    state.prev = o; state.overview = o;
  } catch (e) {
    $('#health').className = 'dot bad';
  }
}

async function loop() {
  await refresh();
  if (state.tab !== 'dlq') await refreshTab(); // the DLQ view refreshes on demand, not under the cursor
  setTimeout(loop, 2000);
}
window.addEventListener('resize', () => state.overview && renderOverview(state.overview, null));
route();
loop();
