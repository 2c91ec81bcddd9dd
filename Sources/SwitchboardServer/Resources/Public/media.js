// Media: the microphone, camera and screen, ICE servers (TURN credentials, renewed before they expire), the peer
// connection and its renegotiation. Every peer connection has one audio and one video transceiver, made by the side
// that offers: a voice call's video transceiver only receives until someone turns a camera on, so turning it on (or
// sharing a screen) changes a direction and never adds an m-line (which the secure relay would refuse).
import { api } from "./api.js";
import { hangUp, rememberCall, sendSignal } from "./call.js";
import { audioConstraints, refreshDevices, videoConstraints, applySpeaker } from "./devices.js";
import { app } from "./state.js";
import { startStats } from "./stats.js";
import { $, log, params } from "./util.js";
import { inWords, notice, setCallState, setCameraButton, showSending } from "./views.js";

// The media path a call placed from this page asks for: ?media=secure-relay|direct, else the server's policy.
export function requestedMedia() {
  const asked = params.get("media");
  if (app.config.media === "secure-relay") return "secure-relay";
  if (app.config.media === "direct") return "direct";
  return asked === "secure-relay" ? "secure-relay" : "direct";
}

export function icePolicy() {
  if (["1", "tcp", "tls"].includes(params.get("relay"))) return "relay";
  if (params.get("relay") === "0") return "all";
  return app.config.iceTransportPolicy === "relay" ? "relay" : "all";
}

// ?relay=tcp or ?relay=tls: only the relay's TURN-over-TCP or TURN-over-TLS URLs, as on a network that lets no
// UDP through.
export function relayServers(servers) {
  const only = params.get("relay");
  if (only !== "tcp" && only !== "tls") return servers;
  const keep = (url) => (only === "tls" ? url.startsWith("turns:") : url.startsWith("turn:") && url.endsWith("transport=tcp"));
  return servers
    .map((server) => Object.assign({}, server, { urls: [].concat(server.urls).filter(keep) }))
    .filter((server) => server.urls.length > 0);
}

export async function iceConfiguration(media) {
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
export function scheduleIceRefresh(call, ttl) {
  clearTimeout(call.iceRefreshTimer);
  if (!ttl) return;
  call.iceRefreshTimer = setTimeout(() => refreshIce(call), Math.max(20, ttl - 120) * 1000);
}

export async function refreshIce(call) {
  if (call.ended || !call.pc) return;
  const { configuration, ttl } = await iceConfiguration(call.media);
  try {
    call.pc.setConfiguration(Object.assign(call.pc.getConfiguration(), { iceServers: configuration.iceServers }));
    if (call.role === "caller" && call.active) call.pc.restartIce(); // the offer goes out from onnegotiationneeded
    log("TURN credentials renewed");
  } catch (error) {
    log("renewing TURN credentials failed: " + error.message);
  }
  scheduleIceRefresh(call, ttl);
}

// The microphone, and the camera when `video`: the devices picked on this browser (kept in localStorage), or the
// default ones.
export async function localMedia(call, { video }) {
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: audioConstraints(), video: video ? videoConstraints() : false,
  });
  if (gone(call)) {
    stopTracks(stream);
    throw new Error("the call ended");
  }
  call.localStream = stream;
  showLocalPreview(call);
  refreshDevices();
  return stream;
}

export function cameraTrack(call) {
  return call.localStream ? call.localStream.getVideoTracks()[0] || null : null;
}

function showLocalPreview(call) {
  const track = call.screenTrack || cameraTrack(call);
  $("local-video").srcObject = track ? new MediaStream([track]) : null;
  showSending(call.screenTrack ? "screen" : track ? "camera" : "none");
}

function sendsIn(direction) { return direction === "sendrecv" || direction === "sendonly"; }

// What the video sender carries: the screen while it is shared, else the camera (if any). A transceiver that only
// received so far starts sending: that direction change renegotiates (onnegotiationneeded).
async function sendVideo(call, track) {
  showLocalPreview(call);
  const transceiver = call.videoTx;
  if (!transceiver) return;
  await transceiver.sender.replaceTrack(track);
  if (track && !sendsIn(transceiver.direction)) {
    transceiver.direction = transceiver.direction === "inactive" ? "sendonly" : "sendrecv";
  }
  rememberCall(call);
}

export async function makePeerConnection(call, { offerer }) {
  call.pc = null; // signals for the new connection wait in the inbox until it has its remote description
  call.audioTx = call.videoTx = null;
  const { configuration, ttl } = await iceConfiguration(call.media);
  if (gone(call)) throw new Error("the call ended");
  const pc = new RTCPeerConnection(configuration);
  call.pc = pc;
  call.remoteStream = new MediaStream();
  call.lastSample = null;
  call.lastFrames = null;
  call.stillSeconds = 0;
  scheduleIceRefresh(call, ttl);
  if (offerer) {
    const microphone = call.localStream.getAudioTracks()[0];
    const camera = call.screenTrack || cameraTrack(call);
    call.audioTx = pc.addTransceiver(microphone || "audio", { direction: "sendrecv", streams: [call.localStream] });
    call.videoTx = pc.addTransceiver(camera || "video", {
      direction: camera ? "sendrecv" : "recvonly", streams: [call.localStream],
    });
  }
  pc.onicecandidate = (event) => {
    if (call.pc !== pc) return;
    const signal = event.candidate
      ? { type: "candidate", candidate: {
            candidate: event.candidate.candidate, sdpMid: event.candidate.sdpMid,
            sdpMLineIndex: event.candidate.sdpMLineIndex } }
      : { type: "end-of-candidates" };
    if (signal.type === "candidate" && !signal.candidate.candidate) return;
    sendSignal(call, signal);
  };
  pc.ontrack = (event) => {
    if (call !== app.call || call.pc !== pc) return;
    const video = $("remote-video");
    call.remoteStream.addTrack(event.track);
    if (video.srcObject !== call.remoteStream) video.srcObject = call.remoteStream;
    applySpeaker();
    video.play().catch(() => {});
  };
  pc.onconnectionstatechange = () => {
    if (call.pc !== pc) return;
    $("ice-state").textContent = pc.connectionState;
    if (call.ended) return;
    if (pc.connectionState === "connected") clearTimeout(call.lostTimer);
    if (pc.connectionState === "connected" && call.active) setCallState(call, "connected");
    else if (pc.connectionState === "failed") { setCallState(call, "media failed"); mediaLost(call, pc); }
    else if (pc.connectionState === "disconnected" && call.active) setCallState(call, "reconnecting media");
  };
  // Renegotiation once the first offer and answer are done (a camera turned on, a screen shared, an ICE
  // restart): "perfect negotiation", the callee being the polite side that gives way when two offers cross.
  pc.onnegotiationneeded = () => negotiate(call, pc);
  startStats(call);
  return pc;
}

// ICE gave up on a direct call that was under way: the other party's page is gone, or a network is. The caller
// restarts ICE (a network that changed comes back that way; only one side, so the two never both offer), and if the
// media is still failed LOST_GRACE later, this side ends the call and says why, rather than leaving the user in a
// silent call. A reload comes back in seconds, long before ICE gives up (about 30 s of silence). Through the
// secure relay Switchboard is the peer and ends such a call itself (consent_lost).
const LOST_GRACE = 15000;

function mediaLost(call, pc) {
  if (call.media === "secure-relay" || !call.active) return;
  if (call.role === "caller") pc.restartIce();
  clearTimeout(call.lostTimer);
  call.lostTimer = setTimeout(() => {
    if (gone(call) || call.pc !== pc || pc.connectionState !== "failed") return;
    log("media failed for " + LOST_GRACE / 1000 + " s: hanging up");
    notice("The connection to " + call.peer + " was lost, so the call ended.");
    hangUp();
  }, LOST_GRACE);
}

async function negotiate(call, pc) {
  if (call.ended || call.pc !== pc || !pc.remoteDescription || pc.signalingState !== "stable") return;
  try {
    call.makingOffer = true;
    await pc.setLocalDescription();
    if (pc.localDescription.type !== "offer") return;
    countOffer("offersSent");
    sendSignal(call, { type: "offer", sdp: pc.localDescription.sdp }).then(async (error) => {
      // An offer the server did not take (the secure relay refuses one while the other party's own is waiting,
      // 409; or the request failed) is rolled back, and the other party's taken if it came: the change is offered
      // again once stable (onnegotiationneeded fires again), so nothing stays stuck waiting for an answer.
      if (!error) return;
      // Not at the speed of a failing request: onnegotiationneeded fires again right after the rollback.
      if (error.status !== 409) await new Promise((resolve) => setTimeout(resolve, 1000));
      if (call.pc !== pc || pc.signalingState !== "have-local-offer") return;
      await pc.setLocalDescription({ type: "rollback" }).catch(() => {});
      const waiting = call.ignoredOffer;
      call.ignoredOffer = null;
      if (waiting) await applyOffer(call, waiting);
    });
  } catch (error) {
    log("renegotiation failed: " + error.message);
  } finally {
    call.makingOffer = false;
  }
}

export function countOffer(name) {
  const element = $("call");
  element.dataset[name] = String(Number(element.dataset[name] || "0") + 1);
}

// The answering side, once the offer is applied: the local tracks onto the transceivers the offer made. The video
// transceiver sends only when there is something to send.
export async function attachTracks(call) {
  const pc = call.pc;
  for (const transceiver of pc.getTransceivers()) {
    const kind = transceiver.receiver.track.kind;
    if (kind === "audio" && !call.audioTx) call.audioTx = transceiver;
    if (kind === "video" && !call.videoTx) call.videoTx = transceiver;
  }
  const microphone = call.localStream.getAudioTracks()[0] || null;
  const video = call.screenTrack || cameraTrack(call);
  for (const [transceiver, track] of [[call.audioTx, microphone], [call.videoTx, video]]) {
    if (!transceiver) continue;
    await transceiver.sender.replaceTrack(track);
    if (transceiver.sender.setStreams) transceiver.sender.setStreams(call.localStream);
    transceiver.direction = track ? "sendrecv" : "recvonly";
  }
}

// An offer from the other party, mid-call: perfect negotiation's rules (the impolite side ignores an offer that
// crosses its own; the polite side rolls back).
export async function applyOffer(call, sdp) {
  const pc = call.pc;
  const collision = call.makingOffer || pc.signalingState !== "stable";
  if (collision && !call.polite) {
    call.ignoredOffer = sdp;
    log("ignoring an offer that crossed this page's own");
    return;
  }
  countOffer("offersReceived");
  await pc.setRemoteDescription({ type: "offer", sdp });
  if (!call.audioTx && !call.videoTx) await attachTracks(call);
  await pc.setLocalDescription();
  sendSignal(call, { type: "answer", sdp: pc.localDescription.sdp });
}

// The call is over, or another one is on screen: whatever an `await` brought back for it is let go.
export function gone(call) { return call.ended || call !== app.call; }

function stopTracks(stream) { for (const track of stream.getTracks()) track.stop(); }

// The camera button (a toggle: pressed while the camera is on): with a camera track, enable or disable it; without
// one (a voice call, or answered voice only), turn the camera on, which renegotiates.
export async function toggleCamera(button) {
  const call = app.call;
  if (!call || call.ended || !call.localStream) return;
  await serially(call, async () => {
    const camera = cameraTrack(call);
    if (camera) {
      camera.enabled = !camera.enabled;
      setCameraButton(button, camera.enabled);
      rememberCall(call);
      return;
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: videoConstraints() });
    } catch (error) {
      log("camera failed: " + error.message);
      notice("The camera could not be turned on: " + inWords(error) + ".");
      return;
    }
    if (gone(call)) { stopTracks(stream); return; }
    const track = stream.getVideoTracks()[0];
    call.localStream.addTrack(track);
    if (!call.screenTrack) await sendVideo(call, track).catch((error) => log("camera failed: " + error.message));
    setCameraButton(button, true);
    log("camera on");
  });
}

// Screen share (a toggle: pressed while sharing): the screen's track replaces the camera's on the video sender (no
// renegotiation when video was already sent); stopping, or the browser's own "stop sharing", puts the camera back.
export async function toggleScreenShare(button) {
  const call = app.call;
  if (!call || call.ended || !call.pc) return;
  if (call.screenTrack) { await stopScreenShare(call); return; }
  let stream;
  try {
    stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
  } catch (error) {
    log("screen share failed: " + error.message);
    // Closing the browser's picker is a choice, not a failure.
    if (error.name !== "NotAllowedError" && error.name !== "AbortError") {
      notice("The screen could not be shared: " + inWords(error) + ".");
    }
    return;
  }
  // The picker may have been open while the call ended, or while another share started.
  if (gone(call) || call.screenTrack) { stopTracks(stream); return; }
  const track = stream.getVideoTracks()[0];
  call.screenTrack = track;
  track.addEventListener("ended", () => { if (call.screenTrack === track) stopScreenShare(call); });
  button.setAttribute("aria-pressed", "true");
  try {
    await sendVideo(call, track);
    log("sharing the screen");
  } catch (error) {
    log("screen share failed: " + error.message);
    stopScreenShare(call);
  }
}

export async function stopScreenShare(call) {
  const track = call.screenTrack;
  if (!track) return;
  call.screenTrack = null;
  track.stop();
  $("share-button").setAttribute("aria-pressed", "false");
  if (!gone(call)) await sendVideo(call, cameraTrack(call)).catch(() => {});
  log("screen share stopped");
}

// Device changes of one call run one after another: a keyboard user arrowing through a picker fires a change per
// option, and two switches at once would each take the same old track away.
function serially(call, body) {
  const next = (call.deviceWork || Promise.resolve()).then(body, body);
  call.deviceWork = next.catch(() => {});
  return next;
}

// A device picked mid-call: a track from it replaces the old one on its sender (replaceTrack: no renegotiation)
// and in the local stream. A camera is let go before the new one opens (phones open one at a time), and taken
// back if the new one fails; a microphone is switched without a gap.
export function switchDevice(call, kind, deviceId) {
  if (!call || call.ended || !call.localStream) return Promise.resolve();
  return serially(call, () => switchNow(call, kind, deviceId));
}

async function switchNow(call, kind, deviceId) {
  if (gone(call)) return;
  const audio = kind === "audioinput";
  const old = audio ? call.localStream.getAudioTracks()[0] : cameraTrack(call);
  if (!old) return; // nothing of that kind in use: the choice applies from the next call or camera on
  const transceiver = audio ? call.audioTx : call.videoTx;
  const sends = transceiver && (audio || !call.screenTrack);
  const open = (id) => navigator.mediaDevices.getUserMedia(
    audio ? { audio: audioConstraints(id, "exact") } : { video: videoConstraints(id, "exact") });
  const previous = old.getSettings().deviceId || "";
  if (!audio) {
    if (sends) await transceiver.sender.replaceTrack(null).catch(() => {});
    old.stop();
  }
  let stream;
  try {
    stream = await open(deviceId);
  } catch (error) {
    log("switching " + (audio ? "microphone" : "camera") + " failed: " + error.message);
    notice("Switching the " + (audio ? "microphone" : "camera") + " failed: " + inWords(error) + ".");
    if (audio) return;
    stream = await open(previous).catch(() => null); // the camera that was in use, back
    if (!stream) {
      call.localStream.removeTrack(old);
      showLocalPreview(call);
      return;
    }
  }
  const track = stream.getTracks()[0];
  if (gone(call)) { stopTracks(stream); return; }
  track.enabled = old.enabled;
  call.localStream.removeTrack(old);
  call.localStream.addTrack(track);
  if (audio) old.stop();
  showLocalPreview(call);
  if (sends && call.pc) await transceiver.sender.replaceTrack(track).catch((error) => log("replaceTrack: " + error.message));
  rememberCall(call);
  log((audio ? "microphone" : "camera") + " switched to " + (track.label || deviceId || "the default"));
}
