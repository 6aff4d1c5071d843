// Agora's web UI: a hash-routed single page over the master's /health and /state (and
// the sandbox endpoints /files/browse, /files/read and /files/download).
//
// Safety: every value from the cluster reaches the page as text (textContent, text nodes
// from append) or as an attribute set through the DOM; nothing here parses markup (none
// of the DOM's HTML-string setters or document writes is used, and master/tests/api.rs
// checks they never appear), so a framework, task or agent name holding HTML is shown,
// never run. Links are built only from this page's own routes or
// checked http(s) URLs. The page is served with `Content-Security-Policy: default-src
// 'self'`, so inline script or style would not run anyway.
//
// Errors: any exception escaping a handler, and every failed render, is written into
// #ui-errors (the browser test reads it).
'use strict';

const POLL_MS = 2000;
const HISTORY_MS = 60 * 60 * 1000;
const HISTORY_KEY = 'agora.ui.history.v1';
const PAGE_SIZE = 50;
const TAIL_BYTES = 64 * 1024;
const READ_CHUNK = 64 * 1024;
const LOG_KEEP_CHARS = 512 * 1024;
const SCALARS = ['cpus', 'mem', 'disk', 'gpus'];
const TERMINAL = new Set(['TASK_FINISHED', 'TASK_FAILED', 'TASK_KILLED', 'TASK_LOST',
  'TASK_ERROR', 'TASK_DROPPED', 'TASK_GONE', 'TASK_GONE_BY_OPERATOR']);

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

function reportError(where, e) {
  const sink = document.getElementById('ui-errors');
  const detail = e && e.stack ? e.stack : String(e);
  if (sink) {
    sink.append(`${where}: ${detail}\n`);
    sink.hidden = false;
  }
  console.error(where, e);
}
window.addEventListener('error', ev => reportError('uncaught error', ev.error || ev.message));
window.addEventListener('unhandledrejection', ev => reportError('unhandled rejection', ev.reason));

// ---------------------------------------------------------------------------------------
// DOM helpers: elements from trusted tags and props; data only as text or attributes.
// ---------------------------------------------------------------------------------------

/** A link target: this page's routes, this origin's paths, or an http(s) URL. */
function safeHref(v) {
  const s = String(v);
  if (s.startsWith('#') || (s.startsWith('/') && !s.startsWith('//'))) return s;
  try {
    const u = new URL(s);
    if (u.protocol === 'http:' || u.protocol === 'https:') return u.href;
  } catch (_) { /* not a URL */ }
  return '#';
}

function el(tag, props, ...kids) {
  const e = document.createElement(tag);
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (v == null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = String(v);
      else if (k.startsWith('on')) {
        if (typeof v !== 'function') throw new Error(`el: ${k} must be a function`);
        e.addEventListener(k.slice(2), v);
      } else if (k === 'href') e.setAttribute('href', safeHref(v));
      else e.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(e, kids);
  return e;
}

function append(parent, kids) {
  for (const kid of [kids].flat(Infinity)) {
    if (kid == null || kid === false) continue;
    parent.append(kid instanceof Node ? kid : String(kid));
  }
  return parent;
}

const SVG_NS = 'http://www.w3.org/2000/svg';
function svg(tag, attrs, ...kids) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  append(e, kids);
  return e;
}

function setText(node, v) {
  const s = v == null ? '' : String(v);
  if (node.textContent !== s) node.textContent = s;
}

/** Replaces a node's children only when `sig` differs from the last call's. */
function setContent(node, sig, build) {
  if (node._sig === sig) return;
  node._sig = sig;
  node.replaceChildren();
  append(node, build());
}

// ---------------------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------------------

function fmtNum(n) {
  if (typeof n !== 'number' || !isFinite(n)) return n == null ? '' : String(n);
  if (Number.isInteger(n)) return n.toLocaleString('en');
  return n.toFixed(2).replace(/\.?0+$/, '');
}

function fmtMB(mb) {
  if (typeof mb !== 'number') return String(mb ?? '');
  if (Math.abs(mb) >= 1024 * 1024) return `${fmtNum(mb / 1024 / 1024)} TB`;
  if (Math.abs(mb) >= 1024) return `${fmtNum(mb / 1024)} GB`;
  return `${fmtNum(mb)} MB`;
}

function fmtRes(name, v) {
  if (typeof v !== 'number') return v == null ? '' : String(v);
  return name === 'mem' || name === 'disk' ? fmtMB(v) : fmtNum(v);
}

function fmtResources(r) {
  const parts = Object.entries(r || {}).map(([k, v]) => `${k} ${fmtRes(k, v)}`);
  return parts.length ? parts.join(' · ') : '—';
}

function fmtBytes(b) {
  if (typeof b !== 'number') return '';
  if (b < 1024) return `${b} B`;
  if (b < 1024 * 1024) return `${fmtNum(b / 1024)} KiB`;
  if (b < 1024 ** 3) return `${fmtNum(b / 1024 / 1024)} MiB`;
  return `${fmtNum(b / 1024 ** 3)} GiB`;
}

function pad(n) { return String(n).padStart(2, '0'); }

function fmtTime(ms) {
  if (typeof ms !== 'number' || ms <= 0) return '';
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function fmtDuration(ms) {
  const s = Math.abs(ms) / 1000;
  if (s < 1) return `${Math.round(Math.abs(ms))} ms`;
  if (s < 90) return `${fmtNum(Math.round(s * 10) / 10)} s`;
  if (s < 90 * 60) return `${Math.round(s / 60)} min`;
  if (s < 48 * 3600) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} d`;
}

function fmtAgo(ms) {
  if (typeof ms !== 'number' || ms <= 0) return '';
  const d = Date.now() - ms;
  return d >= 0 ? `${fmtDuration(d)} ago` : `in ${fmtDuration(d)}`;
}

function fmtPct(x) {
  if (typeof x !== 'number' || !isFinite(x)) return '—';
  return `${(x * 100).toFixed(x < 0.1 ? 1 : 0)}%`;
}

const STATE_CLASS = {
  TASK_RUNNING: 'ok', TASK_FINISHED: 'info', TASK_STAGING: 'warn', TASK_STARTING: 'warn',
  TASK_KILLING: 'warn', TASK_KILLED: 'warn', TASK_FAILED: 'bad', TASK_LOST: 'bad',
  TASK_ERROR: 'bad', TASK_DROPPED: 'bad', TASK_GONE: 'bad', TASK_GONE_BY_OPERATOR: 'bad',
  TASK_UNREACHABLE: 'bad', TASK_UNKNOWN: 'bad',
};

function badge(label, cls) {
  return el('span', { class: `badge ${cls || ''}` }, label);
}

function stateBadge(state) {
  return badge(String(state ?? '').replace(/^TASK_/, '').toLowerCase(),
    STATE_CLASS[state] || '');
}

// ---------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------

function decode(s) {
  try { return decodeURIComponent(s); } catch (_) { return s; }
}

function parseRoute() {
  const raw = location.hash.replace(/^#\/?/, '');
  const q = raw.indexOf('?');
  const path = q >= 0 ? raw.slice(0, q) : raw;
  const query = new URLSearchParams(q >= 0 ? raw.slice(q + 1) : '');
  const parts = path.split('/').filter(Boolean).map(decode);
  return { name: parts[0] || 'overview', args: parts.slice(1), query };
}

const enc = encodeURIComponent;
const agentHref = id => `#/agents/${enc(id)}`;
const frameworkHref = id => `#/frameworks/${enc(id)}`;
const taskHref = (fw, id) => `#/tasks/${enc(fw)}/${enc(id)}`;

function agentLink(d, id) {
  const a = d && d.agents.get(id);
  return el('a', { href: agentHref(id), title: id }, a ? a.hostname : id);
}

function frameworkLink(d, id) {
  const f = d && d.frameworks.get(id);
  return el('a', { href: frameworkHref(id), title: id }, f ? f.name : id);
}

// ---------------------------------------------------------------------------------------
// Data: polling /health and /state, and what each view derives from them.
// ---------------------------------------------------------------------------------------

class HttpError extends Error {
  constructor(status, message, json) {
    super(message);
    this.status = status;
    this.json = json;
  }
}

/** GETs JSON; a non-2xx answer throws an HttpError with the server's `error` if any. */
async function getJson(path) {
  // From the origin: a page whose address carries credentials may not fetch relative URLs.
  const r = await fetch(new URL(path, location.origin), { cache: 'no-store', headers: { Accept: 'application/json' } });
  const body = await r.text();
  let json;
  try { json = body ? JSON.parse(body) : undefined; } catch (_) { json = undefined; }
  if (!r.ok) {
    const why = json && typeof json.error === 'string' ? json.error : (r.statusText || 'error');
    throw new HttpError(r.status, `${r.status} ${why}`, json);
  }
  if (json === undefined) throw new Error(`${path}: the answer is not JSON`);
  return json;
}

function describeError(e) {
  if (e instanceof HttpError && e.status === 401) {
    return 'this master asks for credentials (HTTP Basic): reload the page to sign in';
  }
  return e instanceof Error ? e.message : String(e);
}

const S = {
  health: null,        // /health of this replica
  healthError: null,
  state: null,         // the leader's /state
  stateError: null,
  stateAt: 0,          // when it was fetched (ms)
  d: null,             // derived indexes of `state`
  history: loadHistory(),
};

function addRes(into, r) {
  for (const [k, v] of Object.entries(r || {})) {
    if (typeof v === 'number') into[k] = (into[k] || 0) + v;
  }
}

function dominant(used, totals) {
  let best = { share: 0, resource: null };
  for (const r of SCALARS) {
    const t = totals[r];
    const u = used[r] || 0;
    if (t > 0 && u / t > best.share) best = { share: u / t, resource: r };
  }
  return best;
}

/** Indexes and sums over a /state document, recomputed on each poll. */
function derive(st) {
  const agents = new Map();
  const frameworks = new Map();
  const totals = {};
  const used = {};
  const offered = {};
  let activeAgents = 0;
  for (const a of st.agents || []) {
    const ag = { ...a, live: 0, tasks: 0, offers: [] };
    agents.set(a.id, ag);
    if (a.active) {
      activeAgents++;
      addRes(totals, a.resources);
    }
    addRes(used, a.used);
    addRes(offered, a.offered);
  }
  for (const f of st.frameworks || []) {
    frameworks.set(f.id, { ...f, completed: false, live: 0, tasks: 0, offers: [] });
  }
  for (const f of st.completed_frameworks || []) {
    if (!frameworks.has(f.id)) {
      frameworks.set(f.id, { ...f, completed: true, active: false, live: 0, tasks: 0,
        offers: [], used: {}, offered: {} });
    }
  }
  const tasks = st.tasks || [];
  const states = new Map();
  let live = 0;
  for (const t of tasks) {
    const isLive = !TERMINAL.has(t.state);
    t._live = isLive;
    const f = frameworks.get(t.framework_id);
    const a = agents.get(t.agent_id);
    t._search = `${t.id}\n${t.name || ''}\n${f ? f.name : ''}\n${a ? a.hostname : ''}`.toLowerCase();
    states.set(t.state, (states.get(t.state) || 0) + 1);
    if (isLive) live++;
    for (const x of [f, a]) {
      if (!x) continue;
      x.tasks++;
      if (isLive) x.live++;
    }
  }
  for (const o of st.offers || []) {
    const f = frameworks.get(o.framework_id);
    const a = agents.get(o.agent_id);
    if (f) f.offers.push(o);
    if (a) a.offers.push(o);
  }
  const roles = new Map();
  const role = name => {
    if (!roles.has(name)) {
      const w = (st.weights || {})[name];
      roles.set(name, { name, weight: typeof w === 'number' ? w : 1, weighted: w !== undefined,
        frameworks: [], used: {}, offered: {}, live: 0 });
    }
    return roles.get(name);
  };
  role('*');
  for (const name of Object.keys(st.weights || {})) role(name);
  for (const f of frameworks.values()) {
    if (f.completed) continue;
    f.dominant = dominant(f.used || {}, totals);
    const r = role(f.role || '*');
    r.frameworks.push(f);
    addRes(r.used, f.used);
    addRes(r.offered, f.offered);
    r.live += f.live;
  }
  for (const r of roles.values()) {
    r.dominant = dominant(r.used, totals);
    r.weightedShare = r.weight > 0 ? r.dominant.share / r.weight : null;
  }
  const byKey = new Map(tasks.map(t => [`${t.framework_id}\u0000${t.id}`, t]));
  return { agents, frameworks, tasks, byKey, states, live, totals, used, offered, roles,
    activeAgents };
}

function leading() {
  return !S.health || S.health.role === 'leader';
}

async function poll() {
  try {
    S.health = await getJson('/health');
    S.healthError = null;
  } catch (e) {
    S.healthError = e;
  }
  if (leading()) {
    try {
      S.state = await getJson('/state');
      S.stateError = null;
      S.stateAt = Date.now();
      const t0 = performance.now();
      S.d = derive(S.state);
      S.deriveMs = performance.now() - t0;
      sample();
    } catch (e) {
      S.stateError = e;
    }
  } else {
    // A follower's /state is a redirect to the leader's origin, which the page's CSP
    // (and the browser's same-origin rule) keeps it from reading: say where it is instead.
    S.state = null;
    S.d = null;
    S.stateError = null;
  }
  render();
}

async function pollLoop() {
  try {
    await poll();
  } catch (e) {
    reportError('poll', e);
  }
  setTimeout(pollLoop, POLL_MS);
}

// ---------------------------------------------------------------------------------------
// History: the last hour of totals, kept in this tab (sessionStorage) for the charts.
// ---------------------------------------------------------------------------------------

function loadHistory() {
  try {
    const raw = sessionStorage.getItem(HISTORY_KEY);
    const h = raw ? JSON.parse(raw) : [];
    return Array.isArray(h) ? h.filter(s => s && typeof s.t === 'number') : [];
  } catch (_) {
    return [];
  }
}

let samplesSinceSave = 0;
function sample() {
  const d = S.d;
  const now = Date.now();
  const point = { t: now };
  for (const r of ['cpus', 'mem', 'disk']) {
    point[r] = [d.used[r] || 0, d.offered[r] || 0, d.totals[r] || 0];
  }
  S.history.push(point);
  while (S.history.length && S.history[0].t < now - HISTORY_MS) S.history.shift();
  if (++samplesSinceSave >= 5 || S.history.length < 5) {
    samplesSinceSave = 0;
    try {
      sessionStorage.setItem(HISTORY_KEY, JSON.stringify(S.history));
    } catch (_) { /* storage full or disabled: memory only */ }
  }
}

// ---------------------------------------------------------------------------------------
// Components
// ---------------------------------------------------------------------------------------

const collator = new Intl.Collator('en', { numeric: true });

function compare(a, b) {
  if (a == null && b == null) return 0;
  if (a == null) return 1;
  if (b == null) return -1;
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  return collator.compare(String(a), String(b));
}

/**
 * A table whose rows are kept by key between updates: a cell is written again only when
 * what it shows changed, and rows are moved rather than rebuilt.
 * columns: [{ title, value: row => sortable value, cell?: row => Node|text,
 *             sig?: row => string (what `cell` depends on; default String(value)), num? }]
 */
class Table {
  constructor({ columns, key, sortable = true, sort = null, empty = 'none', pageSize = 0 }) {
    this.columns = columns;
    this.key = key;
    this.sortable = sortable;
    this.sort = sort; // { col, dir: 1 | -1 }
    this.emptyText = empty;
    this.pageSize = pageSize;
    this.page = 0;
    this.rows = new Map();
    this.last = [];
    this.tbody = el('tbody');
    const head = el('tr');
    this.ths = columns.map((c, i) => {
      const th = el('th', { class: `${c.num ? 'num' : ''} ${sortable ? 'sortable' : ''}`,
        scope: 'col' }, c.title);
      if (sortable) th.addEventListener('click', () => this.sortBy(i));
      head.append(th);
      return th;
    });
    this.emptyRow = el('tr', null, el('td', { class: 'muted', colspan: columns.length }));
    this.root = el('div', { class: 'table-wrap' }, el('table', null, el('thead', null, head),
      this.tbody));
    this.onPage = null;
    this.total = 0;
  }

  sortBy(i) {
    if (this.sort && this.sort.col === i) this.sort = { col: i, dir: -this.sort.dir };
    else this.sort = { col: i, dir: 1 };
    this.update(this.last);
  }

  pages() {
    return this.pageSize ? Math.max(1, Math.ceil(this.total / this.pageSize)) : 1;
  }

  setPage(p) {
    this.page = Math.max(0, Math.min(p, this.pages() - 1));
    this.update(this.last);
  }

  update(rows, emptyText) {
    this.last = rows;
    let list = rows;
    if (this.sort) {
      const { col, dir } = this.sort;
      const value = this.columns[col].value;
      // Ties keep the order of their keys, so equal rows do not swap between polls.
      list = rows.map(r => [value(r), String(this.key(r)), r])
        .sort((a, b) => dir * compare(a[0], b[0]) || (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0))
        .map(x => x[2]);
    }
    this.ths.forEach((th, i) => {
      const s = this.sort && this.sort.col === i ? (this.sort.dir > 0 ? 'ascending' : 'descending') : null;
      if (s) th.setAttribute('aria-sort', s); else th.removeAttribute('aria-sort');
    });
    this.total = list.length;
    if (this.pageSize) {
      this.page = Math.max(0, Math.min(this.page, this.pages() - 1));
      list = list.slice(this.page * this.pageSize, (this.page + 1) * this.pageSize);
    }
    const seen = new Set();
    const trs = [];
    for (const r of list) {
      const k = this.key(r);
      if (seen.has(k)) continue;
      seen.add(k);
      let tr = this.rows.get(k);
      if (!tr) {
        tr = el('tr');
        for (const c of this.columns) tr.append(el('td', { class: [c.num ? 'num' : '', c.nowrap ? 'nowrap' : ''].join(' ').trim() || null }));
        this.rows.set(k, tr);
      }
      this.columns.forEach((c, i) => {
        const td = tr.children[i];
        const sig = c.sig ? c.sig(r) : String(c.value(r) ?? '');
        setContent(td, sig, () => (c.cell ? c.cell(r) : c.value(r) ?? ''));
      });
      trs.push(tr);
    }
    for (const k of [...this.rows.keys()]) if (!seen.has(k)) this.rows.delete(k);
    if (trs.length === 0) {
      setText(this.emptyRow.firstChild, emptyText || this.emptyText);
      trs.push(this.emptyRow);
    }
    const current = this.tbody.children;
    const same = current.length === trs.length && trs.every((tr, i) => current[i] === tr);
    if (!same) this.tbody.replaceChildren(...trs);
    if (this.onPage) this.onPage(this);
  }
}

/** Prev / next for a paged Table. */
class Pager {
  constructor(table, onChange) {
    this.table = table;
    this.prev = el('button', { type: 'button', onclick: () => this.go(-1) }, '‹ previous');
    this.next = el('button', { type: 'button', onclick: () => this.go(1) }, 'next ›');
    this.label = el('span');
    this.root = el('div', { class: 'pager' }, this.prev, this.label, this.next);
    this.onChange = onChange;
    table.onPage = () => this.show();
  }

  go(step) {
    this.table.setPage(this.table.page + step);
    if (this.onChange) this.onChange(this.table.page);
  }

  show() {
    const t = this.table;
    const from = t.total ? t.page * t.pageSize + 1 : 0;
    const to = Math.min(t.total, (t.page + 1) * t.pageSize);
    setText(this.label, `${fmtNum(from)}–${fmtNum(to)} of ${fmtNum(t.total)} · page ${t.page + 1} of ${t.pages()}`);
    this.prev.disabled = t.page === 0;
    this.next.disabled = t.page >= t.pages() - 1;
    this.root.hidden = t.pages() <= 1;
  }
}

/** A definition list whose values are updated in place. */
class KV {
  constructor() {
    this.root = el('dl', { class: 'kv' });
    this.items = new Map();
  }

  /** value: text, or a function building nodes (then `sig` says when to rebuild). */
  set(label, value, sig) {
    let item = this.items.get(label);
    if (!item) {
      item = el('dd');
      this.items.set(label, item);
      this.root.append(el('dt', null, label), item);
    }
    if (typeof value === 'function') setContent(item, sig, value);
    else setContent(item, `t:${value ?? ''}`, () => value ?? '');
  }
}

function card(label) {
  const value = el('div', { class: 'value' });
  const sub = el('div', { class: 'sub' });
  const root = el('div', { class: 'card' }, el('div', { class: 'label' }, label), value, sub);
  return {
    root,
    set(v, s) { setText(value, v); setText(sub, s); },
  };
}

function section(title, ...kids) {
  return el('section', null, el('h2', null, title), ...kids);
}

/** Rows of resources: total / used / offered / idle. */
function resourceRows(total, used, offered) {
  const names = new Set([...Object.keys(total || {}), ...Object.keys(used || {}),
    ...Object.keys(offered || {})]);
  return [...names].sort().map(name => {
    const t = (total || {})[name];
    const u = (used || {})[name];
    const o = (offered || {})[name];
    const idle = typeof t === 'number' ? t - (typeof u === 'number' ? u : 0) -
      (typeof o === 'number' ? o : 0) : null;
    return { name, t, u, o, idle };
  });
}

/** A used or offered amount: none of a scalar is 0, none of a range set is a dash. */
function amount(name, v, total) {
  if (v != null) return fmtRes(name, v);
  return typeof total === 'string' ? '—' : fmtRes(name, 0);
}

function resourceTable() {
  return new Table({
    key: r => r.name,
    sortable: false,
    columns: [
      { title: 'resource', value: r => r.name },
      { title: 'total', value: r => fmtRes(r.name, r.t), num: true },
      { title: 'used', value: r => amount(r.name, r.u, r.t), num: true },
      { title: 'offered', value: r => amount(r.name, r.o, r.t), num: true },
      { title: 'idle', value: r => (r.idle == null ? '' : fmtRes(r.name, r.idle)), num: true },
      {
        title: 'in use', value: r => (typeof r.t === 'number' && r.t > 0 ? (r.u || 0) / r.t : null),
        sig: r => `${r.u}/${r.t}`,
        cell: r => (typeof r.t === 'number' && r.t > 0
          ? [el('meter', { min: 0, max: 1, value: Math.min(1, (r.u || 0) / r.t) }), ' ',
            fmtPct((r.u || 0) / r.t)]
          : ''),
      },
    ],
  });
}

/** Tasks, newest update first; `omit` drops a column ('framework', 'agent'). */
function tasksTable(pageSize, omit) {
  const columns = [
    { title: 'task', value: t => t.id, cell: t => el('a', { href: taskHref(t.framework_id, t.id) }, t.id), nowrap: true },
    { title: 'name', value: t => t.name },
    {
      title: 'framework', value: t => frameworkName(t.framework_id),
      sig: t => `${t.framework_id}\u0000${frameworkName(t.framework_id)}`,
      cell: t => frameworkLink(S.d, t.framework_id),
    },
    {
      title: 'agent', value: t => agentName(t.agent_id),
      sig: t => `${t.agent_id}\u0000${agentName(t.agent_id)}`,
      cell: t => agentLink(S.d, t.agent_id),
    },
    { title: 'state', value: t => t.state, cell: t => stateBadge(t.state) },
    { title: 'updated', value: t => t.updated_at_ms ?? null, sig: t => fmtTime(t.updated_at_ms), cell: t => fmtTime(t.updated_at_ms), nowrap: true },
    { title: 'cpus', value: t => (t.resources || {}).cpus ?? null, cell: t => fmtRes('cpus', (t.resources || {}).cpus), num: true },
    { title: 'mem', value: t => (t.resources || {}).mem ?? null, cell: t => fmtRes('mem', (t.resources || {}).mem), num: true, nowrap: true },
  ].filter(c => c.title !== omit);
  return new Table({
    key: t => `${t.framework_id}\u0000${t.id}`,
    pageSize,
    sort: { col: columns.findIndex(c => c.title === 'updated'), dir: -1 },
    columns,
  });
}

function frameworkName(id) {
  const f = S.d && S.d.frameworks.get(id);
  return f ? f.name : id;
}

function agentName(id) {
  const a = S.d && S.d.agents.get(id);
  return a ? a.hostname : id;
}

function offersTable(showFramework) {
  return new Table({
    key: o => o.id,
    columns: [
      { title: 'offer', value: o => o.id },
      showFramework
        ? { title: 'framework', value: o => frameworkName(o.framework_id), sig: o => `${o.framework_id}\u0000${frameworkName(o.framework_id)}`, cell: o => frameworkLink(S.d, o.framework_id) }
        : { title: 'agent', value: o => agentName(o.agent_id), sig: o => `${o.agent_id}\u0000${agentName(o.agent_id)}`, cell: o => agentLink(S.d, o.agent_id) },
      { title: 'resources', value: o => fmtResources(o.resources) },
      { title: 'made', value: o => o.created_at_ms ?? null, sig: o => fmtAgo(o.created_at_ms), cell: o => fmtAgo(o.created_at_ms), nowrap: true },
    ],
  });
}

function agentStates(a) {
  const out = [];
  if (a.active) out.push(['active', 'ok']);
  else out.push(['unreachable', 'bad']);
  if (a.drain && typeof a.drain === 'object') {
    const st = String(a.drain.state || 'DRAINING').toLowerCase();
    out.push([st, st === 'drained' ? 'info' : 'warn']);
  }
  if (a.deactivated) out.push(['deactivated', 'warn']);
  return out;
}

function agentStateCell(a) {
  return agentStates(a).map(([label, cls]) => badge(label, cls));
}

function drainText(a) {
  if (!a.drain || typeof a.drain !== 'object') return 'not draining';
  const parts = [String(a.drain.state || 'DRAINING').toLowerCase()];
  if (typeof a.drain.deadline_ms === 'number' && a.drain.deadline_ms > 0) {
    parts.push(`tasks killed after ${fmtTime(a.drain.deadline_ms)} (${fmtAgo(a.drain.deadline_ms)})`);
  }
  if (a.drain.mark_gone) parts.push('then marked gone');
  return parts.join('; ');
}

function usedOf(a, r) {
  const t = (a.resources || {})[r];
  const u = (a.used || {})[r] || 0;
  return `${fmtRes(r, u)} / ${fmtRes(r, t ?? 0)}`;
}

// ---------------------------------------------------------------------------------------
// Views: each builds its DOM once and updates it on every poll.
// ---------------------------------------------------------------------------------------

/** The part of a view shown when the leader's state is not here (follower, error). */
function needsState(view) {
  if (S.d) return false;
  setText(view.placeholder, S.stateError ? `no cluster state: ${describeError(S.stateError)}`
    : leading() ? 'loading…' : 'This master is a follower: the cluster’s data is on the leader (see above).');
  return true;
}

function shell(title) {
  const h1 = el('h1', null, title);
  const placeholder = el('p', { class: 'muted' });
  const body = el('div');
  const root = el('div', null, h1, placeholder, body);
  return { h1, placeholder, body, root };
}

function overviewView() {
  const v = shell('Overview');
  const cards = {
    leader: card('leader'), term: card('term'), replica: card('this master'),
    agents: card('agents'), frameworks: card('frameworks'), tasks: card('tasks'),
  };
  const members = new Table({
    key: m => String(m.id),
    columns: [
      { title: 'id', value: m => m.id, num: true },
      { title: 'address', value: m => m.address },
      { title: 'role', value: m => m.role, cell: m => badge(m.role, m.role === 'leader' ? 'info' : '') },
      { title: 'voter', value: m => (m.voter ? 'yes' : 'no (learner)') },
      {
        title: 'health', value: m => (m.healthy ? 0 : 1), sig: m => `${m.healthy}/${m.last_contact_ms == null}`,
        cell: m => (m.healthy ? badge('healthy', 'ok')
          : badge(m.last_contact_ms == null ? 'never answered' : 'not answering', 'bad')),
      },
      { title: 'last answer', value: m => m.last_contact_ms ?? null, cell: m => (m.last_contact_ms == null ? '—' : `${fmtDuration(m.last_contact_ms)} ago`), num: true },
      { title: 'log index held', value: m => m.matched_index ?? null, cell: m => fmtNum(m.matched_index ?? null), num: true },
    ],
  });
  const resources = resourceTable();
  const charts = ['cpus', 'mem', 'disk'].map(r => chart(r));
  const legend = el('div', { class: 'legend' },
    el('span', null, el('span', { class: 'swatch used' }), 'used'),
    el('span', null, el('span', { class: 'swatch offered' }), 'offered'),
    el('span', null, el('span', { class: 'swatch total' }), 'total (active agents)'));
  const chartNote = el('p', { class: 'note' });
  // The quorum's cards come from this master's /health and show on a follower too.
  v.root.insertBefore(el('div', { class: 'cards' }, cards.leader.root, cards.term.root,
    cards.replica.root, cards.agents.root, cards.frameworks.root, cards.tasks.root), v.placeholder);
  append(v.body, [
    section('Resources', resources.root),
    section('Last hour', legend, chartNote, el('div', { class: 'charts' }, charts.map(c => c.root))),
    section('Members of the quorum', members.root),
  ]);
  return {
    root: v.root,
    update() {
      const h = S.health;
      if (h) {
        cards.leader.set(h.leader || 'none known', h.role === 'leader' ? 'this master' : '');
        cards.term.set(h.term, '');
        cards.replica.set(`replica ${h.id}`, h.role + (h.insecure ? ' · insecure' : ''));
      } else {
        cards.leader.set('?', S.healthError ? describeError(S.healthError) : '');
      }
      const clusterCards = [cards.agents, cards.frameworks, cards.tasks];
      if (needsState(v)) {
        v.body.hidden = true;
        for (const c of clusterCards) c.root.hidden = true;
        return;
      }
      v.body.hidden = false;
      for (const c of clusterCards) c.root.hidden = false;
      setText(v.placeholder, '');
      const d = S.d;
      const st = S.state;
      cards.agents.set(fmtNum(d.activeAgents), `active of ${fmtNum(d.agents.size)} registered`);
      const fws = [...d.frameworks.values()].filter(f => !f.completed);
      cards.frameworks.set(fmtNum(fws.length), `${fmtNum(fws.filter(f => f.active).length)} connected · ${fmtNum(d.frameworks.size - fws.length)} completed`);
      cards.tasks.set(fmtNum(d.live), `live of ${fmtNum(d.tasks.length)} kept`);
      members.update(st.members || [], 'no membership in /state');
      resources.update(resourceRows(d.totals, d.used, d.offered));
      const span = S.history.length > 1 ? S.history[S.history.length - 1].t - S.history[0].t : 0;
      setText(chartNote, `${fmtNum(S.history.length)} samples over ${fmtDuration(span)}, taken every ${POLL_MS / 1000} s while this page is open and kept in this browser tab for an hour.`);
      for (const c of charts) c.update(S.history);
    },
  };
}

/**
 * A stacked area chart of one resource over the last hour: used, offered, total. The time
 * axis spans what the tab has seen, from 5 minutes up to the hour.
 */
function chart(resource) {
  const W = 400, H = 150, L = 56, R = 8, T = 8, B = 22;
  const used = svg('path', { class: 'used' });
  const offered = svg('path', { class: 'offered' });
  const total = svg('polyline', { class: 'total' });
  const yTop = svg('text', { class: 'axis', x: L - 4, y: T + 10, 'text-anchor': 'end' });
  const yMid = svg('text', { class: 'axis', x: L - 4, y: T + (H - T - B) / 2 + 4, 'text-anchor': 'end' });
  const grid = [T, T + (H - T - B) / 2, H - B].map(y => svg('line', { class: 'grid', x1: L, x2: W - R, y1: y, y2: y }));
  const xStart = svg('text', { class: 'axis', x: L, y: H - 6, 'text-anchor': 'start' });
  const xMid = svg('text', { class: 'axis', x: L + (W - L - R) / 2, y: H - 6, 'text-anchor': 'middle' });
  const xEnd = svg('text', { class: 'axis', x: W - R, y: H - 6, 'text-anchor': 'end' }, 'now');
  const zero = svg('text', { class: 'axis', x: L - 4, y: H - B + 4, 'text-anchor': 'end' }, '0');
  const root = el('div', { class: 'chart' }, el('h3', null, resource),
    svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `${resource} over the last hour` },
      ...grid, used, offered, total, yTop, yMid, zero, xStart, xMid, xEnd));
  return {
    root,
    update(history) {
      const now = Date.now();
      const pts = history.filter(p => Array.isArray(p[resource]) && p.t > now - HISTORY_MS);
      const seen = pts.length ? now - pts[0].t : 0;
      const minutes = Math.min(60, Math.max(5, Math.ceil(seen / 60000 / 5) * 5));
      const span = minutes * 60000;
      setText(xStart, `−${minutes} min`);
      setText(xMid, `−${minutes / 2} min`);
      let max = 0;
      for (const p of pts) max = Math.max(max, p[resource][2], p[resource][0] + p[resource][1]);
      if (max <= 0) max = 1;
      const x = t => L + (W - L - R) * Math.max(0, Math.min(1, 1 - (now - t) / span));
      const y = v => H - B - (H - T - B) * (v / max);
      const area = (lo, hi) => {
        if (pts.length === 0) return '';
        const top = pts.map(p => `${x(p.t).toFixed(1)},${y(hi(p)).toFixed(1)}`);
        const bottom = pts.slice().reverse().map(p => `${x(p.t).toFixed(1)},${y(lo(p)).toFixed(1)}`);
        return `M${top.join('L')}L${bottom.join('L')}Z`;
      };
      used.setAttribute('d', area(() => 0, p => p[resource][0]));
      offered.setAttribute('d', area(p => p[resource][0], p => p[resource][0] + p[resource][1]));
      total.setAttribute('points', pts.map(p => `${x(p.t).toFixed(1)},${y(p[resource][2]).toFixed(1)}`).join(' '));
      setText(yTop, fmtRes(resource, max));
      setText(yMid, fmtRes(resource, max / 2));
    },
  };
}

function agentsView() {
  const v = shell('Agents');
  const table = new Table({
    key: a => a.id,
    sort: { col: 1, dir: 1 },
    columns: [
      { title: 'id', value: a => a.id, cell: a => el('a', { href: agentHref(a.id) }, a.id) },
      { title: 'hostname', value: a => a.hostname },
      { title: 'address', value: a => a.address },
      {
        title: 'state', value: a => agentStates(a).map(s => s[0]).join(' '),
        cell: a => agentStateCell(a),
      },
      { title: 'cpus used', value: a => (a.used || {}).cpus || 0, sig: a => usedOf(a, 'cpus'), cell: a => usedOf(a, 'cpus'), num: true },
      { title: 'mem used', value: a => (a.used || {}).mem || 0, sig: a => usedOf(a, 'mem'), cell: a => usedOf(a, 'mem'), num: true },
      { title: 'disk used', value: a => (a.used || {}).disk || 0, sig: a => usedOf(a, 'disk'), cell: a => usedOf(a, 'disk'), num: true },
      { title: 'offered', value: a => fmtResources(a.offered) },
      { title: 'live tasks', value: a => a.live, num: true },
      { title: 'attributes', value: a => Object.entries(a.attributes || {}).map(([k, x]) => `${k}=${x}`).join(', ') },
    ],
  });
  const filter = el('input', { type: 'search', placeholder: 'filter by id, hostname, address or attribute', 'aria-label': 'filter agents' });
  const count = el('span', { class: 'muted' });
  append(v.body, [el('div', { class: 'controls' }, filter, count), table.root]);
  const update = () => {
    if (needsState(v)) { v.body.hidden = true; return; }
    v.body.hidden = false;
    setText(v.placeholder, '');
    const q = filter.value.trim().toLowerCase();
    const all = [...S.d.agents.values()];
    const rows = q ? all.filter(a => `${a.id}\n${a.hostname}\n${a.address}\n${Object.entries(a.attributes || {}).join('\n')}`.toLowerCase().includes(q)) : all;
    setText(count, `${fmtNum(rows.length)} of ${fmtNum(all.length)} agents`);
    table.update(rows, all.length ? 'no agent matches' : 'no agent has registered');
  };
  filter.addEventListener('input', update);
  return { root: v.root, update };
}

function agentView(id) {
  const v = shell('Agent');
  const kv = new KV();
  const resources = resourceTable();
  const attrs = new Table({
    key: r => r[0],
    columns: [{ title: 'attribute', value: r => r[0] }, { title: 'value', value: r => r[1] }],
  });
  const tasks = tasksTable(PAGE_SIZE, 'agent');
  const pager = new Pager(tasks);
  const offers = offersTable(true);
  const tasksLink = el('a', { href: `#/tasks?agent=${enc(id)}` }, 'open in the task list');
  append(v.body, [kv.root, section('Resources', resources.root),
    section('Attributes', attrs.root),
    section('Tasks', el('p', { class: 'note' }, tasksLink), tasks.root, pager.root),
    section('Outstanding offers', offers.root)]);
  return {
    root: v.root,
    update() {
      if (needsState(v)) { v.body.hidden = true; return; }
      const a = S.d.agents.get(id);
      if (!a) {
        v.body.hidden = true;
        setText(v.placeholder, `No agent ${id} in the leader's state.`);
        return;
      }
      v.body.hidden = false;
      setText(v.placeholder, '');
      setText(v.h1, `Agent ${a.hostname}`);
      kv.set('id', a.id);
      kv.set('hostname', a.hostname);
      kv.set('address', a.address);
      const states = agentStates(a);
      kv.set('state', () => agentStateCell(a), states.join('|'));
      kv.set('drain', drainText(a));
      kv.set('deactivated', a.deactivated ? 'yes: no offers are made for it' : 'no');
      kv.set('registered', a.registered_at_ms ? `${fmtTime(a.registered_at_ms)} (${fmtAgo(a.registered_at_ms)})` : '');
      kv.set('tasks', `${fmtNum(a.live)} live of ${fmtNum(a.tasks)}`);
      resources.update(resourceRows(a.resources, a.used, a.offered));
      attrs.update(Object.entries(a.attributes || {}), 'no attributes');
      tasks.update(S.d.tasks.filter(t => t.agent_id === id), 'no tasks on this agent');
      offers.update(a.offers, 'no outstanding offers');
    },
  };
}

function frameworksView() {
  const v = shell('Frameworks');
  const table = new Table({
    key: f => f.id,
    sort: { col: 7, dir: -1 },
    columns: [
      { title: 'id', value: f => f.id, cell: f => el('a', { href: frameworkHref(f.id) }, f.id) },
      { title: 'name', value: f => f.name },
      { title: 'role', value: f => f.role, cell: f => el('a', { href: '#/roles' }, f.role) },
      { title: 'principal', value: f => f.principal ?? '' },
      { title: 'state', value: f => (f.active ? 'connected' : 'disconnected'), cell: f => badge(f.active ? 'connected' : 'disconnected', f.active ? 'ok' : 'warn') },
      { title: 'live tasks', value: f => f.live, num: true },
      { title: 'cpus · mem used', value: f => (f.used || {}).cpus || 0, sig: f => `${(f.used || {}).cpus}/${(f.used || {}).mem}`, cell: f => `${fmtRes('cpus', (f.used || {}).cpus || 0)} · ${fmtRes('mem', (f.used || {}).mem || 0)}`, num: true },
      { title: 'dominant share', value: f => f.dominant.share, sig: f => `${fmtPct(f.dominant.share)}${f.dominant.resource}`, cell: f => (f.dominant.resource ? `${fmtPct(f.dominant.share)} ${f.dominant.resource}` : '0%'), num: true },
      { title: 'offers', value: f => f.offers.length, sig: f => `${f.offers.length}/${fmtResources(f.offered)}`, cell: f => (f.offers.length ? `${f.offers.length}: ${fmtResources(f.offered)}` : '0'), num: true },
    ],
  });
  const completed = new Table({
    key: f => f.id,
    sort: { col: 4, dir: -1 },
    columns: [
      { title: 'id', value: f => f.id, cell: f => el('a', { href: frameworkHref(f.id) }, f.id) },
      { title: 'name', value: f => f.name },
      { title: 'role', value: f => f.role },
      { title: 'tasks kept', value: f => f.tasks, num: true },
      { title: 'removed', value: f => f.removed_at_ms ?? null, sig: f => fmtTime(f.removed_at_ms), cell: f => fmtTime(f.removed_at_ms) },
    ],
  });
  append(v.body, [table.root, section('Completed frameworks', completed.root)]);
  return {
    root: v.root,
    update() {
      if (needsState(v)) { v.body.hidden = true; return; }
      v.body.hidden = false;
      setText(v.placeholder, '');
      const all = [...S.d.frameworks.values()];
      table.update(all.filter(f => !f.completed), 'no framework is subscribed');
      completed.update(all.filter(f => f.completed), 'none kept');
    },
  };
}

function frameworkView(id) {
  const v = shell('Framework');
  const kv = new KV();
  const share = new Table({
    key: r => r.name,
    sortable: false,
    columns: [
      { title: 'resource', value: r => r.name },
      { title: 'used', value: r => amount(r.name, r.u, r.t), num: true },
      { title: 'offered', value: r => amount(r.name, r.o, r.t), num: true },
      { title: 'cluster total', value: r => fmtRes(r.name, r.t), num: true },
      { title: 'share', value: r => (typeof r.t === 'number' && r.t > 0 ? fmtPct((r.u || 0) / r.t) : ''), num: true },
    ],
  });
  const tasks = tasksTable(PAGE_SIZE, 'framework');
  const pager = new Pager(tasks);
  const offers = offersTable(false);
  const tasksLink = el('a', { href: `#/tasks?framework=${enc(id)}` }, 'open in the task list');
  append(v.body, [kv.root, section('Resources and shares', share.root),
    section('Tasks', el('p', { class: 'note' }, tasksLink), tasks.root, pager.root),
    section('Outstanding offers', offers.root)]);
  return {
    root: v.root,
    update() {
      if (needsState(v)) { v.body.hidden = true; return; }
      const f = S.d.frameworks.get(id);
      if (!f) {
        v.body.hidden = true;
        setText(v.placeholder, `No framework ${id} in the leader's state.`);
        return;
      }
      v.body.hidden = false;
      setText(v.placeholder, '');
      setText(v.h1, `Framework ${f.name}`);
      kv.set('id', f.id);
      kv.set('name', f.name);
      kv.set('role', f.role);
      kv.set('principal', f.principal ?? '—');
      kv.set('user', f.user ?? '');
      kv.set('state', () => (f.completed ? badge('completed', '') : badge(f.active ? 'connected' : 'disconnected', f.active ? 'ok' : 'warn')), `${f.completed}${f.active}`);
      if (f.completed) kv.set('removed', fmtTime(f.removed_at_ms));
      else kv.set('registered', f.registered_at_ms ? `${fmtTime(f.registered_at_ms)} (${fmtAgo(f.registered_at_ms)})` : '');
      kv.set('dominant share', f.dominant && f.dominant.resource ? `${fmtPct(f.dominant.share)} of the cluster's ${f.dominant.resource}` : '0%');
      kv.set('tasks', `${fmtNum(f.live)} live of ${fmtNum(f.tasks)}`);
      kv.set('offers', `${fmtNum(f.offers.length)} outstanding`);
      const names = new Set([...Object.keys(f.used || {}), ...Object.keys(f.offered || {}), ...SCALARS.filter(r => S.d.totals[r] > 0)]);
      share.update([...names].sort().map(name => ({ name, u: (f.used || {})[name], o: (f.offered || {})[name], t: S.d.totals[name] })));
      tasks.update(S.d.tasks.filter(t => t.framework_id === id), 'no tasks');
      offers.update(f.offers, 'no outstanding offers');
    },
  };
}

function tasksView(query) {
  const v = shell('Tasks');
  const table = tasksTable(PAGE_SIZE);
  const f = {
    state: query.get('state') || '',
    framework: query.get('framework') || '',
    agent: query.get('agent') || '',
    q: query.get('q') || '',
  };
  table.page = Math.max(0, (parseInt(query.get('page') || '1', 10) || 1) - 1);
  const stateSel = el('select', { 'aria-label': 'state' });
  const fwSel = el('select', { 'aria-label': 'framework' });
  const agentSel = el('select', { 'aria-label': 'agent' });
  const search = el('input', { type: 'search', placeholder: 'search id, name, framework, agent', 'aria-label': 'search tasks' });
  search.value = f.q;
  const count = el('span', { class: 'muted' });
  const writeHash = () => {
    const p = new URLSearchParams();
    for (const [k, x] of Object.entries(f)) if (x) p.set(k, x);
    if (table.page > 0) p.set('page', String(table.page + 1));
    const s = p.toString();
    history.replaceState(null, '', `#/tasks${s ? `?${s}` : ''}`);
  };
  const pager = new Pager(table, writeHash);
  const changed = () => {
    f.state = stateSel.value;
    f.framework = fwSel.value;
    f.agent = agentSel.value;
    f.q = search.value.trim();
    table.page = 0;
    writeHash();
    update();
  };
  for (const s of [stateSel, fwSel, agentSel]) s.addEventListener('change', changed);
  search.addEventListener('input', changed);
  append(v.body, [
    el('div', { class: 'controls' },
      el('label', null, 'state ', stateSel), el('label', null, 'framework ', fwSel),
      el('label', null, 'agent ', agentSel), search, count),
    pager.root, table.root,
  ]);
  /** Fills a select's options when they change, keeping the selection. */
  const options = (sel, list, selected) => {
    const sig = JSON.stringify(list);
    if (sel._sig !== sig) {
      sel._sig = sig;
      sel.replaceChildren(...list.map(([value, label]) => el('option', { value }, label)));
    }
    if (!list.some(([value]) => value === selected) && selected) {
      sel.append(el('option', { value: selected }, selected));
      sel._sig = null;
    }
    sel.value = selected;
  };
  function update() {
    if (needsState(v)) { v.body.hidden = true; return; }
    v.body.hidden = false;
    setText(v.placeholder, '');
    const d = S.d;
    const states = [...d.states.entries()].sort((a, b) => compare(a[0], b[0]));
    options(stateSel, [['', 'all'], ['live', 'live (not terminal)'], ['terminal', 'terminal'],
      ...states.map(([s, n]) => [s, `${s.replace(/^TASK_/, '').toLowerCase()} (${n})`])], f.state);
    options(fwSel, [['', 'all'], ...[...d.frameworks.values()]
      .sort((a, b) => compare(a.name, b.name)).map(x => [x.id, `${x.name} (${x.id})`])], f.framework);
    options(agentSel, [['', 'all'], ...[...d.agents.values()]
      .sort((a, b) => compare(a.hostname, b.hostname)).map(x => [x.id, `${x.hostname} (${x.id})`])], f.agent);
    const q = f.q.toLowerCase();
    const rows = d.tasks.filter(t =>
      (!f.state || (f.state === 'live' ? t._live : f.state === 'terminal' ? !t._live : t.state === f.state)) &&
      (!f.framework || t.framework_id === f.framework) &&
      (!f.agent || t.agent_id === f.agent) &&
      (!q || t._search.includes(q)));
    setText(count, `${fmtNum(rows.length)} of ${fmtNum(d.tasks.length)} tasks`);
    table.update(rows, d.tasks.length ? 'no task matches' : 'no tasks');
  }
  return { root: v.root, update };
}

/** Reads a task's sandbox through the master's /files endpoints. */
function filesUrl(kind, task, params) {
  const p = new URLSearchParams({ task: task.id, framework: task.framework_id, ...params });
  return `/files/${kind}?${p}`;
}

/** The master's sign-in page, which asks for credentials and comes back to this view. */
function loginUrl() {
  return `/login?next=${encodeURIComponent(location.pathname + location.hash)}`;
}

function filesError(e, kind) {
  if (e instanceof HttpError) {
    if (e.status === 404 && !(e.json && typeof e.json.error === 'string')) {
      return `this master does not serve task sandboxes (/files/${kind} answered 404)`;
    }
    if (e.status === 401) return 'reading sandboxes needs credentials: reload the page to sign in';
  }
  return describeError(e);
}

/** Tails one file of a task's sandbox: its last TAIL_BYTES, then what is appended. */
class LogTail {
  constructor(task) {
    this.task = task;
    this.pre = el('pre', { class: 'log', 'aria-live': 'off' });
    this.status = el('p', { class: 'note' });
    this.buttons = new Map();
    this.download = el('a', { href: '#' }, 'download');
    const tabs = el('div', { class: 'tabs' });
    for (const name of ['stdout', 'stderr']) {
      const b = el('button', { type: 'button', onclick: () => this.open(name) }, name);
      this.buttons.set(name, b);
      tabs.append(b);
    }
    this.follow = el('input', { type: 'checkbox', checked: true });
    tabs.append(el('label', { class: 'muted' }, ' ', this.follow, ' follow'), ' ', this.download);
    this.root = el('div', null, tabs, this.status, this.pre);
    this.path = null;
    this.busy = false;
    this.gone = false;
    this.open('stdout');
  }

  open(path) {
    this.path = path;
    this.offset = null;
    this.error = null;
    this.gone = false;
    this.pre.replaceChildren();
    this.pre.hidden = false;
    for (const [name, b] of this.buttons) b.className = name === path ? 'active' : '';
    this.download.setAttribute('href', safeHref(filesUrl('download', this.task, { path })));
    setText(this.status, `reading ${path}…`);
    this.tick();
  }

  async tick() {
    if (this.busy || this.gone || !this.path) return;
    this.busy = true;
    const path = this.path;
    try {
      if (this.offset == null) {
        const end = await getJson(filesUrl('read', this.task, { path, offset: -1 }));
        if (path !== this.path) return;
        const size = typeof end.offset === 'number' ? end.offset : 0;
        this.offset = Math.max(0, size - TAIL_BYTES);
        if (this.offset > 0) this.pre.append(`[… the first ${fmtBytes(this.offset)} are not shown …]\n`);
      }
      for (let i = 0; i < 8; i++) {
        const r = await getJson(filesUrl('read', this.task, { path, offset: this.offset, length: READ_CHUNK }));
        if (path !== this.path) return;
        const data = typeof r.data === 'string' ? r.data : '';
        if (!data) break;
        // The bytes of the file it covers (`length`): invalid UTF-8 shows as U+FFFD.
        this.offset += typeof r.length === 'number' ? r.length : new TextEncoder().encode(data).length;
        this.pre.append(data);
        if (this.pre.textContent.length > LOG_KEEP_CHARS) {
          this.pre.textContent = this.pre.textContent.slice(-LOG_KEEP_CHARS / 2);
        }
        if (data.length < READ_CHUNK / 4) break;
      }
      setText(this.status, `${path}: ${fmtBytes(this.offset)}${this.pre.textContent ? '' : ' (empty)'}`);
      if (this.follow.checked) this.pre.scrollTop = this.pre.scrollHeight;
    } catch (e) {
      if (path !== this.path) return;
      if (e instanceof HttpError && e.status === 401) {
        // Sandboxes are never read anonymously: sign in (HTTP Basic) and come back here.
        this.status.replaceChildren(
          `${path}: reading sandboxes needs credentials: `,
          el('a', { href: safeHref(loginUrl()) }, 'sign in'),
        );
        this.gone = true;
        this.pre.hidden = true;
        return;
      }
      setText(this.status, `${path}: ${filesError(e, 'read')}`);
      // An endpoint the master does not have is not asked again until the file is reopened.
      if (e instanceof HttpError && e.status === 404 && !(e.json && e.json.error)) this.gone = true;
      this.pre.hidden = this.gone;
    } finally {
      this.busy = false;
    }
  }
}

/** Lists a task's sandbox, a directory at a time. */
class SandboxBrowser {
  constructor(task, onView) {
    this.task = task;
    this.onView = onView;
    this.dir = '';
    this.crumbs = el('div', { class: 'crumbs' });
    this.status = el('p', { class: 'note' });
    this.table = new Table({
      key: e => e.full,
      sort: { col: 0, dir: 1 },
      columns: [
        {
          title: 'name', value: e => `${e.isDir ? 0 : 1}${e.name}`, sig: e => `${e.full}/${e.isDir}`,
          cell: e => (e.isDir
            ? el('a', { href: '#', onclick: ev => { ev.preventDefault(); this.go(e.full); } }, `${e.name}/`)
            : el('a', { href: '#', onclick: ev => { ev.preventDefault(); this.onView(e.full); } }, e.name)),
        },
        { title: 'size', value: e => e.size ?? null, cell: e => (e.isDir ? '' : fmtBytes(e.size)), num: true },
        { title: 'mode', value: e => e.mode ?? '' },
        { title: 'modified', value: e => e.mtime ?? null, sig: e => String(e.mtime), cell: e => (typeof e.mtime === 'number' ? fmtTime(e.mtime * 1000) : '') },
        {
          title: '', value: e => e.full, sig: e => `${e.full}/${e.isDir}`,
          cell: e => (e.isDir ? '' : el('a', { href: filesUrl('download', this.task, { path: e.full }) }, 'download')),
        },
      ],
    });
    this.root = el('div', null, this.crumbs, this.status, this.table.root);
    this.loadedAt = 0;
    this.busy = false;
    this.gone = false;
    this.go('');
  }

  go(dir) {
    this.dir = dir;
    this.gone = false;
    this.table.update([], 'loading…');
    const parts = dir ? dir.split('/') : [];
    const crumbs = [el('a', { href: '#', onclick: ev => { ev.preventDefault(); this.go(''); } }, 'sandbox')];
    parts.forEach((p, i) => {
      const to = parts.slice(0, i + 1).join('/');
      crumbs.push(' / ', el('a', { href: '#', onclick: ev => { ev.preventDefault(); this.go(to); } }, p));
    });
    this.crumbs.replaceChildren(...crumbs);
    this.load(true);
  }

  async load(force) {
    if (this.busy || this.gone || (!force && Date.now() - this.loadedAt < 5000)) return;
    this.busy = true;
    const dir = this.dir;
    try {
      const list = await getJson(filesUrl('browse', this.task, { path: dir }));
      if (dir !== this.dir) return;
      if (!Array.isArray(list)) throw new Error('/files/browse: the answer is not a list');
      const entries = list.filter(e => e && typeof e.path === 'string').map(e => {
        const rel = e.path.replace(/^\/+/, '');
        const full = !dir || rel.startsWith(`${dir}/`) ? rel : `${dir}/${rel}`;
        const name = full.split('/').filter(Boolean).pop() || full;
        return { ...e, full, name, isDir: typeof e.mode === 'string' && e.mode.startsWith('d') };
      });
      setText(this.status, '');
      this.table.update(entries, 'empty directory');
      this.loadedAt = Date.now();
    } catch (e) {
      if (dir !== this.dir) return;
      setText(this.status, filesError(e, 'browse'));
      this.table.update([], 'not available');
      this.loadedAt = Date.now();
      if (e instanceof HttpError && e.status === 404 && !(e.json && e.json.error)) this.gone = true;
    } finally {
      this.busy = false;
    }
  }
}

function taskView(frameworkId, taskId) {
  const v = shell(`Task ${taskId}`);
  const kv = new KV();
  const ref = { id: taskId, framework_id: frameworkId };
  const tail = new LogTail(ref);
  const browser = new SandboxBrowser(ref, path => tail.open(path));
  append(v.body, [kv.root, section('Output', tail.root), section('Sandbox', browser.root)]);
  return {
    root: v.root,
    update() {
      tail.tick();
      browser.load(false);
      if (needsState(v)) { kv.root.hidden = true; return; }
      const t = S.d.byKey.get(`${frameworkId}\u0000${taskId}`);
      if (!t) {
        kv.root.hidden = true;
        setText(v.placeholder, `No task ${taskId} of framework ${frameworkId} in the leader's state (finished tasks are kept up to --max-completed-tasks-per-framework).`);
        return;
      }
      kv.root.hidden = false;
      setText(v.placeholder, '');
      setText(v.h1, `Task ${t.name || t.id}`);
      kv.set('id', t.id);
      kv.set('name', t.name);
      kv.set('state', () => stateBadge(t.state), t.state);
      kv.set('message', t.message || '—');
      kv.set('exit code', t.exit_code ?? '—');
      kv.set('framework', () => frameworkLink(S.d, t.framework_id), `${t.framework_id}\u0000${frameworkName(t.framework_id)}`);
      kv.set('agent', () => agentLink(S.d, t.agent_id), `${t.agent_id}\u0000${agentName(t.agent_id)}`);
      kv.set('user', t.user ?? '');
      kv.set('image', t.image || '—');
      kv.set('resources', fmtResources(t.resources));
      kv.set('updated', t.updated_at_ms ? `${fmtTime(t.updated_at_ms)} (${fmtAgo(t.updated_at_ms)})` : '');
    },
  };
}

function rolesView() {
  const v = shell('Roles and weights');
  const table = new Table({
    key: r => r.name,
    sort: { col: 0, dir: 1 },
    columns: [
      { title: 'role', value: r => r.name },
      { title: 'weight', value: r => r.weight, cell: r => `${fmtNum(r.weight)}${r.weighted ? '' : ' (default)'}`, sig: r => `${r.weight}${r.weighted}`, num: true },
      {
        title: 'frameworks', value: r => r.frameworks.length, sig: r => r.frameworks.map(f => `${f.id}\u0000${f.name}`).join('\u0001'),
        cell: r => (r.frameworks.length ? r.frameworks.flatMap((f, i) => [i ? ', ' : '', el('a', { href: frameworkHref(f.id) }, f.name)]) : '0'),
      },
      { title: 'live tasks', value: r => r.live, num: true },
      { title: 'used', value: r => fmtResources(r.used) },
      { title: 'offered', value: r => fmtResources(r.offered) },
      { title: 'dominant share', value: r => r.dominant.share, sig: r => `${fmtPct(r.dominant.share)}${r.dominant.resource}`, cell: r => (r.dominant.resource ? `${fmtPct(r.dominant.share)} ${r.dominant.resource}` : '0%'), num: true },
      { title: 'share / weight', value: r => r.weightedShare, sig: r => fmtPct(r.weightedShare), cell: r => fmtPct(r.weightedShare), num: true },
    ],
  });
  append(v.body, [
    el('p', { class: 'note' }, 'The allocator offers to the role with the lowest dominant share divided by its weight first. A role without a weight weighs 1; set one with `agora weights set ROLE WEIGHT`.'),
    table.root,
  ]);
  return {
    root: v.root,
    update() {
      if (needsState(v)) { v.body.hidden = true; return; }
      v.body.hidden = false;
      setText(v.placeholder, '');
      table.update([...S.d.roles.values()]);
    },
  };
}

function notFoundView(name) {
  const v = shell('Not found');
  setText(v.placeholder, `There is no page “${name}”.`);
  return { root: v.root, update() {} };
}

// ---------------------------------------------------------------------------------------
// The page: routing, the status line and the follower banner.
// ---------------------------------------------------------------------------------------

let current = null;

function viewFor(route) {
  const [a, b] = route.args;
  switch (route.name) {
    case 'overview': return overviewView();
    case 'agents': return a ? agentView(a) : agentsView();
    case 'frameworks': return a ? frameworkView(a) : frameworksView();
    case 'tasks': return a && b ? taskView(a, b) : tasksView(route.query);
    case 'roles': return roleOrNot(a);
    default: return notFoundView(route.name);
  }
}

function roleOrNot(a) {
  return a ? notFoundView(`roles/${a}`) : rolesView();
}

function route() {
  const r = parseRoute();
  try {
    current = { name: r.name, view: viewFor(r) };
  } catch (e) {
    reportError(`building the ${r.name} view`, e);
    current = { name: r.name, view: notFoundView(r.name) };
  }
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.route === r.name) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.getElementById('view').replaceChildren(current.view.root);
  document.body.dataset.view = r.name;
  document.body.dataset.rendered = '';
  render();
}

function leaderUrl(addr) {
  // A HOST:PORT from the quorum's membership; anything else is shown, not linked.
  if (typeof addr !== 'string' || !/^[A-Za-z0-9.\-_[\]:]+$/.test(addr)) return null;
  try {
    return new URL(`${location.protocol}//${addr}/${location.hash}`).href;
  } catch (_) {
    return null;
  }
}

function renderChrome() {
  const status = document.getElementById('status');
  const banner = document.getElementById('banner');
  const h = S.health;
  if (h) {
    const age = S.stateAt ? ` · updated ${fmtTime(S.stateAt).slice(11)}` : '';
    setText(status, `replica ${h.id} · ${h.role} · term ${h.term}${age}`);
    status.className = 'status';
  } else if (S.healthError) {
    setText(status, `unreachable: ${describeError(S.healthError)}`);
    status.className = 'status bad';
  }
  let sig = '';
  let build = () => [];
  let bad = false;
  if (h && h.role !== 'leader') {
    if (h.leader) {
      const url = leaderUrl(h.leader);
      sig = `f:${h.leader}:${url}`;
      build = () => [`This master (replica ${h.id}) is a ${h.role}; the leader is ${h.leader}, which serves the cluster's data: `,
        url ? el('a', { href: url, id: 'leader-link' }, `open the leader's UI`) : h.leader, '.'];
    } else {
      sig = 'noleader';
      build = () => [`This master (replica ${h.id}) is a ${h.role} and knows no leader yet (an election may be under way); retrying every ${POLL_MS / 1000} s.`];
      bad = true;
    }
  } else if (S.stateError) {
    sig = `e:${describeError(S.stateError)}:${!!S.d}`;
    build = () => [`Cannot read the cluster state: ${describeError(S.stateError)}.${S.d ? ' Showing the last state read;' : ''} Retrying every ${POLL_MS / 1000} s.`];
    bad = true;
  } else if (S.healthError && !h) {
    sig = `h:${describeError(S.healthError)}`;
    build = () => [`This master does not answer: ${describeError(S.healthError)}; retrying.`];
    bad = true;
  }
  banner.hidden = !sig;
  banner.className = bad ? 'banner bad' : 'banner';
  setContent(banner, sig, build);
}

function render() {
  try {
    const t0 = performance.now();
    renderChrome();
    if (current) {
      current.view.update();
      if (S.d || S.health) document.body.dataset.rendered = S.d ? 'state' : 'health';
    }
    // What the last poll cost this page, for anyone measuring the UI.
    document.body.dataset.renderMs = (performance.now() - t0).toFixed(1);
    if (S.deriveMs != null) document.body.dataset.deriveMs = S.deriveMs.toFixed(1);
  } catch (e) {
    reportError(`rendering ${current ? current.name : 'the page'}`, e);
  }
}

window.addEventListener('hashchange', route);
route();
pollLoop();
