#!/usr/bin/env python3
"""Secure-relay benchmark driver (run by Benchmarks/run-secure-relay.sh).

In one run, for each SRTP profile (AEAD_AES_128_GCM and AES_CM_128_HMAC_SHA1_80), 1,200-byte RTP payloads:
  * the C ceiling: libsrtp protect + unprotect of the same packets in a plain C loop (srtp_c_bench), the work a
    relay does per packet;
  * Switchboard's secure relay (`switchboard serve`, pinned to core 0): srtp_load (core 1) places calls through the
    API, completes ICE and DTLS-SRTP on both legs, blasts SRTP into the caller leg and counts what leaves on the
    callee leg (re-encrypted), flat out and then at half that rate for the added latency;
  * rtpengine (Debian's rtpengine-daemon, userspace, pinned to core 0) re-encrypting SRTP to SRTP (SDES keys on
    both legs), the same packets and the same counting;
then memory per two-leg call (CALLS calls held). Prints a table and writes JSON to Benchmarks/results/.
"""
import argparse
import base64
import http.client
import json
import os
import re
import secrets
import socket
import ssl
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Load:
    """srtp_load as a subprocess speaking its line protocol."""

    def __init__(self, args):
        self.process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        first = self.process.stdout.readline().split()
        if not first or first[0] != "PORTS":
            raise RuntimeError("srtp_load did not start: %r" % first)
        self.ports = [int(p) for p in first[1:]]

    def send(self, line):
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def expect(self, prefix):
        line = self.process.stdout.readline()
        if not line.startswith(prefix):
            raise RuntimeError("srtp_load said %r, expected %s" % (line, prefix))
        return line

    def blast(self, rate=0, count=0):
        self.send("BLAST %d %d" % (rate, count) if count else "BLAST %d" % rate)
        fields = dict(kv.split("=") for kv in self.expect("RESULT").split()[1:])
        return {k: float(v) for k, v in fields.items()}

    def quit(self):
        try:
            self.send("QUIT")
            self.process.wait(10)
        except Exception:
            self.process.kill()


# ---- Switchboard ----

class Switchboard:
    def __init__(self, binary, workdir, users, core):
        certs = os.path.join(workdir, "certs")
        args = ["taskset", "-c", str(core), binary, "serve", "--host", "127.0.0.1", "--port", "0", "--certs-dir",
                certs, "--media-port", "0", "--no-relay", "--no-web", "--rate-limit", "0", "--ring-timeout", "300",
                "--max-streams-per-user", "4", "--max-pending-per-address", "1000000", "--store", "sqlite:" + os.path.join(workdir, "switchboard.sqlite"), "--log-level", os.environ.get("SB_LEVEL", "warning"), "--demo-users", ",".join(users)]
        self.log = open(os.path.join(workdir, "switchboard.log"), "wb")
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.tokens = {}
        while True:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError("switchboard serve exited; see %s" % self.log.name)
            found = re.search(r"listening on https://127\.0\.0\.1:(\d+)", line)
            if found:
                self.port = int(found.group(1))
            token = re.match(r"\s+(\w+): (\S+\.\S+\.\S+)$", line)
            if token:
                self.tokens[token.group(1)] = token.group(2)
            if line.strip().startswith("admin (role admin)"):
                break
        self.tls = ssl.create_default_context(cafile=os.path.join(certs, "dev-ca.pem"))

    @property
    def pid(self):
        return self.process.pid

    def post(self, path, user, body):
        connection = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.tls, timeout=10)
        connection.request("POST", path, json.dumps(body), {"Authorization": "Bearer " + self.tokens[user],
                                                            "Content-Type": "application/json"})
        response = connection.getresponse()
        data = json.loads(response.read() or b"{}")
        connection.close()
        if response.status >= 300:
            raise RuntimeError("%s %s: %d %s" % (path, user, response.status, data))
        return data

    def stream(self, user, device):
        return EventStream(self, user, device)

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()


class EventStream:
    def __init__(self, server, user, device):
        self.connection = http.client.HTTPSConnection("127.0.0.1", server.port, context=server.tls, timeout=20)
        self.connection.request("GET", "/v1/events?device=" + device,
                                headers={"Authorization": "Bearer " + server.tokens[user],
                                         "Accept": "text/event-stream"})
        self.response = self.connection.getresponse()

    def next(self, wanted):
        name, data = None, []
        while True:
            line = self.response.fp.readline().decode().rstrip("\r\n")
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
            elif line == "":
                if name == wanted:
                    return json.loads("".join(data))
                if name == "call.ended":
                    raise RuntimeError("call ended: %s" % data)
                name, data = None, []

    def close(self):
        self.connection.close()


def party_sdp(ufrag, password, fingerprint, setup):
    return "".join(line + "\r\n" for line in [
        "v=0", "o=- 1 2 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE 0", "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "c=IN IP4 0.0.0.0", "a=ice-ufrag:" + ufrag, "a=ice-pwd:" + password, "a=fingerprint:sha-256 " + fingerprint,
        "a=setup:" + setup, "a=mid:0", "a=sendrecv", "a=rtcp-mux", "a=rtpmap:111 opus/48000/2"])


def server_transport(sdp):
    def attribute(name):
        found = re.search(r"^a=%s:(.*)$" % name, sdp, re.M)
        return found.group(1).strip() if found else None
    candidate = attribute("candidate").split()
    return {"ufrag": attribute("ice-ufrag"), "pwd": attribute("ice-pwd"),
            "fingerprint": attribute("fingerprint").split()[1].replace(":", ""), "ip": candidate[4],
            "port": int(candidate[5])}


def place_secure_calls(server, load, calls, fingerprint, first_user=0):
    """Each call through the API, then both legs' ICE and DTLS by srtp_load, one call after the other (so no leg
    waits past the relay's setup deadline). Returns the handshake times in ms."""
    times = []
    for index in range(calls):
        caller, callee = "u%d" % (first_user + 2 * index), "u%d" % (first_user + 2 * index + 1)
        mine = {role: (secrets.token_hex(4), secrets.token_hex(12)) for role in ("caller", "callee")}
        caller_stream = server.stream(caller, "a")
        caller_stream.next("hello")
        created = server.post("/v1/calls", caller, {
            "to": callee, "device": "a", "media": "secure-relay",
            "sdp": {"type": "offer", "sdp": party_sdp(*mine["caller"], fingerprint, "actpass")}})
        call_id = created["call"]["id"]
        callee_stream = server.stream(callee, "b")
        invite = callee_stream.next("call.invite")
        to_callee = server_transport(invite["sdp"]["sdp"])
        server.post("/v1/calls/%s/accept" % call_id, callee, {
            "device": "b", "sdp": {"type": "answer", "sdp": party_sdp(*mine["callee"], fingerprint, "active")}})
        to_caller = server_transport(caller_stream.next("call.accepted")["sdp"]["sdp"])
        caller_stream.close()
        callee_stream.close()
        for role, transport in (("caller", to_caller), ("callee", to_callee)):
            load.send("LEG %d %s %s %d %s %s %s %s" % (index, role, transport["ip"], transport["port"],
                                                     transport["ufrag"], transport["pwd"], mine[role][0],
                                                     transport["fingerprint"]))
        for _ in range(2):
            times.append(float(load.expect("OK").split()[3]))
    return times


def c_ceiling(binary, packets):
    out = subprocess.run(["taskset", "-c", "0", binary, str(packets)], capture_output=True, text=True, check=True)
    return {json.loads(line)["profile"]: json.loads(line)["packetsPerSecond"] for line in out.stdout.splitlines()}


def timed_blast(load, pid, rate, count):
    before = cpu_seconds(pid)
    result = load.blast(rate, count)
    result["cpu_s"] = cpu_seconds(pid) - before
    result["offered"] = rate
    return result


def measure(load, pid, packets, capacity_rate, flat=True):
    """flat: flat out (saturation, with the loss the kernel saw); capacity: a fixed moderate rate, from which packets
    per CPU-second (the rate one fully used core would forward); paced: half of saturation, for the added latency."""
    out = {}
    if flat:
        out["flat"] = timed_blast(load, pid, 0, packets)
    count = min(packets, int(capacity_rate * 3))
    out["capacity"] = timed_blast(load, pid, capacity_rate, count)
    capacity = out["capacity"]["received"] / max(out["capacity"]["cpu_s"], 1e-3)
    out["per_core"] = capacity
    saturation = out["flat"]["rate"] if flat else capacity
    half = max(500, int(saturation * 0.5))
    out["paced"] = timed_blast(load, pid, half, min(packets, int(half * 3)))
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--switchboard", required=True)
    parser.add_argument("--load", required=True)
    parser.add_argument("--ceiling", required=True)
    parser.add_argument("--packets", type=int, default=200000)
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--capacity-rate", type=int, default=20000)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--results", required=True)
    parser.add_argument("--no-rtpengine", action="store_true")
    args = parser.parse_args()

    key = os.path.join(args.workdir, "client.key")
    cert = os.path.join(args.workdir, "client.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "1", "-subj", "/CN=load", "-keyout", key, "-out", cert], check=True, capture_output=True)
    fingerprint = subprocess.run(["openssl", "x509", "-in", cert, "-noout", "-fingerprint", "-sha256"],
                                 capture_output=True, text=True, check=True).stdout.strip().split("=", 1)[1]

    profiles = {"gcm": "SRTP_AEAD_AES_128_GCM", "cm": "SRTP_AES128_CM_SHA1_80"}
    results = {"packets": args.packets, "calls": args.calls, "profiles": {}}
    ceiling = c_ceiling(args.ceiling, min(args.packets * 2, 1000000))

    users = ["u%d" % i for i in range(2 * max(args.calls, 1) + 2 * len(profiles))]
    server = Switchboard(args.switchboard, args.workdir, users, core=0)
    try:
        time.sleep(0.5)
        idle = rss_kib(server.pid)
        first_user = 0
        for short, profile in profiles.items():
            calls = args.calls if short == "gcm" else 1
            load = Load(["taskset", "-c", "1", args.load, "dtls", cert, key, short, str(args.packets), "0",
                         str(calls)])
            try:
                times = place_secure_calls(server, load, calls, fingerprint, first_user)
                first_user += 2 * calls
                entry = {"ceiling": ceiling.get(profile),
                         "switchboard": measure(load, server.pid, args.packets, args.capacity_rate),
                         "handshake_ms_median": sorted(times)[len(times) // 2]}
                if short == "gcm":
                    entry["switchboard_rss_per_call_kib"] = (rss_kib(server.pid) - idle) / calls
                results["profiles"][profile] = entry
            finally:
                load.quit()
    finally:
        server.stop()

    if not args.no_rtpengine:
        import rtpengine_bridge
        run_rtpengine(args, results, profiles, rtpengine_bridge)
    print_table(results)
    os.makedirs(args.results, exist_ok=True)
    path = os.path.join(args.results, "secure-relay-%s.json" % time.strftime("%Y%m%d-%H%M%S"))
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
    print("results: " + path)


def run_rtpengine(args, results, profiles, bridge):
    handle = bridge.start(args.workdir, core=0, port_min=30000, port_max=30000 + 8 * max(args.calls, 8) + 100)
    try:
        time.sleep(0.5)
        idle = rss_kib(handle.pid)
        suites = {"gcm": "AEAD_AES_128_GCM", "cm": "AES_CM_128_HMAC_SHA1_80"}
        for short, profile in profiles.items():
            load = Load(["taskset", "-c", "1", args.load, "sdes", short, str(args.packets), "0"])
            try:
                legs = bridge.bridge(handle, "bench-" + short, suites[short], ("127.0.0.1", load.ports[0]),
                                     ("127.0.0.1", load.ports[1]))
                load.send("SDES %s %d %s" % (legs["a_send_to"][0], legs["a_send_to"][1],
                                             base64.b64encode(legs["a_key"]).decode()))
                load.expect("OK")
                # No flat-out run: rtpengine stops reading a stream that arrives faster than it reads ("UDP receive
                # queue exceeded"), so its saturation is the rate one fully used core forwards (per_core).
                results["profiles"][profile]["rtpengine"] = measure(
                    load, handle.pid, args.packets, args.capacity_rate, flat=False)
                bridge.delete(handle, "bench-" + short)
            finally:
                load.quit()
        # Memory per call: CALLS bridged calls held (SDES: rtpengine keeps no DTLS state for them).
        for index in range(args.calls):
            bridge.bridge(handle, "mem-%d" % index, suites["gcm"], ("127.0.0.1", 20000 + 2 * index),
                          ("127.0.0.1", 20001 + 2 * index))
        results["rtpengine_rss_per_call_kib"] = (rss_kib(handle.pid) - idle) / max(args.calls, 1)
        for index in range(args.calls):
            bridge.delete(handle, "mem-%d" % index)
    finally:
        handle.stop()


def print_table(results):
    def num(value):
        return "n/a" if value is None else "{:,.0f}".format(value)

    def ratio(a, b):
        return "%.2f×" % (a / b) if a and b else "n/a"

    print()
    print("| metric | Switchboard | rtpengine | C ceiling | Switchboard/C | Switchboard/rtpengine |")
    print("|---|---|---|---|---|---|")
    for profile, entry in results["profiles"].items():
        sb, rt, c = entry["switchboard"], entry.get("rtpengine"), entry["ceiling"]
        print("| %s forwarded flat out, packets/s (loss) | %s (%.2f %%) | n/a (see below) | %s | %s | |" % (
            profile, num(sb["flat"]["rate"]), sb["flat"]["loss_pct"], num(c), ratio(sb["flat"]["rate"], c)))
        print("| %s packets/s per fully used core (at %s offered) | %s | %s | %s | %s | %s |" % (
            profile, num(sb["capacity"]["offered"]), num(sb["per_core"]), num(rt["per_core"]) if rt else "n/a",
            num(c), ratio(sb["per_core"], c), ratio(sb["per_core"], rt["per_core"] if rt else None)))
        for key in ("p50_us", "p99_us"):
            print("| %s added latency %s at half of saturation (offered, loss) | %.0f µs (%s/s, %.2f %%) | %s | | | %s |"
                  % (profile, key[:3], sb["paced"][key], num(sb["paced"]["offered"]), sb["paced"]["loss_pct"],
                     "%.0f µs (%s/s, %.2f %%)" % (rt["paced"][key], num(rt["paced"]["offered"]),
                                                   rt["paced"]["loss_pct"]) if rt else "n/a",
                     ratio(sb["paced"][key], rt["paced"][key] if rt else None)))
        if "switchboard_rss_per_call_kib" in entry:
            print("| memory per two-leg call (%d held) | %.1f KiB | %s | | | |" % (
                results["calls"], entry["switchboard_rss_per_call_kib"],
                "%.1f KiB (SDES, no DTLS)" % results["rtpengine_rss_per_call_kib"]
                if "rtpengine_rss_per_call_kib" in results else "n/a"))
        print("| %s ICE + DTLS per leg, median (load tool) | %.1f ms | | | | |" % (profile, entry["handshake_ms_median"]))


if __name__ == "__main__":
    main()
