// Views: what the page shows for each moment (signed out, idle, ringing, in a call, ended, a call going on
// elsewhere), the tab's title, and problems told in words. The other modules decide; this one draws.
import { icePolicy } from "./media.js";
import { app } from "./state.js";
import { $, FAILURES, REASONS, show } from "./util.js";

const TITLE = "Switchboard";

export function showSignedIn(user, device) {
  $("me-user").textContent = user;
  $("me-device").textContent = device;
  $("signin-error").textContent = "";
  for (const id of ["home", "history", "settings", "account"]) show(id, true);
  show("signin", false);
}

export function showSignedOut(message) {
  for (const id of ["home", "history", "settings", "account", "call", "incoming", "elsewhere", "notice"]) {
    show(id, false);
  }
  show("signin", true);
  $("signin-error").textContent = message || "";
  $("local-video").srcObject = null;
  $("remote-video").srcObject = null;
  updateTitle();
}

// The tab's title says what is going on, so a call ringing in a background tab shows in the tab strip; while a call
// is under way the form to place another one steps aside.
export function updateTitle() {
  const call = app.call;
  const under = !!call && !call.ended && (call.role === "caller" || call.active || !!call.answering);
  document.body.dataset.inCall = String(under);
  if (!call || call.ended) document.title = TITLE;
  else if (call.role === "callee" && !call.active && !call.answering) document.title = call.peer + " is calling · " + TITLE;
  else document.title = (call.active ? "In a call with " : "Calling ") + call.peer + " · " + TITLE;
}

export function setCallState(call, state) {
  if (call !== app.call) return;
  call.state = state;
  if (state === "connected" && !call.connectedAt) call.connectedAt = Date.now();
  $("call").dataset.callId = call.id || "";
  $("call").dataset.state = state;
  $("call-state").textContent = state;
  $("call-state").dataset.state = state;
  // Until the call is answered, the caller's red button cancels it.
  $("hangup-button").textContent = call.role === "caller" && !call.active ? "Cancel" : "Hang up";
  updateTitle();
}

export function showCall(call) {
  $("call-peer").textContent = call.peer;
  $("remote-initial").textContent = (call.peer || "?").slice(0, 1);
  $("call-reason").textContent = "";
  $("call-reason").dataset.reason = "";
  $("call-path").textContent = "unknown";
  $("call-path").dataset.path = "";
  $("call-path-words").textContent = "connecting";
  $("frames-decoded").textContent = "0";
  $("call-timer").textContent = "0:00";
  $("call-quality").textContent = "measuring";
  $("call-quality").dataset.quality = "measuring";
  $("call-quality-detail").textContent = "";
  $("ice-state").textContent = "new";
  $("ice-policy").textContent = call.media === "secure-relay" ? "secure relay" : icePolicy();
  $("mute-button").setAttribute("aria-pressed", "false");
  setCameraButton($("camera-button"), call.kind !== "voice");
  $("share-button").setAttribute("aria-pressed", "false");
  const element = $("call");
  element.dataset.kind = call.kind;
  element.dataset.offersSent = "0";
  element.dataset.offersReceived = "0";
  element.dataset.sending = "none";
  element.dataset.remoteVideo = "off";
  element.dataset.connected = "false";
  show("hangup-button", true);
  show("dismiss-button", false);
  show("elsewhere", false);
  // The callee sees the ringing panel alone; the call's own panel comes with the answer.
  show("call", call.role !== "callee" || call.active);
  $("call-error").textContent = "";
  clearNotice();
}

// Whether the keyboard's focus is inside `selector` (false when nothing is focused).
export function focusWithin(selector) {
  const focused = document.activeElement;
  return !!focused && !!focused.closest && !!focused.closest(selector);
}

// The ringing panel: who calls, a voice or a video call. The keyboard's focus moves to the panel (not to Accept: a
// key pressed for something else at that moment must not answer), unless the user is typing; Tab then reaches
// Accept.
export function showIncoming(call) {
  $("incoming-caller").textContent = call.peer;
  $("incoming-kind").textContent = call.kind === "video" ? "video call" : "voice call";
  $("incoming").dataset.kind = call.kind;
  $("accept-button").textContent = call.kind === "video" ? "Accept with video" : "Accept";
  show("accept-voice-button", call.kind === "video");
  show("incoming", true);
  updateTitle();
  const typing = document.activeElement && ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement.tagName);
  if (!typing) $("incoming").focus();
}

// The answer (here): the call's panel replaces the ringing one, and the keyboard's focus goes to it.
export function showAnswered() {
  show("incoming", false);
  show("call", true);
  show("hangup-button", true);
  if (!document.activeElement || document.activeElement === document.body || focusWithin("#incoming")) {
    $("hangup-button").focus();
  }
}

export function hideIncoming() {
  const focused = focusWithin("#incoming");
  show("incoming", false);
  if (focused) $("callee-input").focus();
}

export function showEnded(call, reason, failure) {
  hideIncoming();
  setCallState(call, "ended");
  $("call-reason").textContent = "— " + (REASONS[reason] || reason) +
    (failure ? " (" + (FAILURES[failure] || failure) + ")" : "");
  $("call-reason").dataset.reason = reason;
  $("call").dataset.connected = String(!!call.connectedAt); // a call that never connected has no timer to show
  const focused = focusWithin("#call");
  show("hangup-button", false);
  show("dismiss-button", true);
  // A call never answered here (declined, missed, answered elsewhere while ringing) is told in the history only.
  if (call.role === "callee" && !call.active && !call.answering) {
    show("call", false);
    if (focused) $("callee-input").focus();
  } else if (focused) {
    $("dismiss-button").focus();
  }
  $("local-video").srcObject = null;
  $("remote-video").srcObject = null;
  updateTitle();
}

export function setCameraButton(button, on) {
  button.setAttribute("aria-pressed", String(on));
}

// What this page sends as video (none, the camera, the screen) and whether the far side's video plays.
export function showSending(what) { $("call").dataset.sending = what; }

export function showRemoteVideo(playing) { $("call").dataset.remoteVideo = playing ? "on" : "off"; }

// A call of this user's that goes on without this page (a tab closed mid-call, then opened again).
export function showElsewhere(info, canRejoin) {
  $("elsewhere-peer").textContent = info.caller === app.user ? info.callee : info.caller;
  $("elsewhere-text").textContent = canRejoin
    ? "It is still going on, but not on this page."
    : "It is going on on another of your devices.";
  show("elsewhere-rejoin", canRejoin);
  show("elsewhere", true);
}

export function hideElsewhere() { show("elsewhere", false); }

// A problem the user should know of, in words (the activity log keeps the details).
export function notice(text) {
  $("notice-text").textContent = text;
  show("notice", true);
}

export function clearNotice() { show("notice", false); }

// An error from the browser's media devices or from Switchboard, said in words.
export function inWords(error) {
  switch (error && error.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "the browser was not allowed to use the camera or microphone (see this site's permissions)";
    case "NotFoundError":
      return "no camera or microphone was found";
    case "NotReadableError":
    case "AbortError":
      return "the camera or microphone is in use by another application";
    case "OverconstrainedError":
      return "the chosen device is not available";
    case "TypeError":
      if (!error.status) return "Switchboard could not be reached (check the network)";
  }
  return (error && error.message) || "something went wrong";
}
