// The event stream: a single-use ticket, an EventSource, resumption with lastEventId, reconnection.
import { api } from "./api.js";
import { finish, onAccepted, onEnded, onInvite, onRinging, onSignal } from "./call.js";
import { rejoinActiveCall } from "./rejoin.js";
import { loadHistory } from "./history.js";
import { signOut } from "./session.js";
import { app } from "./state.js";
import { EVENT_KEY, log, setPresence } from "./util.js";

export function closeSource() {
  if (app.source) { app.source.close(); app.source = null; }
}

export async function connect() {
  clearTimeout(app.reconnectTimer);
  closeSource();
  let ticket;
  try {
    ticket = (await api("POST", "/v1/stream-tickets", { device: app.device })).ticket;
  } catch (error) {
    if (error.status === 401) { signOut("The token was refused (expired or invalid)."); return; }
    scheduleReconnect("no ticket: " + error.message);
    return;
  }
  // The ticket is single use: a new EventSource (with a new ticket) resumes with ?lastEventId.
  let url = "/v1/events?device=" + encodeURIComponent(app.device) + "&ticket=" + encodeURIComponent(ticket);
  if (app.lastEventId) url += "&lastEventId=" + encodeURIComponent(app.lastEventId);
  const source = new EventSource(url);
  app.source = source;
  const on = (name, handler) => source.addEventListener(name, (event) => {
    if (source !== app.source) return;
    if (event.lastEventId) {
      app.lastEventId = event.lastEventId;
      // A reload resumes where this page left off: what reached the device meanwhile (an offer of a party that
      // rejoins at the same moment) is replayed to the reloaded page.
      sessionStorage.setItem(EVENT_KEY, JSON.stringify({ user: app.user, id: app.lastEventId }));
    }
    let data = {};
    try { data = JSON.parse(event.data || "{}"); } catch (_) { log("unreadable " + name); return; }
    try { handler(data); } catch (error) { log("error handling " + name + ": " + error.message); }
  });
  on("hello", (data) => {
    app.reconnectDelay = 1000;
    setPresence("online", "online");
    log("stream open as " + data.user + "/" + data.device);
    // Once per sign-in (a reload signs in again): a call this tab was in is rejoined.
    if (!app.rejoinChecked) { app.rejoinChecked = true; rejoinActiveCall(); }
  });
  on("call.invite", onInvite);
  on("call.ringing", onRinging);
  on("call.accepted", onAccepted);
  // The history shows every call of the user's that ends at once: this page's (finish reads it again) or another's.
  on("call.ended", (data) => {
    const own = app.call && app.call.id === data.call.id;
    onEnded(data);
    if (!own) loadHistory();
  });
  on("call.signal", onSignal);
  on("resync", () => { log("resync"); resync(); });
  on("superseded", () => {
    log("superseded by another stream of this device");
    closeSource();
    setPresence("offline", "replaced by another tab of this device");
  });
  on("shutdown", () => { log("server shutting down"); scheduleReconnect("server shutdown"); });
  on("reconnect", () => { log("server draining"); scheduleReconnect("server draining"); });
  source.onerror = () => {
    if (source !== app.source) return;
    scheduleReconnect("stream dropped");
  };
}

export function scheduleReconnect(why) {
  closeSource();
  if (!app.token) return;
  setPresence("reconnecting", "reconnecting…");
  log(why + "; reconnecting in " + app.reconnectDelay + " ms");
  clearTimeout(app.reconnectTimer);
  app.reconnectTimer = setTimeout(connect, app.reconnectDelay);
  app.reconnectDelay = Math.min(app.reconnectDelay * 2, 8000);
}

export async function resync() {
  const call = app.call;
  if (!call || !call.id || call.ended) return;
  try {
    const data = await api("GET", "/v1/calls/" + encodeURIComponent(call.id));
    if (data.call.state === "ended") finish(call, data.call.endReason || "failed");
  } catch (error) {
    log("resync failed: " + error.message);
  }
}
