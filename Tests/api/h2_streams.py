#!/usr/bin/env python3
"""HTTP/2 behaviour per stream, seen by a client no one here wrote: the `h2` protocol library (PyPI) over one TLS
connection with ALPN `h2`, frame by frame, so that flow control, resets and the stream limit are the client's choice.

Usage: h2_streams.py BASE_URL CA_FILE ALICE_TOKEN BOB_TOKEN OFFER_SDP_FILE SCENARIO

Scenarios (each prints one JSON object of what it saw; the Swift test asserts on it):
  tabs          10 event streams of bob (one per "tab") and every REST call on one connection: each stream gets
                hello, a heartbeat and the invite; the accept on one ends the nine others answered_elsewhere.
  slow-reader   bob's stream "slow" is never given flow-control credit, "fast" is; alice's signals fill "slow"
                until the server resets it; "fast" got every signal, and the connection carries on.
  reset         the client resets one of two streams; the server closes that one only.
  stream-limit  the server's SETTINGS_MAX_CONCURRENT_STREAMS; the stream past it is refused, the others complete.
  body-deadline a request whose body never comes is reset at the body deadline; the connection carries on.
  shutdown      three streams wait; the test stops the server: each stream gets `shutdown` and ends, then GOAWAY.
  silent        a connection that chose h2 and sends nothing is closed at the header deadline.
  mute-idle     a connection that made one request and then reads nothing (it answers no PING) is closed at the
                idle deadline.
  head          HEAD, with its error answers, gets a header and no DATA bytes.
"""
import json
import select
import socket
import ssl
import sys
import time
import urllib.parse

import h2.config
import h2.connection
import h2.errors
import h2.exceptions
import h2.events
import h2.settings

HEARTBEAT = b":"


class Stream:
    def __init__(self):
        self.status = None
        self.headers = {}
        self.body = bytearray()
        self.ended = False
        self.reset = None  # the RST_STREAM error code, when reset
        self.events = []  # SSE (name, data) pairs, in order
        self.heartbeats = 0
        self._pending = b""

    def feed(self, data):
        self.body += data
        self._pending += data
        while b"\n\n" in self._pending:
            block, self._pending = self._pending.split(b"\n\n", 1)
            name, data_lines = None, []
            for line in block.split(b"\n"):
                if line.startswith(HEARTBEAT):
                    self.heartbeats += 1
                elif line.startswith(b"event:"):
                    name = line[6:].strip().decode()
                elif line.startswith(b"data:"):
                    data_lines.append(line[5:].strip().decode())
            if name:
                self.events.append((name, json.loads("\n".join(data_lines)) if data_lines else None))

    def names(self):
        return [name for name, _ in self.events]

    @property
    def closed(self):
        return self.ended or self.reset is not None


class Connection:
    def __init__(self, base, ca, preface=True):
        url = urllib.parse.urlparse(base)
        self.authority = url.netloc
        context = ssl.create_default_context(cafile=ca)
        context.set_alpn_protocols(["h2", "http/1.1"])
        raw = socket.create_connection((url.hostname, url.port), timeout=10)
        self.sock = context.wrap_socket(raw, server_hostname=url.hostname)
        self.alpn = self.sock.selected_alpn_protocol()
        self.sock.setblocking(False)
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.h2.initiate_connection()
        self.streams = {}
        self.withheld = set()  # streams given no flow-control credit
        self.goaway = None
        self.eof = False
        self.settings = False  # the server's SETTINGS have arrived
        if preface:
            self.flush()

    def flush(self):
        data = self.h2.data_to_send()
        while data:
            try:
                sent = self.sock.send(data)
                data = data[sent:]
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                select.select([], [self.sock], [], 1)

    def request(self, method, path, token=None, body=None, end=True):
        sid = self.h2.get_next_available_stream_id()
        headers = [(":method", method), (":path", path), (":scheme", "https"), (":authority", self.authority)]
        if token:
            headers.append(("authorization", "Bearer " + token))
        if body is not None:
            headers.append(("content-type", "application/json"))
        self.streams[sid] = Stream()
        self.h2.send_headers(sid, headers, end_stream=end and body is None)
        self.flush()
        if body is not None:
            self.send_body(sid, json.dumps(body).encode())
        return sid

    def send_body(self, sid, data):
        """Sends `data` and ends the stream, as the server's flow-control window allows."""
        while data:
            window = min(self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size)
            if window <= 0:
                self.pump(1)
                continue
            chunk, data = data[:window], data[window:]
            self.h2.send_data(sid, chunk)
            self.flush()
        self.h2.end_stream(sid)
        self.flush()

    def pump(self, timeout):
        """Reads what arrives within `timeout` seconds and gives flow-control credit to every stream but the
        withheld ones (their bytes are credited to the connection only)."""
        readable, _, _ = select.select([self.sock], [], [], timeout)
        if not readable and not self.sock.pending():
            return
        while True:
            try:
                data = self.sock.recv(65536)
            except (ssl.SSLWantReadError, BlockingIOError):
                break
            if not data:
                self.eof = True
                break
            try:
                events = self.h2.receive_data(data)
            except h2.exceptions.ProtocolError:
                # After the server's GOAWAY: what follows is of no interest.
                self.eof = True
                break
            for event in events:
                self.handle(event)
            if not self.sock.pending():
                break
        self.flush()

    def handle(self, event):
        stream = self.streams.get(getattr(event, "stream_id", None))
        if isinstance(event, h2.events.ResponseReceived) and stream:
            stream.headers = dict(event.headers)
            stream.status = int(stream.headers[":status"])
        elif isinstance(event, h2.events.DataReceived):
            if stream:
                stream.feed(event.data)
            if event.stream_id in self.withheld:
                self.h2.increment_flow_control_window(event.flow_controlled_length)
            elif event.flow_controlled_length:
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded) and stream:
            stream.ended = True
        elif isinstance(event, h2.events.StreamReset) and stream:
            stream.reset = int(event.error_code)
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self.settings = True
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = int(event.error_code)

    def wait(self, condition, what, timeout=30):
        deadline = time.monotonic() + timeout
        while not condition():
            if self.eof:
                raise SystemExit(f"the connection closed while waiting for {what}")
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out waiting for {what}")
            self.pump(0.2)

    def call(self, method, path, token=None, body=None):
        sid = self.request(method, path, token, body)
        self.wait(lambda: self.streams[sid].closed, f"{method} {path}")
        stream = self.streams[sid]
        return stream.status, (json.loads(stream.body) if stream.body.startswith(b"{") else stream.body)

    def events(self, token, device):
        sid = self.request("GET", f"/v1/events?device={device}", token)
        self.wait(lambda: "hello" in self.streams[sid].names(), f"hello on {device}")
        return sid

    def metric(self, name):
        _, text = self.call("GET", "/metrics")
        for line in bytes(text).decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split(" ")[1])
        return None


def main():
    base, ca, alice, bob, offer_file, scenario = sys.argv[1:7]
    with open(offer_file) as file:
        offer = file.read()
    if scenario in ("silent", "mute-idle"):
        quiet = Connection(base, ca, preface=scenario == "mute-idle")
        if scenario == "mute-idle":
            quiet.wait(lambda: quiet.settings, "the server's SETTINGS")
            status, _ = quiet.call("GET", "/healthz")
            if status != 200:
                raise SystemExit(f"GET /healthz answered {status}")
        # From now on the client reads bytes without handling them: no SETTINGS ACK, no PING answer.
        quiet.sock.setblocking(True)
        quiet.sock.settimeout(60)
        try:
            while quiet.sock.recv(65536):
                pass
            closed = True
        except socket.timeout:
            closed = False
        except (ConnectionError, ssl.SSLError):
            closed = True
        checker = Connection(base, ca)
        checker.wait(lambda: checker.settings, "the server's SETTINGS")
        # The closed connection gives its slot back once TLS has given up waiting for its close_notify (1 s).
        checker.wait(lambda: checker.metric("switchboard_connections_open") == 1, "the slot to come back")
        print(json.dumps({
            "alpn": quiet.alpn, "closed": closed,
            "timeouts": {phase: checker.metric(f'switchboard_connection_timeouts_total{{phase="{phase}"}}')
                         for phase in ("header", "idle")},
            "connectionsOpen": checker.metric("switchboard_connections_open")}), flush=True)
        return
    connection = Connection(base, ca)
    result = {"alpn": connection.alpn}
    if connection.alpn != "h2":
        print(json.dumps(result))
        return
    connection.wait(lambda: connection.settings, "the server's SETTINGS")

    if scenario == "tabs":
        tabs = [connection.events(bob, f"tab{i}") for i in range(10)]
        status, created = connection.call("POST", "/v1/calls", alice, {"to": "bob", "device": "a1"})
        result["inviteStatus"] = status
        call_id = created["call"]["id"]
        connection.wait(
            lambda: all("call.invite" in connection.streams[t].names() for t in tabs), "the invite on every tab")
        connection.wait(lambda: all(connection.streams[t].heartbeats > 0 for t in tabs), "a heartbeat on every tab")
        result["acceptStatus"], _ = connection.call("POST", f"/v1/calls/{call_id}/accept", bob, {"device": "tab3"})

        def ended(sid):
            return [data["call"]["endReason"] for name, data in connection.streams[sid].events if name == "call.ended"]

        others = [t for t in tabs if t != tabs[3]]
        connection.wait(lambda: all(ended(t) for t in others), "call.ended on the other tabs")
        result["otherTabs"] = [ended(t)[0] for t in others]
        result["acceptingTab"] = [n for n in connection.streams[tabs[3]].names() if n.startswith("call.")]
        result["streamsOpen"] = sum(1 for t in tabs if not connection.streams[t].closed)
        result["healthz"], _ = connection.call("GET", "/healthz")

    elif scenario == "slow-reader":
        slow = connection.events(bob, "slow")
        fast = connection.events(bob, "fast")
        connection.withheld.add(slow)
        _, created = connection.call("POST", "/v1/calls", alice, {"to": "bob", "device": "a1"})
        call_id = created["call"]["id"]
        padded = offer + "a=x-padding:" + "x" * (100 * 1024) + "\r\n"
        sent = 0
        while connection.streams[slow].reset is None and sent < 2000:
            status, _ = connection.call(
                "POST", f"/v1/calls/{call_id}/signals", alice, {"device": "a1", "type": "offer", "sdp": padded})
            if status != 202:
                raise SystemExit(f"signal answered {status}")
            sent += 1
        result["sent"] = sent
        result["slowReset"] = connection.streams[slow].reset
        # The other stream is whole: every signal reached it, and one more still does.
        connection.wait(lambda: connection.streams[fast].names().count("call.signal") == sent, "every signal on fast")
        connection.call("POST", f"/v1/calls/{call_id}/signals", alice, {"device": "a1", "type": "offer", "sdp": offer})
        connection.wait(lambda: connection.streams[fast].names().count("call.signal") == sent + 1, "one more signal")
        result["fastSignals"] = connection.streams[fast].names().count("call.signal")
        result["fastOpen"] = not connection.streams[fast].closed
        result["goaway"] = connection.goaway
        # The server forgets the cut stream as its channel closes, just after the reset.
        connection.wait(lambda: connection.metric("switchboard_sse_streams_open") == 1, "the cut stream to close")
        result["streamsOpen"] = connection.metric("switchboard_sse_streams_open")
        result["slowReadersDropped"] = connection.metric("switchboard_sse_slow_readers_dropped_total")

    elif scenario == "reset":
        gone = connection.events(bob, "gone")
        kept = connection.events(bob, "kept")
        connection.h2.reset_stream(gone, error_code=h2.errors.ErrorCodes.CANCEL)
        connection.flush()
        connection.wait(lambda: connection.metric("switchboard_sse_streams_open") == 1, "the reset stream to close")
        connection.call("POST", "/v1/calls", alice, {"to": "bob", "device": "a1"})
        connection.wait(lambda: "call.invite" in connection.streams[kept].names(), "the invite on the kept stream")
        result["keptOpen"] = not connection.streams[kept].closed
        result["goaway"] = connection.goaway

    elif scenario == "stream-limit":
        limit = connection.h2.remote_settings.max_concurrent_streams
        result["maxConcurrentStreams"] = limit
        # Requests whose bodies have not come yet hold their streams open: the limit's worth of them is served.
        held = [connection.request("POST", "/v1/stream-tickets", bob, end=False) for _ in range(limit)]
        connection.send_body(held[0], b"{}")
        connection.wait(lambda: connection.streams[held[0]].closed, "the first held request")
        result["firstHeld"] = connection.streams[held[0]].status
        # One stream has ended: one more may open.
        held.append(connection.request("POST", "/v1/stream-tickets", bob, end=False))
        connection.send_body(held[-1], b"{}")
        connection.wait(lambda: connection.streams[held[-1]].closed, "the request in the freed stream")
        result["freedStream"] = connection.streams[held[-1]].status
        held.append(connection.request("POST", "/v1/stream-tickets", bob, end=False))
        result["openBeforeExtra"] = sum(1 for sid in held if not connection.streams[sid].closed)
        # The client's h2 would refuse to open more than the server allows: tell it the server allows more. The
        # server may end the connection over it (RFC 9113 §5.4: a stream error may be treated as a connection error).
        connection.h2.remote_settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = limit + 10
        connection.h2.remote_settings.acknowledge()
        extra = connection.request("GET", "/healthz")
        deadline = time.monotonic() + 30
        while not connection.eof and not connection.streams[extra].closed and time.monotonic() < deadline:
            connection.pump(0.2)
        result["pastLimit"] = {
            "status": connection.streams[extra].status, "reset": connection.streams[extra].reset,
            "goaway": connection.goaway, "closed": connection.eof}
        result["afterwards"], _ = Connection(base, ca).call("GET", "/healthz")

    elif scenario == "body-deadline":
        stalled = connection.request("POST", "/v1/stream-tickets", bob, end=False)
        connection.wait(lambda: connection.streams[stalled].closed, "the stalled request to be cut")
        result["stalled"] = {"status": connection.streams[stalled].status, "reset": connection.streams[stalled].reset}
        result["afterwards"], _ = connection.call("GET", "/healthz")
        result["bodyTimeouts"] = connection.metric('switchboard_connection_timeouts_total{phase="body"}')

    elif scenario == "shutdown":
        streams = [connection.events(bob, f"s{i}") for i in range(3)]
        connection.wait(lambda: all(connection.streams[s].closed for s in streams), "every stream to end", 60)
        connection.wait(lambda: connection.goaway is not None or connection.eof, "GOAWAY", 60)
        result["streams"] = [
            {"last": connection.streams[s].names()[-1], "ended": connection.streams[s].ended} for s in streams
        ]
        result["goaway"] = connection.goaway
    elif scenario == "head":
        result["heads"] = {}
        for path, token in (("/healthz", None), ("/v1/calls", bob), ("/v1/calls", None), ("/no-such-route", None)):
            sid = connection.request("HEAD", path, token)
            connection.wait(lambda: connection.streams[sid].closed, f"HEAD {path}")
            stream = connection.streams[sid]
            result["heads"][f"{path} {'token' if token else 'none'}"] = {
                "status": stream.status, "bytes": len(stream.body), "reset": stream.reset,
                "contentLength": stream.headers.get("content-length")}
        result["goaway"] = connection.goaway

    else:
        raise SystemExit(f"unknown scenario {scenario}")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
