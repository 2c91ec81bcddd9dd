#!/usr/bin/env node
// The seed design: a deliberately naive Node.js HTTPS + SSE signaling server, standard library only.
// It implements just enough of /work/shared/API.md for the signaling benchmarks (streams, latency, setups):
// HS256 bearer tokens, GET /v1/events, POST /v1/calls, /ringing, /accept, /decline, /hangup, /signals,
// GET /v1/calls, GET /healthz. No backlog/replay, no state-machine checks, no validation beyond JSON parse,
// no backpressure (writes are never awaited), ended calls are forgotten.
//
//   node node-sse-server.mjs --port 18444 --cert server.pem --key server.key --secret S [--host 127.0.0.1] [--http2]
//
// Prints `listening PORT` on stdout when ready.

import https from 'node:https';
import http2 from 'node:http2';
import crypto from 'node:crypto';
import fs from 'node:fs';

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  if (i >= 0 && i + 1 < process.argv.length) return process.argv[i + 1];
  if (dflt === undefined) {
    process.stderr.write(`node-sse-server: --${name} is required\n`);
    process.exit(2);
  }
  return dflt;
}

const port = Number(arg('port'));
const host = arg('host', '127.0.0.1');
const secret = arg('secret');
const cert = fs.readFileSync(arg('cert'));
const key = fs.readFileSync(arg('key'));
const HEARTBEAT_MS = 15000;

// ---- auth ------------------------------------------------------------------------------------------------------

const secretKey = Buffer.from(secret, 'utf8');

function verify(req) {
  const h = req.headers.authorization;
  if (!h || !h.startsWith('Bearer ')) return null;
  const parts = h.slice(7).trim().split('.');
  if (parts.length !== 3) return null;
  const expected = crypto.createHmac('sha256', secretKey).update(`${parts[0]}.${parts[1]}`).digest();
  const given = Buffer.from(parts[2], 'base64url');
  if (given.length !== expected.length || !crypto.timingSafeEqual(given, expected)) return null;
  try {
    const header = JSON.parse(Buffer.from(parts[0], 'base64url').toString('utf8'));
    if (header.alg !== 'HS256') return null;
    const claims = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8'));
    if (typeof claims.sub !== 'string' || typeof claims.exp !== 'number') return null;
    if (claims.exp <= Date.now() / 1000) return null;
    return claims.sub;
  } catch {
    return null;
  }
}

// ---- streams ---------------------------------------------------------------------------------------------------

const streamsByUser = new Map(); // user -> Set<{res, user, device, nextId}>
let streamCount = 0;

function send(stream, event, data) {
  stream.res.write(`id: ${stream.nextId++}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
}

function sendToUser(user, event, data) {
  const set = streamsByUser.get(user);
  if (!set) return;
  for (const s of set) send(s, event, data);
}

setInterval(() => {
  for (const set of streamsByUser.values()) for (const s of set) s.res.write(': heartbeat\n\n');
}, HEARTBEAT_MS).unref();

function openEvents(req, res, user, url) {
  const device = url.searchParams.get('device') || crypto.randomUUID();
  res.writeHead(200, {
    'content-type': 'text/event-stream',
    'cache-control': 'no-cache',
    'x-accel-buffering': 'no',
  });
  const stream = { res, user, device, nextId: 1 };
  let set = streamsByUser.get(user);
  if (!set) streamsByUser.set(user, (set = new Set()));
  set.add(stream);
  streamCount++;
  res.write('retry: 3000\n\n');
  send(stream, 'hello', { user, device });
  res.on('close', () => {
    set.delete(stream);
    if (set.size === 0 && streamsByUser.get(user) === set) streamsByUser.delete(user);
    streamCount--;
  });
}

// ---- calls -----------------------------------------------------------------------------------------------------

const calls = new Map(); // id -> Call (plus private fields)

function view(c) {
  const v = { id: c.id, caller: c.caller, callee: c.callee, state: c.state, createdAt: c.createdAt };
  if (c.endReason) v.endReason = c.endReason;
  if (c.answeredAt) v.answeredAt = c.answeredAt;
  if (c.answeredBy) v.answeredBy = c.answeredBy;
  if (c.endedAt) v.endedAt = c.endedAt;
  return v;
}

const other = (c, user) => (user === c.caller ? c.callee : c.caller);

function end(c, reason) {
  c.state = 'ended';
  c.endReason = reason;
  c.endedAt = new Date().toISOString();
  calls.delete(c.id);
  const v = view(c);
  sendToUser(c.caller, 'call.ended', { call: v });
  sendToUser(c.callee, 'call.ended', { call: v });
  return v;
}

// ---- HTTP ------------------------------------------------------------------------------------------------------

function reply(res, status, body) {
  const payload = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) });
  res.end(payload);
}

const fail = (res, status, code, message) => reply(res, status, { error: { code, message } });

function readJSON(req, res, then) {
  const chunks = [];
  let size = 0;
  req.on('data', (c) => {
    size += c.length;
    if (size > 1 << 20) { fail(res, 413, 'body_too_large', 'body too large'); req.destroy(); return; }
    chunks.push(c);
  });
  req.on('end', () => {
    if (res.writableEnded) return;
    let body = {};
    if (size > 0) {
      try { body = JSON.parse(Buffer.concat(chunks).toString('utf8')); } catch {
        fail(res, 400, 'bad_request', 'body is not JSON');
        return;
      }
    }
    then(body ?? {});
  });
}

const CALL_ROUTE = /^\/v1\/calls\/([^/]+)\/(ringing|accept|decline|hangup|signals)$/;

function handle(req, res) {
  const url = new URL(req.url, 'https://localhost');
  const path = url.pathname;
  if (req.method === 'GET' && path === '/healthz') return reply(res, 200, { status: 'ok' });
  const user = verify(req);
  if (!user) return fail(res, 401, 'unauthorized', 'missing or invalid bearer token');

  if (req.method === 'GET' && path === '/v1/events') return openEvents(req, res, user, url);

  if (req.method === 'GET' && path === '/v1/calls') {
    const mine = [];
    for (const c of calls.values()) if (c.caller === user || c.callee === user) mine.push(view(c));
    return reply(res, 200, { calls: mine });
  }

  if (req.method === 'POST' && path === '/v1/calls') {
    return readJSON(req, res, (body) => {
      const c = {
        id: crypto.randomUUID(),
        caller: user,
        callee: String(body.to ?? ''),
        callerDevice: body.device,
        state: 'inviting',
        createdAt: new Date().toISOString(),
      };
      calls.set(c.id, c);
      const invite = { call: view(c) };
      if (body.sdp) invite.sdp = body.sdp;
      sendToUser(c.callee, 'call.invite', invite);
      reply(res, 201, { call: view(c) });
    });
  }

  const m = CALL_ROUTE.exec(path);
  if (req.method === 'POST' && m) {
    return readJSON(req, res, (body) => {
      const c = calls.get(decodeURIComponent(m[1]));
      if (!c || (c.caller !== user && c.callee !== user)) return fail(res, 404, 'call_not_found', 'no such call');
      switch (m[2]) {
        case 'ringing':
          c.state = 'ringing';
          sendToUser(c.caller, 'call.ringing', { call: view(c) });
          return reply(res, 200, { call: view(c) });
        case 'accept': {
          c.state = 'active';
          c.answeredAt = new Date().toISOString();
          c.answeredBy = body.device;
          const ev = { call: view(c) };
          if (body.sdp) ev.sdp = body.sdp;
          sendToUser(c.caller, 'call.accepted', ev);
          return reply(res, 200, { call: view(c) });
        }
        case 'decline':
          return reply(res, 200, { call: end(c, 'declined') });
        case 'hangup':
          return reply(res, 200, { call: end(c, c.state !== 'active' && user === c.caller ? 'cancelled' : 'hangup') });
        case 'signals': {
          const ev = { callId: c.id, from: { user, device: body.device }, type: body.type };
          if (body.sdp !== undefined) ev.sdp = body.sdp;
          if (body.candidate !== undefined) ev.candidate = body.candidate;
          sendToUser(other(c, user), 'call.signal', ev);
          return reply(res, 202, {});
        }
      }
    });
  }
  fail(res, 404, 'not_found', 'no such route');
}

// --http2: the same handler on Node's HTTP/2 server (ALPN h2, HTTP/1.1 allowed), through its compatibility API.
const server = process.argv.includes('--http2')
  ? http2.createSecureServer({ cert, key, minVersion: 'TLSv1.2', allowHTTP1: true }, handle)
  : https.createServer({ cert, key, minVersion: 'TLSv1.2' }, handle);
server.keepAliveTimeout = 65000;
server.headersTimeout = 66000;
server.requestTimeout = 0;
server.on('secureConnection', (s) => s.setNoDelay(true));
server.on('tlsClientError', () => {});
server.listen(port, host, () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});

const stop = () => { server.close(); process.exit(0); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
