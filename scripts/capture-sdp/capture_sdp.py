#!/usr/bin/env python3
"""Capture real browser SDP offers/answers as fixtures for Switchboard's SDP keying-material checker.

What it does:
  * Re-runs itself inside a fresh network namespace (`unshare -n`) holding only loopback and a veth pair
    with documentation addresses (198.51.100.10/24, 2001:db8::10/64), so the browsers gather realistic host
    candidates but cannot reach any network at all. `--no-netns` skips this (not recommended).
  * Serves capture.html from a python http.server on 127.0.0.1.
  * Chromium (Debian's `chromium` + `chromium-driver`) through Selenium, with chromedriver pinned to
    /usr/bin/chromedriver so Selenium Manager never runs.
  * Firefox ESR (Debian's `firefox-esr`) headless, when installed. Debian ships no geckodriver, so the page
    runs in `?auto=1` mode: it pulls tasks from /task and POSTs its results to /result.
  * Writes the final `localDescription.sdp` strings byte-for-byte (CRLF kept), then derives the negative
    fixtures from a captured one (`--derive-only` redoes just that step from the files on disk).

Usage (as root, on Debian 12):
  apt-get install chromium chromium-driver firefox-esr
  pip install selenium
  python3 scripts/capture-sdp/capture_sdp.py [--out Tests/SwitchboardCoreTests/Fixtures/sdp]
"""

from __future__ import annotations

import argparse
import base64
import datetime
import http.server
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
DEFAULT_OUT = REPO / "Tests" / "SwitchboardCoreTests" / "Fixtures" / "sdp"

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FIREFOX = "/usr/bin/firefox-esr"

# The flags the browsers must run with: no sandbox (root), headless, fake capture devices with the
# permission prompt auto-accepted, every host name unresolvable except 127.0.0.1, and no background traffic.
CHROME_FLAGS = [
    "--no-sandbox",
    "--headless=new",
    "--disable-gpu",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Firefox equivalents: fake media without a prompt, and everything that phones home switched off or
# pointed at a closed loopback port (the network namespace is the real guarantee).
FIREFOX_PREFS = {
    "media.navigator.streams.fake": True,
    "media.navigator.permission.disabled": True,
    "network.proxy.type": 1,
    "network.proxy.http": "127.0.0.1",
    "network.proxy.http_port": 9,
    "network.proxy.ssl": "127.0.0.1",
    "network.proxy.ssl_port": 9,
    "network.proxy.no_proxies_on": "127.0.0.1",
    "network.proxy.allow_hijacking_localhost": False,
    "network.dns.disablePrefetch": True,
    "network.prefetch-next": False,
    "network.predictor.enabled": False,
    "network.captive-portal-service.enabled": False,
    "network.connectivity-service.enabled": False,
    "app.update.enabled": False,
    "app.update.auto": False,
    "app.normandy.enabled": False,
    "app.shield.optoutstudies.enabled": False,
    "browser.safebrowsing.malware.enabled": False,
    "browser.safebrowsing.phishing.enabled": False,
    "browser.safebrowsing.downloads.enabled": False,
    "browser.safebrowsing.blockedURIs.enabled": False,
    "browser.safebrowsing.provider.mozilla.updateURL": "",
    "browser.safebrowsing.provider.google4.updateURL": "",
    "browser.search.update": False,
    "browser.shell.checkDefaultBrowser": False,
    "browser.startup.homepage_override.mstone": "ignore",
    "browser.aboutwelcome.enabled": False,
    "browser.newtabpage.enabled": False,
    "browser.newtabpage.activity-stream.feeds.telemetry": False,
    "browser.ping-centre.telemetry": False,
    "datareporting.healthreport.uploadEnabled": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.enabled": False,
    "toolkit.telemetry.unified": False,
    "toolkit.telemetry.server": "http://127.0.0.1:9/",
    "extensions.update.enabled": False,
    "extensions.getAddons.cache.enabled": False,
    "extensions.blocklist.enabled": False,
    "services.settings.server": "http://127.0.0.1:9/",
    "identity.fxaccounts.enabled": False,
    "geo.enabled": False,
    "dom.push.enabled": False,
}

NETNS_V4 = "198.51.100.10/24"  # RFC 5737 TEST-NET-2
NETNS_V4_GW = "198.51.100.1"
NETNS_V6 = "2001:db8::10/64"   # RFC 3849 documentation prefix
NETNS_V6_GW = "2001:db8::1"

KINDS = ["av", "audio", "datachannel"]


def log(msg: str) -> None:
    print(f"[capture-sdp] {msg}", flush=True)


def run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True)


# --------------------------------------------------------------------------- network namespace

def reexec_in_netns(argv: list[str]) -> None:
    if os.geteuid() != 0:
        sys.exit("run as root (needed for unshare -n), or pass --no-netns")
    unshare = shutil.which("unshare")
    if not unshare:
        sys.exit("unshare (util-linux) not found; pass --no-netns to run without a private network namespace")
    os.execv(unshare, [unshare, "-n", "--", sys.executable, str(Path(__file__).resolve()), "--inside-netns", *argv])


def setup_netns() -> None:
    run(["ip", "link", "set", "lo", "up"])
    run(["ip", "link", "add", "sbv0", "type", "veth", "peer", "name", "sbv1"])
    # Only sbv0 carries addresses; sbv1 is up just so sbv0 has a carrier.
    Path("/proc/sys/net/ipv6/conf/sbv1/disable_ipv6").write_text("1")
    run(["ip", "addr", "add", NETNS_V4, "dev", "sbv0"])
    run(["ip", "-6", "addr", "add", NETNS_V6, "dev", "sbv0", "nodad"])
    run(["ip", "link", "set", "sbv1", "up"])
    run(["ip", "link", "set", "sbv0", "up"])
    run(["ip", "route", "add", "default", "via", NETNS_V4_GW, "dev", "sbv0"])
    run(["ip", "-6", "route", "add", "default", "via", NETNS_V6_GW, "dev", "sbv0"])
    # The kernel gives sbv0 a link-local address after duplicate address detection, a second or two after it comes
    # up: a browser started before that sees the network change and fails its first page's requests
    # (net::ERR_NETWORK_CHANGED). Wait until no address is tentative.
    deadline = time.monotonic() + 10
    while subprocess.run(["ip", "-6", "addr", "show", "tentative"], capture_output=True, text=True).stdout.strip():
        if time.monotonic() > deadline:
            log("warning: an IPv6 address is still tentative after 10 s")
            break
        time.sleep(0.1)
    out = subprocess.run(["ip", "-br", "addr"], capture_output=True, text=True).stdout
    log("network namespace:\n" + out.rstrip())


# --------------------------------------------------------------------------- local HTTP server

class CaptureServer:
    """Serves capture.html and, for Firefox's auto mode, hands out tasks and collects results."""

    def __init__(self) -> None:
        self.tasks: "queue.Queue[dict]" = queue.Queue()
        self.results: dict[str, dict] = {}
        self.results_cv = threading.Condition()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, fmt, *args):  # quiet
                pass

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                path = self.path.split("?", 1)[0]
                if path in ("/", "/capture.html"):
                    self._send(200, (HERE / "capture.html").read_bytes(), "text/html; charset=utf-8")
                elif path == "/task":
                    try:
                        task = server.tasks.get_nowait()
                    except queue.Empty:
                        task = {"done": True}
                    self._send(200, json.dumps(task).encode(), "application/json")
                elif path == "/favicon.ico":
                    self._send(204, b"", "image/x-icon")
                else:
                    self._send(404, b"not found", "text/plain")

            def do_POST(self):
                if self.path != "/result":
                    self._send(404, b"not found", "text/plain")
                    return
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length).decode("utf-8"))
                with server.results_cv:
                    server.results[body.get("name", "?")] = body
                    server.results_cv.notify_all()
                self._send(200, b"ok", "text/plain")

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/capture.html"

    def wait_results(self, names: list[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.results_cv:
            while not all(n in self.results for n in names) and "_fatal" not in self.results:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.results_cv.wait(left)
        return all(n in self.results for n in names)

    def close(self) -> None:
        self.httpd.shutdown()


# --------------------------------------------------------------------------- browsers

def browser_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=60)
    return out.stdout.strip()


def dpkg_version(package: str) -> str:
    out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True)
    return out.stdout.strip()


def start_chrome():
    os.environ["SE_OFFLINE"] = "true"  # belt and braces: Selenium Manager must never download anything
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    service = Service(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_script_timeout(90)
    return driver


def chrome_run(driver, url: str, task: dict) -> dict:
    driver.get(url)  # fresh document for each capture
    result = driver.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        window.sdpCapture.runTask(arguments[0]).then(
          (r) => done({ result: r }),
          (e) => done({ error: String(e && e.stack ? e.stack : e) }));
        """,
        task,
    )
    if "error" in result:
        raise RuntimeError(f"chrome task {task['name']} failed: {result['error']}")
    return result["result"]


def run_firefox(server: CaptureServer, tasks: list[dict], workdir: Path, timeout: float) -> tuple[dict, str]:
    """Runs `tasks` in headless Firefox; returns ({name: result}, problem-or-empty)."""
    profile = workdir / "firefox-profile"
    home = workdir / "firefox-home"
    profile.mkdir(parents=True)
    home.mkdir(parents=True)
    with open(profile / "user.js", "w") as f:
        for key, value in FIREFOX_PREFS.items():
            f.write(f"user_pref({json.dumps(key)}, {json.dumps(value)});\n")
    for task in tasks:
        server.tasks.put(task)
    env = dict(os.environ, HOME=str(home), MOZ_HEADLESS="1", MOZ_DISABLE_AUTO_SAFE_MODE="1")
    log_path = workdir / "firefox.log"
    with open(log_path, "wb") as flog:
        proc = subprocess.Popen(
            [FIREFOX, "--headless", "--no-remote", "--profile", str(profile), server.url + "?auto=1"],
            env=env, stdout=flog, stderr=subprocess.STDOUT, start_new_session=True,
        )
        names = [t["name"] for t in tasks]
        ok = server.wait_results(names, timeout)
        # Firefox was started in its own session: end exactly that process group.
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    results, problems = {}, []
    for name in names:
        body = server.results.get(name)
        if body is None:
            problems.append(f"{name}: no result")
        elif "error" in body:
            problems.append(f"{name}: {body['error']}")
        else:
            results[name] = body["result"]
    if "_fatal" in server.results:
        problems.append("page: " + server.results["_fatal"].get("error", "?"))
    if not ok and not problems:
        problems.append("timed out")
    if problems:
        tail = log_path.read_text(errors="replace")[-3000:]
        problems.append("firefox log tail:\n" + tail)
    return results, "\n".join(problems)


# --------------------------------------------------------------------------- writing fixtures

def write_sdp(out: Path, name: str, sdp: str) -> None:
    data = sdp.encode("utf-8")
    assert data.startswith(b"v=0\r\n"), f"{name}: does not start with v=0 CRLF"
    (out / name).write_bytes(data)  # byte-for-byte, CRLF line endings untouched
    log(f"wrote {name} ({len(data)} bytes)")


def capture(out: Path, skip_firefox: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    server = CaptureServer()
    log(f"serving {server.url}")
    manifest: dict = {
        "captured_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "network": f"private network namespace: lo + veth {NETNS_V4} / {NETNS_V6}"
        if os.environ.get("CAPTURE_SDP_NETNS") else "host network namespace",
        "browsers": {},
        "fixtures": {},
    }

    chrome_version = browser_version(CHROMIUM)
    manifest["browsers"]["chromium"] = {
        "version": chrome_version,
        "package": f"chromium {dpkg_version('chromium')}",
        "driver": browser_version(CHROMEDRIVER),
        "flags": CHROME_FLAGS,
    }
    log(chrome_version)

    driver = start_chrome()
    try:
        chrome: dict[str, dict] = {}
        for kind in KINDS:
            r = chrome_run(driver, server.url, {"name": f"chrome-{kind}", "op": "pair", "kind": kind})
            chrome[kind] = r
            manifest["browsers"]["chromium"]["userAgent"] = r["userAgent"]
            write_sdp(out, f"chrome-offer-{kind}.sdp", r["offer"])
            write_sdp(out, f"chrome-answer-{kind}.sdp", r["answer"])
            for role in ("offer", "answer"):
                manifest["fixtures"][f"chrome-{role}-{kind}.sdp"] = {
                    "browser": "chromium", "type": r[f"{role}Type"],
                    "iceGatheringComplete": r[f"{role}GatheringComplete"],
                    "pairConnected": r["connected"],
                }

        firefox_ok = False
        if skip_firefox:
            manifest["browsers"]["firefox"] = {"skipped": "--skip-firefox"}
        elif not Path(FIREFOX).exists():
            manifest["browsers"]["firefox"] = {"skipped": f"{FIREFOX} not installed"}
        else:
            ff_version = browser_version(FIREFOX)
            log(ff_version)
            manifest["browsers"]["firefox"] = {
                "version": ff_version,
                "package": f"firefox-esr {dpkg_version('firefox-esr')}",
                "driver": "none (Debian ships no geckodriver): page-driven ?auto=1 mode",
                "prefs": FIREFOX_PREFS,
            }
            tasks = [{"name": f"firefox-{k}", "op": "pair", "kind": k} for k in KINDS]
            tasks.append({"name": "firefox-answers-chrome-av", "op": "answer", "kind": "av",
                          "offer": chrome["av"]["offer"]})
            with tempfile.TemporaryDirectory(prefix="capture-sdp-ff-") as tmp:
                results, problem = run_firefox(server, tasks, Path(tmp), timeout=240)
            if problem:
                log("firefox problem:\n" + problem)
                manifest["browsers"]["firefox"]["problem"] = problem.split("\nfirefox log tail:")[0]
            for kind in KINDS:
                r = results.get(f"firefox-{kind}")
                if not r:
                    continue
                manifest["browsers"]["firefox"]["userAgent"] = r["userAgent"]
                write_sdp(out, f"firefox-offer-{kind}.sdp", r["offer"])
                write_sdp(out, f"firefox-answer-{kind}.sdp", r["answer"])
                for role in ("offer", "answer"):
                    manifest["fixtures"][f"firefox-{role}-{kind}.sdp"] = {
                        "browser": "firefox", "type": r[f"{role}Type"],
                        "iceGatheringComplete": r[f"{role}GatheringComplete"],
                        "pairConnected": r["connected"],
                    }
            r = results.get("firefox-answers-chrome-av")
            if r:
                write_sdp(out, "firefox-answer-to-chrome-offer-av.sdp", r["answer"])
                manifest["fixtures"]["firefox-answer-to-chrome-offer-av.sdp"] = {
                    "browser": "firefox", "type": r["answerType"],
                    "iceGatheringComplete": r["answerGatheringComplete"],
                    "answers": "chrome-offer-av.sdp",
                }
            if "firefox-av" in results:
                firefox_ok = True
                r = chrome_run(driver, server.url, {"name": "chrome-answers-firefox-av", "op": "answer",
                                                    "kind": "av", "offer": results["firefox-av"]["offer"]})
                write_sdp(out, "chrome-answer-to-firefox-offer-av.sdp", r["answer"])
                manifest["fixtures"]["chrome-answer-to-firefox-offer-av.sdp"] = {
                    "browser": "chromium", "type": r["answerType"],
                    "iceGatheringComplete": r["answerGatheringComplete"],
                    "answers": "firefox-offer-av.sdp",
                }
        manifest["firefox_captured"] = firefox_ok
    finally:
        driver.quit()
        server.close()

    (out / "capture-manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    log("wrote capture-manifest.json")


# --------------------------------------------------------------------------- negative fixtures

def _lines(data: bytes) -> list[bytes]:
    assert data.endswith(b"\r\n"), "SDP must end with CRLF"
    return data[:-2].split(b"\r\n")


def _join(lines: list[bytes]) -> bytes:
    return b"\r\n".join(lines) + b"\r\n"


FP_RE = re.compile(rb"^a=fingerprint:(\S+) ((?:[0-9A-Fa-f]{2}:)*[0-9A-Fa-f]{2})$")
# RFC 4568 section 4's example key: an obviously-public test value, not a secret.
SDES_INLINE = b"PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR"


def _weaken(line: bytes, hash_name: bytes, length: int) -> bytes:
    m = FP_RE.match(line)
    assert m, line
    return b"a=fingerprint:" + hash_name + b" " + b":".join(m.group(2).split(b":")[:length])


def derive_negatives(out: Path) -> None:
    base_name = "chrome-offer-av.sdp"
    base = (out / base_name).read_bytes()
    lines = _lines(base)
    assert any(FP_RE.match(l) for l in lines) and any(l.startswith(b"a=setup:") for l in lines)
    first_m = next(i for i, l in enumerate(lines) if l.startswith(b"m="))
    derived: dict[str, bytes] = {}

    derived["bad-no-fingerprint.sdp"] = _join([l for l in lines if not l.startswith(b"a=fingerprint:")])
    derived["bad-sha1-fingerprint.sdp"] = _join(
        [_weaken(l, b"sha-1", 20) if l.startswith(b"a=fingerprint:") else l for l in lines])
    derived["bad-md5-fingerprint.sdp"] = _join(
        [_weaken(l, b"md5", 16) if l.startswith(b"a=fingerprint:") else l for l in lines])
    derived["bad-no-setup.sdp"] = _join([l for l in lines if not l.startswith(b"a=setup:")])

    # SDES: first media section becomes RTP/SAVPF and gets an a=crypto line right after its a=mid.
    sdes = list(lines)
    sdes[first_m] = sdes[first_m].replace(b" UDP/TLS/RTP/SAVPF ", b" RTP/SAVPF ", 1)
    assert sdes[first_m] != lines[first_m], "first m= line is not UDP/TLS/RTP/SAVPF"
    mid_at = next(i for i in range(first_m + 1, len(sdes)) if sdes[i].startswith(b"a=mid:"))
    sdes.insert(mid_at + 1, b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + SDES_INLINE)
    derived["bad-sdes-crypto.sdp"] = _join(sdes)

    # A weak session-level fingerprint next to the strong media-level ones: weak anywhere is refused.
    first_fp = next(l for l in lines if l.startswith(b"a=fingerprint:"))
    mixed = list(lines)
    mixed.insert(first_m, _weaken(first_fp, b"sha-1", 20))
    derived["bad-session-level-sha1-media-sha256.sdp"] = _join(mixed)

    # Extra: an answer that keeps a=setup:actpass (only an offer may say actpass, RFC 5763 section 5).
    answer_name = "chrome-answer-av.sdp"
    answer = _lines((out / answer_name).read_bytes())
    assert any(l in (b"a=setup:active", b"a=setup:passive") for l in answer)
    derived["bad-answer-setup-actpass.sdp"] = _join(
        [b"a=setup:actpass" if l in (b"a=setup:active", b"a=setup:passive") else l for l in answer])

    for name, data in derived.items():
        (out / name).write_bytes(data)
        log(f"wrote {name} ({len(data)} bytes)")


# --------------------------------------------------------------------------- main

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="fixture directory (default: %(default)s)")
    ap.add_argument("--no-netns", action="store_true", help="do not isolate the browsers in a network namespace")
    ap.add_argument("--skip-firefox", action="store_true", help="capture Chromium only")
    ap.add_argument("--derive-only", action="store_true", help="only rebuild the negative fixtures")
    ap.add_argument("--inside-netns", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    out = args.out.resolve()

    if args.derive_only:
        derive_negatives(out)
        return
    if not args.no_netns and not args.inside_netns:
        reexec_in_netns([a for a in sys.argv[1:]])
    if args.inside_netns:
        os.environ["CAPTURE_SDP_NETNS"] = "1"
        setup_netns()
    capture(out, args.skip_firefox)
    derive_negatives(out)


if __name__ == "__main__":
    main()
