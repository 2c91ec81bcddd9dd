// Calls: placing, ringing, accepting, declining, hanging up, and the signals in between.
import { startAlert, stopAlert } from "./alert.js";
import { api } from "./api.js";
import { resync } from "./events.js";
import { icePolicy, localMedia, makePeerConnection, requestedMedia } from "./media.js";
import { app } from "./state.js";
import { collectStats } from "./stats.js";
import { $, FAILURES, log, REASONS, show } from "./util.js";

export function setCallState(call, state) {
  if (call !== app.call) return;
  call.state = state;
  if (state === "connected" && !call.connectedAt) call.connectedAt = Date.now();
  $("call").dataset.callId = call.id || "";
  $("call-state").textContent = state;
  $("call-state").dataset.state = state;
}

export function showCall(call) {
  $("call-peer").textContent = call.peer;
  $("call-reason").textContent = "";
  $("call-reason").dataset.reason = "";
  $("call-path").textContent = "unknown";
  $("call-path").dataset.path = "";
  $("frames-decoded").textContent = "0";
  $("call-timer").textContent = "0:00";
  $("call-quality").textContent = "measuring";
  $("call-quality").dataset.quality = "measuring";
  $("call-quality-detail").textContent = "";
  $("ice-state").textContent = "new";
  $("ice-policy").textContent = call.media === "secure-relay" ? "secure relay" : icePolicy();
  $("mute-button").setAttribute("aria-pressed", "false");
  $("camera-button").setAttribute("aria-pressed", "false");
  show("hangup-button", true);
  show("dismiss-button", false);
  show("call", true);
  $("call-error").textContent = "";
}

export function sendSignal(call, signal) {
  if (call.ended) return;
  if (!call.canSignal) { call.outbox.push(signal); return; }
  api("POST", "/v1/calls/" + encodeURIComponent(call.id) + "/signals", Object.assign({ device: app.device }, signal))
    .catch((error) => log("signal " + signal.type + " refused: " + error.message));
}

export function flushOutbox(call) {
  call.canSignal = true;
  const pending = call.outbox.splice(0);
  for (const signal of pending) sendSignal(call, signal);
}

export async function applyRemoteSignal(call, signal) {
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

export async function drainInbox(call) {
  const pending = call.inbox.splice(0);
  for (const signal of pending) await applyRemoteSignal(call, signal);
}

export function newCall(fields) {
  return Object.assign({
    id: null, role: null, peer: null, state: "idle", pc: null, localStream: null, offer: null, media: "direct",
    canSignal: false, outbox: [], inbox: [], active: false, ended: false,
  }, fields);
}

export async function placeCall(to) {
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

export function takeEarlySignals(id) {
  const signals = app.earlySignals.get(id) || [];
  app.earlySignals.delete(id);
  return signals;
}

export function onInvite(data) {
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
  startAlert(info.caller, info.id);
  log("incoming call from " + info.caller);
  api("POST", "/v1/calls/" + encodeURIComponent(info.id) + "/ringing", { device: app.device })
    .catch((error) => log("ringing refused: " + error.message));
}

// An event for a call this page is placing, before POST /v1/calls has told the page the call's id: kept, bounded,
// and applied once the id is known (placeCall).
export function heldForPendingInvite(data, handle) {
  const call = app.call;
  if (!call || call.id || call.role !== "caller" || call.ended || data.call.caller !== app.user) return false;
  if (app.earlyEvents.length < 20) app.earlyEvents.push({ data, handle });
  return true;
}

export function onRinging(data) {
  if (heldForPendingInvite(data, onRinging)) return;
  const call = app.call;
  if (call && call.id === data.call.id && call.role === "caller" && !call.active && !call.ended) {
    setCallState(call, "ringing");
  }
}

export async function acceptCall() {
  const call = app.call;
  if (!call || call.role !== "callee" || call.ended) return;
  stopAlert();
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

export async function declineCall() {
  const call = app.call;
  if (!call || call.ended) return;
  stopAlert();
  show("incoming", false);
  try {
    const data = await api("POST", "/v1/calls/" + encodeURIComponent(call.id) + "/decline", { device: app.device });
    finish(call, data.call.endReason || "declined");
  } catch (error) {
    log("decline failed: " + error.message);
    resync();
  }
}

export async function hangUp() {
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

export async function onAccepted(data) {
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

export function onEnded(data) {
  if (heldForPendingInvite(data, onEnded)) return;
  const call = app.call;
  if (!call || call.id !== data.call.id) return;
  finish(call, data.call.endReason || "hangup", data.call.failure);
}

export function onSignal(data) {
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

export function endLocally(call) {
  call.ended = true;
  clearInterval(app.statsTimer);
  clearTimeout(call.iceRefreshTimer);
  if (call.pc) { call.pc.close(); }
  if (call.localStream) for (const track of call.localStream.getTracks()) track.stop();
  $("local-video").srcObject = null;
  $("remote-video").srcObject = null;
}

export function finish(call, reason, failure) {
  if (call.ended) return;
  if (call === app.call) collectStats(call); // last figures before closing
  endLocally(call);
  if (call !== app.call) return;
  stopAlert();
  show("incoming", false);
  setCallState(call, "ended");
  $("call-reason").textContent = "— " + (REASONS[reason] || reason) +
    (failure ? " (" + (FAILURES[failure] || failure) + ")" : "");
  $("call-reason").dataset.reason = reason;
  show("hangup-button", false);
  show("dismiss-button", true);
  log("call ended: " + (REASONS[reason] || reason));
}

export function toggleTracks(kind, button) {
  const call = app.call;
  if (!call || !call.localStream) return;
  const off = button.getAttribute("aria-pressed") !== "true";
  for (const track of call.localStream.getTracks()) if (track.kind === kind) track.enabled = !off;
  button.setAttribute("aria-pressed", String(off));
  if (kind === "audio") button.textContent = off ? "Unmute" : "Mute";
  else button.textContent = off ? "Camera on" : "Camera off";
}
