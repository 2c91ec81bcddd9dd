// Rejoining: once per sign-in, the calls of this user's still going on. A reloaded page rejoins its call with a
// fresh offer through call.signal; a page opened while a call goes on elsewhere offers to rejoin it or end it.
import { api } from "./api.js";
import {
  applyMute, applyRemoteSignal, finish, flushOutbox, hangUp, newCall, rememberCall, requestHangup, takeEarlySignals,
} from "./call.js";
import { connect } from "./events.js";
import { loadHistory } from "./history.js";
import { countOffer, gone, localMedia, makePeerConnection } from "./media.js";
import { app } from "./state.js";
import { CALL_KEY, log, reloaded, sessionValue } from "./util.js";
import { hideElsewhere, inWords, notice, setCallState, showCall, showElsewhere } from "./views.js";

function rememberedCall(id) {
  const saved = sessionValue(CALL_KEY);
  return saved && saved.id === id ? saved : null;
}

// Once per sign-in: the calls of this user's still going on. After a reload (only a reload: a duplicated tab copies
// sessionStorage, device id included, and must not take the call over) the call this tab's device is in is rejoined
// with a fresh offer through call.signal, a call it was still placing (ringing, not yet answered) is cancelled, as
// its page is gone, and a call ringing for this user rings again. Otherwise an active call is offered in words: to
// rejoin (this tab's device is in it: the tab left the page and came back) or to end (another device is in it, or
// a tab that was closed). GET /v1/calls?state=…: the callee's device is `answeredBy`, the caller's is in the invite's
// timeline entry.
export async function rejoinActiveCall() {
  if (app.call && !app.call.ended) return;
  const session = app.session;
  // The page was reloaded: acted on by the first sign-in only (a sign-out and a sign-in later are no reload).
  const reload = reloaded() && !app.reloadSeen;
  app.reloadSeen = true;
  let calls;
  try {
    calls = (await api("GET", "/v1/calls?state=inviting,ringing,active&limit=20")).calls || [];
  } catch (error) {
    log("looking for an active call failed: " + error.message);
    return;
  }
  let ringsHere = false;
  for (const info of calls) {
    if (session !== app.session) return; // signed out meanwhile
    if (info.state !== "active") {
      if (info.callee === app.user && !info.answeredBy) ringsHere = true;
      if (reload && info.caller === app.user && (await roleOfThisDevice(info)) === "caller" && session === app.session) {
        log("cancelling the call to " + info.callee + " placed before the reload");
        requestHangup(info.id).catch((error) => log("cancelling failed: " + error.message));
      }
      continue;
    }
    const role = await roleOfThisDevice(info);
    if (session !== app.session || (app.call && !app.call.ended)) return;
    if (role && reload) { await rejoin(info, role); return; }
    app.elsewhere = { info, role };
    showElsewhere(info, !!role);
    return;
  }
  // A reloaded page resumed its stream after the last event it saw, so the invite of a call that still rings is not
  // sent again: a fresh stream starts with the invites still pending.
  if (ringsHere && reload && app.lastEventId && (!app.call || app.call.ended) && session === app.session) {
    log("a call rings: reading the pending invites again");
    app.lastEventId = null;
    connect();
  }
}

// "caller" when this device placed the call, "callee" when it answered it, else null.
async function roleOfThisDevice(info) {
  if (info.callee === app.user) return info.answeredBy === app.device ? "callee" : null;
  if (info.caller !== app.user) return null;
  try {
    const full = (await api("GET", "/v1/calls/" + encodeURIComponent(info.id))).call;
    const invite = (full.timeline || []).find((entry) => entry.event === "invite");
    return invite && invite.device === app.device ? "caller" : null;
  } catch (_) {
    return null;
  }
}

// The buttons of the "you are in a call" panel.
export async function rejoinElsewhere() {
  const found = app.elsewhere;
  if (!found || !found.role) return;
  app.elsewhere = null;
  hideElsewhere();
  await rejoin(found.info, found.role);
}

export async function endElsewhere() {
  const found = app.elsewhere;
  if (!found) return;
  try {
    await requestHangup(found.info.id);
    app.elsewhere = null;
    hideElsewhere();
    loadHistory();
  } catch (error) {
    log("ending the call failed: " + error.message);
    if (error.status === 409) { app.elsewhere = null; hideElsewhere(); loadHistory(); return; } // it had ended
    notice("The call could not be ended: " + inWords(error) + ".");
  }
}

async function rejoin(info, role) {
  if (app.call && !app.call.ended) return;
  const saved = rememberedCall(info.id);
  const camera = saved ? saved.camera : false; // no saved state: the camera stays off until the user turns it on
  const call = newCall({
    id: info.id, role, peer: role === "caller" ? info.callee : info.caller, media: info.media || "direct",
    kind: camera ? "video" : "voice", active: true,
  });
  app.call = call;
  app.elsewhere = null;
  hideElsewhere();
  if (info.answeredAt) call.connectedAt = Date.parse(info.answeredAt);
  showCall(call);
  setCallState(call, "rejoining");
  log("rejoining the call with " + call.peer);
  let sdp;
  try {
    await localMedia(call, { video: camera });
    if (saved && saved.muted) applyMute(call, true);
    const pc = await makePeerConnection(call, { offerer: true });
    await pc.setLocalDescription(await pc.createOffer());
    sdp = pc.localDescription.sdp;
  } catch (error) {
    log("rejoining failed: " + error.message);
    notice("The call could not be rejoined: " + inWords(error) + ".");
    if (!call.ended) hangUp(); // no microphone or no peer connection: this page cannot carry the call
    return;
  }
  // The offer first, then the candidates (outbox): the other side must see the new certificate before them. A
  // refusal that can pass (the other party's own offer waiting, 409; the rate limit; the server or the network)
  // is retried for half a minute; one that cannot (the call ended, the relay cannot take the offer) ends it here.
  let delay = 500;
  for (let attempt = 0; ; attempt++) {
    if (gone(call)) return;
    try {
      await api("POST", "/v1/calls/" + encodeURIComponent(call.id) + "/signals",
        { device: app.device, type: "offer", sdp });
      break;
    } catch (error) {
      log("rejoin offer refused: " + error.message);
      const shown = await api("GET", "/v1/calls/" + encodeURIComponent(call.id)).catch(() => null);
      if (gone(call)) return;
      if (shown && shown.call.state === "ended") { finish(call, shown.call.endReason || "failed"); return; }
      const passing = !error.status || error.status === 409 || error.status === 429 || error.status >= 500;
      if (!passing || attempt >= 12) { hangUp(); return; }
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 4000);
    }
  }
  countOffer("offersSent");
  rememberCall(call);
  flushOutbox(call);
  // An offer the other party made while this page reloaded (replayed on the resumed stream): offers crossed.
  const offers = takeEarlySignals(call.id).filter((signal) => signal.type === "offer");
  if (offers.length) await applyRemoteSignal(call, offers[offers.length - 1]);
}
