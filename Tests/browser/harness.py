"""Harness of the browser suite: a real `switchboard serve` on loopback, headless Chromium processes driven by
Selenium (Debian's chromium + chromium-driver), a TCP proxy that can cut the page's connections, and screenshots.

Nothing here reaches beyond loopback: Chromium's resolver maps every host name to NOTFOUND, background networking
is off, and the page only talks to the server it was loaded from (its CSP says so as well).
"""

import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BINARY = os.environ.get("SWITCHBOARD_BIN", os.path.join(ROOT, ".build", "debug", "switchboard"))
ARTIFACTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "artifacts")
CHROMIUM = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER_BIN", "/usr/bin/chromedriver")


class Server:
    """`switchboard serve` on 127.0.0.1 with an ephemeral HTTPS port, an ephemeral TURN port, its own certs dir
    (dev CA, dev certificate, dev token secret) and its own SQLite file (no test sees another's calls); the dev tokens
    it prints are what the pages sign in with."""

    def __init__(self, workdir, ring_timeout=30, extra=()):
        self.certs = os.path.join(workdir, "certs")
        os.makedirs(self.certs, exist_ok=True)
        self.log_path = os.path.join(workdir, "server.log")
        self.log = open(self.log_path, "wb")
        args = [
            BINARY, "serve", "--host", "127.0.0.1", "--port", "0", "--certs-dir", self.certs,
            "--turn-host", "127.0.0.1", "--turn-port", "0", "--turns-port", "0", "--relay-ports", "50000-50999",
            "--allow-peer", "127.0.0.0/8", "--ring-timeout", str(ring_timeout), "--rate-limit", "0",
            "--media-port", "0", *(("--log-level", os.environ["SB_LOG_LEVEL"]) if os.environ.get("SB_LOG_LEVEL") else ()),
            "--demo-users", "alice,bob,carol", "--store", "sqlite:" + os.path.join(workdir, "switchboard.sqlite"),
            *extra,
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log)
        self.tokens = {}
        self.port = None
        deadline = time.time() + 30
        while time.time() < deadline:
            line = self.process.stdout.readline().decode()
            if not line:
                raise RuntimeError("switchboard serve exited; see " + self.log_path)
            found = re.search(r"listening on https://(?:127\.0\.0\.1|localhost):(\d+)", line)
            if found:
                self.port = int(found.group(1))
            token = re.match(r"\s+(\w+)(?: \(role admin\))?: (\S+\.\S+\.\S+)$", line)
            if token:
                self.tokens[token.group(1)] = token.group(2)
            if line.strip().startswith("admin (role admin)"):
                break
        if not self.port or "alice" not in self.tokens:
            raise RuntimeError("switchboard serve did not print its port and dev tokens")
        self.ca = os.path.join(self.certs, "dev-ca.pem")
        self.tls = ssl.create_default_context(cafile=self.ca)

    @property
    def url(self):
        return "https://127.0.0.1:%d" % self.port

    def metric(self, name):
        """The value of one line of /metrics, e.g. `switchboard_media_packets_total{direction="in"}`; 0 if absent."""
        with urllib.request.urlopen(self.url + "/metrics", context=self.tls, timeout=10) as response:
            for line in response.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line[len(name) + 1:])
        return 0.0

    def api(self, method, path, user, body=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Authorization", "Bearer " + self.tokens[user])
        if data is not None:
            request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, context=self.tls, timeout=10) as response:
            return json.loads(response.read() or b"{}")

    def stop(self):
        stop_process(self.process)
        self.log.close()


def stop_process(process):
    """SIGTERM, then SIGKILL if it has not exited within 10 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


class NSSTrust:
    """A throwaway HOME whose NSS database trusts the server's dev CA, so Chromium verifies the page's certificate
    for real (no --ignore-certificate-errors)."""

    def __init__(self, workdir, ca_path):
        self.ca_path = ca_path
        self.home = os.path.join(workdir, "home")
        db = os.path.join(self.home, ".pki", "nssdb")
        os.makedirs(db, exist_ok=True)
        subprocess.run(["certutil", "-d", "sql:" + db, "-N", "--empty-password"], check=True)
        subprocess.run(
            ["certutil", "-d", "sql:" + db, "-A", "-t", "C,,", "-n", "Switchboard dev CA", "-i", ca_path], check=True)


class Browser:
    """One headless Chromium process with its own profile: an independent browser context. `flags` are more
    command-line switches (e.g. two fake cameras, a fake screen to share); `autoplay=False` keeps Chromium's own
    autoplay policy (audio waits for a gesture on the page)."""

    def __init__(self, name, workdir, trust, flags=(), autoplay=True):
        self.name = name
        self.profile = tempfile.mkdtemp(prefix="profile-%s-" % name, dir=workdir)
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            *(("--autoplay-policy=no-user-gesture-required",) if autoplay else ()),
            "--user-data-dir=" + self.profile, "--window-size=1000,1100",
            # Loopback only: every name resolves to NOTFOUND, and nothing runs in the background.
            "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", "--no-default-browser-check", "--disable-default-apps", "--disable-extensions",
            "--metrics-recording-only", "--disable-domain-reliability",
            # A tab in the background must keep its timers and stream (the two-tab test).
            "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
            "--disable-backgrounding-occluded-windows",
            *flags,
        ]:
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        env = dict(os.environ, HOME=trust.home)
        service = Service(executable_path=CHROMEDRIVER, env=env,
                          log_output=os.path.join(workdir, "chromedriver-%s.log" % name))
        self.driver = webdriver.Chrome(service=service, options=options)
        self.driver.set_page_load_timeout(20)

    def open(self, url):
        self.driver.get(url)
        self.wait(lambda d: d.execute_script("return document.body.dataset.ready === 'true'"), "page ready")

    def sign_in(self, token):
        box = self.driver.find_element(By.ID, "token-input")
        box.clear()
        # send_keys of a 200-character token is slow; set the value, then submit through the form as a user would.
        self.driver.execute_script("arguments[0].value = arguments[1];", box, token)
        self.driver.find_element(By.ID, "token-submit").click()
        self.wait_presence("online")

    def dev_sign_in(self, user):
        """Dev mode: the demo-user button (POST /dev/token) instead of a pasted token."""
        self.wait(lambda d: self.visible("demo-users"), "demo users")
        self.driver.find_element(By.CSS_SELECTOR, "#demo-user-buttons button[data-user='%s']" % user).click()
        self.wait_presence("online")

    def wait(self, condition, what, timeout=20):
        try:
            return WebDriverWait(self.driver, timeout, poll_frequency=0.1).until(condition)
        except TimeoutException:
            raise AssertionError("%s: timed out waiting for %s (state=%r reason=%r presence=%r)\nlog:\n%s" % (
                self.name, what, self.text("call-state"), self.text("call-reason"), self.attr("presence", "state"),
                self.text("log")))

    def text(self, element_id):
        try:
            return self.driver.execute_script(
                "const e = document.getElementById(arguments[0]); return e ? e.textContent : null;", element_id)
        except Exception:
            return None

    def attr(self, element_id, name):
        return self.driver.execute_script(
            "const e = document.getElementById(arguments[0]); return e ? (e.dataset[arguments[1]] || '') : null;",
            element_id, name)

    def attr_of(self, element_id, name):
        """An element's attribute (e.g. aria-pressed); None without the element or the attribute."""
        return self.driver.execute_script(
            "const e = document.getElementById(arguments[0]); return e ? e.getAttribute(arguments[1]) : null;",
            element_id, name)

    def visible(self, element_id):
        return self.driver.execute_script(
            "const e = document.getElementById(arguments[0]); return !!e && !e.hidden && e.offsetParent !== null;",
            element_id)

    def click(self, element_id):
        self.driver.find_element(By.ID, element_id).click()

    def wait_presence(self, state, timeout=20):
        self.wait(lambda d: self.attr("presence", "state") == state, "presence " + state, timeout)

    def wait_state(self, state, timeout=20):
        self.wait(lambda d: self.attr("call-state", "state") == state, "call state " + state, timeout)

    def wait_reason(self, reason, timeout=20):
        self.wait(lambda d: self.attr("call-reason", "reason") == reason, "end reason " + reason, timeout)

    def frames(self):
        try:
            return int(self.text("frames-decoded") or "0")
        except ValueError:
            return 0

    def wait_frames_rising(self, timeout=20):
        self.wait(lambda d: self.frames() > 0, "decoded frames", timeout)
        first = self.frames()
        self.wait(lambda d: self.frames() > first + 5, "decoded frames rising", timeout)
        return first, self.frames()

    def call(self, callee):
        box = self.driver.find_element(By.ID, "callee-input")
        box.clear()
        box.send_keys(callee)
        self.click("call-button")

    def screenshot(self, directory, step):
        os.makedirs(directory, exist_ok=True)
        self.driver.save_screenshot(os.path.join(directory, "%s-%s.png" % (step, self.name)))

    def console(self):
        try:
            return "\n".join(entry["message"] for entry in self.driver.get_log("browser"))
        except Exception:
            return ""

    def quit(self):
        try:
            self.driver.quit()
        except Exception:
            pass


FIREFOX = os.environ.get("FIREFOX_BIN", "/usr/bin/firefox-esr")


class FirefoxBrowser(Browser):
    """One headless Firefox ESR process (Debian's `firefox-esr`) driven through its own Marionette protocol
    (PyPI `marionette_driver`; Debian ships no geckodriver), with its own profile that trusts the dev CA and keeps
    every background service pointed at a closed loopback port. The same page operations as `Browser`."""

    def __init__(self, name, workdir, trust):
        import sys
        sys.path.insert(0, os.path.join(ROOT, "scripts", "capture-sdp"))
        from capture_sdp import FIREFOX_PREFS
        from marionette_driver.marionette import Marionette

        self.name = name
        self.profile = tempfile.mkdtemp(prefix="firefox-%s-" % name, dir=workdir)
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        prefs = dict(FIREFOX_PREFS)
        prefs.update({
            "marionette.port": port,
            "media.autoplay.default": 0,
            "media.autoplay.blocking_policy": 0,
            "media.peerconnection.ice.obfuscate_host_addresses": False,
            "dom.webnotifications.enabled": False,
        })
        with open(os.path.join(self.profile, "user.js"), "w") as f:
            for key, value in prefs.items():
                f.write("user_pref(%s, %s);\n" % (json.dumps(key), json.dumps(value)))
        subprocess.run(["certutil", "-d", "sql:" + self.profile, "-N", "--empty-password"], check=True)
        subprocess.run(["certutil", "-d", "sql:" + self.profile, "-A", "-t", "C,,", "-n", "Switchboard dev CA", "-i",
                        trust.ca_path], check=True)
        self.log = open(os.path.join(workdir, "firefox-%s.log" % name), "wb")
        env = dict(os.environ, HOME=self.profile, MOZ_HEADLESS="1")
        self.process = subprocess.Popen(
            [FIREFOX, "--headless", "--marionette", "--no-remote", "--profile", self.profile, "about:blank"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.client = Marionette(host="127.0.0.1", port=port)
        self.client.start_session(timeout=60)
        self.client.timeout.page_load = 20
        self.driver = _MarionetteAdapter(self.client)

    def screenshot(self, directory, step):
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, "%s-%s.png" % (step, self.name)), "wb") as f:
            f.write(self.client.screenshot(format="binary"))

    def console(self):
        return ""

    def quit(self):
        try:
            self.client.delete_session()
        except Exception:
            pass
        stop_process(self.process)
        self.log.close()


class _MarionetteAdapter:
    """The few WebDriver calls `Browser` makes, over a Marionette client."""

    def __init__(self, client):
        self.client = client

    def get(self, url):
        self.client.navigate(url)

    def refresh(self):
        self.client.refresh()

    def execute_script(self, script, *args):
        return self.client.execute_script(script, script_args=list(args), sandbox=None)

    def find_element(self, by, value):
        from marionette_driver.by import By as MarionetteBy
        mapping = {By.ID: MarionetteBy.ID, By.CSS_SELECTOR: MarionetteBy.CSS_SELECTOR}
        return self.client.find_element(mapping[by], value)


class CuttableProxy:
    """A TCP forwarder on loopback in front of the HTTPS port (TLS passes through untouched). `cut()` drops every
    open connection and refuses new ones until `restore()`: a network drop as the page sees it."""

    def __init__(self, target_port):
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.down = False
        self.sockets = set()
        self.lock = threading.Lock()
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while self.running:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.down:
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets.update([client, upstream])
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, source, sink):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self):
        self.down = True
        with self.lock:
            for s in self.sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self.sockets.clear()

    def restore(self):
        self.down = False

    def stop(self):
        self.running = False
        self.cut()
        self.listener.close()


def clean_artifacts():
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    os.makedirs(ARTIFACTS, exist_ok=True)
