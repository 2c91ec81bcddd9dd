// Switchboard web client: signaling over the server's SSE stream and REST API, media over WebRTC. Tokens live
// in sessionStorage (per tab) and travel only in Authorization headers, never in a URL. The entry module: wires the
// page's controls and loads the client configuration.
import { askNotificationPermission, unlockAudio } from "./alert.js";
import { acceptCall, declineCall, hangUp, placeCall, toggleMute } from "./call.js";
import { initDevices } from "./devices.js";
import { connect } from "./events.js";
import { loadHistory } from "./history.js";
import { toggleCamera, toggleScreenShare } from "./media.js";
import { endElsewhere, rejoinElsewhere } from "./rejoin.js";
import { devSignIn, signIn, signOut } from "./session.js";
import { app } from "./state.js";
import { $, show, TOKEN_KEY } from "./util.js";
import { clearNotice } from "./views.js";

async function start() {
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    askNotificationPermission();
    signIn($("token-input").value);
  });
  $("signout").addEventListener("click", () => signOut());
  const call = (kind) => {
    const to = $("callee-input").value.trim();
    if (!/^[A-Za-z0-9._~-]{1,64}$/.test(to)) { $("call-error").textContent = "Enter a user name."; return; }
    placeCall(to, kind);
  };
  $("call-form").addEventListener("submit", (event) => { event.preventDefault(); call("video"); });
  $("voice-call-button").addEventListener("click", () => call("voice"));
  $("accept-button").addEventListener("click", () => acceptCall(true));
  $("accept-voice-button").addEventListener("click", () => acceptCall(false));
  $("decline-button").addEventListener("click", declineCall);
  $("hangup-button").addEventListener("click", hangUp);
  $("history-more").addEventListener("click", () => loadHistory(true));
  $("dismiss-button").addEventListener("click", () => { show("call", false); $("callee-input").focus(); });
  $("notice-close").addEventListener("click", clearNotice);
  $("elsewhere-rejoin").addEventListener("click", rejoinElsewhere);
  $("elsewhere-end").addEventListener("click", endElsewhere);
  // Browsers hold audio until the page has had a gesture: the first click or key lets the ring tone play.
  for (const name of ["pointerdown", "keydown"]) document.addEventListener(name, unlockAudio, { capture: true });
  $("mute-button").addEventListener("click", (event) => toggleMute(event.currentTarget));
  $("camera-button").addEventListener("click", (event) => toggleCamera(event.currentTarget));
  $("share-button").addEventListener("click", (event) => toggleScreenShare(event.currentTarget));
  initDevices();
  window.addEventListener("online", () => { if (app.token && !app.source) connect(); });

  try {
    const response = await fetch("/client-config", { cache: "no-store", credentials: "omit" });
    if (response.ok) app.config = Object.assign(app.config, await response.json());
  } catch (_) { /* defaults */ }
  if (Array.isArray(app.config.devUsers) && app.config.devUsers.length) {
    const box = $("demo-user-buttons");
    for (const user of app.config.devUsers) {
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = user;
      button.dataset.user = user;
      button.addEventListener("click", () => { askNotificationPermission(); devSignIn(user); });
      box.appendChild(button);
    }
    show("demo-users", true);
  }
  const saved = sessionStorage.getItem(TOKEN_KEY);
  if (saved) signIn(saved);
  document.body.dataset.ready = "true";
}

start();
