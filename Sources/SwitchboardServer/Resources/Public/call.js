// Calls: placing, ringing, accepting, declining, hanging up, and the signals in between.
import { startAlert, stopAlert } from "./alert.js";
import { api } from "./api.js";
import { resync } from "./events.js";
import { loadHistory } from "./history.js";
import {
  applyOffer, attachTracks, cameraTrack, gone, localMedia, makePeerConnection, requestedMedia, stopScreenShare,
} from "./media.js";
import { app } from "./state.js";
import { collectStats } from "./stats.js";
import { $, CALL_KEY, log, REASONS } from "./util.js";
import {
  focusWithin, hideElsewhere, hideIncoming, inWords, notice, setCallState, setCameraButton, showAnswered, showCall, showEnded,
  showIncoming, showSending,
} from "./views.js";

// POST /v1/calls/{id}/hangup from this device (cancel, decline or hang up, as the server decides by the state).
export function requestHangup(id) {
  return api("POST", "/v1/calls/" + encodeURIComponent(id) + "/hangup", { device: app.device });
}

// Resolves to null once the server took the signal, or to the error it refused it with (logged); never rejects.
export function sendSignal(call, signal) {
  if (call.ended) return Promise.resolve(null);
  if (!call.canSignal) { call.outbox.push(signal); return Promise.resolve(null); }
  return api("POST", "/v1/calls/" + encodeURIComponent(call.id) + "/signals", Object.assign({ device: app.device }, signal))
    .then(() => null, (error) => { log("signal " + signal.type + " refused: " + error.message); return error; });
}

// The call this tab is in, and whether its camera is on, for a reload to rejoin it (sessionStorage: this tab only).
export function rememberCall(call) {
  if (call !== app.call || !call.id || call.ended) return;
  const camera = cameraTrack(call);
  sessionStorage.setItem(CALL_KEY, JSON.stringify({
    id: call.id, camera: !!(camera && camera.enabled), muted: !!call.muted,
  }));
}

// "video" when the offer sends video (a video m-line, not rejected, sendrecv or sendonly), else "voice". Port 0
// rejects a section unless it is `a=bundle-only` (Firefox offers its bundled sections that way).
export function offeredKind(sdp) {
  for (const section of (sdp || "").split(/\r?\nm=/).slice(1)) {
    if (!section.startsWith("video ")) continue;
    if (section.startsWith("video 0 ") && !/\na=bundle-only\b/.test(section)) continue;
    const direction = (section.match(/\na=(sendrecv|sendonly|recvonly|inactive)\b/) || [null, "sendrecv"])[1];
    if (direction === "sendrecv" || direction === "sendonly") return "video";
  }
  return "voice";
}

function fingerprint(sdp) {
  const found = /\na=fingerprint:(\S+ \S+)/i.exec(sdp || "");
  return found ? found[1].toLowerCase() : null;
}

export function flushOutbox(call) {
  call.canSignal = true;
  const pending = call.outbox.splice(0);
  for (const signal of pending) sendSignal(call, signal);
}

export async function applyRemoteSignal(call, signal) {
  const pc = call.pc;
  if (signal.type === "offer" && signal.sdp && pc && pc.signalingState === "have-local-offer" && !pc.remoteDescription &&
      call.media !== "secure-relay") {
    // Both sides of a direct call started over at once (two pages reloaded together): offers crossed with no call
    // between them yet. The polite side (the callee) gives way and answers from a new peer connection; the other
    // waits for that answer (its own offer is the one answered).
    if (call.polite) {
      await answerRejoin(call, signal.sdp, "offers crossed: answering " + call.peer + "'s")
        .catch((error) => log("answering a crossed offer failed: " + error.message));
    }
    return;
  }
  // Candidates wait for the description they belong to; an offer or an answer applies when the state allows it.
  const applies = pc && (pc.remoteDescription || (signal.type === "offer" && pc.signalingState === "stable") ||
    (signal.type === "answer" && pc.signalingState === "have-local-offer"));
  if (!applies) {
    call.inbox.push(signal);
    return;
  }
  try {
    if (signal.type === "candidate" && signal.candidate) {
      await pc.addIceCandidate(signal.candidate).catch((error) => {
        if (!call.ignoredOffer) throw error; // a candidate of an offer this page ignored
      });
    } else if (signal.type === "end-of-candidates") {
      await pc.addIceCandidate(null).catch(() => {});
    } else if (signal.type === "offer" && signal.sdp) {
      const remote = pc.remoteDescription && fingerprint(pc.remoteDescription.sdp);
      if (remote && fingerprint(signal.sdp) && fingerprint(signal.sdp) !== remote) {
        await answerRejoin(call, signal.sdp, call.peer + " rejoined the call");
      } else {
        try {
          await applyOffer(call, signal.sdp);
        } catch (error) {
          // Through the secure relay, an offer this peer connection cannot take (Firefox refuses RTP extension ids
          // that a rejoining party's new offer changed) is answered from a new one: Switchboard takes that too.
          if (call.media !== "secure-relay" || gone(call)) throw error;
          await answerRejoin(call, signal.sdp, "answering from a new peer connection (" + error.message + ")");
        }
      }
    } else if (signal.type === "answer" && signal.sdp) {
      if (pc.signalingState !== "have-local-offer") return; // the answer to an offer rolled back
      await pc.setRemoteDescription({ type: "answer", sdp: signal.sdp });
      await drainInbox(call);
    }
  } catch (error) {
    log("signal " + signal.type + " failed: " + error.message);
  }
}

// The other party reloaded its page mid-call and offers from a new peer connection (a new certificate), or an offer
// does not fit this one: this side answers from a new peer connection of its own, with the same microphone and
// camera.
async function answerRejoin(call, sdp, why) {
  log(why);
  const old = call.pc;
  call.pc = null;
  old.close();
  call.outbox.length = 0; // the old peer connection's candidates, not sent yet: nobody needs them now
  await makePeerConnection(call, { offerer: false });
  if (call.ended) return;
  await applyOffer(call, sdp);
  await drainInbox(call);
}

export async function drainInbox(call) {
  const pending = call.inbox.splice(0);
  for (const signal of pending) await applyRemoteSignal(call, signal);
}

export function newCall(fields) {
  return Object.assign({
    id: null, role: null, peer: null, state: "idle", pc: null, localStream: null, offer: null, media: "direct",
    kind: "video", canSignal: false, outbox: [], inbox: [], active: false, ended: false,
    audioTx: null, videoTx: null, screenTrack: null, remoteStream: null, makingOffer: false, ignoredOffer: null,
  // The polite side gives way when two offers cross: the callee, and both sides of a secure-relay call (there the
  // server takes one offer at a time, so an offer that arrives is the one to answer).
  }, fields, { polite: fields.role === "callee" || fields.media === "secure-relay" });
}

export async function placeCall(to, kind = "video") {
  if (app.call && !app.call.ended) { notice("Hang up the call with " + app.call.peer + " before placing another."); return; }
  const call = newCall({ role: "caller", peer: to, media: requestedMedia(), kind });
  app.call = call;
  app.earlyEvents.length = 0;
  const fromForm = focusWithin("#home");
  showCall(call);
  setCallState(call, "calling");
  if (fromForm) $("hangup-button").focus(); // the form steps aside: the keyboard's focus goes to Cancel
  try {
    await localMedia(call, { video: kind === "video" });
    const pc = await makePeerConnection(call, { offerer: true });
    await pc.setLocalDescription(await pc.createOffer());
    if (call.ended) return;
    const data = await api("POST", "/v1/calls", {
      to, device: app.device, sdp: { type: "offer", sdp: pc.localDescription.sdp }, media: call.media,
    });
    call.id = data.call.id;
    call.media = data.call.media || call.media; // the server's decision (its --media policy) wins
    if (call.media === "secure-relay") call.polite = true;
    rememberCall(call);
    $("call").dataset.callId = call.id;
    log("calling " + to + " (" + call.id + ")");
    if (data.call.state === "ended") { finish(call, data.call.endReason || "failed"); return; }
    for (const signal of takeEarlySignals(call.id)) call.inbox.push(signal);
    flushOutbox(call);
    // The callee may have rung (or answered) before this response came back: its events are applied now, in order.
    const early = app.earlyEvents.splice(0).filter((event) => event.data.call.id === call.id);
    for (const event of early) await event.handle(event.data);
  } catch (error) {
    if (gone(call)) return; // cancelled while the camera or the connection was being set up
    $("call-error").textContent = "The call to " + to + " could not be placed: " + inWords(error) + ".";
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
    kind: data.sdp ? offeredKind(data.sdp.sdp) : "video",
  });
  for (const signal of takeEarlySignals(info.id)) call.inbox.push(signal);
  app.call = call;
  showCall(call);
  setCallState(call, "ringing");
  showIncoming(call);
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

// `video`: answer with the camera on (a video call's Accept); false answers voice only (a voice call's Accept, or
// a video call's "Voice only"): the far side's video is still received.
export async function acceptCall(video) {
  const call = app.call;
  if (!call || call.role !== "callee" || call.ended) return;
  const withVideo = video && call.kind === "video";
  call.answering = true;
  stopAlert();
  showAnswered();
  setCallState(call, "connecting");
  try {
    await localMedia(call, { video: withVideo });
    setCameraButton($("camera-button"), withVideo);
    const pc = await makePeerConnection(call, { offerer: false });
    let answerSDP;
    if (call.offer) {
      await pc.setRemoteDescription(call.offer);
      await attachTracks(call);
      await drainInbox(call);
      await pc.setLocalDescription(await pc.createAnswer());
      answerSDP = { type: "answer", sdp: pc.localDescription.sdp };
    }
    if (call.ended) return;
    const data = await api("POST", "/v1/calls/" + encodeURIComponent(call.id) + "/accept",
      answerSDP ? { device: app.device, sdp: answerSDP } : { device: app.device });
    if (data.call.state === "ended") { finish(call, data.call.endReason || "failed"); return; }
    call.active = true;
    rememberCall(call);
    if (pc.connectionState === "connected") setCallState(call, "connected");
    flushOutbox(call);
  } catch (error) {
    if (gone(call)) return;
    log("accept failed: " + error.message);
    notice("The call could not be answered: " + inWords(error) + ".");
    if (error.status === 409) resync(); else finish(call, "failed");
  }
}

export async function declineCall() {
  const call = app.call;
  if (!call || call.ended) return;
  stopAlert();
  hideIncoming();
  try {
    const data = await api("POST", "/v1/calls/" + encodeURIComponent(call.id) + "/decline", { device: app.device });
    finish(call, data.call.endReason || "declined");
  } catch (error) {
    log("decline failed: " + error.message);
    notice("Declining did not reach Switchboard: " + inWords(error) + ".");
    resync();
  }
}

export async function hangUp() {
  const call = app.call;
  if (!call || call.ended) return;
  if (!call.id) { finish(call, "cancelled"); return; }
  try {
    const data = await requestHangup(call.id);
    finish(call, data.call.endReason || "hangup");
  } catch (error) {
    log("hang up failed: " + error.message);
    notice("Hanging up did not reach Switchboard: " + inWords(error) + ". Try again.");
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
    resendCandidates(call);
    if (call.pc && call.pc.connectionState === "connected") setCallState(call, "connected");
  } catch (error) {
    log("answer failed: " + error.message);
  }
}

// Before the answer this page's candidates went to every device of the callee's that was listening then. The device
// that answered may not have been one of them (a page reloaded or opened while the call rang gets the invite again,
// not the candidates), so they go again, now to that device only. A candidate it already has is ignored.
function resendCandidates(call) {
  const pc = call.pc;
  if (!pc || !pc.localDescription || call.media === "secure-relay") return;
  const sections = pc.localDescription.sdp.split(/\r?\nm=/).slice(1);
  const sent = new Set(); // a bundled transport's candidates may be listed under every m-section: each goes once
  sections.forEach((section, index) => {
    const mid = (section.match(/\na=mid:(\S+)/) || [])[1];
    for (const line of section.match(/\na=candidate:[^\r\n]+/g) || []) {
      const candidate = line.slice(3);
      if (sent.has(candidate)) continue;
      sent.add(candidate);
      sendSignal(call, { type: "candidate", candidate: { candidate, sdpMid: mid, sdpMLineIndex: index } });
    }
  });
  if (pc.iceGatheringState === "complete") sendSignal(call, { type: "end-of-candidates" });
}

export function onEnded(data) {
  if (heldForPendingInvite(data, onEnded)) return;
  if (app.elsewhere && app.elsewhere.info.id === data.call.id) { app.elsewhere = null; hideElsewhere(); }
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

// Signing out: the call on screen is hung up (the request is sent with the token still there; its answer is not
// waited for) and ended on this page at once, its ring tone and notification with it.
export function dropCall() {
  const call = app.call;
  app.call = null;
  sessionStorage.removeItem(CALL_KEY);
  if (!call) return;
  stopAlert();
  if (call.ended) return;
  if (call.id) {
    requestHangup(call.id).catch(() => {});
  }
  endLocally(call);
}

function endLocally(call) {
  call.ended = true;
  if (call.screenTrack) stopScreenShare(call);
  if (call === app.call) sessionStorage.removeItem(CALL_KEY);
  clearInterval(app.statsTimer);
  clearTimeout(call.iceRefreshTimer);
  clearTimeout(call.lostTimer);
  if (call.pc) { call.pc.close(); }
  if (call.localStream) for (const track of call.localStream.getTracks()) track.stop();
  if (call === app.call) showSending("none");
}

export function finish(call, reason, failure) {
  if (call.ended) return;
  if (call === app.call) collectStats(call); // last figures before closing
  endLocally(call);
  if (call !== app.call) return;
  stopAlert();
  showEnded(call, reason, failure);
  log("call ended: " + (REASONS[reason] || reason));
  // The history shows it at once, this page's own call included (a `busy` call sends no event).
  if (call.id) loadHistory();
}

// The mute button (a toggle: pressed while muted).
export function toggleMute(button) {
  const call = app.call;
  if (!call || !call.localStream) return;
  const muted = button.getAttribute("aria-pressed") !== "true";
  applyMute(call, muted);
  rememberCall(call);
}

export function applyMute(call, muted) {
  call.muted = muted;
  for (const track of call.localStream.getAudioTracks()) track.enabled = !muted;
  $("mute-button").setAttribute("aria-pressed", String(muted));
}
