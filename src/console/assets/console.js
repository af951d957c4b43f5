// sessiond console: the live parts of the pages. Everything received is
// inserted with textContent, never as HTML.
'use strict';

// A cell of `row`; its label names the column where narrow screens stack
// a row's cells (see console.css).
function cell(row, text, className) {
  const td = document.createElement('td');
  if (className) td.className = className;
  const header = row.closest('table')?.tHead?.rows[0]?.cells[row.cells.length];
  if (header) td.dataset.label = header.textContent;
  td.textContent = text;
  row.appendChild(td);
  return td;
}

function sessionLink(id, text) {
  const a = document.createElement('a');
  a.href = '/sessions/' + encodeURIComponent(id);
  const code = document.createElement('code');
  code.textContent = text;
  a.appendChild(code);
  return a;
}

// Logs: "Follow new entries" follows the entries after the page
// (FollowLogs as server-sent events), resuming from the last cursor
// received when the connection drops.
function followLogs() {
  const box = document.getElementById('log-entries');
  const button = document.getElementById('follow');
  const status = document.getElementById('tail-status');
  if (!box || !button) return;
  let cursor = box.dataset.cursor || '';
  let source = null;
  let following = false;
  const body = () => box.querySelector('tbody');
  function append(e) {
    const row = body().insertRow(-1);
    row.dataset.level = e.level;
    cell(row, e.logged_at);
    const level = document.createElement('span');
    level.className = 'level level-' + e.level;
    level.textContent = e.level;
    cell(row, '').appendChild(level);
    cell(row, '').appendChild(sessionLink(e.session_id, e.session_short));
    cell(row, e.user_id);
    cell(row, e.kind);
    cell(row, e.endpoint);
    const message = cell(row, '', 'message');
    const text = document.createElement('div');
    text.textContent = e.message;
    message.appendChild(text);
    if (e.exception) {
      const exception = document.createElement('div');
      exception.className = 'exception';
      exception.textContent = e.exception;
      message.appendChild(exception);
    }
    if (e.stack_trace) {
      const details = document.createElement('details');
      const summary = document.createElement('summary');
      summary.textContent = 'Stack trace';
      const pre = document.createElement('pre');
      pre.className = 'trace';
      pre.textContent = e.stack_trace;
      details.append(summary, pre);
      message.appendChild(details);
    }
  }
  function start() {
    const base = box.dataset.follow;
    source = new EventSource(base + (base.endsWith('?') ? '' : '&') + 'after=' + encodeURIComponent(cursor));
    source.addEventListener('open', () => { status.textContent = 'Following'; });
    source.addEventListener('entries', (message) => {
      const tail = JSON.parse(message.data);
      for (const e of tail.entries) append(e);
      cursor = tail.cursor;
      const count = tail.entries.length;
      if (count) status.textContent = 'Following: ' + count + (count === 1 ? ' new entry' : ' new entries');
    });
    source.addEventListener('failed', (message) => {
      stop();
      status.textContent = 'Stopped following: ' + message.data;
    });
    source.addEventListener('error', () => {
      // Lost (or refused, e.g. signed out): resume from the cursor shortly.
      source.close();
      if (!following) return;
      status.textContent = 'Reconnecting…';
      setTimeout(() => { if (following) start(); }, 2000);
    });
  }
  function stop() {
    following = false;
    source?.close();
    button.setAttribute('aria-pressed', 'false');
    button.textContent = 'Follow new entries';
  }
  button.addEventListener('click', () => {
    if (following) { stop(); status.textContent = 'Not following'; return; }
    following = true;
    button.setAttribute('aria-pressed', 'true');
    button.textContent = 'Stop following';
    start();
  });
}

// Live: events as server-sent events, figures every few seconds.
function followEvents() {
  const table = document.getElementById('events');
  const status = document.getElementById('events-status');
  if (!table) return;
  const source = new EventSource(table.dataset.source);
  source.addEventListener('open', () => { status.textContent = 'Following events'; });
  source.addEventListener('session', (message) => {
    const e = JSON.parse(message.data);
    const row = document.createElement('tr');
    cell(row, String(e.sequence));
    cell(row, e.at);
    cell(row, e.event_type);
    cell(row, '').appendChild(sessionLink(e.session_id, e.session_id.slice(0, 12)));
    cell(row, e.user_id);
    cell(row, e.kind);
    cell(row, e.end_reason);
    const body = table.querySelector('tbody');
    body.insertBefore(row, body.firstChild);
    while (body.rows.length > 500) body.deleteRow(-1);
  });
  source.addEventListener('failed', (message) => {
    status.textContent = 'Events stopped: ' + message.data;
    source.close();
  });
  source.addEventListener('error', () => { status.textContent = 'Reconnecting…'; });
}

function followFigures() {
  const figures = document.getElementById('figures');
  if (!figures) return;
  let previous = null;
  async function poll() {
    try {
      const answer = await fetch(figures.dataset.source, { headers: { accept: 'application/json' } });
      if (!answer.ok) return;
      const now = await answer.json();
      const at = performance.now();
      document.getElementById('calls').textContent = String(now.calls);
      document.getElementById('failed').textContent = String(now.failed);
      document.getElementById('open-sessions').textContent = now.open_sessions;
      document.getElementById('cache-hit-ratio').textContent = now.cache_hit_ratio;
      if (previous) {
        const rate = (now.calls - previous.calls) / ((at - previous.at) / 1000);
        document.getElementById('calls-per-second').textContent = rate.toFixed(1);
      }
      previous = { calls: now.calls, at };
    } catch (_) { /* the next poll tries again */ }
  }
  poll();
  setInterval(poll, 3000);
}

document.addEventListener('DOMContentLoaded', () => {
  followLogs();
  followEvents();
  followFigures();
});
