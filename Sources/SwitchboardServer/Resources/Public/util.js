// DOM helpers, the page's log, the words for end reasons and failures, the page's query parameters.
export const $ = (id) => document.getElementById(id);

export const TOKEN_KEY = "switchboard.token";

export const DEVICE_KEY = "switchboard.device";

export const CALL_KEY = "switchboard.call";

export const EVENT_KEY = "switchboard.lastEvent";

// This page was loaded by a reload (not a new tab, nor a duplicated one, which copies sessionStorage).
export function reloaded() {
  const navigation = performance.getEntriesByType ? performance.getEntriesByType("navigation")[0] : null;
  return !!navigation && navigation.type === "reload";
}

// A JSON value this tab kept in sessionStorage; null when absent or unreadable.
export function sessionValue(key) {
  try { return JSON.parse(sessionStorage.getItem(key) || "null"); } catch (_) { return null; }
}

export const REASONS = {
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
export const FAILURES = {
  fingerprint_mismatch: "a certificate did not match its fingerprint",
  ice_timeout: "media could not connect",
  dtls_failed: "the secure media handshake failed",
  consent_lost: "media connection lost",
};

export const params = new URLSearchParams(location.search);

export function log(text) {
  const item = document.createElement("li");
  item.textContent = new Date().toISOString().slice(11, 23) + " " + text;
  const list = $("log");
  list.appendChild(item);
  while (list.children.length > 200) list.removeChild(list.firstChild);
  list.scrollTop = list.scrollHeight;
}

export function show(id, visible) { $(id).hidden = !visible; }

export function setPresence(state, text) {
  $("presence").dataset.state = state;
  $("presence-text").textContent = text;
}

export function randomId(prefix) {
  const bytes = new Uint8Array(6);
  crypto.getRandomValues(bytes);
  return prefix + Array.from(bytes, (b) => b.toString(36).padStart(2, "0")).join("").slice(0, 10);
}

// "m:ss", or "h:mm:ss" from an hour on.
export function formatSeconds(total) {
  const seconds = Math.max(0, Math.round(total));
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = String(seconds % 60).padStart(2, "0");
  return h ? h + ":" + String(m).padStart(2, "0") + ":" + s : m + ":" + s;
}
