// Signing in and out (the token lives in sessionStorage, per tab).
import { hangUp } from "./call.js";
import { closeSource, connect } from "./events.js";
import { clearHistory, loadHistory } from "./history.js";
import { app } from "./state.js";
import { $, DEVICE_KEY, EVENT_KEY, randomId, reloaded, sessionValue, setPresence, TOKEN_KEY } from "./util.js";
import { showSignedIn, showSignedOut } from "./views.js";

export function tokenSubject(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(payload)).sub || null;
  } catch (_) { return null; }
}

export function signIn(token) {
  token = token.trim();
  if (!tokenSubject(token)) { $("signin-error").textContent = "That is not a Switchboard token."; return; }
  app.token = token;
  app.user = tokenSubject(token);
  app.device = sessionStorage.getItem(DEVICE_KEY) || randomId("web-");
  sessionStorage.setItem(DEVICE_KEY, app.device);
  sessionStorage.setItem(TOKEN_KEY, token);
  $("token-input").value = "";
  showSignedIn(app.user, app.device);
  app.lastEventId = resumedEventId(app.user);
  app.rejoinChecked = false;
  connect();
  loadHistory();
}

// After a reload, the last event id the page had seen for this user (sessionStorage: this tab only).
function resumedEventId(user) {
  if (!reloaded()) return null;
  const saved = sessionValue(EVENT_KEY);
  return saved && saved.user === user ? saved.id : null;
}

export function signOut(message) {
  // Hang up first: the request takes the token with it before the token is forgotten.
  if (app.call && !app.call.ended) hangUp();
  closeSource();
  clearTimeout(app.reconnectTimer);
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(EVENT_KEY);
  app.token = null;
  app.call = null;
  app.elsewhere = null;
  clearHistory();
  showSignedOut(message);
  setPresence("offline", "signed out");
}

export async function devSignIn(user) {
  try {
    const response = await fetch("/dev/token", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ user }),
      cache: "no-store", credentials: "omit",
    });
    const data = await response.json();
    if (!response.ok) throw new Error((data.error && data.error.message) || response.statusText);
    signIn(data.token);
  } catch (error) {
    $("signin-error").textContent = "Dev sign-in failed: " + error.message;
  }
}
