// Stats: which path the media took, and whether video decodes.
import { app } from "./state.js";
import { $ } from "./util.js";

export function startStats(call) {
  clearInterval(app.statsTimer);
  app.statsTimer = setInterval(() => collectStats(call), 1000);
}

export async function collectStats(call) {
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
