#!/usr/bin/env python3
"""Drive Debian's rtpengine 10.5 (userspace only) as an SDES SRTP<->SRTP re-encrypting relay.

    h = start(workdir, core=0)                       # pinned to one CPU, ng on 127.0.0.1
    leg = bridge(h, "call-1", "AEAD_AES_128_GCM", a_addr, b_addr)
    # A protects with leg["a_key"] and sends to leg["a_send_to"];
    # B receives from leg["b_recv_from"] and unprotects with leg["b_key"].
    delete(h, "call-1"); h.stop()

    python3 rtpengine_bridge.py --self-check         # JSON summary, exit 0 when all checks pass

Keys are master key || master salt (what pylibsrtp.Policy(key=...) takes).  SDES rule
(RFC 4568): an a=crypto key is the key the author of that SDP *sends* with.
"""
import base64, json, os, select, shutil, socket, subprocess, sys, time

SUITES = {"AEAD_AES_128_GCM": (16, 12), "AES_CM_128_HMAC_SHA1_80": (16, 14)}  # key, salt bytes
# every SDES suite rtpengine 10.5 knows; all but the chosen one get an "SDES-no-<suite>" flag
ALL_SUITES = ["AEAD_AES_256_GCM", "AEAD_AES_128_GCM", "AES_256_CM_HMAC_SHA1_80",
              "AES_256_CM_HMAC_SHA1_32", "AES_192_CM_HMAC_SHA1_80", "AES_192_CM_HMAC_SHA1_32",
              "AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32", "F8_128_HMAC_SHA1_80",
              "F8_128_HMAC_SHA1_32", "NULL_HMAC_SHA1_80", "NULL_HMAC_SHA1_32"]
HOST = "127.0.0.1"


# ---------------------------------------------------------------- bencode + ng protocol
def benc(v):
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, bytes):
        return b"%d:%s" % (len(v), v)
    if isinstance(v, (list, tuple)):
        return b"l" + b"".join(benc(x) for x in v) + b"e"
    if isinstance(v, dict):             # bencode wants keys sorted as raw bytes
        items = sorted((k.encode() if isinstance(k, str) else k, x) for k, x in v.items())
        return b"d" + b"".join(benc(k) + benc(x) for k, x in items) + b"e"
    raise TypeError(type(v))


def bdec(data, i=0):
    """Decode the value at data[i:] -> (value, next index); strings come back as str."""
    c = data[i:i + 1]
    if c == b"i":
        j = data.index(b"e", i)
        return int(data[i + 1:j]), j + 1
    if c in (b"l", b"d"):
        out, i = [], i + 1
        while data[i:i + 1] != b"e":
            x, i = bdec(data, i)
            out.append(x)
        return (dict(zip(out[::2], out[1::2])) if c == b"d" else out), i + 1
    j = data.index(b":", i)
    n = int(data[i:j])
    return data[j + 1:j + 1 + n].decode("utf-8", "replace"), j + 1 + n


def ng(port, msg, timeout=2.0, tries=3):
    """One ng request over UDP: b"COOKIE <bencoded dict>".  Retransmissions reuse the cookie,
    which rtpengine answers from its reply cache instead of running the command twice."""
    cookie = os.urandom(6).hex().encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        for _ in range(tries):
            s.sendto(cookie + b" " + benc(msg), (HOST, port))
            try:
                while True:
                    data = s.recv(65535)
                    if data.startswith(cookie + b" "):
                        return bdec(data, len(cookie) + 1)[0]
            except socket.timeout:
                continue
    raise TimeoutError("no ng reply to %r on port %d" % (msg.get("command"), port))


def _ping(port, **kw):
    try:
        return ng(port, {"command": "ping"}, **kw).get("result") == "pong"
    except (TimeoutError, OSError):
        return False


# ---------------------------------------------------------------- daemon lifecycle
class Handle:
    """A running rtpengine: .pid (read /proc/<pid>/stat, /status), .ng_port, .log_path, .stop()."""
    def __init__(self, proc, ng_port, log_path, log):
        self.proc, self.pid, self.ng_port, self.log_path, self._log = proc, proc.pid, ng_port, log_path, log

    def stop(self, timeout=5.0):
        if self.proc.poll() is None:
            self.proc.terminate()       # rtpengine exits cleanly on SIGTERM, freeing its ports
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def start(workdir, core=0, port_min=40000, port_max=40100, ng_port=22223, log_level=5):
    if not shutil.which("rtpengine"):
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "rtpengine-daemon"],
                       check=True, stdout=subprocess.DEVNULL)
    if _ping(ng_port, timeout=0.2, tries=1):
        raise RuntimeError("something already answers ng on port %d (stale rtpengine?)" % ng_port)
    os.makedirs(workdir, exist_ok=True)
    log_path = os.path.join(workdir, "rtpengine.log")
    cmd = ["taskset", "-c", str(core), "rtpengine",   # taskset execs: proc.pid is rtpengine's
           "--config-file=none",       # skip /etc/rtpengine/rtpengine.conf (kernel table 0, http...)
           "--foreground", "--log-stderr", "--log-level=%d" % log_level,
           "--table=-1",               # no kernel module: all forwarding in userspace
           "--interface=" + HOST, "--listen-ng=%s:%d" % (HOST, ng_port),
           "--port-min=%d" % port_min, "--port-max=%d" % port_max,
           "--num-threads=1",          # one media worker ("poller") thread
           "--media-num-threads=0",    # no media-playback threads
           "--delete-delay=0"]         # free a call's ports at `delete`, not 30 s later
    log = open(log_path, "ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    h = Handle(proc, ng_port, log_path, log)
    deadline = time.time() + 10
    while time.time() < deadline and proc.poll() is None:
        if _ping(ng_port, timeout=0.2, tries=1):
            return h
    h.stop()
    raise RuntimeError("rtpengine did not answer ping; see " + log_path)


# ---------------------------------------------------------------- calls
def _sdp(port, suite, keys, sess):
    """RTP/SAVP opus SDP; keys = [(tag, key||salt), ...] -> one a=crypto line each."""
    lines = ["v=0", "o=- %d %d IN IP4 %s" % (sess, sess, HOST), "s=-", "c=IN IP4 " + HOST,
             "t=0 0", "m=audio %d RTP/SAVP 96" % port, "a=rtpmap:96 opus/48000/2", "a=sendrecv"]
    lines += ["a=crypto:%d %s inline:%s" % (t, suite, base64.b64encode(k).decode()) for t, k in keys]
    return "\r\n".join(lines) + "\r\n"


def _parse(sdp):
    """rtpengine's SDP -> (media port, {tag: (suite, key||salt)})."""
    port, cryptos = None, {}
    for line in sdp.splitlines():
        if line.startswith("m=audio "):
            port = int(line.split()[1])
        elif line.startswith("a=crypto:"):
            tag, suite, params = line[9:].split()[:3]
            key = params.split("inline:")[1].split("|")[0]
            cryptos[int(tag)] = (suite, base64.b64decode(key + "=" * (-len(key) % 4)))
    return port, cryptos


def bridge(handle, call_id, suite, a_addr, b_addr):
    """Bridge leg A (a_addr) and leg B (b_addr) through rtpengine with four distinct keys.

    rtpengine 10.5 copies the offerer's a=crypto lines, keys included, into its own offer to
    the other side and copies the answerer's key into its answer (call.c __generate_crypto,
    "SRTP passthrough"); with identical keys on both legs media_socket.c forwards SRTP
    untouched.  A plain one-line offer/answer is therefore pass-through.  Instead:
      1. offer  A->B: tag 1 = ka (A sends with it), tag 2 = ka2; rtpengine offers both to B.
      2. answer B:    B accepts tag 2 -> rtpengine sends to B with ka2, decrypts A with ka.
      3. re-offer B->A: tag 2 = kb (B sends with it), tag 3 = kb2; rtpengine offers both to A.
      4. answer A:    A accepts tag 3 -> rtpengine sends to A with kb2, decrypts B with kb.
    All four keys are random here; rtpengine never generates one (ka2/kb2 reach it in SDP)."""
    klen, slen = SUITES[suite]
    ka, ka2, kb, kb2 = (os.urandom(klen + slen) for _ in range(4))
    flags = ["SDES-no-" + s for s in ALL_SUITES if s != suite]   # 10.5 has no SDES-only-*

    def step(command, frm, to, addr, keys, sess):
        msg = {"command": command, "call-id": call_id, "from-tag": frm, "flags": flags,
               "ICE": "remove", "DTLS": "off", "sdp": _sdp(addr[1], suite, keys, sess)}
        if to:
            msg["to-tag"] = to
        reply = ng(handle.ng_port, msg)
        if reply.get("result") != "ok":
            raise RuntimeError("%s (%s) failed: %r" % (command, frm, reply))
        return _parse(reply["sdp"])

    try:    # each reply is the SDP rtpengine wants delivered to the *other* party
        b_port, to_b1 = step("offer", "A", None, a_addr, [(1, ka), (2, ka2)], 1)
        a_port, to_a1 = step("answer", "A", "B", b_addr, [(2, kb)], 2)
        a_port2, to_a2 = step("offer", "B", "A", b_addr, [(2, kb), (3, kb2)], 3)
        b_port2, to_b2 = step("answer", "B", "A", a_addr, [(3, ka)], 4)
        want = {"offer to B": (to_b1, {1: (suite, ka), 2: (suite, ka2)}),
                "answer to A": (to_a1, {1: (suite, kb)}),      # (the copied, pass-through key)
                "re-offer to A": (to_a2, {2: (suite, kb), 3: (suite, kb2)}),
                "answer to B": (to_b2, {2: (suite, ka2)})}
        for what, (got, exp) in want.items():
            if got != exp:
                raise RuntimeError("unexpected a=crypto in rtpengine's %s: %r" % (what, got))
        if (a_port, b_port) != (a_port2, b_port2):
            raise RuntimeError("rtpengine moved ports on re-offer")
    except Exception:
        delete(handle, call_id)         # don't leak the call's ports
        raise
    return {"suite": suite, "payload_type": 96,
            "ssrc": None,                   # no SSRC constraint; SSRC/seq/timestamp relayed as-is
            "a_send_to": (HOST, a_port),    # A sends here (rtpengine's A-facing socket)
            "a_key": ka,                    # A protects with this
            "b_recv_from": (HOST, b_port),  # rtpengine sends to b_addr from here
            "b_key": ka2,                   # B unprotects with this
            "b_send_to": (HOST, b_port), "b_send_key": kb,      # reverse direction B -> A
            "a_recv_from": (HOST, a_port), "a_recv_key": kb2}


def delete(handle, call_id):
    return ng(handle.ng_port, {"command": "delete", "call-id": call_id})


def query(handle, call_id):
    return ng(handle.ng_port, {"command": "query", "call-id": call_id})


def rtp_in_stats(q, tag):
    """(packets, errors) rtpengine *received* on `tag`'s RTP stream (query stats are input-side)."""
    for st in q["tags"][tag]["medias"][0]["streams"]:
        if "RTP" in st["flags"]:
            return st["stats"]["packets"], st["stats"]["errors"]
    return 0, 0


def cpu_seconds(pid):                   # utime + stime of all threads
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid):
    return int(open("/proc/%d/status" % pid).read().split("VmRSS:")[1].split()[0])


# ---------------------------------------------------------------- self-check
class _Call:
    """Two loopback sockets bridged through rtpengine + pylibsrtp sessions for each direction."""
    def __init__(self, h, suite, call_id):
        import pylibsrtp as S
        prof = {"AEAD_AES_128_GCM": S.Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
                "AES_CM_128_HMAC_SHA1_80": S.Policy.SRTP_PROFILE_AES128_CM_SHA1_80}[suite]
        self.a, self.b = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2))
        for s in (self.a, self.b):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            s.bind((HOST, 0))
        self.h, self.call_id = h, call_id
        self.leg = L = bridge(h, call_id, suite, self.a.getsockname(), self.b.getsockname())
        sess = lambda k, t: S.Session(S.Policy(L[k], t, 0, prof))
        self.a_tx, self.b_rx = sess("a_key", S.Policy.SSRC_ANY_OUTBOUND), sess("b_key", S.Policy.SSRC_ANY_INBOUND)
        self.b_tx, self.a_rx = sess("b_send_key", S.Policy.SSRC_ANY_OUTBOUND), sess("a_recv_key", S.Policy.SSRC_ANY_INBOUND)

    @staticmethod
    def rtp(seq, ssrc=0x1234ABCD, payload_len=1200):   # V=2, PT 96, 20 ms timestamps
        return (bytes([0x80, 96]) + (seq & 0xFFFF).to_bytes(2, "big") + (seq * 960 & 0xFFFFFFFF)
                .to_bytes(4, "big") + ssrc.to_bytes(4, "big") + (b"%06d" % seq) * (payload_len // 6))

    def close(self):
        delete(self.h, self.call_id)
        self.a.close(), self.b.close()


def _transfer(tx, tx_sock, dst, rx, rx_sock, src, n, ssrc):
    """Send n protected packets (0.5 ms apart), receive + unprotect them; returns counters.
    payload_mismatch compares whole RTP packets, so header fields must pass unchanged too."""
    import pylibsrtp
    sent = {}
    for seq in range(n):
        sent[seq] = (_Call.rtp(seq, ssrc), tx.protect(_Call.rtp(seq, ssrc)))
        tx_sock.sendto(sent[seq][1], dst)
        time.sleep(0.0005)
    r = dict(sent=n, authenticated=0, auth_failures=0, identical_on_wire=0, payload_mismatch=0,
             wrong_source=0, first_seq=None)
    rx_sock.settimeout(1.0)
    try:
        while r["authenticated"] + r["auth_failures"] < n:
            data, frm = rx_sock.recvfrom(65535)
            seq = int.from_bytes(data[2:4], "big")
            r["first_seq"] = seq if r["first_seq"] is None else r["first_seq"]
            r["wrong_source"] += frm != src
            r["identical_on_wire"] += data == sent[seq][1]
            try:
                r["payload_mismatch"] += rx.unprotect(data) != sent[seq][0]
                r["authenticated"] += 1
            except pylibsrtp.Error:
                r["auth_failures"] += 1
    except socket.timeout:
        pass
    r["ok"] = (r["authenticated"] >= 0.95 * n and not r["identical_on_wire"]
               and not r["payload_mismatch"] and not r["wrong_source"])
    return r


def _check_suite(h, suite, n=200):
    c = _Call(h, suite, "check-%s-%d" % (suite, os.getpid()))
    try:
        L = c.leg
        res = {"a_send_to": "%s:%d" % L["a_send_to"], "b_recv_from": "%s:%d" % L["b_recv_from"],
               "A_to_B": _transfer(c.a_tx, c.a, L["a_send_to"], c.b_rx, c.b, L["b_recv_from"], n, 0x1234ABCD),
               "B_to_A": _transfer(c.b_tx, c.b, L["b_send_to"], c.a_rx, c.a, L["a_recv_from"], 20, 0x5678)}
        res["ok"] = res["A_to_B"]["ok"] and res["B_to_A"]["ok"]
        return res
    finally:
        c.close()


def _blast(h, suite, calls=12, seconds=2.0, pool_n=3000):
    """Rough A->B forwarding rate (information only): closed loop, one packet in flight per call.

    rtpengine 10.5 reads at most 50 packets per wake-up from a socket and, after 5 such wake-ups
    (net), never reads that socket again ("UDP receive queue exceeded 5 times: discarding
    packet", media_socket.c MAX_RECV_ITERS / MAX_RECV_LOOP_STRIKES).  An open-loop blast - or
    any sender that keeps a socket from draining for 50 packets - kills the call in < 0.5 s.
    Pre-protected pools are cycled: rtpengine's userspace SRTP has no replay window."""
    cs = [_Call(h, suite, "blast-%s-%d-%d" % (suite, os.getpid(), i)) for i in range(calls)]
    try:
        pools = [[c.a_tx.protect(_Call.rtp(seq)) for seq in range(pool_n)] for c in cs]
        ep, by_fd, buf = select.epoll(), {}, bytearray(2048)
        for i, c in enumerate(cs):
            c.b.setblocking(False)
            ep.register(c.b.fileno(), select.EPOLLIN)
            by_fd[c.b.fileno()] = i
        sent, recvd = [0] * calls, [0] * calls
        cpu0, t0 = cpu_seconds(h.pid), time.time()
        while time.time() < t0 + seconds:
            for i, c in enumerate(cs):
                if sent[i] == recvd[i]:
                    c.a.sendto(pools[i][sent[i] % pool_n], c.leg["a_send_to"])
                    sent[i] += 1
            events = ep.poll(0.05)
            if not events:                  # 50 ms of silence: give up on what is in flight
                recvd = list(sent)
            for fd, _ in events:
                try:
                    while True:
                        cs[by_fd[fd]].b.recv_into(buf)
                        recvd[by_fd[fd]] += 1
                except BlockingIOError:
                    pass
        dt, cpu = time.time() - t0, cpu_seconds(h.pid) - cpu0
        ep.close()
        stats = [rtp_in_stats(query(h, c.call_id), "A") for c in cs]
        fwd = sum(p for p, _ in stats)
        with open(h.log_path, errors="replace") as f:
            tripped = "UDP receive queue" in f.read()
        return {"calls": calls, "seconds": round(dt, 2), "forwarded_pps": round(fwd / dt),
                "python_sent_pps": round(sum(sent) / dt), "errors": sum(e for _, e in stats),
                "rtpengine_cpu_share": round(cpu / dt, 2),
                "rtpengine_us_per_pkt": round(cpu * 1e6 / fwd, 1) if fwd else None,
                "implied_pps_per_core": round(fwd / cpu) if cpu else None,
                "rss_kib": rss_kib(h.pid), "flood_protection_tripped": tripped}
    finally:
        for c in cs:
            c.close()


def _self_check():
    import tempfile
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) > 1:                       # keep the Python side off rtpengine's core
        os.sched_setaffinity(0, cpus[1:])
    h = start(tempfile.mkdtemp(prefix="rtpengine-selfcheck-"), core=cpus[0])
    out = {"rtpengine": subprocess.run(["rtpengine", "--version"], capture_output=True,
                                       text=True).stderr.strip(), "log": h.log_path}
    try:
        out["suites"] = {s: _check_suite(h, s) for s in SUITES}
        out["blast"] = {s: _blast(h, s) for s in SUITES}
    finally:
        h.stop()
    out["ok"] = all(r["ok"] for r in out["suites"].values())
    print(json.dumps(out, indent=1))
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    if sys.argv[1:] != ["--self-check"]:
        sys.exit(__doc__)
    sys.exit(_self_check())
