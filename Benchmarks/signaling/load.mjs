#!/usr/bin/env node
// Switchboard signaling-plane load tool. Node.js 20, standard library only.
//
// Subcommands (all over HTTPS; `--ca PATH` or `--insecure`; target `--url https://127.0.0.1:PORT`;
// tokens are HS256 JWTs minted locally with `--secret S`):
//
//   streams --count N [--users U] [--pid PID] [--concurrency 200] [--hold 3] [--open-timeout 30]
//       Open N concurrent SSE streams (one TLS connection each), count those that receive `event: hello`,
//       wait --hold seconds, sample the server's VmRSS from /proc/PID/status, print JSON, close everything.
//   h2streams --connections C --per-connection P [--users U] [--pid PID] [--hold 3] [--open-timeout 30]
//       The same over HTTP/2: C TLS connections (ALPN h2), P SSE streams multiplexed on each (C x P in all).
//   latency --rate R --seconds S --pairs P [--post-sockets 16] [--grace 5] [--prefix P]
//       P answered calls (la{i} -> lb{i}, device d1, both parties streaming); ICE candidates posted by the
//       callers at a fixed total rate R/s (clock-scheduled); delivery latency measured on the callees' streams.
//   setups --seconds S --concurrency C [--no-streams] [--prefix P]
//       C workers loop create -> ringing -> accept -> hangup (sa{w} -> sb{w}); setups/s and per-setup latency.
//   storm --count N [--rounds R] [--pid PID] [--concurrency 256] [--sources 127.0.0.2,...] [--settle 15]
//       R rounds of: open N TLS connections (handshake only), hold them all, close them all. Counts handshakes
//       completed and connections refused (closed before the handshake), their rates, and the server's VmRSS
//       before the first round, at its peak, and after the last (lowest seen within --settle seconds).
//   wait [--timeout 60] [--pid PID]
//       Wait until the target accepts a TLS handshake (exit 0), the timeout passes (1) or PID dies (3).
//
// --prefix puts P before every user name, so that loads against several nodes of one cluster do not share users.
// Common options: --url, --ca | --insecure, --secret, --ttl SECONDS (token lifetime, default 7200),
// --device-claim (also put `device` in stream tokens), --allow-non-loopback (refused otherwise).
// Results go to stdout as one JSON object; progress and errors go to stderr.

import https from 'node:https';
import http2 from 'node:http2';
import tls from 'node:tls';
import crypto from 'node:crypto';
import fs from 'node:fs';

// ---------------------------------------------------------------------------------------------------------------
// Arguments

const BOOLEAN_FLAGS = new Set(['insecure', 'no-streams', 'device-claim', 'allow-non-loopback', 'help']);

function parseArgs(argv) {
  const out = { _: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) { out._.push(a); continue; }
    const eq = a.indexOf('=');
    if (eq > 2) { out[a.slice(2, eq)] = a.slice(eq + 1); continue; }
    const key = a.slice(2);
    if (BOOLEAN_FLAGS.has(key)) { out[key] = true; continue; }
    const v = argv[++i];
    if (v === undefined) die(`missing value for --${key}`);
    out[key] = v;
  }
  return out;
}

function die(msg, code = 2) {
  process.stderr.write(`load.mjs: ${msg}\n`);
  process.exit(code);
}

function num(o, key, dflt) {
  if (o[key] === undefined) {
    if (dflt === undefined) die(`--${key} is required`);
    return dflt;
  }
  const v = Number(o[key]);
  if (!Number.isFinite(v)) die(`--${key} must be a number`);
  return v;
}

const log = (msg) => process.stderr.write(`${msg}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const nowNs = () => process.hrtime.bigint();
const nsToMs = (ns) => Number(ns) / 1e6;

// ---------------------------------------------------------------------------------------------------------------
// Target, TLS, tokens

function target(o) {
  if (!o.url) die('--url https://127.0.0.1:PORT is required');
  let u;
  try { u = new URL(o.url); } catch { die(`bad --url ${o.url}`); }
  if (u.protocol !== 'https:') die('--url must be https://');
  const host = u.hostname.replace(/^\[|\]$/g, '');
  const loopback = /^127\.\d+\.\d+\.\d+$/.test(host) || host === '::1' || host === 'localhost';
  if (!loopback && !o['allow-non-loopback']) die(`refusing non-loopback target ${host} (pass --allow-non-loopback)`);
  const tlsOpts = {};
  if (o.ca) tlsOpts.ca = fs.readFileSync(o.ca);
  else if (o.insecure) tlsOpts.rejectUnauthorized = false;
  else die('pass --ca PATH or --insecure');
  return { host, port: Number(u.port || 443), tls: tlsOpts };
}

const b64url = (buf) => Buffer.from(buf).toString('base64url'); // no padding

function makeTokens(o) {
  if (!o.secret) die('--secret is required');
  const secret = o.secret;
  const ttl = num(o, 'ttl', 7200);
  const deviceClaim = !!o['device-claim'];
  const cache = new Map();
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  return (sub, device) => {
    const key = deviceClaim ? `${sub}\u0000${device ?? ''}` : sub;
    let t = cache.get(key);
    if (t) return t;
    const claims = { sub, exp: Math.floor(Date.now() / 1000) + ttl };
    if (deviceClaim && device) claims.device = device;
    const payload = b64url(JSON.stringify(claims));
    const sig = crypto.createHmac('sha256', secret).update(`${header}.${payload}`).digest('base64url');
    t = `${header}.${payload}.${sig}`;
    cache.set(key, t);
    return t;
  };
}

function agent(tgt, maxSockets) {
  return new https.Agent({ keepAlive: true, maxSockets, ...tgt.tls });
}

// ---------------------------------------------------------------------------------------------------------------
// Error reporting: the first few verbatim, then only counted.

const errorCounts = new Map();
let errorsShown = 0;
const MAX_ERRORS_SHOWN = 5;

function reportError(context, detail) {
  const key = `${context}: ${detail.code ?? detail.status ?? 'error'}`;
  errorCounts.set(key, (errorCounts.get(key) ?? 0) + 1);
  if (errorsShown < MAX_ERRORS_SHOWN) {
    errorsShown++;
    log(`error ${context}: ${JSON.stringify(detail)}`);
  }
}

function errorSummary() {
  if (errorCounts.size === 0) return;
  log('error counts:');
  for (const [k, v] of errorCounts) log(`  ${v}\t${k}`);
}

function errorDetail(res) {
  if (res.error) return { code: res.error.code ?? 'network', message: res.error.message };
  const e = res.json?.error;
  if (e) return { status: res.status, code: e.code, message: e.message };
  return { status: res.status, body: (res.text ?? '').slice(0, 200) };
}

// ---------------------------------------------------------------------------------------------------------------
// HTTP: JSON requests on keep-alive connections. Never rejects; returns {status, json, text} or {error}.

function requestOnce(tgt, ag, method, path, token, body) {
  return new Promise((resolve) => {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const headers = { accept: 'application/json' };
    if (token) headers.authorization = `Bearer ${token}`;
    if (payload) { headers['content-type'] = 'application/json'; headers['content-length'] = payload.length; }
    const req = https.request({ agent: ag, host: tgt.host, port: tgt.port, method, path, headers });
    req.setTimeout(30000, () => req.destroy(new Error('request timeout')));
    req.on('socket', (s) => s.setNoDelay(true));
    req.on('error', (error) => resolve({ error, reused: req.reusedSocket }));
    req.on('response', (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('error', (error) => resolve({ error }));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json;
        try { json = text ? JSON.parse(text) : undefined; } catch { json = undefined; }
        resolve({ status: res.statusCode, json, text });
      });
    });
    req.end(payload);
  });
}

async function request(tgt, ag, method, path, token, body) {
  const r = await requestOnce(tgt, ag, method, path, token, body);
  // A keep-alive socket the server closed while idle: the request never reached it, retry once on a fresh one.
  if (r.error && r.reused && (r.error.code === 'ECONNRESET' || r.error.code === 'EPIPE')) {
    return requestOnce(tgt, ag, method, path, token, body);
  }
  return r;
}

// ---------------------------------------------------------------------------------------------------------------
// SSE: incremental parser (chunks may split lines, CRLF pairs and UTF-8 sequences anywhere).

export class SSEParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buf = '';
    this.pendingCR = false;
    this.event = '';
    this.data = [];
    this.id = undefined;
    this.lastEventId = undefined;
    this.retry = undefined;
    this.comments = 0;
  }

  push(str, t) {
    let i = 0;
    if (this.pendingCR) {
      this.pendingCR = false;
      if (str.charCodeAt(0) === 10) i = 1;
    }
    let start = i;
    for (; i < str.length; i++) {
      const c = str.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      const line = this.buf.length ? this.buf + str.slice(start, i) : str.slice(start, i);
      this.buf = '';
      if (c === 13) {
        if (i + 1 < str.length) { if (str.charCodeAt(i + 1) === 10) i++; } else this.pendingCR = true;
      }
      this.line(line, t);
      start = i + 1;
    }
    if (start < str.length) this.buf += str.slice(start);
  }

  line(line, t) {
    if (line.length === 0) { this.dispatch(t); return; }
    if (line.charCodeAt(0) === 58 /* : */) { this.comments++; return; }
    const colon = line.indexOf(':');
    let field = line;
    let value = '';
    if (colon >= 0) {
      field = line.slice(0, colon);
      value = line.slice(colon + 1);
      if (value.charCodeAt(0) === 32) value = value.slice(1);
    }
    switch (field) {
      case 'event': this.event = value; break;
      case 'data': this.data.push(value); break;
      case 'id': if (!value.includes('\u0000')) this.id = value; break;
      case 'retry': if (/^\d+$/.test(value)) this.retry = Number(value); break;
      default: break;
    }
  }

  dispatch(t) {
    if (this.id !== undefined) this.lastEventId = this.id;
    if (this.data.length === 0) { this.event = ''; this.id = undefined; return; }
    const ev = { event: this.event || 'message', data: this.data.join('\n'), id: this.id };
    this.event = '';
    this.data = [];
    this.id = undefined;
    this.onEvent(ev, t);
  }
}

// Open one SSE stream. Resolves {ok: true, stream} once `hello` arrives, or {ok: false, detail}.
// `onEvent(ev, t)` sees every event (hello included); `onClose()` is called if a held stream ends.
function openStream(tgt, ag, token, device, { onEvent, onClose, timeoutMs = 30000 } = {}) {
  return new Promise((resolve) => {
    let settled = false;
    const stream = { req: null, res: null, alive: false, device, hello: null };
    const settle = (v) => { if (!settled) { settled = true; clearTimeout(timer); resolve(v); } };
    const path = device ? `/v1/events?device=${encodeURIComponent(device)}` : '/v1/events';
    const req = https.request({
      agent: ag, host: tgt.host, port: tgt.port, method: 'GET', path,
      headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream', 'cache-control': 'no-cache' },
    });
    stream.req = req;
    const timer = setTimeout(() => {
      settle({ ok: false, detail: { code: 'timeout', message: `no hello within ${timeoutMs} ms` } });
      req.destroy();
    }, timeoutMs);
    req.on('socket', (s) => s.setNoDelay(true));
    req.on('error', (e) => {
      if (settled && stream.alive) { stream.alive = false; onClose?.(stream, e); }
      settle({ ok: false, detail: { code: e.code ?? 'network', message: e.message } });
    });
    req.on('response', (res) => {
      stream.res = res;
      if (res.statusCode !== 200) {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json;
          try { json = JSON.parse(text); } catch { /* not JSON */ }
          settle({ ok: false, detail: errorDetail({ status: res.statusCode, json, text }) });
        });
        res.on('error', () => settle({ ok: false, detail: { status: res.statusCode, code: 'aborted' } }));
        return;
      }
      res.setEncoding('utf8');
      const parser = new SSEParser((ev, t) => {
        if (!stream.alive && ev.event === 'hello') {
          stream.alive = true;
          try { stream.hello = JSON.parse(ev.data); } catch { stream.hello = ev.data; }
          settle({ ok: true, stream });
        }
        onEvent?.(ev, t);
      });
      stream.parser = parser;
      res.on('data', (chunk) => parser.push(chunk, nowNs()));
      const ended = () => {
        if (stream.alive) { stream.alive = false; onClose?.(stream); }
        settle({ ok: false, detail: { code: 'closed', message: 'stream ended before hello' } });
      };
      res.on('end', ended);
      res.on('close', ended);
      res.on('error', ended);
    });
    req.end();
  });
}

function closeStream(stream) {
  stream.alive = false;
  stream.req?.destroy();
}

// Run `fn(i)` for i in [0, n) with at most `limit` in flight.
async function pool(n, limit, fn) {
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const i = next++;
      await fn(i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, n) }, worker));
}

function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

const round3 = (x) => (x === null || x === undefined ? null : Math.round(x * 1000) / 1000);

function readRssKiB(pid) {
  if (!pid) return null;
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch (e) {
    log(`cannot read /proc/${pid}/status: ${e.message}`);
    return null;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// streams

async function cmdStreams(o) {
  const tgt = target(o);
  const token = makeTokens(o);
  const count = num(o, 'count');
  const users = Math.max(1, num(o, 'users', count));
  const concurrency = num(o, 'concurrency', 200);
  const holdMs = num(o, 'hold', 3) * 1000;
  const timeoutMs = num(o, 'open-timeout', 30) * 1000;
  const pid = o.pid ? Number(o.pid) : null;

  const baselineKiB = readRssKiB(pid);
  const ag = agent(tgt, Infinity);
  const streams = [];
  let held = 0;
  let failed = 0;
  let dropped = 0;
  const onClose = () => { dropped++; };

  const t0 = nowNs();
  const progress = setInterval(() => log(`streams: held ${held} failed ${failed} of ${count}`), 2000);
  await pool(count, concurrency, async (k) => {
    const device = `d${k}`;
    const r = await openStream(tgt, ag, token(`u${k % users}`, device), device, { onClose, timeoutMs });
    if (r.ok) { held++; streams.push(r.stream); } else { failed++; reportError('stream', r.detail); }
  });
  clearInterval(progress);
  const openSeconds = Number(nowNs() - t0) / 1e9;
  log(`streams: held ${held} failed ${failed} in ${openSeconds.toFixed(1)} s; holding ${holdMs / 1000} s`);

  await sleep(holdMs);
  const rssKiB = readRssKiB(pid);
  const stillOpen = streams.filter((s) => s.alive).length;

  const result = {
    held,
    failed,
    rssMiB: rssKiB === null ? null : round3(rssKiB / 1024),
    rssPerStreamKiB: rssKiB === null || baselineKiB === null || held === 0 ? null : round3((rssKiB - baselineKiB) / held),
    baselineRssMiB: baselineKiB === null ? null : round3(baselineKiB / 1024),
    count,
    users,
    stillOpen,
    droppedAfterHello: dropped,
    openSeconds: round3(openSeconds),
    clientRssMiB: round3(process.memoryUsage().rss / 1048576),
  };
  for (const s of streams) closeStream(s);
  ag.destroy();
  errorSummary();
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

// ---------------------------------------------------------------------------------------------------------------
// h2streams: the streams workload over HTTP/2, many streams per connection

function openH2Stream(session, token, device, { onClose, timeoutMs }) {
  return new Promise((resolve) => {
    let settled = false;
    const stream = { req: null, alive: false, device };
    const settle = (v) => { if (!settled) { settled = true; clearTimeout(timer); resolve(v); } };
    const req = session.request({
      ':method': 'GET', ':path': `/v1/events?device=${encodeURIComponent(device)}`,
      authorization: `Bearer ${token}`, accept: 'text/event-stream',
    });
    stream.req = req;
    const timer = setTimeout(() => {
      settle({ ok: false, detail: { code: 'timeout', message: `no hello within ${timeoutMs} ms` } });
      req.close();
    }, timeoutMs);
    req.on('response', (headers) => {
      const status = headers[':status'];
      if (status !== 200) { settle({ ok: false, detail: { status, code: 'status' } }); req.close(); return; }
      req.setEncoding('utf8');
      const parser = new SSEParser((ev) => {
        if (!stream.alive && ev.event === 'hello') { stream.alive = true; settle({ ok: true, stream }); }
      });
      req.on('data', (chunk) => parser.push(chunk, nowNs()));
    });
    const ended = () => {
      if (stream.alive) { stream.alive = false; onClose?.(stream); }
      settle({ ok: false, detail: { code: 'closed', message: 'stream ended before hello' } });
    };
    req.on('close', ended);
    req.on('error', (e) => { ended(); settle({ ok: false, detail: { code: e.code ?? 'h2', message: e.message } }); });
    req.end();
  });
}

async function cmdH2Streams(o) {
  const tgt = target(o);
  const token = makeTokens(o);
  const connections = num(o, 'connections');
  const perConnection = num(o, 'per-connection');
  const count = connections * perConnection;
  const users = Math.max(1, num(o, 'users', count));
  const holdMs = num(o, 'hold', 3) * 1000;
  const timeoutMs = num(o, 'open-timeout', 30) * 1000;
  const pid = o.pid ? Number(o.pid) : null;

  const baselineKiB = readRssKiB(pid);
  const sessions = [];
  const streams = [];
  let held = 0;
  let failed = 0;
  let dropped = 0;
  let protocolMismatch = 0;
  const onClose = () => { dropped++; };
  const t0 = nowNs();
  const progress = setInterval(() => log(`h2streams: held ${held} failed ${failed} of ${count}`), 2000);
  // A few connections at a time; each opens its streams all at once (as a browser's tabs would).
  await pool(connections, 8, async (c) => {
    const session = http2.connect(`https://${tgt.host}:${tgt.port}`, { ...tgt.tls, servername: undefined });
    session.on('error', (e) => reportError('h2 session', { code: e.code ?? 'h2', message: e.message }));
    sessions.push(session);
    const connected = await new Promise((resolve) => {
      session.once('connect', () => resolve(true));
      session.once('error', () => resolve(false));
    });
    if (!connected || session.destroyed) { failed += perConnection; return; }
    if (session.alpnProtocol !== 'h2') protocolMismatch++;
    const results = await Promise.all(Array.from({ length: perConnection }, (_, i) => {
      const k = c * perConnection + i;
      const device = `d${k}`;
      return openH2Stream(session, token(`u${k % users}`, device), device, { onClose, timeoutMs });
    }));
    for (const r of results) {
      if (r.ok) { held++; streams.push(r.stream); } else { failed++; reportError('h2 stream', r.detail); }
    }
  });
  clearInterval(progress);
  const openSeconds = Number(nowNs() - t0) / 1e9;
  log(`h2streams: held ${held} failed ${failed} in ${openSeconds.toFixed(1)} s; holding ${holdMs / 1000} s`);
  await sleep(holdMs);
  const rssKiB = readRssKiB(pid);
  const result = {
    held,
    failed,
    connections,
    perConnection,
    protocolMismatch,
    rssMiB: rssKiB === null ? null : round3(rssKiB / 1024),
    rssPerStreamKiB: rssKiB === null || baselineKiB === null || held === 0 ? null : round3((rssKiB - baselineKiB) / held),
    baselineRssMiB: baselineKiB === null ? null : round3(baselineKiB / 1024),
    stillOpen: streams.filter((s) => s.alive).length,
    droppedAfterHello: dropped,
    openSeconds: round3(openSeconds),
  };
  for (const s of streams) { s.alive = false; s.req.close(); }
  for (const session of sessions) session.destroy();
  errorSummary();
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

// ---------------------------------------------------------------------------------------------------------------
// Calls helpers

// End any call the users were left in by an interrupted earlier run (a caller still "active" would be busy).
async function cleanupStaleCalls(tgt, ag, token, user, device) {
  const r = await request(tgt, ag, 'GET', '/v1/calls?state=inviting,ringing,active', token(user, device));
  const calls = r.status === 200 && Array.isArray(r.json?.calls) ? r.json.calls : [];
  for (const c of calls) {
    if (!c?.id || c.state === 'ended') continue;
    const action = c.state === 'active' || c.caller === user ? 'hangup' : 'decline';
    await request(tgt, ag, 'POST', `/v1/calls/${encodeURIComponent(c.id)}/${action}`, token(user, device), { device });
  }
  return calls.length;
}

// create -> ringing -> accept. Returns the call id or null (errors reported).
async function establishCall(tgt, ag, token, caller, callee, device, context) {
  const created = await request(tgt, ag, 'POST', '/v1/calls', token(caller, device), { to: callee, device });
  if (created.status !== 201 || !created.json?.call?.id) {
    reportError(`${context} create`, errorDetail(created));
    return { id: null, step: 'create' };
  }
  const call = created.json.call;
  if (call.state === 'ended') {
    reportError(`${context} create`, { code: `ended:${call.endReason}`, message: 'call created already ended' });
    return { id: null, step: 'create' };
  }
  const path = `/v1/calls/${encodeURIComponent(call.id)}`;
  const ringing = await request(tgt, ag, 'POST', `${path}/ringing`, token(callee, device), { device });
  if (ringing.status !== 200) {
    reportError(`${context} ringing`, errorDetail(ringing));
    return { id: call.id, step: 'ringing' };
  }
  const accepted = await request(tgt, ag, 'POST', `${path}/accept`, token(callee, device), { device });
  if (accepted.status !== 200) {
    reportError(`${context} accept`, errorDetail(accepted));
    return { id: call.id, step: 'accept' };
  }
  return { id: call.id, step: 'active' };
}

// ---------------------------------------------------------------------------------------------------------------
// latency

const CANDIDATE_BASE = 'candidate:1 1 udp 2122260223 192.0.2.1 54400 typ host';
const SEQ_RE = / ufrag (\d+)/;

async function cmdLatency(o) {
  const tgt = target(o);
  const token = makeTokens(o);
  const rate = num(o, 'rate');
  const seconds = num(o, 'seconds');
  const pairsN = num(o, 'pairs', 20);
  const postSockets = num(o, 'post-sockets', 16);
  const graceMs = num(o, 'grace', 5) * 1000;
  if (rate <= 0 || seconds <= 0 || pairsN <= 0) die('--rate, --seconds and --pairs must be positive');
  const device = 'd1';

  const streamAgent = agent(tgt, Infinity);
  const postAgent = agent(tgt, postSockets);

  const total = Math.round(rate * seconds);
  const sendAt = new Array(total);           // bigint hrtime at send, by sequence
  const latencyMs = new Float64Array(total); // delivery latency, by sequence
  const got = new Uint8Array(total);
  let received = 0;
  let duplicates = 0;
  let unmatched = 0;
  let dropped = 0;

  const onCalleeEvent = (ev, t) => {
    if (ev.event !== 'call.signal') return;
    let seq = -1;
    try {
      const m = SEQ_RE.exec(JSON.parse(ev.data)?.candidate?.candidate ?? '');
      if (m) seq = Number(m[1]);
    } catch { /* not JSON */ }
    if (seq < 0 || seq >= total || sendAt[seq] === undefined) { unmatched++; return; }
    if (got[seq]) { duplicates++; return; }
    got[seq] = 1;
    received++;
    latencyMs[seq] = nsToMs(t - sendAt[seq]);
  };

  // Streams for both parties of every pair.
  const pairs = Array.from({ length: pairsN }, (_, i) => ({ caller: `${o.prefix ?? ''}la${i}`, callee: `${o.prefix ?? ''}lb${i}`, callId: null }));
  const streams = [];
  let streamFailures = 0;
  await pool(pairsN * 2, 50, async (j) => {
    const p = pairs[j >> 1];
    const isCallee = (j & 1) === 1;
    const user = isCallee ? p.callee : p.caller;
    const r = await openStream(tgt, streamAgent, token(user, device), device, {
      onEvent: isCallee ? onCalleeEvent : undefined,
      onClose: () => { dropped++; },
    });
    if (r.ok) streams.push(r.stream); else { streamFailures++; reportError('stream', { user, ...r.detail }); }
  });
  if (streamFailures > 0) log(`latency: ${streamFailures} streams failed to open`);

  // Answered calls.
  let stale = 0;
  await pool(pairsN, 16, async (i) => {
    stale += await cleanupStaleCalls(tgt, postAgent, token, pairs[i].caller, device);
    stale += await cleanupStaleCalls(tgt, postAgent, token, pairs[i].callee, device);
  });
  if (stale) log(`latency: ended ${stale} calls left over from an earlier run`);
  await pool(pairsN, 16, async (i) => {
    const p = pairs[i];
    const r = await establishCall(tgt, postAgent, token, p.caller, p.callee, device, 'setup');
    p.callId = r.id;
    p.active = r.step === 'active';
  });
  const live = pairs.filter((p) => p.active);
  if (live.length === 0) {
    errorSummary();
    for (const s of streams) closeStream(s);
    die('no call could be established', 1);
  }
  log(`latency: ${live.length}/${pairsN} calls active; sending ${total} candidates at ${rate}/s`);

  // Clock-scheduled open-loop sender: message k is due at t0 + k/rate, regardless of how earlier ones went.
  let sent = 0;
  let accepted = 0;
  let postErrors = 0;
  let inFlight = 0;
  let maxLagMs = 0;
  const postMs = [];
  const intervalNs = 1e9 / rate;
  const send = (seq) => {
    const p = live[seq % live.length];
    const body = {
      device,
      type: 'candidate',
      candidate: { candidate: `${CANDIDATE_BASE} generation 0 ufrag ${seq}`, sdpMid: '0', sdpMLineIndex: 0 },
    };
    const t = nowNs();
    sendAt[seq] = t;
    sent++;
    inFlight++;
    request(tgt, postAgent, 'POST', `/v1/calls/${encodeURIComponent(p.callId)}/signals`, token(p.caller, device), body)
      .then((r) => {
        inFlight--;
        postMs.push(nsToMs(nowNs() - t));
        if (r.status === 202) accepted++;
        else { postErrors++; reportError('signal', errorDetail(r)); }
      });
  };

  const t0 = nowNs() + 20_000_000n;
  let next = 0;
  await new Promise((resolve) => {
    const tick = () => {
      const elapsed = Number(nowNs() - t0);
      const due = elapsed < 0 ? 0 : Math.min(total, Math.floor(elapsed / intervalNs) + 1);
      if (next < due) maxLagMs = Math.max(maxLagMs, (elapsed - next * intervalNs) / 1e6);
      while (next < due) send(next++);
      if (next >= total) resolve();
      else setTimeout(tick, 1);
    };
    tick();
  });
  const sendSeconds = Number(nowNs() - t0) / 1e9;

  // Drain: wait for POST responses and deliveries, at most --grace seconds after the last send.
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline && (inFlight > 0 || received < accepted)) await sleep(20);

  const lat = [];
  for (let s = 0; s < total; s++) if (got[s]) lat.push(latencyMs[s]);
  lat.sort((a, b) => a - b);
  postMs.sort((a, b) => a - b);
  const result = {
    rate,
    sent,
    received,
    p50ms: round3(percentile(lat, 50)),
    p90ms: round3(percentile(lat, 90)),
    p99ms: round3(percentile(lat, 99)),
    maxms: round3(lat.length ? lat[lat.length - 1] : null),
    meanms: round3(lat.length ? lat.reduce((a, b) => a + b, 0) / lat.length : null),
    seconds,
    pairs: live.length,
    accepted,
    postErrors,
    lost: accepted - received,
    duplicates,
    unmatched,
    streamsDropped: dropped,
    achievedRate: round3(sent / sendSeconds),
    schedulerMaxLagMs: round3(maxLagMs),
    postP50ms: round3(percentile(postMs, 50)),
    postP99ms: round3(percentile(postMs, 99)),
  };

  await pool(live.length, 16, async (i) => {
    const p = live[i];
    const r = await request(tgt, postAgent, 'POST', `/v1/calls/${encodeURIComponent(p.callId)}/hangup`,
      token(p.caller, device), { device });
    if (r.status !== 200) reportError('hangup', errorDetail(r));
  });
  for (const s of streams) closeStream(s);
  streamAgent.destroy();
  postAgent.destroy();
  errorSummary();
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

// ---------------------------------------------------------------------------------------------------------------
// setups

async function cmdSetups(o) {
  const tgt = target(o);
  const token = makeTokens(o);
  const seconds = num(o, 'seconds');
  const concurrency = num(o, 'concurrency', 16);
  const withStreams = !o['no-streams'];
  const device = 'd1';
  const ag = agent(tgt, concurrency);
  const streamAgent = agent(tgt, Infinity);

  // Connected devices for both parties (realistic fan-out of invite/ringing/accepted/ended); --no-streams skips.
  const streams = [];
  if (withStreams) {
    await pool(concurrency * 2, 50, async (j) => {
      const w = j >> 1;
      const user = (j & 1) ? `${o.prefix ?? ''}sb${w}` : `${o.prefix ?? ''}sa${w}`;
      const r = await openStream(tgt, streamAgent, token(user, device), device, {});
      if (r.ok) streams.push(r.stream); else reportError('stream', { user, ...r.detail });
    });
  }
  let stale = 0;
  await pool(concurrency, 16, async (w) => {
    stale += await cleanupStaleCalls(tgt, ag, token, `${o.prefix ?? ''}sa${w}`, device);
    stale += await cleanupStaleCalls(tgt, ag, token, `${o.prefix ?? ''}sb${w}`, device);
  });
  if (stale) log(`setups: ended ${stale} calls left over from an earlier run`);

  let completed = 0;
  let errors = 0;
  const setupMs = [];
  const t0 = nowNs();
  const endAt = t0 + BigInt(Math.round(seconds * 1e9));
  const worker = async (w) => {
    const caller = `${o.prefix ?? ''}sa${w}`;
    const callee = `${o.prefix ?? ''}sb${w}`;
    while (nowNs() < endAt) {
      const start = nowNs();
      const r = await establishCall(tgt, ag, token, caller, callee, device, 'setup');
      let ok = r.step === 'active';
      if (r.id) {
        const h = await request(tgt, ag, 'POST', `/v1/calls/${encodeURIComponent(r.id)}/hangup`, token(caller, device),
          { device });
        if (ok && h.status !== 200) { reportError('setup hangup', errorDetail(h)); ok = false; }
      }
      if (ok) {
        completed++;
        setupMs.push(nsToMs(nowNs() - start));
      } else {
        errors++;
        await sleep(20); // don't spin on a persistent failure
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, (_, w) => worker(w)));
  const elapsed = Number(nowNs() - t0) / 1e9;
  setupMs.sort((a, b) => a - b);
  const result = {
    setupsPerSecond: round3(completed / elapsed),
    completed,
    errors,
    p50ms: round3(percentile(setupMs, 50)),
    p99ms: round3(percentile(setupMs, 99)),
    maxms: round3(setupMs.length ? setupMs[setupMs.length - 1] : null),
    seconds: round3(elapsed),
    concurrency,
    streams: withStreams,
  };
  for (const s of streams) closeStream(s);
  ag.destroy();
  streamAgent.destroy();
  errorSummary();
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

// ---------------------------------------------------------------------------------------------------------------
// wait: until the port completes a TLS handshake.

// ---------------------------------------------------------------------------------------------------------------
// storm

/// One TLS connection: resolves "accepted" once the handshake completes (keeping the socket), "refused" when the
/// server closes or resets it first.
function stormConnect(tgt, localAddress, timeoutMs) {
  return new Promise((resolve) => {
    const s = tls.connect({ host: tgt.host, port: tgt.port, localAddress, ...tgt.tls, servername: undefined });
    const timer = setTimeout(() => { s.destroy(); resolve({ outcome: 'timeout' }); }, timeoutMs);
    s.once('secureConnect', () => { clearTimeout(timer); resolve({ outcome: 'accepted', socket: s }); });
    s.once('error', () => { clearTimeout(timer); resolve({ outcome: 'refused' }); });
    s.once('close', () => { clearTimeout(timer); resolve({ outcome: 'refused' }); });
    s.on('error', () => {});
  });
}

async function cmdStorm(o) {
  const tgt = target(o);
  const count = num(o, 'count', 2000);
  const rounds = num(o, 'rounds', 1);
  const concurrency = num(o, 'concurrency', 256);
  const settle = num(o, 'settle', 15);
  const pid = o.pid ? Number(o.pid) : null;
  const sources = (o.sources ?? '127.0.0.1').split(',');
  const before = readRssKiB(pid);
  let peak = before ?? 0;
  let accepted = 0, refused = 0, timedOut = 0;
  let acceptSeconds = 0;
  for (let round = 0; round < rounds; round++) {
    const sockets = [];
    const start = nowNs();
    let next = 0;
    await pool(count, concurrency, async () => {
      const index = next++;
      const r = await stormConnect(tgt, sources[index % sources.length], 20000);
      if (r.outcome === 'accepted') { accepted++; sockets.push(r.socket); }
      else if (r.outcome === 'refused') refused++;
      else timedOut++;
    });
    acceptSeconds += nsToMs(nowNs() - start) / 1000;
    const rss = readRssKiB(pid);
    if (rss !== null) peak = Math.max(peak, rss);
    await Promise.all(sockets.map((s) => new Promise((r) => { s.once('close', r); s.destroy(); })));
    log(`storm: round ${round + 1}/${rounds}: ${sockets.length} held, RSS ${rss === null ? 'n/a' : Math.round(rss / 1024) + ' MiB'}`);
  }
  // RSS comes back once the server notices its connections fell: take the lowest reading within --settle s,
  // stopping early once it has been flat for three seconds.
  let after = readRssKiB(pid);
  let flat = 0;
  for (let waited = 0; pid && waited < settle && flat < 6; waited += 0.5) {
    await sleep(500);
    const rss = readRssKiB(pid);
    if (rss !== null && after !== null && rss < after - 256) { after = rss; flat = 0; } else flat++;
  }
  const attempts = accepted + refused + timedOut;
  console.log(JSON.stringify({
    rounds, count, accepted, refused, timedOut,
    attemptsPerSecond: round3(attempts / acceptSeconds),
    acceptedPerSecond: round3(accepted / acceptSeconds),
    refusedPerSecond: round3(refused / acceptSeconds),
    rssBeforeMiB: before === null ? null : round3(before / 1024),
    rssPeakMiB: before === null ? null : round3(peak / 1024),
    rssAfterMiB: after === null ? null : round3(after / 1024),
  }));
}

async function cmdWait(o) {
  const tgt = target(o);
  const deadline = Date.now() + num(o, 'timeout', 60) * 1000;
  const pid = o.pid ? Number(o.pid) : null;
  let last = '';
  while (Date.now() < deadline) {
    if (pid && !fs.existsSync(`/proc/${pid}`)) { log(`wait: process ${pid} exited`); process.exit(3); }
    const ok = await new Promise((resolve) => {
      const s = tls.connect({ host: tgt.host, port: tgt.port, ...tgt.tls, servername: undefined });
      const timer = setTimeout(() => { last = 'handshake timeout'; s.destroy(); resolve(false); }, 2000);
      s.on('secureConnect', () => { clearTimeout(timer); s.end(); resolve(true); });
      s.on('error', (e) => { clearTimeout(timer); last = e.message; resolve(false); });
    });
    if (ok) { log(`wait: ${tgt.host}:${tgt.port} accepts TLS`); return; }
    await sleep(200);
  }
  log(`wait: timed out (${last})`);
  process.exit(1);
}

// ---------------------------------------------------------------------------------------------------------------

const USAGE = `usage: load.mjs <streams|latency|setups|storm|wait> --url https://127.0.0.1:PORT (--ca PATH | --insecure) --secret S ...
  streams --count N [--users U] [--pid PID] [--concurrency 200] [--hold 3] [--open-timeout 30]
  h2streams --connections C --per-connection P [--users U] [--pid PID] [--hold 3] [--open-timeout 30]
  latency --rate R --seconds S [--pairs 20] [--post-sockets 16] [--grace 5]
  setups  --seconds S [--concurrency 16] [--no-streams]
  storm   --count N [--rounds R] [--pid PID] [--concurrency 256] [--sources A,B,...] [--settle 15]
  wait    [--timeout 60] [--pid PID]
`;

const isMain = import.meta.url === `file://${process.argv[1]}` || process.argv[1]?.endsWith('load.mjs');
if (isMain) {
  const o = parseArgs(process.argv.slice(2));
  const cmd = o._[0];
  const commands = { streams: cmdStreams, h2streams: cmdH2Streams, latency: cmdLatency, setups: cmdSetups, storm: cmdStorm, wait: cmdWait };
  if (o.help || !commands[cmd]) { process.stderr.write(USAGE); process.exit(o.help ? 0 : 2); }
  commands[cmd](o).then(
    () => process.exit(0),
    (e) => { log(e?.stack ?? String(e)); process.exit(1); },
  );
}
