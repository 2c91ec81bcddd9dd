// Device pickers: camera, microphone and speaker, from enumerateDevices, kept in localStorage across reloads. A
// camera or microphone picked mid-call replaces its track (media.js switchDevice); the speaker is the remote
// video's output (setSinkId, where the browser has it).
import { switchDevice } from "./media.js";
import { app } from "./state.js";
import { $, log } from "./util.js";

const PICKERS = [
  { kind: "videoinput", select: "camera-select", key: "switchboard.camera", name: "Camera" },
  { kind: "audioinput", select: "microphone-select", key: "switchboard.microphone", name: "Microphone" },
  { kind: "audiooutput", select: "speaker-select", key: "switchboard.speaker", name: "Speaker" },
];

const canPickSpeaker = typeof HTMLMediaElement !== "undefined" && "setSinkId" in HTMLMediaElement.prototype;

function preferred(kind) {
  try { return localStorage.getItem(PICKERS.find((p) => p.kind === kind).key) || ""; } catch (_) { return ""; }
}

// getUserMedia's constraints for device `id` ("" for the default one): the picked device by default, `ideal` (a
// device that is gone falls back to another), or `exact` for a switch the user asked for.
export function audioConstraints(id = preferred("audioinput"), match = "ideal") {
  return id ? { deviceId: { [match]: id } } : true;
}

export function videoConstraints(id = preferred("videoinput"), match = "ideal") {
  return Object.assign({ width: 320, height: 240 }, id ? { deviceId: { [match]: id } } : {});
}

// The options of each picker; device labels are only given once the page may use a device (after getUserMedia).
export async function refreshDevices() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) return;
  let devices;
  try { devices = await navigator.mediaDevices.enumerateDevices(); } catch (_) { return; }
  for (const picker of PICKERS) {
    const select = $(picker.select);
    const found = devices.filter((device) => device.kind === picker.kind && device.deviceId);
    const chosen = preferred(picker.kind);
    select.textContent = "";
    const fallback = document.createElement("option");
    fallback.value = "";
    fallback.textContent = "Default";
    select.appendChild(fallback);
    found.forEach((device, index) => {
      if (device.deviceId === "default") return;
      const option = document.createElement("option");
      option.value = device.deviceId;
      option.textContent = device.label || picker.name + " " + (index + 1);
      select.appendChild(option);
    });
    select.value = found.some((device) => device.deviceId === chosen) ? chosen : "";
    select.dataset.count = String(select.options.length - 1);
  }
  $("devices").dataset.ready = "true";
}

// The speaker picked on this browser ("" for the default one).
export function speakerId() { return preferred("audiooutput"); }

// The remote video plays on the picked speaker.
export function applySpeaker() {
  if (!canPickSpeaker) return;
  const id = preferred("audiooutput");
  const video = $("remote-video");
  if (video.sinkId === id) return;
  video.setSinkId(id).catch((error) => log("speaker not available: " + error.message));
}

async function pick(picker, deviceId) {
  try { localStorage.setItem(picker.key, deviceId); } catch (_) { /* private mode: this page only */ }
  if (picker.kind === "audiooutput") { applySpeaker(); return; }
  const call = app.call;
  if (call && !call.ended) await switchDevice(call, picker.kind, deviceId);
}

export function initDevices() {
  for (const picker of PICKERS) {
    const select = $(picker.select);
    select.addEventListener("change", () => pick(picker, select.value));
  }
  if (!canPickSpeaker) {
    $("speaker-select").disabled = true;
    $("speaker-select").title = "This browser cannot choose the speaker";
  }
  if (navigator.mediaDevices && navigator.mediaDevices.addEventListener) {
    navigator.mediaDevices.addEventListener("devicechange", refreshDevices);
  }
  refreshDevices();
}
