// Call history: the user's recent calls, newest first, paged through GET /v1/calls (its `next` cursor), each with
// the other party, the direction, when it started, how long it lasted, how it ended in words and the media path,
// and buttons to call back (video or voice). The first page is read again whenever a call of the user's ends, and
// merged with the older pages already shown. The media path is the server's (direct or secure relay), or the one
// this browser saw (a TURN relay: only the page knows which ICE candidates carried the call).
import { api } from "./api.js";
import { placeCall } from "./call.js";
import { app } from "./state.js";
import { $, formatSeconds, log, REASONS, show } from "./util.js";

const PAGE = 20;
const MEDIA = { direct: "direct", "secure-relay": "secure relay", relay: "TURN relay" };
const PATHS_KEY = "switchboard.paths";
let next = null;
let loading = null;
let shown = []; // the calls listed, newest first

// The path this browser's media took for a call (kept for the last 200 calls, in localStorage).
export function rememberPath(id, path) {
  try {
    const paths = JSON.parse(localStorage.getItem(PATHS_KEY) || "{}");
    if (paths[id] === path) return;
    delete paths[id];
    paths[id] = path;
    const ids = Object.keys(paths);
    for (const old of ids.slice(0, Math.max(0, ids.length - 200))) delete paths[old];
    localStorage.setItem(PATHS_KEY, JSON.stringify(paths));
  } catch (_) { /* private mode or full: the server's path is shown */ }
}

function seenPaths() {
  try { return JSON.parse(localStorage.getItem(PATHS_KEY) || "{}"); } catch (_) { return {}; }
}

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

// One call's line; `paths`: the paths this browser saw (seenPaths), read once per list.
function entry(call, paths) {
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
  const media = call.media === "secure-relay" ? call.media : paths[call.id] || call.media || "direct";
  path.dataset.path = media;
  path.textContent = MEDIA[media] || media;
  const actions = document.createElement("span");
  actions.className = "history-actions";
  const back = button("history-call-back", "Call back", "Call back " + peer + " (video)", () => placeCall(peer, "video"));
  const voice = button("history-voice-back", "Voice", "Voice call back to " + peer, () => placeCall(peer, "voice"));
  actions.append(back, voice);
  item.append(who, " ", what, " ", length, " ", path, " ", when, " ", actions);
  return item;
}

function button(className, text, label, onClick) {
  const element = document.createElement("button");
  element.type = "button";
  element.className = className;
  element.textContent = text;
  element.setAttribute("aria-label", label);
  element.addEventListener("click", onClick);
  return element;
}

// Reads the first page again (after sign-in, and when a call ends), or the next one (`more`).
export async function loadHistory(more = false) {
  if (!app.token) return;
  const session = app.session;
  if (loading) await loading;
  // After the wait: a refresh may have reset the cursor, a sign-out ended the session.
  if ((more && !next) || session !== app.session) return;
  loading = (async () => {
    try {
      let path = "/v1/calls?state=ended&limit=" + PAGE;
      if (more) path += "&before=" + encodeURIComponent(next);
      const data = await api("GET", path);
      if (session !== app.session) return; // another user's history by now
      const page = data.calls || [];
      if (more) {
        shown = shown.concat(page.filter((call) => !shown.some((old) => old.id === call.id)));
        next = data.next || null;
      } else {
        // The first page again: new and changed calls replace theirs, the older pages already read stay.
        const ids = new Set(page.map((call) => call.id));
        const older = shown.filter((call) => !ids.has(call.id));
        if (!older.length) next = data.next || null;
        shown = page.concat(older).sort((x, y) => (x.createdAt < y.createdAt ? 1 : x.createdAt > y.createdAt ? -1 : 0));
      }
      const list = $("history-list");
      const paths = seenPaths();
      list.replaceChildren(...shown.map((call) => entry(call, paths)));
      show("history-more", !!next);
      show("history-empty", shown.length === 0);
      $("history").dataset.loaded = String(shown.length);
    } catch (error) {
      log("history: " + error.message);
    }
  })();
  await loading;
  loading = null;
}

export function clearHistory() {
  $("history-list").replaceChildren();
  loading = null;
  shown = [];
  next = null;
  $("history").dataset.loaded = "0";
}
