// Call history: the user's recent calls, newest first, paged through GET /v1/calls (its `next` cursor), each with
// the other party, the direction, when it started, how long it lasted, how it ended in words and the media path,
// and a button to call back. The first page is read again whenever a call of the user's ends.
import { api } from "./api.js";
import { placeCall } from "./call.js";
import { app } from "./state.js";
import { $, formatSeconds, log, REASONS, show } from "./util.js";

const PAGE = 20;
const MEDIA = { direct: "direct", "secure-relay": "secure relay" };
let next = null;
let loading = null;

// From the answer to the end; null for a call never answered.
export function duration(call) {
  if (!call.answeredAt || !call.endedAt) return null;
  return formatSeconds((Date.parse(call.endedAt) - Date.parse(call.answeredAt)) / 1000);
}

function describe(call) {
  if (call.state !== "ended") return call.state === "active" ? "in progress" : "ringing";
  const words = REASONS[call.endReason] || call.endReason || "ended";
  return call.answeredAt ? "answered, " + words : words;
}

function entry(call) {
  const outgoing = call.caller === app.user;
  const peer = outgoing ? call.callee : call.caller;
  const item = document.createElement("li");
  item.className = "history-entry";
  item.dataset.callId = call.id;
  item.dataset.reason = call.endReason || "";
  item.dataset.direction = outgoing ? "outgoing" : "incoming";
  const started = new Date(call.createdAt);
  const when = document.createElement("time");
  when.dateTime = call.createdAt;
  when.textContent = started.toLocaleString([], { dateStyle: "short", timeStyle: "short" });
  const who = document.createElement("strong");
  who.className = "history-peer";
  who.textContent = peer;
  const what = document.createElement("span");
  what.className = "history-outcome";
  what.textContent = (outgoing ? "outgoing" : "incoming") + " · " + describe(call);
  const length = document.createElement("span");
  length.className = "history-duration";
  length.textContent = duration(call) || "—";
  const path = document.createElement("span");
  path.className = "history-media";
  path.textContent = MEDIA[call.media] || call.media || "direct";
  const back = document.createElement("button");
  back.type = "button";
  back.className = "history-call-back";
  back.textContent = "Call back";
  back.setAttribute("aria-label", "Call " + peer + " back");
  back.addEventListener("click", () => placeCall(peer));
  item.append(who, " ", what, " ", length, " ", path, " ", when, " ", back);
  return item;
}

// Reads the first page again (after sign-in, and when a call ends), or the next one (`more`).
export async function loadHistory(more = false) {
  if (!app.token) return;
  if (loading) await loading;
  // After the wait: a refresh may have reset the cursor.
  if (more && !next) return;
  loading = (async () => {
    try {
      let path = "/v1/calls?state=ended&limit=" + PAGE;
      if (more) path += "&before=" + encodeURIComponent(next);
      const data = await api("GET", path);
      const list = $("history-list");
      if (!more) list.replaceChildren();
      for (const call of data.calls || []) list.appendChild(entry(call));
      next = data.next || null;
      show("history-more", !!next);
      show("history-empty", list.children.length === 0);
      $("history").dataset.loaded = String(list.children.length);
    } catch (error) {
      log("history: " + error.message);
    }
  })();
  await loading;
  loading = null;
}

export function clearHistory() {
  $("history-list").replaceChildren();
  next = null;
  $("history").dataset.loaded = "0";
}
