// Switchboard web client: signaling over the server's SSE stream and REST API, media over WebRTC.
// Tokens live in sessionStorage (per tab) and travel only in Authorization headers, never in a URL.
"use strict";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "switchboard.token";
const DEVICE_KEY = "switchboard.device";

const REASONS = {
  hangup: "hung up",
  cancelled: "cancelled",
  declined: "declined",
  busy: "busy",
  no_answer: "no answer",
  unavailable: "unavailable",
  answered_elsewhere: "answered on another device",
  glare: "calls crossed (glare)",
  failed: "failed",
};

// Why a secure-relay call failed (the call's `failure`).
const FAILURES = {
  fingerprint_mismatch: "a certificate did not match its fingerprint",
  ice_timeout: "media could not connect",
  dtls_failed: "the secure media handshake failed",
  consent_lost: "media connection lost",
};

const params = new URLSearchParams(location.search);
const app = {
  token: null,
  user: null,
  device: null,
  config: { iceTransportPolicy: "all", devUsers: null, media: "caller-choice" },
  source: null,
  lastEventId: null,
  reconnectTimer: null,
  reconnectDelay: 1000,
  call: null,          // the call on screen
  earlySignals: new Map(), // callId -> signals that arrived before the call did
  earlyEvents: [], // call.ringing/accepted/ended that arrived while this page's invite was still in flight
  statsTimer: null,
};

function log(text) {
  const item = document.createElement("li");
  item.textContent = new Date().toISOString().slice(11, 23) + " " + text;
  const list = $("log");
  list.appendChild(item);
  while (list.children.length > 200) list.removeChild(list.firstChild);
  list.scrollTop = list.scrollHeight;
}

function show(id, visible) { $(id).hidden = !visible; }

function setPresence(state, text) {
  $("presence").dataset.state = state;
  $("presence-text").textContent = text;
}

function randomId(prefix) {
  const bytes = new Uint8Array(6);
  crypto.getRandomValues(bytes);
  return prefix + Array.from(bytes, (b) => b.toString(36).padStart(2, "0")).join("").slice(0, 10);
}

class APIError extends Error {
  constructor(status, code, message) { super(message); this.status = status; this.code = code; }
}

async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + app.token };
  const init = { method, headers, cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  let data = {};
  try { data = await response.json(); } catch (_) { /* empty body */ }
  if (!response.ok) {
    const error = data.error || {};
    throw new APIError(response.status, error.code || "http_" + response.status, error.message || response.statusText);
  }
  return data;
}

// ---- sign in ----

function tokenSubject(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload)).sub || null;
  } catch (_) { return null; }
}

function signIn(token) {
  token = token.trim();
  if (!tokenSubject(token)) { $("signin-error").textContent = "That is not a Switchboard token."; return; }
  app.token = token;
  app.user = tokenSubject(token);
  app.device = sessionStorage.getItem(DEVICE_KEY) || randomId("web-");
  sessionStorage.setItem(DEVICE_KEY, app.device);
  sessionStorage.setItem(TOKEN_KEY, token);
  $("token-input").value = "";
  $("signin-error").textContent = "";
  $("me-user").textContent = app.user;
  $("me-device").textContent = app.device;
  show("signin", false);
  show("home", true);
  app.lastEventId = null;
  connect();
}

function signOut(message) {
  // Hang up first: the request takes the token with it before the token is forgotten.
  if (app.call && !app.call.ended) hangUp();
  closeSource();
  clearTimeout(app.reconnectTimer);
  sessionStorage.removeItem(TOKEN_KEY);
  app.token = null;
  show("home", false);
  show("call", false);
  show("incoming", false);
  show("signin", true);
  setPresence("offline", "signed out");
  $("signin-error").textContent = message || "";
}

async function devSignIn(user) {
  try {
    const response = await fetch("/dev/token", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ user }),
      cache: "no-store", credentials: "omit",
    });
    const data = await response.json();
    if (!response.ok) throw new Error((data.error && data.error.message) || response.statusText);
    signIn(data.token);
  } catch (error) {
    $("signin-error").textContent = "Dev sign-in failed: " + error.message;
  }
}

// ---- event stream ----

function closeSource() {
  if (app.source) { app.source.close(); app.source = null; }
}

async function connect() {
  clearTimeout(app.reconnectTimer);
  closeSource();
  let ticket;
  try {
    ticket = (await api("POST", "/v1/stream-tickets", { device: app.device })).ticket;
  } catch (error) {
    if (error.status === 401) { signOut("The token was refused (expired or invalid)."); return; }
    scheduleReconnect("no ticket: " + error.message);
    return;
  }
  // The ticket is single use: a new EventSource (with a new ticket) resumes with ?lastEventId.
  let url = "/v1/events?device=" + encodeURIComponent(app.device) + "&ticket=" + encodeURIComponent(ticket);
  if (app.lastEventId) url += "&lastEventId=" + encodeURIComponent(app.lastEventId);
  const source = new EventSource(url);
  app.source = source;
  const on = (name, handler) => source.addEventListener(name, (event) => {
    if (source !== app.source) return;
    if (event.lastEventId) app.lastEventId = event.lastEventId;
    let data = {};
    try { data = JSON.parse(event.data || "{}"); } catch (_) { log("unreadable " + name); return; }
    try { handler(data); } catch (error) { log("error handling " + name + ": " + error.message); }
  });
  on("hello", (data) => {
    app.reconnectDelay = 1000;
    setPresence("online", data.user + " online (" + data.device + ")");
    log("stream open as " + data.user + "/" + data.device);
  });
  on("call.invite", onInvite);
  on("call.ringing", onRinging);
  on("call.accepted", onAccepted);
  on("call.ended", onEnded);
  on("call.signal", onSignal);
  on("resync", () => { log("resync"); resync(); });
  on("superseded", () => {
    log("superseded by another stream of this device");
    closeSource();
    setPresence("offline", "replaced by another tab of this device");
  });
  on("shutdown", () => { log("server shutting down"); scheduleReconnect("server shutdown"); });
  on("reconnect", () => { log("server draining"); scheduleReconnect("server draining"); });
  source.onerror = () => {
    if (source !== app.source) return;
    scheduleReconnect("stream dropped");
  };
}

function scheduleReconnect(why) {
  closeSource();
  if (!app.token) return;
  setPresence("reconnecting", "reconnecting…");
  log(why + "; reconnecting in " + app.reconnectDelay + " ms");
  clearTimeout(app.reconnectTimer);
  app.reconnectTimer = setTimeout(connect, app.reconnectDelay);
  app.reconnectDelay = Math.min(app.reconnectDelay * 2, 8000);
}

async function resync() {
  const call = app.call;
  if (!call || !call.id || call.ended) return;
  try {
    const data = await api("GET", "/v1/calls/" + encodeURIComponent(call.id));
    if (data.call.state === "ended") finish(call, data.call.endReason || "failed");
  } catch (error) {
    log("resync failed: " + error.message);
  }
}

// ---- calls ----

function setCallState(call, state) {
  if (call !== app.call) return;
  call.state = state;
  $("call").dataset.callId = call.id || "";
  $("call-state").textContent = state;
  $("call-state").dataset.state = state;
}

function showCall(call) {
  $("call-peer").textContent = call.peer;
  $("call-reason").textContent = "";
  $("call-reason").dataset.reason = "";
  $("call-path").textContent = "unknown";
  $("call-path").dataset.path = "";
  $("frames-decoded").textContent = "0";
  $("ice-state").textContent = "new";
  $("ice-policy").textContent = call.media === "secure-relay" ? "secure relay" : icePolicy();
  $("mute-button").setAttribute("aria-pressed", "false");
  $("camera-button").setAttribute("aria-pressed", "false");
  show("hangup-button", true);
  show("dismiss-button", false);
  show("call", true);
  $("call-error").textContent = "";
}

// The media path a call placed from this page asks for: ?media=secure-relay|direct, else the server's policy.
function requestedMedia() {
  const asked = params.get("media");
  if (app.config.media === "secure-relay") return "secure-relay";
  if (app.config.media === "direct") return "direct";
  return asked === "secure-relay" ? "secure-relay" : "direct";
}

function icePolicy() {
  if (["1", "tcp", "tls"].includes(params.get("relay"))) return "relay";
  if (params.get("relay") === "0") return "all";
  return app.config.iceTransportPolicy === "relay" ? "relay" : "all";
}

// ?relay=tcp or ?relay=tls: only the relay's TURN-over-TCP or TURN-over-TLS URLs, as on a network that lets no
// UDP through.
function relayServers(servers) {
  const only = params.get("relay");
  if (only !== "tcp" && only !== "tls") return servers;
  const keep = (url) => (only === "tls" ? url.startsWith("turns:") : url.startsWith("turn:") && url.endsWith("transport=tcp"));
  return servers
    .map((server) => Object.assign({}, server, { urls: [].concat(server.urls).filter(keep) }))
    .filter((server) => server.urls.length > 0);
}

async function iceConfiguration(media) {
  // Through the secure relay, Switchboard itself is the peer: its host candidate is in the SDP, no TURN needed.
  if (media === "secure-relay") {
    return { configuration: { iceServers: [], iceTransportPolicy: "all", bundlePolicy: "max-bundle" }, ttl: 0 };
  }
  let iceServers = [];
  let ttl = 0;
  try {
    const credentials = await api("GET", "/v1/turn-credentials");
    iceServers = relayServers(credentials.iceServers || []);
    ttl = credentials.ttl || 0;
  } catch (error) {
    log("no TURN credentials: " + error.message);
  }
  // Only Switchboard's own servers: never a public STUN default.
  return { configuration: { iceServers, iceTransportPolicy: icePolicy(), bundlePolicy: "max-bundle" }, ttl };
}

// TURN credentials expire, and the relay ends the allocations made with them when they do: two minutes before,
// fetch new ones and (the caller, so the two sides never both offer) restart ICE, so new allocations take over.
function scheduleIceRefresh(call, ttl) {
  clearTimeout(call.iceRefreshTimer);
  if (!ttl) return;
  call.iceRefreshTimer = setTimeout(() => refreshIce(call), Math.max(20, ttl - 120) * 1000);
}

async function refreshIce(call) {
  if (call.ended || !call.pc) return;
  const { configuration, ttl } = await iceConfiguration(call.media);
  try {
    call.pc.setConfiguration(Object.assign(call.pc.getConfiguration(), { iceServers: configuration.iceServers }));
    if (call.role === "caller" && call.active) {
      await call.pc.setLocalDescription(await call.pc.createOffer({ iceRestart: true }));
      sendSignal(call, { type: "offer", sdp: call.pc.localDescription.sdp });
    }
    log("TURN credentials renewed");
  } catch (error) {
    log("renewing TURN credentials failed: " + error.message);
  }
  scheduleIceRefresh(call, ttl);
}

async function localMedia(call) {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 320, height: 240 } });
  call.localStream = stream;
  $("local-video").srcObject = stream;
  return stream;
}

async function makePeerConnection(call) {
  const { configuration, ttl } = await iceConfiguration(call.media);
  const pc = new RTCPeerConnection(configuration);
  call.pc = pc;
  scheduleIceRefresh(call, ttl);
  for (const track of call.localStream.getTracks()) pc.addTrack(track, call.localStream);
  pc.onicecandidate = (event) => {
    const signal = event.candidate
      ? { type: "candidate", candidate: {
            candidate: event.candidate.candidate, sdpMid: event.candidate.sdpMid,
            sdpMLineIndex: event.candidate.sdpMLineIndex } }
      : { type: "end-of-candidates" };
    if (signal.type === "candidate" && !signal.candidate.candidate) return;
    sendSignal(call, signal);
  };
  pc.ontrack = (event) => {
    const video = $("remote-video");
    if (call !== app.call) return;
    video.srcObject = event.streams[0] || new MediaStream([event.track]);
    video.play().catch(() => {});
  };
  pc.onconnectionstatechange = () => {
    $("ice-state").textContent = pc.connectionState;
    if (call.ended) return;
    if (pc.connectionState === "connected" && call.active) setCallState(call, "connected");
    else if (pc.connectionState === "failed") setCallState(call, "media failed");
    else if (pc.connectionState === "disconnected" && call.active) setCallState(call, "reconnecting media");
  };
  startStats(call);
  return pc;
}

function sendSignal(call, signal) {
  if (call.ended) return;
  if (!call.canSignal) { call.outbox.push(signal); return; }
  api("POST", "/v1/calls/" + encodeURIComponent(call.id) + "/signals", Object.assign({ device: app.device }, signal))
    .catch((error) => log("signal " + signal.type + " refused: " + error.message));
}

function flushOutbox(call) {
  call.canSignal = true;
  const pending = call.outbox.splice(0);
  for (const signal of pending) sendSignal(call, signal);
}

async function applyRemoteSignal(call, signal) {
  const pc = call.pc;
  if (!pc || !pc.remoteDescription) { call.inbox.push(signal); return; }
  try {
    if (signal.type === "candidate" && signal.candidate) {
      await pc.addIceCandidate(signal.candidate);
    } else if (signal.type === "end-of-candidates") {
      await pc.addIceCandidate(null).catch(() => {});
    } else if (signal.type === "offer" && signal.sdp) {
      await pc.setRemoteDescription({ type: "offer", sdp: signal.sdp });
      const answer = await pc.createAnswer();
      await pc.setLocalDescription(answer);
      sendSignal(call, { type: "answer", sdp: pc.localDescription.sdp });
    } else if (signal.type === "answer" && signal.sdp) {
      await pc.setRemoteDescription({ type: "answer", sdp: signal.sdp });
    }
  } catch (error) {
    log("signal " + signal.type + " failed: " + error.message);
  }
}

async function drainInbox(call) {
  const pending = call.inbox.splice(0);
  for (const signal of pending) await applyRemoteSignal(call, signal);
}

function newCall(fields) {
  return Object.assign({
    id: null, role: null, peer: null, state: "idle", pc: null, localStream: null, offer: null, media: "direct",
    canSignal: false, outbox: [], inbox: [], active: false, ended: false,
  }, fields);
}

async function placeCall(to) {
  if (app.call && !app.call.ended) { $("call-error").textContent = "Already in a call."; return; }
  const call = newCall({ role: "caller", peer: to, media: requestedMedia() });
  app.call = call;
  app.earlyEvents.length = 0;
  showCall(call);
  setCallState(call, "calling");
  try {
    await localMedia(call);
    const pc = await makePeerConnection(call);
    await pc.setLocalDescription(await pc.createOffer());
    if (call.ended) return;
    const data = await api("POST", "/v1/calls", {
      to, device: app.device, sdp: { type: "offer", sdp: pc.localDescription.sdp }, media: call.media,
    });
    call.id = data.call.id;
    call.media = data.call.media || call.media; // the server's decision (its --media policy) wins
    $("call").dataset.callId = call.id;
    log("calling " + to + " (" + call.id + ")");
    if (data.call.state === "ended") { finish(call, data.call.endReason || "failed"); return; }
    for (const signal of takeEarlySignals(call.id)) call.inbox.push(signal);
    flushOutbox(call);
    // The callee may have rung (or answered) before this response came back: its events are applied now, in order.
    const early = app.earlyEvents.splice(0).filter((event) => event.data.call.id === call.id);
    for (const event of early) await event.handle(event.data);
  } catch (error) {
    $("call-error").textContent = "Call failed: " + error.message;
    finish(call, "failed");
  }
}

function takeEarlySignals(id) {
  const signals = app.earlySignals.get(id) || [];
  app.earlySignals.delete(id);
  return signals;
}

function onInvite(data) {
  const info = data.call;
  if (info.callee !== app.user || info.state === "ended") return;
  if (app.call && app.call.id === info.id) return; // replayed
  if (app.call && !app.call.ended) { log("ignoring a second invite from " + info.caller); return; }
  const call = newCall({
    id: info.id, role: "callee", peer: info.caller, offer: data.sdp || null, media: info.media || "direct",
  });
  for (const signal of takeEarlySignals(info.id)) call.inbox.push(signal);
  app.call = call;
  showCall(call);
  show("hangup-button", false);
  setCallState(call, "ringing");
  $("incoming-caller").textContent = info.caller;
  show("incoming", true);
  log("incoming call from " + info.caller);
  api("POST", "/v1/calls/" + encodeURIComponent(info.id) + "/ringing", { device: app.device })
    .catch((error) => log("ringing refused: " + error.message));
}

// An event for a call this page is placing, before POST /v1/calls has told the page the call's id: kept, bounded,
// and applied once the id is known (placeCall).
function heldForPendingInvite(data, handle) {
  const call = app.call;
  if (!call || call.id || call.role !== "caller" || call.ended || data.call.caller !== app.user) return false;
  if (app.earlyEvents.length < 20) app.earlyEvents.push({ data, handle });
  return true;
}

function onRinging(data) {
  if (heldForPendingInvite(data, onRinging)) return;
  const call = app.call;
  if (call && call.id === data.call.id && call.role === "caller" && !call.active && !call.ended) {
    setCallState(call, "ringing");
  }
}

async function acceptCall() {
  const call = app.call;
  if (!call || call.role !== "callee" || call.ended) return;
  show("incoming", false);
  show("hangup-button", true);
  setCallState(call, "connecting");
  try {
    await localMedia(call);
    const pc = await makePeerConnection(call);
    let answerSDP;
    if (call.offer) {
      await pc.setRemoteDescription(call.offer);
      await drainInbox(call);
      await pc.setLocalDescription(await pc.createAnswer());
      answerSDP = { type: "answer", sdp: pc.localDescription.sdp };
    }
    if (call.ended) return;
    const data = await api("POST", "/v1/calls/" + encodeURIComponent(call.id) + "/accept",
      answerSDP ? { device: app.device, sdp: answerSDP } : { device: app.device });
    if (data.call.state === "ended") { finish(call, data.call.endReason || "failed"); return; }
    call.active = true;
    if (pc.connectionState === "connected") setCallState(call, "connected");
    flushOutbox(call);
  } catch (error) {
    log("accept failed: " + error.message);
    if (error.status === 409) resync(); else finish(call, "failed");
  }
}

async function declineCall() {
  const call = app.call;
  if (!call || call.ended) return;
  show("incoming", false);
  try {
    const data = await api("POST", "/v1/calls/" + encodeURIComponent(call.id) + "/decline", { device: app.device });
    finish(call, data.call.endReason || "declined");
  } catch (error) {
    log("decline failed: " + error.message);
    resync();
  }
}

async function hangUp() {
  const call = app.call;
  if (!call || call.ended) return;
  if (!call.id) { finish(call, "cancelled"); return; }
  try {
    const data = await api("POST", "/v1/calls/" + encodeURIComponent(call.id) + "/hangup", { device: app.device });
    finish(call, data.call.endReason || "hangup");
  } catch (error) {
    log("hang up failed: " + error.message);
    resync();
  }
}

async function onAccepted(data) {
  if (heldForPendingInvite(data, onAccepted)) return;
  const call = app.call;
  if (!call || call.id !== data.call.id || call.ended) return;
  if (call.role !== "caller") return;
  call.active = true;
  setCallState(call, "connecting");
  log("answered by " + data.call.callee);
  try {
    if (data.sdp && call.pc && !call.pc.remoteDescription) await call.pc.setRemoteDescription(data.sdp);
    await drainInbox(call);
    if (call.pc && call.pc.connectionState === "connected") setCallState(call, "connected");
  } catch (error) {
    log("answer failed: " + error.message);
  }
}

function onEnded(data) {
  if (heldForPendingInvite(data, onEnded)) return;
  const call = app.call;
  if (!call || call.id !== data.call.id) return;
  finish(call, data.call.endReason || "hangup", data.call.failure);
}

function onSignal(data) {
  const signal = { type: data.type, sdp: data.sdp, candidate: data.candidate };
  const call = app.call;
  if (call && call.id === data.callId) {
    if (!call.ended) applyRemoteSignal(call, signal);
    return;
  }
  const list = app.earlySignals.get(data.callId) || [];
  if (list.length < 100) list.push(signal);
  app.earlySignals.set(data.callId, list);
  if (app.earlySignals.size > 20) app.earlySignals.delete(app.earlySignals.keys().next().value);
}

function endLocally(call) {
  call.ended = true;
  clearInterval(app.statsTimer);
  clearTimeout(call.iceRefreshTimer);
  if (call.pc) { call.pc.close(); }
  if (call.localStream) for (const track of call.localStream.getTracks()) track.stop();
  $("local-video").srcObject = null;
  $("remote-video").srcObject = null;
}

function finish(call, reason, failure) {
  if (call.ended) return;
  if (call === app.call) collectStats(call); // last figures before closing
  endLocally(call);
  if (call !== app.call) return;
  show("incoming", false);
  setCallState(call, "ended");
  $("call-reason").textContent = "— " + (REASONS[reason] || reason) +
    (failure ? " (" + (FAILURES[failure] || failure) + ")" : "");
  $("call-reason").dataset.reason = reason;
  show("hangup-button", false);
  show("dismiss-button", true);
  log("call ended: " + (REASONS[reason] || reason));
}

// ---- stats: which path the media took, and whether video decodes ----

function startStats(call) {
  clearInterval(app.statsTimer);
  app.statsTimer = setInterval(() => collectStats(call), 1000);
}

async function collectStats(call) {
  const pc = call.pc;
  if (!pc || call.ended || call !== app.call) return;
  let report;
  try { report = await pc.getStats(); } catch (_) { return; }
  let pair = null;
  let frames = 0;
  report.forEach((entry) => {
    if (entry.type === "transport" && entry.selectedCandidatePairId) pair = report.get(entry.selectedCandidatePairId);
    if (entry.type === "inbound-rtp" && entry.kind === "video") frames += entry.framesDecoded || 0;
  });
  if (!pair) {
    report.forEach((entry) => {
      if (entry.type === "candidate-pair" && entry.nominated && entry.state === "succeeded") pair = entry;
    });
  }
  $("frames-decoded").textContent = String(frames);
  if (pair) {
    const local = report.get(pair.localCandidateId) || {};
    const remote = report.get(pair.remoteCandidateId) || {};
    const types = [local.candidateType, remote.candidateType];
    const path = call.media === "secure-relay" ? "secure-relay" : types.includes("relay") ? "relay"
      : (types.includes("srflx") || types.includes("prflx")) ? "srflx" : (local.candidateType || "unknown");
    $("call-path").dataset.path = path;
    $("call-path").dataset.local = local.candidateType || "";
    $("call-path").dataset.remote = remote.candidateType || "";
    $("call-path").textContent = (path === "secure-relay" ? "secure relay" : path) + " (local " +
      local.candidateType + " " + (local.protocol || "") + ", remote " + remote.candidateType + ")";
  }
}

// ---- wiring ----

function toggleTracks(kind, button) {
  const call = app.call;
  if (!call || !call.localStream) return;
  const off = button.getAttribute("aria-pressed") !== "true";
  for (const track of call.localStream.getTracks()) if (track.kind === kind) track.enabled = !off;
  button.setAttribute("aria-pressed", String(off));
  if (kind === "audio") button.textContent = off ? "Unmute" : "Mute";
  else button.textContent = off ? "Camera on" : "Camera off";
}

async function start() {
  $("token-form").addEventListener("submit", (event) => { event.preventDefault(); signIn($("token-input").value); });
  $("signout").addEventListener("click", () => signOut());
  $("call-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const to = $("callee-input").value.trim();
    if (!/^[A-Za-z0-9._~-]{1,64}$/.test(to)) { $("call-error").textContent = "Enter a user name."; return; }
    placeCall(to);
  });
  $("accept-button").addEventListener("click", acceptCall);
  $("decline-button").addEventListener("click", declineCall);
  $("hangup-button").addEventListener("click", hangUp);
  $("dismiss-button").addEventListener("click", () => { show("call", false); });
  $("mute-button").addEventListener("click", (event) => toggleTracks("audio", event.currentTarget));
  $("camera-button").addEventListener("click", (event) => toggleTracks("video", event.currentTarget));
  window.addEventListener("online", () => { if (app.token && !app.source) connect(); });

  try {
    const response = await fetch("/client-config", { cache: "no-store", credentials: "omit" });
    if (response.ok) app.config = Object.assign(app.config, await response.json());
  } catch (_) { /* defaults */ }
  if (Array.isArray(app.config.devUsers) && app.config.devUsers.length) {
    const box = $("demo-user-buttons");
    for (const user of app.config.devUsers) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = user;
      button.dataset.user = user;
      button.addEventListener("click", () => devSignIn(user));
      box.appendChild(button);
    }
    show("demo-users", true);
  }
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) signIn(saved);
  document.body.dataset.ready = "true";
}

start();
