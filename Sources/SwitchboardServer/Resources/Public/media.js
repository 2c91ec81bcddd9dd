// Media: the microphone, camera and screen, ICE servers (TURN credentials, renewed before they expire), the peer
// connection and its renegotiation. Every peer connection has one audio and one video transceiver, made by the side
// that offers: a voice call's video transceiver only receives until someone turns a camera on, so turning it on (or
// sharing a screen) changes a direction and never adds an m-line (which the secure relay would refuse).
import { api } from "./api.js";
import { rememberCall, sendSignal, setCallState } from "./call.js";
import { audioConstraints, refreshDevices, videoConstraints, applySpeaker } from "./devices.js";
import { app } from "./state.js";
import { startStats } from "./stats.js";
import { $, log, params } from "./util.js";

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
  $("call").dataset.sending = call.screenTrack ? "screen" : track ? "camera" : "none";
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
  const { configuration, ttl } = await iceConfiguration(call.media);
  const pc = new RTCPeerConnection(configuration);
  call.pc = pc;
  call.audioTx = call.videoTx = null;
  call.remoteStream = new MediaStream();
  call.lastSample = null;
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
    if (pc.connectionState === "connected" && call.active) setCallState(call, "connected");
    else if (pc.connectionState === "failed") setCallState(call, "media failed");
    else if (pc.connectionState === "disconnected" && call.active) setCallState(call, "reconnecting media");
  };
  // Renegotiation once the first offer and answer are done (a camera turned on, a screen shared, an ICE
  // restart): "perfect negotiation", the callee being the polite side that gives way when two offers cross.
  pc.onnegotiationneeded = () => negotiate(call, pc);
  startStats(call);
  return pc;
}

async function negotiate(call, pc) {
  if (call.ended || call.pc !== pc || !pc.remoteDescription || pc.signalingState !== "stable") return;
  try {
    call.makingOffer = true;
    await pc.setLocalDescription();
    if (pc.localDescription.type !== "offer") return;
    countOffer("offersSent");
    sendSignal(call, { type: "offer", sdp: pc.localDescription.sdp }).then(async (error) => {
      // The secure relay refuses an offer while the other party's own is waiting (409): give way and take
      // theirs, if it came; the change is offered again once stable (onnegotiationneeded fires again).
      if (!error || error.status !== 409 || call.pc !== pc || pc.signalingState !== "have-local-offer") return;
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

// The camera button: with a camera track, mute or unmute it (enabled); without one (a voice call, or answered
// voice only), turn the camera on, which renegotiates.
export async function toggleCamera(button) {
  const call = app.call;
  if (!call || call.ended || !call.localStream) return;
  const camera = cameraTrack(call);
  if (!camera) {
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ video: videoConstraints() });
      const track = stream.getVideoTracks()[0];
      call.localStream.addTrack(track);
      if (!call.screenTrack) await sendVideo(call, track);
      setCameraButton(button, true);
      log("camera on");
    } catch (error) {
      log("camera failed: " + error.message);
    }
    return;
  }
  camera.enabled = !camera.enabled;
  setCameraButton(button, camera.enabled);
  rememberCall(call);
}

export function setCameraButton(button, on) {
  button.setAttribute("aria-pressed", String(!on));
  button.textContent = on ? "Camera off" : "Camera on";
}

// Screen share: the screen's track replaces the camera's on the video sender (no renegotiation when video was
// already sent); stopping, or the browser's own "stop sharing", puts the camera back.
export async function toggleScreenShare(button) {
  const call = app.call;
  if (!call || call.ended || !call.pc) return;
  if (call.screenTrack) { await stopScreenShare(call); return; }
  try {
    const stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
    const track = stream.getVideoTracks()[0];
    call.screenTrack = track;
    track.addEventListener("ended", () => { if (call.screenTrack === track) stopScreenShare(call); });
    await sendVideo(call, track);
    button.setAttribute("aria-pressed", "true");
    button.textContent = "Stop sharing";
    log("sharing the screen");
  } catch (error) {
    log("screen share failed: " + error.message);
  }
}

export async function stopScreenShare(call) {
  const track = call.screenTrack;
  if (!track) return;
  call.screenTrack = null;
  track.stop();
  if (!call.ended) await sendVideo(call, cameraTrack(call));
  $("share-button").setAttribute("aria-pressed", "false");
  $("share-button").textContent = "Share screen";
  log("screen share stopped");
}

// A device picked mid-call: a new track from it replaces the old one on its sender (replaceTrack: no
// renegotiation) and in the local stream; the old one stops.
export async function switchDevice(call, kind, deviceId) {
  if (!call || call.ended || !call.localStream) return;
  const audio = kind === "audioinput";
  const old = audio ? call.localStream.getAudioTracks()[0] : cameraTrack(call);
  if (!old) return; // nothing of that kind in use: the choice applies from the next call or camera on
  try {
    const device = deviceId ? { deviceId: { exact: deviceId } } : {};
    const constraints = audio
      ? { audio: deviceId ? device : true }
      : { video: Object.assign({ width: 320, height: 240 }, device) };
    const track = (await navigator.mediaDevices.getUserMedia(constraints))[audio ? "getAudioTracks" : "getVideoTracks"]()[0];
    track.enabled = old.enabled;
    const transceiver = audio ? call.audioTx : call.videoTx;
    if (transceiver && (audio || !call.screenTrack)) await transceiver.sender.replaceTrack(track);
    call.localStream.removeTrack(old);
    call.localStream.addTrack(track);
    old.stop();
    showLocalPreview(call);
    log((audio ? "microphone" : "camera") + " switched to " + (track.label || deviceId));
  } catch (error) {
    log("switching " + (audio ? "microphone" : "camera") + " failed: " + error.message);
  }
}
