// Signing in and out (the token lives in sessionStorage, per tab).
import { dropCall } from "./call.js";
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

export async function signIn(token) {
  token = token.trim();
  if (!tokenSubject(token)) { $("signin-error").textContent = "That is not a Switchboard token."; return; }
  const session = ++app.session;
  const device = await claimDevice(sessionStorage.getItem(DEVICE_KEY));
  if (session !== app.session) return;
  app.token = token;
  app.user = tokenSubject(token);
  app.device = device;
  sessionStorage.setItem(DEVICE_KEY, app.device);
  sessionStorage.setItem(TOKEN_KEY, token);
  $("token-input").value = "";
  showSignedIn(app.user, app.device);
  app.lastEventId = resumedEventId(app.user);
  app.rejoinChecked = false;
  connect();
  loadHistory();
}

// The tab's device id. A tab duplicated, or opened by script, copies sessionStorage and with it the device id, but
// two tabs on one device id would take each other's event stream and calls: an id is this tab's while it holds the
// id's Web Lock. A reload finds it free (the page before let it go as it unloaded, which may take the browser a
// moment); a copy finds it held by the tab it copied, and takes a new id.
let heldDevice = null;

async function claimDevice(saved) {
  if (saved && saved === heldDevice) return saved;
  if (!navigator.locks) return saved || randomId("web-");
  if (saved) {
    const deadline = Date.now() + 1000;
    do {
      if (await holdDevice(saved)) return saved;
      await new Promise((resolve) => setTimeout(resolve, 100));
    } while (Date.now() < deadline);
  }
  const fresh = randomId("web-");
  await holdDevice(fresh);
  return fresh;
}

function holdDevice(id) {
  return new Promise((resolve) => {
    navigator.locks.request("switchboard.device." + id, { ifAvailable: true }, (lock) => {
      if (!lock) { resolve(false); return undefined; }
      heldDevice = id;
      resolve(true);
      return new Promise(() => {}); // held for as long as this page lives
    }).catch(() => resolve(false));
  });
}

// After a reload, the last event id the page had seen for this user (sessionStorage: this tab only).
function resumedEventId(user) {
  if (!reloaded()) return null;
  const saved = sessionValue(EVENT_KEY);
  return saved && saved.user === user ? saved.id : null;
}

export function signOut(message) {
  app.session++;
  // The call first: its hang-up request takes the token with it before the token is forgotten.
  dropCall();
  closeSource();
  clearTimeout(app.reconnectTimer);
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(EVENT_KEY);
  app.token = null;
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
