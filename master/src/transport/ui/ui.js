// The web UI. Every value from the cluster reaches the page as text (textContent), never
// as markup: a framework, task or agent name holding HTML is shown, not run. The page is
// served with a Content-Security-Policy of 'self', so inline script would not run anyway.
'use strict';
const fmt = r => Object.entries(r || {}).map(([k, v]) => `${k}:${v}`).join(' ');

function cell(tag, value, cls) {
  const c = document.createElement(tag);
  c.textContent = value == null ? '' : String(value);
  if (cls) c.className = cls;
  return c;
}

function table(id, cols, rows) {
  const t = document.getElementById(id);
  const head = document.createElement('tr');
  for (const [title] of cols) head.appendChild(cell('th', title));
  const body = [head];
  if (rows.length === 0) {
    const tr = document.createElement('tr');
    const td = cell('td', 'none', 'muted');
    td.colSpan = cols.length;
    tr.appendChild(td);
    body.push(tr);
  }
  for (const r of rows) {
    const tr = document.createElement('tr');
    for (const [, value, cls] of cols) tr.appendChild(cell('td', value(r), cls ? cls(r) : ''));
    body.push(tr);
  }
  t.replaceChildren(...body);
}

async function refresh() {
  const health = document.getElementById('health');
  try {
    const h = await (await fetch('/health')).json();
    health.textContent = `replica ${h.id} is ${h.role}; leader ${h.leader ?? 'unknown'}; term ${h.term}`;
    const s = await (await fetch('/state')).json();
    table('agents', [['id', a => a.id], ['host', a => a.hostname], ['address', a => a.address],
      ['active', a => a.active ? 'yes' : 'no', a => a.active ? '' : 'bad'],
      ['resources', a => fmt(a.resources)], ['used', a => fmt(a.used)],
      ['offered', a => fmt(a.offered)]], s.agents || []);
    table('frameworks', [['id', f => f.id], ['name', f => f.name], ['role', f => f.role],
      ['active', f => f.active ? 'yes' : 'no'], ['used', f => fmt(f.used)],
      ['offered', f => fmt(f.offered)]], s.frameworks || []);
    table('tasks', [['id', t => t.id], ['name', t => t.name], ['framework', t => t.framework_id],
      ['agent', t => t.agent_id], ['state', t => t.state],
      ['resources', t => fmt(t.resources)]], s.tasks || []);
  } catch (e) {
    health.textContent = 'unreachable: ' + e;
  }
}

refresh();
setInterval(refresh, 2000);
