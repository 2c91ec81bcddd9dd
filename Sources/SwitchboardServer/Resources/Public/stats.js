// Stats, once a second from getStats: which path the media took (direct, TURN relay, secure relay), whether video
// decodes, how long the call has been connected, and its quality in words (good, fair, poor) from the round trip
// time, packet loss, bitrate, resolution and frame rate.
import { rememberPath } from "./history.js";
import { app } from "./state.js";
import { $, formatSeconds } from "./util.js";
import { showRemoteVideo } from "./views.js";

const PATHS = { "secure-relay": "secure relay", relay: "TURN relay" };

export function startStats(call) {
  clearInterval(app.statsTimer);
  app.statsTimer = setInterval(() => collectStats(call), 1000);
}

// Poor past 400 ms round trip or 5 % loss, fair past 150 ms or 1 % (ITU-T G.114 puts the limit of a comfortable
// conversation at 150 ms one way; video degrades visibly past a few percent loss). While video arrives, how much of
// the last second its picture stood frozen counts too (getStats' totalFreezesDuration: a frame late by far more than
// the usual gap): poor from half a second, fair for any freeze. The frame rate, the bitrate and the resolution are
// shown but not judged on their own: they follow what the sender chose (a still shared screen sends a frame a
// second, a muted microphone little), not how good the path is.
export function qualityOf(rttMs, lossPercent, frozenSeconds = null) {
  if (rttMs == null && lossPercent == null) return "measuring";
  const frozen = frozenSeconds || 0;
  if ((rttMs || 0) > 400 || (lossPercent || 0) > 5 || frozen >= 0.5) return "poor";
  if ((rttMs || 0) > 150 || (lossPercent || 0) > 1 || frozen > 0) return "fair";
  return "good";
}

export async function collectStats(call) {
  const pc = call.pc;
  if (!pc || call.ended || call !== app.call) return;
  let report;
  try { report = await pc.getStats(); } catch (_) { return; }
  let pair = null;
  let frames = 0;
  const inbound = { received: 0, lost: 0, bytes: 0, width: 0, height: 0, fps: null, frozen: null };
  let audioPackets = 0;
  let videoBytesSent = 0;
  report.forEach((entry) => {
    if (entry.type === "transport" && entry.selectedCandidatePairId) pair = report.get(entry.selectedCandidatePairId);
    if (entry.type === "outbound-rtp" && entry.kind === "video") videoBytesSent += entry.bytesSent || 0;
    if (entry.type === "inbound-rtp") {
      if (entry.kind === "audio") audioPackets += entry.packetsReceived || 0;
      inbound.received += entry.packetsReceived || 0;
      inbound.lost += Math.max(0, entry.packetsLost || 0);
      inbound.bytes += entry.bytesReceived || 0;
      if (entry.kind === "video") {
        frames += entry.framesDecoded || 0;
        inbound.width = entry.frameWidth || inbound.width;
        inbound.height = entry.frameHeight || inbound.height;
        if (entry.framesPerSecond != null) inbound.fps = entry.framesPerSecond;
        if (entry.totalFreezesDuration != null) inbound.frozen = (inbound.frozen || 0) + entry.totalFreezesDuration;
      }
    }
  });
  if (!pair) {
    report.forEach((entry) => {
      if (entry.type === "candidate-pair" && entry.nominated && entry.state === "succeeded") pair = entry;
    });
  }
  $("frames-decoded").textContent = String(frames);
  // The far side's picture, or its initial while no video arrives (a voice call, a camera turned off).
  // A shared screen that does not change sends a frame a second or less: the initial shows after 3 s without one.
  inbound.rising = call.lastFrames != null && frames > call.lastFrames;
  call.lastFrames = frames;
  call.stillSeconds = inbound.rising ? 0 : (call.stillSeconds || 0) + 1;
  showRemoteVideo(inbound.rising || (call.stillSeconds < 3 && frames > 0));
  // For the browser suite: what getStats says flows (audio packets in, video bytes out, the far side's frame size).
  const element = $("call");
  element.dataset.audioPacketsIn = String(audioPackets);
  element.dataset.videoBytesOut = String(videoBytesSent);
  element.dataset.remoteSize = inbound.width ? inbound.width + "x" + inbound.height : "";
  if (call.connectedAt) $("call-timer").textContent = formatSeconds((Date.now() - call.connectedAt) / 1000);
  if (pair) {
    const local = report.get(pair.localCandidateId) || {};
    const remote = report.get(pair.remoteCandidateId) || {};
    const types = [local.candidateType, remote.candidateType];
    const path = call.media === "secure-relay" ? "secure-relay" : types.includes("relay") ? "relay"
      : (types.includes("srflx") || types.includes("prflx")) ? "srflx" : (local.candidateType || "unknown");
    $("call-path").dataset.path = path;
    $("call-path").dataset.local = local.candidateType || "";
    $("call-path").dataset.remote = remote.candidateType || "";
    $("call-path").textContent = (PATHS[path] || "direct") + " (local " +
      local.candidateType + " " + (local.protocol || "") + ", remote " + remote.candidateType + ")";
    $("call-path-words").textContent = PATHS[path] || "direct";
    if (call.id) rememberPath(call.id, path === "secure-relay" || path === "relay" ? path : "direct");
    showQuality(call, pair, inbound);
  }
}

// The last second's figures against the sample taken a second before.
function showQuality(call, pair, inbound) {
  const now = performance.now();
  const last = call.lastSample;
  call.lastSample = { at: now, ...inbound };
  const rttMs = pair.currentRoundTripTime != null ? pair.currentRoundTripTime * 1000 : null;
  let lossPercent = null;
  let kbps = null;
  if (last && now > last.at) {
    const received = inbound.received - last.received;
    const lost = inbound.lost - last.lost;
    if (received + lost > 0) lossPercent = (100 * Math.max(0, lost)) / (received + lost);
    kbps = ((inbound.bytes - last.bytes) * 8) / (now - last.at);
  }
  let frozenSeconds = null;
  if (last && last.frozen != null && inbound.frozen != null) frozenSeconds = Math.max(0, inbound.frozen - last.frozen);
  const quality = qualityOf(rttMs, lossPercent, frozenSeconds);
  $("call-quality").dataset.quality = quality;
  $("call-quality").textContent = quality;
  const parts = [];
  if (rttMs != null) parts.push("round trip " + Math.round(rttMs) + " ms");
  if (lossPercent != null) parts.push("loss " + lossPercent.toFixed(1) + " %");
  if (kbps != null) parts.push(Math.round(kbps) + " kbit/s");
  if (inbound.width && inbound.height) parts.push(inbound.width + "×" + inbound.height);
  if (inbound.fps != null) parts.push(Math.round(inbound.fps) + " fps");
  $("call-quality-detail").textContent = parts.length ? "(" + parts.join(", ") + ")" : "";
}
