// Incoming-call alerts: a ring tone generated with Web Audio (no sound file) and, when the page is in the
// background, a Notification (permission asked on the sign-in gesture). Both stop when the call is answered here
// or on another device, declined, cancelled, or ends. The incoming panel's data-ringtone and data-notification say
// what is under way.
import { speakerId } from "./devices.js";
import { $, show } from "./util.js";

let audio = null;
let tone = null;
let notification = null;

// Asked from a user gesture (the sign-in form): browsers ignore a request made without one.
export function askNotificationPermission() {
  if ("Notification" in window && Notification.permission === "default") {
    Notification.requestPermission().catch(() => {});
  }
}

// The first click or key on the page: the browser now lets the ring tone play (and one already ringing starts).
export function unlockAudio() {
  try {
    audio = audio || new AudioContext();
    if (audio.state !== "running") audio.resume().then(() => showTone(), () => {});
  } catch (_) { /* no Web Audio */ }
}

function showTone() {
  if (!tone) return;
  const playing = audio && audio.state === "running";
  $("incoming").dataset.ringtone = playing ? "playing" : "blocked";
  show("incoming-sound", !playing);
}

export function startAlert(caller, callId) {
  stopAlert();
  $("incoming").dataset.notification = "none";
  startTone();
  const hidden = document.hidden || !document.hasFocus();
  if (hidden && "Notification" in window && Notification.permission === "granted") {
    try {
      notification = new Notification(caller + " is calling", {
        body: "Switchboard: open the page to answer", tag: "call-" + callId, requireInteraction: true,
      });
      notification.onclick = () => { window.focus(); };
      $("incoming").dataset.notification = "shown";
    } catch (_) {
      $("incoming").dataset.notification = "unavailable";
    }
  }
}

export function stopAlert() {
  if (tone) {
    clearInterval(tone.timer);
    for (const oscillator of tone.oscillators) oscillator.stop();
    tone.gain.disconnect();
    tone = null;
    $("incoming").dataset.ringtone = "stopped";
    show("incoming-sound", false);
  }
  if (notification) {
    notification.close();
    notification = null;
    $("incoming").dataset.notification = "closed";
  }
}

// The North American ring: 440 Hz and 480 Hz together, two seconds on, four off.
function startTone() {
  try {
    audio = audio || new AudioContext();
    // The tone rings on the picked speaker, like the call (AudioContext.setSinkId where the browser has it).
    const speaker = speakerId();
    if (audio.setSinkId && audio.sinkId !== speaker) audio.setSinkId(speaker).catch(() => {});
    const gain = audio.createGain();
    gain.gain.value = 0;
    gain.connect(audio.destination);
    const oscillators = [440, 480].map((frequency) => {
      const oscillator = audio.createOscillator();
      oscillator.frequency.value = frequency;
      oscillator.connect(gain);
      oscillator.start();
      return oscillator;
    });
    const ring = () => {
      const now = audio.currentTime;
      gain.gain.setValueAtTime(0.1, now);
      gain.gain.setValueAtTime(0, now + 2);
    };
    ring();
    tone = { gain, oscillators, timer: setInterval(ring, 6000) };
    // Without a gesture on the page the browser holds the audio suspended (and resume() may never settle): say so
    // at once, and that a click or a key lets it ring; "playing" once it runs.
    showTone();
    audio.resume().then(() => { if (tone && tone.gain === gain) showTone(); }, () => {});
  } catch (_) {
    $("incoming").dataset.ringtone = "unavailable";
  }
}
