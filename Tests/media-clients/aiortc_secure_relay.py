"""Plays caller and callee of one Switchboard call with aiortc (PyPI) in one asyncio process.

Usage: aiortc_secure_relay.py BASE_URL CA_PEM CALLER_TOKEN CALLEE_TOKEN CALLEE_USER
                              [--media secure-relay|direct] [--timeout 40] [--role both|callee]
       aiortc_secure_relay.py --self-test   (fake signaling server on loopback, needs aiohttp and openssl)

Both parties open their SSE streams, the caller offers audio+video+data channel "chat", the callee answers, and
success means >= 10 decoded video and audio frames each way, "ping from caller"/"pong from callee" on the data
channel and, in secure-relay mode, each side's DTLS peer certificate matching the SDP it was given but NOT the other
party's own certificate (the peer is the server). In direct mode the peer must be the other party. Prints one JSON
line (exit 0), or one with "error" (exit 1). Only loopback is ever reached: aioice gathers 127.0.0.1 alone, no
STUN/TURN server is configured, and remote candidates off loopback are refused before aiortc sees them."""
import argparse, asyncio, codecs, http.client, ipaddress, json, re, ssl, sys, time
from urllib.parse import urlsplit

import aioice.ice
from av import VideoFrame
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError, VideoStreamTrack
from aiortc.rtcdtlstransport import certificate_digest

# aioice.ice.gather_candidates() calls this module-level function for host addresses (and skips 127.0.0.1 itself).
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
FRAMES = 10


class Failure(Exception):
    pass


def log(msg):
    print(f"[aiortc-client {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Api:
    """Bearer-token HTTPS to the server, TLS verified against CA_PEM; POSTs run http.client in a worker thread."""

    def __init__(self, base, ca):
        u = urlsplit(base)
        self.host, self.port = u.hostname, u.port or 443
        if self.host != "localhost" and not ipaddress.ip_address(self.host).is_loopback:
            raise Failure(f"BASE_URL must be on loopback, not {self.host}")
        self.prefix = u.path.rstrip("/")
        self.ctx = ssl.create_default_context(cafile=ca)

    def _post(self, path, token, body):
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.ctx, timeout=10)
        try:
            conn.request("POST", self.prefix + path, body=json.dumps(body).encode(), headers={
                "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read() or b"{}")
        finally:
            conn.close()

    async def post(self, path, token, body, expect):
        status, data = await asyncio.to_thread(self._post, path, token, body)
        if status != expect:
            raise Failure(f"POST {path} -> {status} (expected {expect}): {data}")
        return data


class EventStream:
    """GET /v1/events as text/event-stream over asyncio TLS streams; chunked or raw body; events go to a queue."""

    def __init__(self, api, token, device):
        self.api, self.token, self.device = api, token, device
        self.queue, self.task, self.writer = asyncio.Queue(), None, None

    async def open(self):
        a = self.api
        reader, self.writer = await asyncio.open_connection(a.host, a.port, ssl=a.ctx, server_hostname=a.host)
        self.writer.write((f"GET {a.prefix}/v1/events?device={self.device} HTTP/1.1\r\nHost: {a.host}:{a.port}\r\n"
                           f"Authorization: Bearer {self.token}\r\nAccept: text/event-stream\r\n"
                           "Cache-Control: no-cache\r\n\r\n").encode())
        status = (await reader.readline()).decode("latin-1").split()
        headers = {}
        while (line := (await reader.readline()).decode("latin-1").strip()):
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        if len(status) < 2 or status[1] != "200":
            raise Failure(f"SSE {self.device}: {' '.join(status)} {await reader.read(500)!r}")
        if "text/event-stream" not in headers.get("content-type", ""):
            raise Failure(f"SSE {self.device}: content-type {headers.get('content-type')}")
        self.task = asyncio.create_task(self._pump(reader, "chunked" in headers.get("transfer-encoding", "")))

    async def _body(self, reader, chunked):
        while True:
            if not chunked:
                data = await reader.read(65536)
                if not data:
                    return
                yield data
                continue
            size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                return
            yield await reader.readexactly(size)
            await reader.readexactly(2)

    async def _pump(self, reader, chunked):
        # SSE parsing per the HTML spec: lines end in CRLF, LF or CR; a blank line dispatches the event.
        decoder, buf, event, data, last_id = codecs.getincrementaldecoder("utf-8")(), "", "", [], None
        try:
            async for chunk in self._body(reader, chunked):
                buf += decoder.decode(chunk)
                while (m := re.search(r"\r\n|\r|\n", buf)) and not (m.group() == "\r" and m.end() == len(buf)):
                    line, buf = buf[:m.start()], buf[m.end():]
                    if line == "":
                        if data:
                            await self.queue.put((event or "message", "\n".join(data), last_id))
                        event, data = "", []
                        continue
                    if line.startswith(":"):
                        continue
                    field, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if field == "event":
                        event = value
                    elif field == "data":
                        data.append(value)
                    elif field == "id" and "\0" not in value:
                        last_id = value
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError) as exc:
            log(f"SSE {self.device} ended: {exc!r}")
        await self.queue.put(("<closed>", "{}", None))

    async def next(self, wanted, call_id=None):
        """Next event named in `wanted` (for call_id, if given); call.ended or a closed stream is a failure."""
        while True:
            name, data, _ = await self.queue.get()
            try:
                body = json.loads(data)
            except ValueError:
                raise Failure(f"SSE {self.device}: {name} data is not JSON: {data[:200]}")
            cid = body.get("call", {}).get("id") if isinstance(body.get("call"), dict) else None
            if name in wanted and (call_id is None or cid == call_id):
                return name, body
            if name == "<closed>" or (name == "call.ended" and call_id in (None, cid)):
                raise Failure(f"SSE {self.device}: {name} while waiting for {wanted}: {data}")

    async def close(self):
        if self.task:
            self.task.cancel()
        if self.writer:
            self.writer.close()


class TestPattern(VideoStreamTrack):
    """Small 30 fps frames with changing luminance: cheap to VP8-encode on a busy 2-core machine."""

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        frame = VideoFrame(width=160, height=120, format="yuv420p")
        for i, plane in enumerate(frame.planes):
            plane.update(bytes([(pts // 3000) % 256 if i == 0 else 128]) * plane.buffer_size)
        frame.pts, frame.time_base = pts, time_base
        return frame


class Party:
    def __init__(self, name):
        self.name = name
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # [] = none; None would mean Google STUN
        self.frames = {"audio": 0, "video": 0}
        self.message, self.remote_sdp, self.tasks = None, None, []
        self.pc.addTrack(AudioStreamTrack())
        self.pc.addTrack(TestPattern())
        self.pc.on("track", lambda track: self.tasks.append(asyncio.ensure_future(self._count(track))))

    async def _count(self, track):
        try:
            while self.frames[track.kind] < FRAMES:
                await track.recv()
                self.frames[track.kind] += 1
        except MediaStreamError:
            pass

    def local_sdp(self):
        sdp = self.pc.localDescription.sdp
        check_candidates(sdp, f"{self.name} local")
        return {"type": self.pc.localDescription.type, "sdp": sdp}

    async def set_remote(self, desc, kind):
        if not isinstance(desc, dict) or desc.get("type") != kind or not desc.get("sdp"):
            raise Failure(f"{self.name}: expected an {kind} SDP, got {str(desc)[:200]}")
        check_candidates(desc["sdp"], f"{self.name} remote")
        self.remote_sdp = desc["sdp"]
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=desc["sdp"], type=kind))

    def dtls(self):
        """Every DTLS transport still in use (one when BUNDLE was accepted) and what it negotiated."""
        pc, out = self.pc, []
        transports = {t.receiver.transport for t in pc.getTransceivers()} | ({pc.sctp.transport} if pc.sctp else set())
        for t in transports:
            local = next(f.value for f in t.getLocalParameters().fingerprints if f.algorithm == "sha-256")
            peer_cert = t._ssl.get_peer_certificate(as_cryptography=True) if t._ssl else None
            pair = t.transport._connection._nominated.get(1)
            out.append({"state": t.state, "dtlsRole": t._role, "iceRole": t.transport.role, "local": local,
                        "peer": certificate_digest(peer_cert, "sha-256") if peer_cert else None,
                        "srtpProfile": t._ssl.get_selected_srtp_profile().decode() if t._ssl else None,
                        "dtlsVersion": t._ssl.get_protocol_version_name() if t._ssl else None,
                        "selectedPair": [list(pair.local_addr), list(pair.remote_addr)] if pair else None})
        return out


def check_candidates(sdp, what):
    """Refuse any SDP candidate or connection address off loopback, so aioice never sends a packet elsewhere."""
    for line in sdp.splitlines():
        if line.startswith("a=candidate:"):
            addr = line.split()[4]
        elif line.startswith("c="):
            addr = line.split()[-1]
        else:
            continue
        ip = ipaddress.ip_address(addr) if re.fullmatch(r"[0-9a-fA-F.:]+", addr) else None
        if ip is None or not (ip.is_loopback or (line.startswith("c=") and ip.is_unspecified)):
            raise Failure(f"{what} SDP has a non-loopback address: {line}")


def sdp_fingerprints(sdp):
    return {m.upper() for m in re.findall(r"^a=fingerprint:sha-256 (\S+)", sdp, re.M | re.I)}


async def call(args, api, progress):
    caller, callee = Party("caller"), Party("callee")
    streams = [EventStream(api, args.caller_token, "caller1"), EventStream(api, args.callee_token, "callee1")]
    result, call_id, hung_up = {"media": args.media}, None, False
    try:
        for s in streams:
            await s.open()
            _, hello = await s.next({"hello"})
            if hello.get("device") != s.device:
                raise Failure(f"hello names device {hello.get('device')}, not {s.device}")
        caller_sse, callee_sse = streams
        log("both event streams open")

        # Callee: ringing, then answer with its own tracks; its data channel arrives by on("datachannel").
        async def answer():
            _, invite = await callee_sse.next({"call.invite"})
            cid = invite["call"]["id"]
            await api.post(f"/v1/calls/{cid}/ringing", args.callee_token, {"device": "callee1"}, 200)
            await callee.set_remote(invite.get("sdp"), "offer")
            await callee.pc.setLocalDescription(await callee.pc.createAnswer())
            await api.post(f"/v1/calls/{cid}/accept", args.callee_token,
                           {"device": "callee1", "sdp": callee.local_sdp()}, 200)
            log(f"callee answered {cid}")
            return cid

        @callee.pc.on("datachannel")
        def on_datachannel(channel):
            @channel.on("message")
            def on_message(msg):
                callee.message = msg
                if msg == "ping from caller":
                    channel.send("pong from callee")

        chat = caller.pc.createDataChannel("chat")
        chat.on("open", lambda: chat.send("ping from caller"))
        chat.on("message", lambda msg: setattr(caller, "message", msg))

        answering = asyncio.create_task(answer())
        await caller.pc.setLocalDescription(await caller.pc.createOffer())  # gathers every candidate: no trickle
        created = await api.post("/v1/calls", args.caller_token, {"to": args.callee_user, "device": "caller1",
                                 "sdp": caller.local_sdp(), "media": args.media}, 201)
        call_id = created["call"]["id"]
        if created["call"].get("state") == "ended":
            raise Failure(f"call created already ended: {created['call']}")
        log(f"caller created {call_id}")
        # gather() raises at once if the callee's side fails (e.g. a 409 on ringing) instead of waiting on SSE.
        invited_id, (_, accepted) = await asyncio.gather(answering, caller_sse.next({"call.accepted"}, call_id))
        if invited_id != call_id:
            raise Failure(f"callee was invited to call {invited_id}, not {call_id}")
        await caller.set_remote(accepted.get("sdp"), "answer")

        # Wait for media both ways and the data-channel round trip.
        while not (min(caller.frames.values()) >= FRAMES and min(callee.frames.values()) >= FRAMES
                   and caller.message == "pong from callee" and callee.message == "ping from caller"):
            for p in (caller, callee):
                if p.pc.connectionState in ("failed", "closed"):
                    raise Failure(f"{p.name} connection {p.pc.connectionState}")
            await asyncio.sleep(0.1)

        for p, other in ((caller, callee), (callee, caller)):
            transports, given = p.dtls(), sdp_fingerprints(p.remote_sdp)
            other_local = {t["local"] for t in other.dtls()}
            result[p.name] = {"videoFrames": p.frames["video"], "audioFrames": p.frames["audio"],
                              "message": p.message, "remoteSdpFingerprints": sorted(given), "transports": transports}
            for t in transports:
                if t["state"] != "connected" or t["peer"] not in given:
                    raise Failure(f"{p.name}: DTLS peer {t['peer']} ({t['state']}) is not the SDP's {given}")
                if args.media == "secure-relay" and t["peer"] in other_local:
                    raise Failure(f"{p.name}: DTLS peer is the other party itself, not the server")
                if args.media == "direct" and t["peer"] not in other_local:
                    raise Failure(f"{p.name}: DTLS peer {t['peer']} is not the other party ({other_local})")

        await api.post(f"/v1/calls/{call_id}/hangup", args.caller_token, {"device": "caller1"}, 200)
        hung_up = True
        try:
            _, ended = await asyncio.wait_for(callee_sse.next({"call.ended"}, call_id), 5)
            result["calleeEndReason"] = ended["call"].get("endReason")
        except asyncio.TimeoutError:
            result["calleeEndReason"] = None
        result["callId"] = call_id
        return result
    finally:
        # How far each side got (reported on a time-out): ICE/DTLS state, frames, data-channel messages.
        progress.update({p.name: {"connection": p.pc.connectionState, "ice": p.pc.iceConnectionState,
                                  "frames": p.frames, "message": p.message} for p in (caller, callee)})
        if call_id and not hung_up:  # best effort, so a failed run leaves no live call on the server
            try:
                await api.post(f"/v1/calls/{call_id}/hangup", args.caller_token, {"device": "caller1"}, 200)
            except Exception as exc:
                log(f"cleanup hangup: {exc!r}")
        for p in (caller, callee):
            for t in p.tasks:
                t.cancel()
            await p.pc.close()
        for s in streams:
            await s.close()


async def answer_only(args, api, progress):
    """--role callee: answer the first call that comes in (from a browser, say) with aiortc, print one JSON line as
    soon as its video and audio decode and its DTLS peer checks out, then stay in the call until it ends."""
    callee = Party("callee")
    stream = EventStream(api, args.callee_token, "callee1")
    try:
        await stream.open()
        await stream.next({"hello"})
        log("callee stream open")
        _, invite = await stream.next({"call.invite"})
        cid = invite["call"]["id"]
        await api.post(f"/v1/calls/{cid}/ringing", args.callee_token, {"device": "callee1"}, 200)
        await callee.set_remote(invite.get("sdp"), "offer")
        await callee.pc.setLocalDescription(await callee.pc.createAnswer())
        await api.post(f"/v1/calls/{cid}/accept", args.callee_token, {"device": "callee1", "sdp": callee.local_sdp()},
                       200)
        while min(callee.frames.values()) < FRAMES:
            if callee.pc.connectionState in ("failed", "closed"):
                raise Failure(f"callee connection {callee.pc.connectionState}")
            await asyncio.sleep(0.1)
        transports, given = callee.dtls(), sdp_fingerprints(callee.remote_sdp)
        for t in transports:
            if t["state"] != "connected" or t["peer"] not in given:
                raise Failure(f"callee: DTLS peer {t['peer']} ({t['state']}) is not the SDP's {given}")
        print(json.dumps({"answered": cid, "videoFrames": callee.frames["video"], "audioFrames": callee.frames["audio"],
                          "transports": transports}), flush=True)
        _, ended = await stream.next({"call.ended"}, cid)
        return {"callId": cid, "endReason": ended["call"].get("endReason")}
    finally:
        progress.update({"callee": {"connection": callee.pc.connectionState, "frames": callee.frames}})
        for t in callee.tasks:
            t.cancel()
        await callee.pc.close()
        await stream.close()


async def run(args):
    progress = {}
    try:
        play = answer_only if args.role == "callee" else call
        result = await asyncio.wait_for(play(args, Api(args.base_url, args.ca_pem), progress), args.timeout)
        return 0, result
    except asyncio.TimeoutError:
        return 1, {"error": f"timed out after {args.timeout} s", "media": args.media, "progress": progress}
    except Exception as exc:
        return 1, {"error": f"{type(exc).__name__}: {exc}", "media": args.media}


# ---- --self-test: a tiny pass-through fake of the routes and SSE, on loopback with a throwaway CA ----

async def self_test():
    import os, subprocess, tempfile, uuid
    from aiohttp import web
    with tempfile.TemporaryDirectory() as tmp:
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1"]
        for extra in (["-subj", "/CN=test CA", "-keyout", "ca.key", "-out", "ca.pem"],  # a CA, then a CA:FALSE leaf
                      ["-subj", "/CN=127.0.0.1", "-keyout", "leaf.key", "-out", "leaf.pem", "-CA", "ca.pem",
                       "-CAkey", "ca.key", "-addext", "basicConstraints=CA:FALSE", "-addext", "subjectAltName=IP:127.0.0.1"]):
            subprocess.run(["openssl", "req", "-x509", *ec, *extra], cwd=tmp, check=True, capture_output=True)
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(os.path.join(tmp, "leaf.pem"), os.path.join(tmp, "leaf.key"))
        users, queues, calls, seq = {"tok-a": "alice", "tok-b": "bob"}, {}, {}, [0]

        def push(user, name, data):
            for (u, _), q in queues.items():
                if u == user:
                    seq[0] += 1
                    q.put_nowait(f"id: {seq[0]}\r\nevent: {name}\r\ndata: {json.dumps(data)}\r\n\r\n")

        def user_of(req):
            if not (user := users.get(req.headers.get("Authorization", "")[7:])):
                raise web.HTTPUnauthorized()
            return user

        async def events(req):
            user, device = user_of(req), req.query.get("device", "x")
            queues[(user, device)] = q = asyncio.Queue()
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(req)  # no Content-Length: aiohttp sends it chunked
            await resp.write(f"retry: 1000\n: hi\n\nevent: hello\ndata: {json.dumps({'user': user, 'device': device})}\n\n".encode())
            while True:
                text = await q.get()
                for part in (text[:7], text[7:]):  # split writes exercise the client's line buffering
                    await resp.write(part.encode())

        async def create(req):
            body, cid = await req.json(), str(uuid.uuid4())
            calls[cid] = c = {"id": cid, "caller": user_of(req), "callee": body["to"], "state": "inviting"}
            push(c["callee"], "call.invite", {"call": c, "sdp": body.get("sdp")})
            return web.json_response({"call": c}, status=201)

        async def action(req):  # pass-through: the SDP goes unchanged to the other party, as in direct mode
            c, body = calls[req.match_info["id"]], await req.json()
            state, event, to = {"ringing": ("ringing", "call.ringing", "caller"), "accept": ("active", "call.accepted",
                                "caller"), "hangup": ("ended", "call.ended", "callee")}[req.match_info["action"]]
            c.update(state=state, **({"endReason": "hangup"} if state == "ended" else {}))
            push(c[to], event, {"call": c, **({"sdp": body["sdp"]} if "sdp" in body else {})})
            return web.json_response({"call": c})

        app = web.Application()
        app.add_routes([web.get("/v1/events", events), web.post("/v1/calls", create),
                        web.post("/v1/calls/{id}/{action}", action)])
        runner = web.AppRunner(app, shutdown_timeout=1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
        await site.start()
        base = dict(base_url=f"https://127.0.0.1:{site._server.sockets[0].getsockname()[1]}", callee_user="bob",
                    ca_pem=os.path.join(tmp, "ca.pem"), caller_token="tok-a", callee_token="tok-b", timeout=40)
        try:
            direct = await run(argparse.Namespace(**base, media="direct"))
            # Against a pass-through server, secure-relay mode must notice that the peer is the other party.
            relay = await run(argparse.Namespace(**base, media="secure-relay"))
        finally:
            await runner.cleanup()
    ok = direct[0] == 0 and relay[0] == 1 and "other party itself" in relay[1].get("error", "")
    return (0 if ok else 1), {"selfTest": "passed" if ok else "failed", "direct": direct[1], "secureRelay": relay[1]}


def main():
    if "--self-test" in sys.argv[1:]:
        code, out = asyncio.run(self_test())
    else:
        ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
        for name in ("base_url", "ca_pem", "caller_token", "callee_token", "callee_user"):
            ap.add_argument(name)
        ap.add_argument("--media", choices=["secure-relay", "direct"], default="secure-relay")
        ap.add_argument("--timeout", type=float, default=40)
        ap.add_argument("--role", choices=["both", "callee"], default="both",
                        help="callee: only answer an incoming call (CALLER_TOKEN is then ignored)")
        code, out = asyncio.run(run(ap.parse_args()))
    print(json.dumps(out), flush=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
