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

// Logs: "Follow new entries" polls /logs/tail after the last entry shown.
function followLogs() {
  const box = document.getElementById('log-entries');
  const button = document.getElementById('follow');
  const status = document.getElementById('tail-status');
  if (!box || !button) return;
  let after = box.dataset.after || '';
  let timer = null;
  const body = () => box.querySelector('tbody');
  async function poll() {
    const url = box.dataset.tail + (box.dataset.tail.endsWith('?') ? '' : '&') + 'after=' + encodeURIComponent(after);
    try {
      const answer = await fetch(url, { headers: { accept: 'application/json' }, credentials: 'same-origin' });
      if (!answer.ok) throw new Error(answer.status === 401 ? 'signed out' : 'error ' + answer.status);
      const tail = await answer.json();
      for (const e of tail.entries) {
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
      after = tail.after;
      status.textContent = tail.entries.length ? tail.entries.length + ' new entries' : 'Following';
    } catch (err) {
      status.textContent = 'Stopped following: ' + err.message;
      stop();
    }
  }
  function stop() {
    clearInterval(timer);
    timer = null;
    button.setAttribute('aria-pressed', 'false');
    button.textContent = 'Follow new entries';
  }
  button.addEventListener('click', () => {
    if (timer) { stop(); status.textContent = 'Not following'; return; }
    button.setAttribute('aria-pressed', 'true');
    button.textContent = 'Stop following';
    status.textContent = 'Following';
    poll();
    timer = setInterval(poll, 2000);
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
