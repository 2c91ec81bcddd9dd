// Media: the camera and microphone, ICE servers (TURN credentials, renewed before they expire), the peer connection.
import { api } from "./api.js";
import { sendSignal, setCallState } from "./call.js";
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

export async function localMedia(call) {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 320, height: 240 } });
  call.localStream = stream;
  $("local-video").srcObject = stream;
  return stream;
}

export async function makePeerConnection(call) {
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
