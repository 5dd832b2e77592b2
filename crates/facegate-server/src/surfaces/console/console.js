/* facegate console: plain ES2020, no dependencies. Talks only to this origin. */
(() => {
  'use strict';
  const $ = (id) => document.getElementById(id);
  const KEYS = 'facegate.console.keys';
  const CONDITIONS = ['weak', 'balanced', 'strict'];
  const EXT_RE = /[^a-zA-Z0-9_.\-:]/g;
  const EXT_OK = /^[a-zA-Z0-9_.\-:]{1,255}$/;

  // ---- small DOM helpers ----------------------------------------------------
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null) continue;
      if (k === 'text') e.textContent = v;
      else if (k === 'class') e.className = v;
      else if (k.startsWith('data-')) e.setAttribute(k, String(v));
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e[k] = v;
    }
    for (const kid of kids) if (kid != null) e.append(kid instanceof Node ? kid : String(kid));
    return e;
  }
  const clear = (node) => { while (node.firstChild) node.removeChild(node.firstChild); };
  const fmt = (n, d = 2) => (typeof n === 'number' && isFinite(n) ? n.toFixed(d) : '–');
  const tbody = (id) => $(id).tBodies[0];
  function setStatus(id, text) { const s = $(id); if (s) s.textContent = text || ''; }

  // ---- busy state -----------------------------------------------------------
  let inFlight = 0;
  function busy(delta) {
    inFlight = Math.max(0, inFlight + delta);
    document.body.dataset.busy = inFlight > 0 ? '1' : '0';
    $('busy-indicator').textContent = inFlight > 0 ? 'Working…' : '';
  }

  // ---- errors ---------------------------------------------------------------
  class ApiError extends Error {
    constructor(code, name, detail) {
      super(name + (detail ? ': ' + detail : ''));
      this.code = code; this.errName = name; this.detail = detail || '';
    }
  }
  function clearError() {
    const e = $('error');
    clear(e); e.hidden = true; delete e.dataset.code;
  }
  function showError(err) {
    const e = $('error');
    clear(e);
    const isApi = err instanceof ApiError;
    const code = isApi ? err.code : null;
    const name = isApi ? err.errName : (err && err.name) || 'Error';
    const detail = isApi ? err.detail : (err && err.message) || String(err);
    e.append(el('strong', { text: 'Request failed' }));
    if (code != null) e.append(' ', el('span', { class: 'code', text: 'code ' + code }));
    e.append(' ', el('span', { class: 'name', text: name }));
    if (detail) e.append(el('span', { class: 'detail', text: ' — ' + detail }));
    if (code != null) e.dataset.code = String(code); else delete e.dataset.code;
    e.hidden = false;
  }
  const describe = (err) => err instanceof ApiError
    ? [err.code, err.errName, err.detail].filter((x) => x !== '' && x != null).join(' · ')
    : String((err && err.message) || err);

  // Runs one user action: clears the error first; the last failure is shown.
  async function action(fn) {
    clearError();
    busy(+1);
    try { await fn(); } catch (err) { showError(err); } finally { busy(-1); }
  }

  // ---- keys -----------------------------------------------------------------
  function loadKeys() {
    try { return JSON.parse(sessionStorage.getItem(KEYS) || '{}') || {}; } catch (_) { return {}; }
  }
  function keys() { return loadKeys(); }
  function need(k, label) {
    const v = (keys()[k] || '').trim();
    if (!v) throw new ApiError(null, 'MissingKey', label + ' is not set (enter it under Keys and save).');
    return v;
  }
  function initKeys() {
    const k = loadKeys();
    const map = { app: 'key-app', face: 'key-face', liveness: 'key-liveness', argos: 'key-argos' };
    for (const [name, id] of Object.entries(map)) $(id).value = k[name] || '';
    $('keys-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const next = {};
      for (const [name, id] of Object.entries(map)) next[name] = $(id).value.trim();
      sessionStorage.setItem(KEYS, JSON.stringify(next));
      setStatus('keys-status', 'Saved for this tab.');
    });
  }

  // ---- HTTP -----------------------------------------------------------------
  async function request(url, opts) {
    busy(+1);
    try {
      let res;
      try {
        res = await fetch(url, Object.assign({ credentials: 'same-origin', cache: 'no-store', referrerPolicy: 'no-referrer' }, opts));
      } catch (e) {
        throw new ApiError('network', 'NetworkError', (e && e.message) || 'The server could not be reached.');
      }
      let body = null;
      const text = await res.text();
      try { body = text ? JSON.parse(text) : null; } catch (_) { body = null; }
      return { res, body, text };
    } finally { busy(-1); }
  }

  // NHN Face Recognition: resolves to the whole response (header + data).
  async function nhn(method, path, payload) {
    const app = need('app', 'App key');
    const headers = { 'x-nhn-apikey': need('face', 'Face API key') };
    const opts = { method, headers };
    if (payload !== undefined) { headers['content-type'] = 'application/json'; opts.body = JSON.stringify(payload); }
    const { res, body, text } = await request('/nhn-face-reco/v1.0/appkeys/' + encodeURIComponent(app) + path, opts);
    const h = body && body.header;
    if (!h || typeof h.resultCode !== 'number') {
      throw new ApiError(res.status, res.statusText || 'HTTP ' + res.status, (text || '').slice(0, 300));
    }
    if (!h.isSuccessful || h.resultCode < 0) throw new ApiError(h.resultCode, h.resultMessage || 'Error', h.detail || '');
    return body;
  }

  async function argos(b64) {
    const { res, body, text } = await request('/modules/liveness', {
      method: 'POST',
      headers: { 'x-api-key': need('argos', 'Argos API key'), 'content-type': 'application/json' },
      body: JSON.stringify({ faceImage: b64 }),
    });
    if (!res.ok) {
      const code = body && body.errorCode != null ? body.errorCode : res.status;
      const name = (body && body.message) || res.statusText || 'HTTP ' + res.status;
      const detail = 'HTTP ' + res.status + (body && body.errorCode != null ? ', errorCode ' + body.errorCode : '')
        + (body && body.transactionId ? ', transaction ' + body.transactionId : (!body && text ? ', ' + text.slice(0, 200) : ''));
      throw new ApiError(code, name, detail);
    }
    return body;
  }

  // ---- images ---------------------------------------------------------------
  function fileToBase64(file) {
    return new Promise((resolve, reject) => {
      const r = new FileReader();
      r.onload = () => { const s = String(r.result); resolve(s.slice(s.indexOf(',') + 1)); };
      r.onerror = () => reject(new ApiError(null, 'FileError', 'Could not read ' + file.name));
      r.readAsDataURL(file);
    });
  }
  function pickFile(id, label) {
    const f = $(id).files && $(id).files[0];
    if (!f) throw new ApiError(null, 'NoImage', 'Choose ' + label + '.');
    return f;
  }
  const groupPath = (g) => '/groups/' + encodeURIComponent(g);
  function needText(id, label) {
    const v = $(id).value.trim();
    if (!v) throw new ApiError(null, 'MissingInput', label + ' is required.');
    return v;
  }
  function clampNum(id, lo, hi, dflt) {
    let n = Number($(id).value);
    if (!isFinite(n) || $(id).value === '') n = dflt;
    n = Math.min(hi, Math.max(lo, n));
    $(id).value = String(n);
    return n;
  }

  // ---- views ----------------------------------------------------------------
  function showView(name) {
    for (const b of document.querySelectorAll('nav [data-view]')) {
      const on = b.dataset.view === name;
      b.setAttribute('aria-pressed', on ? 'true' : 'false');
      b.classList.toggle('active', on);
    }
    for (const s of document.querySelectorAll('section.view')) s.hidden = s.id !== 'view-' + name;
    try { sessionStorage.setItem('facegate.console.view', name); } catch (_) { /* ignore */ }
  }
  function initViews() {
    for (const b of document.querySelectorAll('nav [data-view]')) b.addEventListener('click', () => showView(b.dataset.view));
    const saved = sessionStorage.getItem('facegate.console.view');
    showView(['analyse', 'groups', 'enrol', 'search'].includes(saved) ? saved : 'analyse');
  }

  // ---- analyse --------------------------------------------------------------
  let droppedFile = null;
  function initDrop() {
    const zone = $('analyse-drop');
    const input = $('analyse-file');
    input.addEventListener('change', () => { droppedFile = null; if (input.files && input.files.length) $('analyse-url').value = ''; });
    zone.addEventListener('dragover', (ev) => { ev.preventDefault(); zone.classList.add('over'); });
    zone.addEventListener('dragleave', () => zone.classList.remove('over'));
    zone.addEventListener('drop', (ev) => {
      ev.preventDefault();
      zone.classList.remove('over');
      const files = ev.dataTransfer && ev.dataTransfer.files;
      if (!files || !files.length) return;
      droppedFile = files[0];
      try { input.files = files; } catch (_) { /* older browsers: keep droppedFile */ }
      $('analyse-url').value = '';
      setStatus('analyse-status', 'Dropped: ' + droppedFile.name);
    });
  }

  function loadImage(file) {
    return new Promise((resolve) => {
      const url = URL.createObjectURL(file);
      const img = new Image();
      img.onload = () => resolve({ img, url });
      img.onerror = () => { URL.revokeObjectURL(url); resolve(null); };
      img.src = url;
    });
  }

  function drawFaces(loaded, faces) {
    const c = $('analyse-canvas');
    const ctx = c.getContext('2d');
    const w = loaded ? loaded.img.naturalWidth : 640;
    const h = loaded ? loaded.img.naturalHeight : 480;
    c.width = w; c.height = h;
    if (loaded) ctx.drawImage(loaded.img, 0, 0, w, h);
    else { ctx.fillStyle = '#e8e8e8'; ctx.fillRect(0, 0, w, h); }
    const lw = Math.max(2, Math.round(Math.max(w, h) / 300));
    let drawn = 0;
    faces.forEach((f, i) => {
      const b = f.bbox || {};
      if (![b.x0, b.y0, b.x1, b.y1].every((v) => typeof v === 'number')) return;
      const x = b.x0 * w, y = b.y0 * h, bw = (b.x1 - b.x0) * w, bh = (b.y1 - b.y0) * h;
      ctx.lineWidth = lw;
      ctx.strokeStyle = '#000'; ctx.strokeRect(x, y, bw, bh);
      ctx.strokeStyle = '#19e07a'; ctx.lineWidth = lw / 2 + 1; ctx.strokeRect(x, y, bw, bh);
      for (const p of f.landmarks || []) {
        ctx.beginPath();
        ctx.arc(p.x * w, p.y * h, lw * 1.3, 0, Math.PI * 2);
        ctx.fillStyle = '#ff3b6b'; ctx.fill();
        ctx.lineWidth = 1; ctx.strokeStyle = '#fff'; ctx.stroke();
      }
      const label = String(i + 1);
      const fs = Math.max(12, lw * 7);
      ctx.font = 'bold ' + fs + 'px sans-serif';
      const tw = ctx.measureText(label).width + fs / 2;
      const ly = y - fs - 4 < 0 ? y : y - fs - 4;
      ctx.fillStyle = '#19e07a'; ctx.fillRect(x, ly, tw, fs + 4);
      ctx.fillStyle = '#000'; ctx.fillText(label, x + fs / 4, ly + fs - 1);
      drawn++;
    });
    if (!loaded) {
      ctx.fillStyle = '#555'; ctx.font = '16px sans-serif';
      ctx.fillText('No preview (URL or undecodable image); boxes drawn to scale.', 12, h - 14);
    }
    c.dataset.faces = String(drawn);
    if (loaded) URL.revokeObjectURL(loaded.url);
  }

  // Pairs each face with the face of another detect answer nearest to it.
  function matchFace(face, others, i) {
    if (!others || !others.length) return null;
    const cx = (f) => (f.bbox.x0 + f.bbox.x1) / 2, cy = (f) => (f.bbox.y0 + f.bbox.y1) / 2;
    let best = null, bestD = Infinity;
    for (const o of others) {
      if (!o.bbox || !face.bbox) continue;
      const d = Math.hypot(cx(o) - cx(face), cy(o) - cy(face));
      if (d < bestD) { bestD = d; best = o; }
    }
    return best || others[i] || null;
  }
  function livenessCell(verdict) {
    if (verdict === undefined) return '–';
    if (verdict instanceof Error) return 'error: ' + describe(verdict);
    if (!verdict) return 'no match';
    if (typeof verdict.spoofing !== 'boolean') return '–';
    let s = verdict.spoofing ? 'spoof' : 'live';
    if (verdict.spoofingReason) s += ' (' + verdict.spoofingReason + ')';
    return s;
  }

  async function runAnalyse() {
    const url = $('analyse-url').value.trim();
    const file = droppedFile || ($('analyse-file').files && $('analyse-file').files[0]) || null;
    if (!file && !url) throw new ApiError(null, 'NoImage', 'Choose or drop an image file, or enter an image URL.');
    const useFile = !!file && !url;
    const liveness = $('analyse-liveness').checked;
    clear(tbody('analyse-faces'));
    $('analyse-json').textContent = '';
    $('analyse-argos').textContent = '–';
    delete $('analyse-canvas').dataset.faces;
    setStatus('analyse-status', 'Analysing…');
    let image, b64 = null, loaded = null;
    if (useFile) {
      b64 = await fileToBase64(file);
      image = { bytes: b64 };
      loaded = await loadImage(file);
    } else image = { url };

    let resp;
    try {
      resp = await nhn('POST', '/detect', { image, spoofing: false });
    } catch (e) {
      drawFaces(loaded, []);
      setStatus('analyse-status', 'Detection failed.');
      throw e;
    }
    $('analyse-json').textContent = JSON.stringify(resp, null, 2);
    const faces = (resp.data && resp.data.faceDetails) || [];
    drawFaces(loaded, faces);

    const verdicts = {};
    let lastErr = null;
    if (liveness) {
      const outcomes = await Promise.all(CONDITIONS.map((cond) =>
        nhn('POST', '/detect', { image, spoofing: true, spoofingCondition: cond })
          .then((r) => (r.data && r.data.faceDetails) || [], (e) => { lastErr = e; return e; })));
      CONDITIONS.forEach((cond, k) => { verdicts[cond] = outcomes[k]; });
    }
    const rows = tbody('analyse-faces');
    faces.forEach((f, i) => {
      const o = f.orientation;
      const tr = el('tr', { 'data-face-index': i },
        el('td', { text: String(i + 1) }),
        el('td', { text: fmt(f.confidence, 3) }),
        el('td', { text: o ? fmt(o.x, 1) + ' / ' + fmt(o.y, 1) + ' / ' + fmt(o.z, 1) : '–' }),
        el('td', { text: typeof f.mask === 'boolean' ? (f.mask ? 'yes' : 'no') : '–' }));
      for (const cond of CONDITIONS) {
        const v = verdicts[cond];
        const verdict = v === undefined ? undefined : v instanceof Error ? v : matchFace(f, v, i);
        const td = el('td', { text: livenessCell(verdict) });
        if (verdict && !(verdict instanceof Error) && typeof verdict.spoofing === 'boolean') {
          td.className = verdict.spoofing ? 'bad' : 'good';
          td.dataset.spoofing = String(verdict.spoofing);
        }
        tr.append(td);
      }
      rows.append(tr);
    });
    $('analyse-faces').caption.textContent = 'Detected faces (' + faces.length + ')';
    setStatus('analyse-status', faces.length + ' face(s) detected.');

    if (liveness) {
      if (useFile) {
        try {
          const a = await argos(b64);
          const score = a && a.result ? a.result.liveness_score : undefined;
          $('analyse-argos').textContent = typeof score === 'number' ? fmt(score, 1) + ' / 100' : '–';
          if (typeof score === 'number') $('analyse-argos').dataset.score = String(score);
        } catch (e) {
          $('analyse-argos').textContent = 'error: ' + describe(e);
          lastErr = e;
        }
      } else $('analyse-argos').textContent = 'needs an image file (not a URL)';
    }
    if (lastErr) throw lastErr;
  }

  // ---- groups ---------------------------------------------------------------
  let facesGroup = null, facesNext = '', facesPage = 1;

  async function refreshGroups() {
    const body = tbody('group-list');
    const groups = [];
    let token = '';
    for (let page = 0; page < 50; page++) {
      const q = '?limit=100' + (token ? '&next-token=' + encodeURIComponent(token) : '');
      const r = await nhn('GET', '/groups' + q);
      const d = r.data || {};
      groups.push(...(d.groups || []));
      token = d.nextToken || '';
      if (!token) break;
    }
    clear(body);
    $('group-list').caption.textContent = groups.length ? 'Groups (' + groups.length + ')' : 'Groups: none yet';
    if (!groups.length) return;
    const cells = groups.map((g) => {
      const count = el('td', { text: '…' });
      const model = el('td', { text: g.modelVersion || '–' });
      const tr = el('tr', { 'data-group-id': g.groupId },
        el('th', { scope: 'row', text: g.groupId }), count, model,
        el('td', { class: 'btns' },
          el('button', { type: 'button', text: 'Faces', 'aria-label': 'Faces of ' + g.groupId, onclick: () => action(() => openFaces(g.groupId)) }),
          el('button', { type: 'button', class: 'danger', text: 'Delete', 'aria-label': 'Delete group ' + g.groupId, onclick: () => deleteGroup(g.groupId) })));
      body.append(tr);
      return { g, count, model, tr };
    });
    let failure = null;
    // Fetch details a few at a time.
    const queue = cells.slice();
    const worker = async () => {
      for (let c; (c = queue.shift());) {
        try {
          const r = await nhn('GET', groupPath(c.g.groupId));
          const info = (r.data && r.data.groups && r.data.groups[0]) || {};
          c.count.textContent = info.faceCount != null ? String(info.faceCount) : '–';
          c.tr.dataset.faceCount = c.count.textContent;
          if (info.modelVersion) c.model.textContent = info.modelVersion;
        } catch (e) { c.count.textContent = 'error'; failure = e; }
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    if (failure) throw failure;
  }

  function deleteGroup(id) {
    if (!confirm('Delete group "' + id + '" and all its faces?')) return;
    action(async () => {
      await nhn('DELETE', groupPath(id));
      if (facesGroup === id) { $('faces-panel').hidden = true; facesGroup = null; }
      await refreshGroups();
    });
  }

  async function openFaces(groupId, token) {
    const r = await nhn('GET', groupPath(groupId) + '/faces?limit=20' + (token ? '&next-token=' + encodeURIComponent(token) : ''));
    const d = r.data || {};
    facesGroup = groupId;
    facesNext = d.nextToken || '';
    const body = tbody('face-list');
    clear(body);
    $('faces-panel').hidden = false;
    facesPage = token ? facesPage + 1 : 1;
    $('faces-heading').textContent = 'Faces in ' + groupId + ' — page ' + facesPage;
    $('face-list').dataset.groupId = groupId;
    for (const f of d.faces || []) {
      body.append(el('tr', { 'data-face-id': f.faceId, 'data-external-image-id': f.externalImageId },
        el('th', { scope: 'row', class: 'mono', text: f.faceId }),
        el('td', { text: f.externalImageId || '–' }),
        el('td', { class: 'mono', text: f.imageId || '–' }),
        el('td', { text: fmt(f.confidence, 3) }),
        el('td', {}, el('button', { type: 'button', class: 'danger', text: 'Delete', 'aria-label': 'Delete face ' + f.faceId, onclick: () => deleteFace(groupId, f.faceId) }))));
    }
    $('face-list').caption.textContent = (d.faces || []).length ? 'Faces on this page: ' + d.faces.length : 'No faces on this page';
    $('faces-next').disabled = !facesNext;
    if (!token) $('faces-heading').focus();
  }

  function deleteFace(groupId, faceId) {
    if (!confirm('Delete face ' + faceId + ' from "' + groupId + '"?')) return;
    action(async () => {
      await nhn('DELETE', groupPath(groupId) + '/faces/' + encodeURIComponent(faceId));
      const row = tbody('face-list').querySelector('tr[data-face-id="' + CSS.escape(faceId) + '"]');
      if (row) row.remove();
    });
  }

  function initGroups() {
    $('group-create').addEventListener('click', () => action(async () => {
      const id = needText('group-id', 'Group id');
      await nhn('POST', '/groups', { groupId: id });
      $('group-id').value = '';
      await refreshGroups();
    }));
    $('groups-refresh').addEventListener('click', () => action(refreshGroups));
    $('faces-next').addEventListener('click', () => {
      if (facesGroup && facesNext) action(() => openFaces(facesGroup, facesNext));
    });
  }

  // ---- enrol ----------------------------------------------------------------
  // The typed id when given; else, for a batch of several files, each file's name.
  function externalIdFor(file, given, count) {
    if (given) return given;
    return count > 1 ? deriveId(file.name) : undefined;
  }
  function deriveId(name) {
    const base = name.replace(/\.[^.]*$/, '') || name;
    return base.replace(EXT_RE, '_').slice(0, 255) || undefined;
  }

  async function runEnrol() {
    const group = needText('enrol-group', 'Group id');
    const files = Array.from($('enrol-files').files || []);
    if (!files.length) throw new ApiError(null, 'NoImage', 'Choose one or more image files.');
    const given = $('enrol-external-id').value.trim();
    if (given && !EXT_OK.test(given)) { throw new ApiError(null, 'InvalidInput', 'External image id may only contain a-z A-Z 0-9 _ . - :'); }
    const body = tbody('enrol-results');
    clear(body);
    setStatus('enrol-status', 'Enrolling ' + files.length + ' file(s)…');
    let lastErr = null, ok = 0;
    for (const file of files) {
      const ext = externalIdFor(file, given, files.length);
      const result = el('td', { text: 'Uploading…' });
      const tr = el('tr', { 'data-file': file.name }, el('th', { scope: 'row', text: file.name }), el('td', { text: ext || '–' }), result);
      body.append(tr);
      try {
        const payload = { image: { bytes: await fileToBase64(file) }, limit: 1 };
        if (ext) payload.externalImageId = ext;
        const r = await nhn('POST', groupPath(group), payload);
        const d = r.data || {};
        const ids = (d.addedFaces || []).map((f) => f.faceId);
        let text = ids.length ? 'added ' + ids.join(', ') : 'no face added';
        if (d.notAddedFaceCount) {
          const why = (d.notAddedFaces || []).map((f) => f.reason).filter(Boolean);
          text += '; ' + d.notAddedFaceCount + ' not added' + (why.length ? ' (' + why.join(', ') + ')' : '');
        }
        if (r.header.resultCode !== 0) text += ' [' + r.header.resultCode + ' ' + r.header.resultMessage + ']';
        result.textContent = text;
        tr.dataset.status = ids.length ? (r.header.resultCode === 0 ? 'ok' : 'partial') : 'none';
        tr.dataset.faceIds = ids.join(' ');
        tr.className = ids.length ? 'good' : 'bad';
        if (ids.length) ok++;
      } catch (e) {
        lastErr = e;
        result.textContent = 'error ' + describe(e);
        tr.dataset.status = 'error';
        if (e instanceof ApiError && e.code != null) tr.dataset.code = String(e.code);
        tr.className = 'bad';
      }
    }
    setStatus('enrol-status', ok + ' of ' + files.length + ' file(s) enrolled.');
    if (lastErr) throw lastErr;
  }

  // ---- search / compare / verify --------------------------------------------
  async function runSearch() {
    const group = needText('search-group', 'Group id');
    const file = pickFile('search-file', 'an image to search with');
    const threshold = clampNum('search-threshold', 1, 100, 50);
    const limit = Math.round(clampNum('search-limit', 1, 4096, 5));
    const list = $('search-results');
    clear(list);
    setStatus('search-status', 'Searching…');
    let r;
    try {
      r = await nhn('POST', groupPath(group) + '/search?limit=' + limit + '&threshold=' + threshold,
        { image: { bytes: await fileToBase64(file) } });
    } catch (e) { setStatus('search-status', 'Search failed.'); throw e; }
    const matches = ((r.data && r.data.matchFaces) || []).slice().sort((a, b) => b.similarity - a.similarity);
    for (const m of matches) {
      const f = m.face || {};
      list.append(el('li', { 'data-external-image-id': f.externalImageId || '', 'data-face-id': f.faceId || '', 'data-similarity': m.similarity },
        el('strong', { text: f.externalImageId || '(no external id)' }),
        ' — similarity ' + fmt(m.similarity, 2) + ' — face ',
        el('span', { class: 'mono', text: f.faceId || '–' })));
    }
    setStatus('search-status', matches.length ? matches.length + ' match(es).' : 'No match at this threshold.');
  }

  async function runCompare() {
    const src = pickFile('compare-source', 'a source image');
    const tgt = pickFile('compare-target', 'a target image');
    const threshold = clampNum('compare-threshold', 1, 100, 50);
    const out = $('compare-results');
    clear(out);
    const [a, b] = await Promise.all([fileToBase64(src), fileToBase64(tgt)]);
    const r = await nhn('POST', '/compare?threshold=' + threshold, { sourceImage: { bytes: a }, targetImage: { bytes: b } });
    const d = r.data || {};
    const matched = d.matchedFaceDetails || [], unmatched = d.unmatchedFaceDetails || [];
    out.dataset.matched = String(matched.length);
    out.dataset.unmatched = String(unmatched.length);
    out.append(el('p', { text: matched.length + ' matching and ' + unmatched.length + ' non-matching face(s) in the target.' }));
    if (matched.length) {
      const ul = el('ul');
      for (const m of matched) {
        const bb = (m.faceDetail && m.faceDetail.bbox) || {};
        ul.append(el('li', { 'data-similarity': m.similarity },
          'similarity ' + fmt(m.similarity, 2) + ' — box ' + [bb.x0, bb.y0, bb.x1, bb.y1].map((v) => fmt(v, 3)).join(', ')));
      }
      out.append(ul);
    }
  }

  async function runVerify() {
    const group = needText('verify-group', 'Group id');
    const faceId = needText('verify-face-id', 'Face id');
    const file = pickFile('verify-file', 'an image to verify');
    const out = $('verify-result');
    clear(out);
    delete out.dataset.similarity;
    const r = await nhn('POST', '/verify/groups/' + encodeURIComponent(group) + '/faces/' + encodeURIComponent(faceId),
      { compareImage: { bytes: await fileToBase64(file) } });
    const d = r.data || {};
    out.dataset.similarity = String(d.similarity);
    const ext = d.face && d.face.externalImageId;
    out.append(el('p', {}, 'Similarity ', el('strong', { text: fmt(d.similarity, 2) }), ' / 100 to face ',
      el('span', { class: 'mono', text: faceId }), ext ? ' (' + ext + ')' : ''));
  }

  // ---- start ----------------------------------------------------------------
  function init() {
    initKeys();
    initViews();
    initDrop();
    initGroups();
    $('analyse-run').addEventListener('click', () => action(runAnalyse));
    $('analyse-url').addEventListener('input', () => { if ($('analyse-url').value) droppedFile = null; });
    $('enrol-run').addEventListener('click', () => action(runEnrol));
    $('search-run').addEventListener('click', () => action(runSearch));
    $('compare-run').addEventListener('click', () => action(runCompare));
    $('verify-run').addEventListener('click', () => action(runVerify));
    document.body.dataset.busy = '0';
    document.body.dataset.ready = '1';
  }
  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', init); else init();
})();
