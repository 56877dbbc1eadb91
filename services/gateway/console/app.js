// The authkeys admin console: one dependency-free module (ADR 004).
//
// Every action is a call of the API v2 through /admin/api/v2 (the gateway adds the session's
// token, so the API's own role checks apply); state changes carry the session's CSRF token.
// /admin/events pushes the seq of every event of the tailnet: the page refetches what it shows,
// and refetches everything whenever the stream (re)opens.
//
// Data is only ever put in the page as text (textContent), never as HTML.

const $ = (id) => document.getElementById(id);
const DAY_MS = 86400000;
const TAG_RE = /^tag:[a-z0-9-]{1,63}$/;
const DESCRIPTION_RE = /^[A-Za-z0-9 -]{0,50}$/;
const KEY_ROLES = ['owner', 'admin', 'it-admin', 'network-admin'];
const DEVICE_ROLES = ['owner', 'admin', 'it-admin'];

const state = { me: null, keys: [], devices: [], page: null, source: null, refetch: null };

// ---- helpers -------------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

/// A table cell labelled `label` (shown before it on narrow screens); its content in one box.
function cell(label, attrs, ...children) {
  return el('td', { 'data-label': label, ...attrs }, el('div', { class: 'cell' }, ...children));
}

function showError(message) {
  const e = $('error');
  e.textContent = message || '';
  e.hidden = !message;
}

/// A time as `YYYY-MM-DD HH:MM` UTC (the tables say UTC in their headers).
function when(iso) {
  if (!iso || iso.startsWith('0001-')) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toISOString().slice(0, 16).replace('T', ' ');
}

function ago(iso) {
  if (!iso || iso.startsWith('0001-')) return 'never';
  const s = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
  if (s < 60) return 'just now';
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} days ago`;
}

/// Tags typed as "tag:a, tag:b" (commas or spaces): [tags, the first invalid one or null].
function parseTags(text) {
  const tags = [...new Set(text.split(/[\s,]+/).filter(Boolean))].sort();
  return [tags, tags.find((t) => !TAG_RE.test(t)) || null];
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function call(method, url, body) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET') headers['X-CSRF-Token'] = state.me ? state.me.csrf : '';
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(url, {
    method,
    headers,
    credentials: 'same-origin',
    cache: 'no-store',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  if (!response.ok) {
    if (response.status === 401 && state.me) signedOut('Your session ended; sign in again.');
    throw new ApiError(response.status, (json && json.message) || `${response.status} ${response.statusText}`);
  }
  return json;
}

const api = (method, path, body) => call(method, `/admin/api/v2${path}`, body);

// ---- dialogs -------------------------------------------------------------------------------

/// Asks `text`; runs `action` on Confirm and closes when it succeeds, showing its error if not.
function confirmThen(title, text, okLabel, action) {
  const d = $('confirm-dialog');
  $('confirm-title').textContent = title;
  $('confirm-text').textContent = text;
  $('confirm-ok').textContent = okLabel;
  $('confirm-error').hidden = true;
  $('confirm-ok').disabled = false;
  $('confirm-ok').onclick = async () => {
    $('confirm-ok').disabled = true;
    try {
      await action();
      d.close();
    } catch (e) {
      $('confirm-error').textContent = e.message;
      $('confirm-error').hidden = false;
      $('confirm-ok').disabled = false;
    }
  };
  d.showModal();
  $('confirm-cancel').focus();
}

// ---- sign in and out -----------------------------------------------------------------------

function signedOut(message) {
  state.me = null;
  if (state.source) state.source.close();
  state.source = null;
  for (const id of ['keys-page', 'machines-page', 'nav', 'who']) $(id).hidden = true;
  $('signin').hidden = false;
  showError(message);
  $('signin-token').focus();
}

async function signIn(event) {
  event.preventDefault();
  const token = $('signin-token').value.trim();
  try {
    state.me = await call('POST', '/admin/session', { token });
    $('signin-token').value = '';
    showError('');
    start();
  } catch (e) {
    showError(e.status === 401 ? 'That token is not valid (unknown, revoked or expired).' : e.message);
  }
}

async function signOut() {
  try { await call('DELETE', '/admin/session'); } catch { /* signed out either way */ }
  signedOut('');
  $('signin-title').textContent = 'Signed out';
}

// ---- the keys page -------------------------------------------------------------------------

function keyKind(k) {
  const c = (k.capabilities && k.capabilities.devices && k.capabilities.devices.create) || {};
  const chips = [c.reusable ? 'reusable' : 'one-off'];
  if (c.ephemeral) chips.push('ephemeral');
  if (c.preauthorized) chips.push('pre-approved');
  for (const t of c.tags || k.tags || []) chips.push(t);
  return chips;
}

function keyStatus(k) {
  const c = (k.capabilities && k.capabilities.devices && k.capabilities.devices.create) || {};
  if (!k.invalid) return 'active';
  if (!c.reusable && (k.uses || 0) > 0) return 'used';
  if (k.revoked && k.expires && new Date(k.revoked) >= new Date(k.expires)) return 'expired';
  return 'revoked';
}

function renderKeys() {
  const body = $('keys-body');
  const mayManage = KEY_ROLES.includes(state.me.role);
  const rows = state.keys.map((k) => {
    const status = keyStatus(k);
    const label = k.description || k.id;
    return el('tr', { 'data-key-id': k.id, 'data-status': status },
      cell('Key', {},
        el('span', { class: 'strong', text: k.description || '(no description)' }),
        el('br'), el('code', { text: k.id })),
      cell('Kind', {}, keyKind(k).map((c) => el('span', { class: 'chip', text: c }))),
      cell('Created (UTC)', {}, when(k.created)),
      cell('Expires (UTC)', {}, when(k.expires)),
      cell('Uses', {}, String(k.uses || 0)),
      cell('Status', {}, el('span', { class: `status ${status}`, text: status })),
      el('td', { class: 'row-actions' },
        el('button', {
          type: 'button', 'data-action': 'history', 'aria-label': `History of key ${label}`,
          onclick: () => showHistory(k),
        }, 'History'),
        mayManage && status === 'active' && el('button', {
          type: 'button', class: 'danger', 'data-action': 'revoke', 'aria-label': `Revoke key ${label}`,
          onclick: () => confirmThen('Revoke this key?',
            `Key ${label} will no longer register machines. Machines it registered stay authorized; delete them on the Machines page to remove them.`,
            'Revoke key', async () => {
              await api('DELETE', `/tailnet/-/keys/${encodeURIComponent(k.id)}`);
              await loadKeys();
            }),
        }, 'Revoke')));
  });
  body.replaceChildren(...rows);
  $('keys-empty').hidden = rows.length > 0;
}

async function loadKeys() {
  const answer = await api('GET', '/tailnet/-/keys?all=true');
  state.keys = (answer.keys || []).filter((k) => (k.keyType || 'auth') === 'auth')
    .sort((a, b) => (b.created || '').localeCompare(a.created || ''));
  renderKeys();
}

function checkGenerate() {
  const [, bad] = parseTags($('g-tags').value);
  const tags = $('g-tags');
  tags.setCustomValidity(bad ? `${bad} is not a tag: use tag: then lowercase letters, digits or -` : '');
  $('g-tags-hint').textContent = bad ? tags.validationMessage
    : 'Optional. Machines registered with a tagged key belong to the tags.';
  tags.setAttribute('aria-invalid', bad ? 'true' : 'false');
  const desc = $('g-description');
  desc.setCustomValidity(DESCRIPTION_RE.test(desc.value) ? '' : 'Up to 50 letters, digits, spaces or hyphens.');
  const days = Number($('g-days').value);
  $('g-days').setCustomValidity(Number.isInteger(days) && days >= 1 && days <= 90 ? '' : 'Expiry is 1 to 90 days.');
}

function openGenerate() {
  $('generate-form').reset();
  $('g-days').value = '90';
  $('generate-error').hidden = true;
  checkGenerate();
  $('generate-dialog').showModal();
  $('g-description').focus();
}

async function generate(event) {
  event.preventDefault();
  checkGenerate();
  if (!$('generate-form').reportValidity()) return;
  const [tags] = parseTags($('g-tags').value);
  const body = {
    description: $('g-description').value.trim() || undefined,
    expirySeconds: Number($('g-days').value) * 86400,
    capabilities: {
      devices: {
        create: {
          reusable: $('g-reusable').checked,
          ephemeral: $('g-ephemeral').checked,
          preauthorized: $('g-preauthorized').checked,
          tags,
        },
      },
    },
  };
  $('generate-submit').disabled = true;
  try {
    const key = await api('POST', '/tailnet/-/keys', body);
    $('generate-dialog').close();
    showSecret(key.key);
    loadKeys().catch((e) => showError(e.message));
  } catch (e) {
    $('generate-error').textContent = e.message;
    $('generate-error').hidden = false;
  } finally {
    $('generate-submit').disabled = false;
  }
}

function showSecret(secret) {
  $('secret-value').value = secret;
  $('secret-copied').textContent = '';
  $('secret-dialog').showModal();
  $('secret-value').select();
  $('secret-copy').focus();
}

async function copySecret() {
  const input = $('secret-value');
  try {
    await navigator.clipboard.writeText(input.value);
  } catch {
    input.select();
    document.execCommand('copy');
  }
  $('secret-copied').textContent = 'Copied to the clipboard.';
}

function closeSecret() {
  // The secret leaves the page with the dialog: it is never shown again.
  $('secret-value').value = '';
  $('secret-dialog').close();
}

async function showHistory(k) {
  const d = $('history-dialog');
  $('history-title').textContent = `History of key ${k.description || k.id}`;
  $('history-status').textContent = 'Reading the log…';
  $('history-nodes').replaceChildren();
  $('history-events').replaceChildren();
  d.showModal();
  $('history-close').focus();
  try {
    const h = await call('GET', `/admin/api/keys/${encodeURIComponent(k.id)}/history`);
    const nodes = h.registered || [];
    $('history-status').textContent =
      `${h.events.length} events; ${nodes.length} machine${nodes.length === 1 ? '' : 's'} registered with it.`;
    $('history-nodes').replaceChildren(...(nodes.length ? nodes.map((n) => el('li', { 'data-node-id': n.nodeId },
      el('span', { class: 'strong', text: n.name || n.hostname }), ' ', el('code', { text: n.nodeId }),
      ` — ${n.reauthentication ? 're-authenticated' : 'registered'} ${when(n.time)}`,
      n.deleted ? `, deleted ${when(n.deleted)}` : '')) : [el('li', { text: 'None.' })]));
    $('history-events').replaceChildren(...h.events.map((e) => el('li', {},
      el('code', { text: `#${e.seq}` }), ' ', el('span', { class: 'strong', text: e.type }), ' ',
      when(e.time), el('br'), el('span', { class: 'hint', text: `${e.summary} (by ${e.actor})` }))));
  } catch (e) {
    $('history-status').textContent = e.message;
  }
}

// ---- the machines page ---------------------------------------------------------------------

function deviceOwner(d) {
  return (d.tags && d.tags.length) ? d.tags : [d.user || '—'];
}

function expiringSoon(d) {
  if (d.keyExpiryDisabled || !d.expires || d.expires.startsWith('0001-')) return false;
  return new Date(d.expires).getTime() - Date.now() < 7 * DAY_MS;
}

function matches(d) {
  const q = $('search').value.trim().toLowerCase();
  if ($('f-tagged').checked && !(d.tags && d.tags.length)) return false;
  if ($('f-ephemeral').checked && !d.isEphemeral) return false;
  if ($('f-approval').checked && d.authorized) return false;
  if ($('f-expiring').checked && !expiringSoon(d)) return false;
  if (!q) return true;
  const hay = [d.name, d.hostname, d.os, d.user, ...(d.tags || []), ...(d.addresses || [])]
    .filter(Boolean).join(' ').toLowerCase();
  return hay.includes(q);
}

function deviceAction(d, label, action, attrs = {}) {
  return el('button', { type: 'button', 'data-action': action, 'aria-label': `${label} ${d.name}`, ...attrs }, label);
}

function renderMachines() {
  const mayManage = DEVICE_ROLES.includes(state.me.role);
  const shown = state.devices.filter(matches);
  const rows = shown.map((d) => {
    const path = `/device/${encodeURIComponent(d.id)}`;
    const expired = !d.keyExpiryDisabled && d.expires && !d.expires.startsWith('0001-')
      && new Date(d.expires).getTime() <= Date.now();
    const lock = d.tailnetLockError ? `locked out: ${d.tailnetLockError}` : (d.tailnetLockKey ? 'signed' : '—');
    const actions = mayManage ? [
      !d.authorized && deviceAction(d, 'Approve', 'approve', {
        class: 'primary',
        onclick: () => confirmThen('Approve this machine?', `${d.name} will be able to join the tailnet.`,
          'Approve', async () => { await api('POST', `${path}/authorized`, { authorized: true }); await loadMachines(); }),
      }),
      deviceAction(d, 'Edit tags', 'tags', { onclick: () => openTags(d) }),
      deviceAction(d, d.keyExpiryDisabled ? 'Enable expiry' : 'Disable expiry', 'key-expiry', {
        onclick: async () => {
          try {
            await api('POST', `${path}/key`, { keyExpiryDisabled: !d.keyExpiryDisabled });
            await loadMachines();
          } catch (e) { showError(e.message); }
        },
      }),
      deviceAction(d, 'Expire', 'expire', {
        onclick: () => confirmThen('Expire this machine\'s key now?',
          `${d.name} will have to re-authenticate to reach the tailnet.`, 'Expire key',
          async () => { await api('POST', `${path}/expire`); await loadMachines(); }),
      }),
      deviceAction(d, 'Delete', 'delete', {
        class: 'danger',
        onclick: () => confirmThen('Delete this machine?',
          `${d.name} is removed from the tailnet and de-authorized. Its addresses are not reused for 90 days.`,
          'Delete machine', async () => { await api('DELETE', path); await loadMachines(); }),
      }),
    ] : [];
    return el('tr', { 'data-device-id': d.id, 'data-hostname': d.hostname },
      cell('Machine', {}, el('span', { class: 'strong', text: (d.name || '').split('.')[0] }),
        d.isEphemeral && el('span', { class: 'chip', text: 'ephemeral' }),
        el('span', { class: 'hint small fqdn', text: d.name })),
      cell('Addresses', {}, (d.addresses || []).map((a) => el('code', { class: 'addr', text: a }))),
      cell('OS', {}, d.os || '—'),
      cell('User or tags', { class: 'owner' },
        deviceOwner(d).map((t) => el('span', { class: (d.tags && d.tags.length) ? 'chip' : '', text: t }))),
      cell('Status', {}, d.connectedToControl
        ? el('span', { class: 'status active', text: 'connected' })
        : (d.lastSeen && !d.lastSeen.startsWith('0001-') ? `last seen ${ago(d.lastSeen)}` : 'not connected yet')),
      cell('Key expiry (UTC)', {}, d.keyExpiryDisabled ? 'expiry disabled'
        : (expired ? el('span', { class: 'status revoked', text: `expired ${when(d.expires)}` }) : when(d.expires))),
      cell('Approval', { 'data-field': 'approval' }, d.authorized
        ? el('span', { class: 'status active', text: 'approved' })
        : el('span', { class: 'status used', text: 'needs approval' })),
      cell('Lock', {}, lock),
      el('td', { class: 'row-actions stack' }, actions));
  });
  $('machines-body').replaceChildren(...rows);
  $('machines-empty').hidden = rows.length > 0;
  $('machines-count').textContent = `${shown.length} of ${state.devices.length}`;
}

async function loadMachines() {
  const answer = await api('GET', '/tailnet/-/devices?fields=all');
  state.devices = (answer.devices || []).sort((a, b) => (a.name || '').localeCompare(b.name || ''));
  renderMachines();
}

let tagsDevice = null;

function checkTags() {
  const [, bad] = parseTags($('t-tags').value);
  $('t-tags').setCustomValidity(bad ? `${bad} is not a tag: use tag: then lowercase letters, digits or -` : '');
  $('t-tags').setAttribute('aria-invalid', bad ? 'true' : 'false');
  $('t-tags-hint').textContent = bad ? $('t-tags').validationMessage : 'Empty removes every tag. Key expiry is not changed.';
}

function openTags(d) {
  tagsDevice = d;
  $('tags-machine').textContent = d.name;
  $('t-tags').value = (d.tags || []).join(', ');
  $('tags-error').hidden = true;
  checkTags();
  $('tags-dialog').showModal();
  $('t-tags').focus();
}

async function saveTags(event) {
  event.preventDefault();
  checkTags();
  if (!$('tags-form').reportValidity()) return;
  const [tags] = parseTags($('t-tags').value);
  try {
    await api('POST', `/device/${encodeURIComponent(tagsDevice.id)}/tags`, { tags });
    $('tags-dialog').close();
    await loadMachines();
  } catch (e) {
    $('tags-error').textContent = e.message;
    $('tags-error').hidden = false;
  }
}

// ---- pages and live updates ----------------------------------------------------------------

async function refresh() {
  try {
    if (state.page === 'keys') await loadKeys();
    else await loadMachines();
    showError('');
  } catch (e) {
    if (e.status !== 401) showError(e.message);
  }
}

/// Coalesces a burst of events into one refetch.
function scheduleRefresh() {
  if (state.refetch) return;
  state.refetch = setTimeout(() => {
    state.refetch = null;
    refresh();
  }, 100);
}

function live() {
  const source = new EventSource('/admin/events');
  state.source = source;
  const status = $('live');
  // Opened (first time or after a reconnect): whatever happened meanwhile is in a full refetch.
  source.addEventListener('open', () => {
    status.textContent = 'live';
    status.className = 'live on';
    scheduleRefresh();
  });
  source.addEventListener('change', scheduleRefresh);
  source.addEventListener('error', () => {
    status.textContent = 'reconnecting…';
    status.className = 'live off';
    if (source.readyState === EventSource.CLOSED && state.me) {
      // The server ended it (session over?): ask who we are, which signs out on 401.
      call('GET', '/admin/session').then(() => { if (state.source === source) live(); }).catch(() => {});
    }
  });
}

function start() {
  const path = location.pathname;
  state.page = path.startsWith('/admin/machines') ? 'machines' : 'keys';
  if (path === '/admin/' || path === '/admin') history.replaceState(null, '', '/admin/keys');
  $('signin').hidden = true;
  $('nav').hidden = false;
  $('who').hidden = false;
  $('who-name').textContent = `${state.me.loginName} (${state.me.role})`;
  for (const p of ['keys', 'machines']) {
    $(`${p}-page`).hidden = state.page !== p;
    const link = $(`nav-${p}`);
    if (state.page === p) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  $('generate').hidden = !KEY_ROLES.includes(state.me.role);
  document.title = `${state.page === 'keys' ? 'Keys' : 'Machines'} — authkeys`;
  refresh();
  live();
}

function wire() {
  $('signin-form').addEventListener('submit', signIn);
  $('sign-out').addEventListener('click', signOut);
  $('generate').addEventListener('click', openGenerate);
  $('generate-form').addEventListener('submit', generate);
  $('generate-form').addEventListener('input', checkGenerate);
  $('generate-cancel').addEventListener('click', () => $('generate-dialog').close());
  $('secret-copy').addEventListener('click', copySecret);
  $('secret-done').addEventListener('click', closeSecret);
  $('secret-dialog').addEventListener('cancel', () => { $('secret-value').value = ''; });
  $('confirm-cancel').addEventListener('click', () => $('confirm-dialog').close());
  $('tags-form').addEventListener('submit', saveTags);
  $('t-tags').addEventListener('input', checkTags);
  $('tags-cancel').addEventListener('click', () => $('tags-dialog').close());
  $('history-close').addEventListener('click', () => $('history-dialog').close());
  $('filters').addEventListener('input', () => renderMachines());
  $('filters').addEventListener('submit', (e) => e.preventDefault());
}

async function main() {
  wire();
  try {
    state.me = await call('GET', '/admin/session');
    start();
  } catch {
    signedOut('');
  }
}

main();
