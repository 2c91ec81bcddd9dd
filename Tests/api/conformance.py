"""The OpenAPI document against a live `switchboard serve`: the document is valid OpenAPI 3.1, the server serves it,
every route the document names is driven through its success and its error statuses, every response is checked
against the document (a declared status, the declared content type, the schema), and every operation's success
status must have been seen. Then schemathesis fuzzes every operation but the never-ending event stream for a
bounded time: no 5xx, every response conforming.

Usage: conformance.py SWITCHBOARD_BINARY [--smoke]
"""

import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request

import yaml
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate as validate_spec
from referencing import Registry
from referencing.jsonschema import DRAFT202012

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SPEC_PATH = os.path.join(ROOT, "docs", "openapi.yaml")


def fail(message):
    print("api conformance: FAIL: " + message, file=sys.stderr)
    sys.exit(1)


class Server:
    """A `switchboard serve` on free loopback ports, its dev CA and the dev tokens it prints."""

    def __init__(self, binary):
        self.dir = tempfile.mkdtemp(prefix="switchboard-api-")
        self.process = subprocess.Popen(
            [binary, "serve", "--host", "127.0.0.1", "--port", "0", "--store", "memory", "--certs-dir",
             os.path.join(self.dir, "certs"), "--rate-limit", "0", "--unauthenticated-rate-limit", "0",
             "--turn-port", "0", "--turn-tcp-port", "0", "--no-turns", "--media-port", "0",
             "--demo-users", "alice,bob,carol", "--log-level", "warning"],
            stdout=subprocess.PIPE, text=True, start_new_session=True)
        self.tokens = {}
        for line in self.process.stdout:
            match = re.search(r"listening on https://127\.0\.0\.1:(\d+)", line)
            if match:
                self.port = int(match.group(1))
            match = re.match(r"\s+(\w+)(?: \(role admin\))?: (\S+\.\S+\.\S+)$", line)
            if match:
                self.tokens[match.group(1)] = match.group(2)
            if "admin" in self.tokens:
                break
        if not hasattr(self, "port") or "alice" not in self.tokens:
            fail("switchboard serve did not start")
        self.ca = os.path.join(self.dir, "certs", "dev-ca.pem")
        self.context = ssl.create_default_context(cafile=self.ca)
        self.base = "https://127.0.0.1:%d" % self.port

    def stop(self):
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)

    def request(self, method, path, token=None, body=None, raw=None, headers=None):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if token:
            request.add_header("Authorization", "Bearer " + token)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=20) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read()


class Document:
    """The OpenAPI document: operations by method and path template, and a validator per response."""

    def __init__(self, text):
        self.spec = yaml.safe_load(text)
        validate_spec(self.spec)
        resource = DRAFT202012.create_resource(self.spec)
        self.registry = Registry().with_resource("urn:switchboard", resource)
        self.patterns = []
        for template in self.spec["paths"]:
            regex = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
            self.patterns.append((re.compile(regex), template))
        self.seen = set()

    def resolve(self, node):
        while isinstance(node, dict) and "$ref" in node:
            node = self.registry.resolver(base_uri="urn:switchboard").lookup(node["$ref"]).contents
        return node

    @staticmethod
    def absolute(schema):
        """`schema` with its `#/…` references made absolute, so the validator resolves them in the document."""
        if isinstance(schema, dict):
            return {k: ("urn:switchboard" + v if k == "$ref" and v.startswith("#") else Document.absolute(v))
                    for k, v in schema.items()}
        if isinstance(schema, list):
            return [Document.absolute(v) for v in schema]
        return schema

    def check(self, method, path, status, headers, body):
        template = next((t for regex, t in self.patterns if regex.match(path.split("?")[0])), None)
        where = "%s %s -> %d" % (method, path, status)
        if template is None:
            fail(where + ": the path is not in the document")
        operation = self.spec["paths"][template].get(method.lower())
        if operation is None:
            fail(where + ": the method is not in the document")
        responses = self.resolve(operation["responses"])
        response = responses.get(str(status))
        if response is None:
            fail(where + ": status not declared (declared: %s)" % ", ".join(sorted(responses)))
        self.seen.add((method.upper(), template, str(status)))
        response = self.resolve(response)
        content = response.get("content")
        if not content or method.upper() == "HEAD":
            return
        media_type = (headers.get("Content-Type") or "").split(";")[0].strip()
        if media_type not in content:
            fail(where + ": content type %r not declared (%s)" % (media_type, ", ".join(content)))
        schema = content[media_type].get("schema", {})
        if media_type != "application/json":
            return
        try:
            instance = json.loads(body)
        except ValueError:
            fail(where + ": the body is not JSON")
        validator = OAS31Validator(self.absolute(schema), registry=self.registry)
        errors = sorted(validator.iter_errors(instance), key=lambda e: e.path)
        if errors:
            fail(where + ": the body does not match the schema: %s (body %s)" % (errors[0].message, body[:300]))

    def success_statuses(self):
        for template, item in self.spec["paths"].items():
            for method, operation in item.items():
                if method in ("get", "post", "head"):
                    codes = [c for c in self.resolve(operation["responses"]) if c.startswith("2")]
                    yield method.upper(), template, codes[0]


def drive(server, document):
    """Every operation, through its success and its main error statuses."""

    def call(method, path, token=None, body=None, raw=None, expect=None, headers=None):
        status, response_headers, payload = server.request(method, path, token, body, raw, headers)
        document.check(method, path, status, response_headers, payload)
        if expect is not None and status != expect:
            fail("%s %s: %d, expected %d (%s)" % (method, path, status, expect, payload[:200]))
        return json.loads(payload) if payload and payload[:1] == b"{" else None

    alice, bob, carol, admin = (server.tokens[u] for u in ("alice", "bob", "carol", "admin"))
    call("GET", "/healthz", expect=200)
    call("GET", "/metrics", expect=200)
    status, headers, text = server.request("GET", "/openapi.yaml")
    document.check("GET", "/openapi.yaml", status, headers, text)
    if yaml.safe_load(text) != document.spec:
        fail("GET /openapi.yaml is not docs/openapi.yaml")
    call("GET", "/client-config", expect=200)
    call("POST", "/dev/token", body={"user": "alice"}, expect=404)
    call("POST", "/v1/stream-tickets", alice, {"device": "a1"}, expect=201)
    call("POST", "/v1/stream-tickets", None, {}, expect=401)
    call("POST", "/v1/stream-tickets", alice, raw=b"[1", expect=400)
    call("POST", "/v1/stream-tickets", alice, raw=b"{" + b" " * 70000 + b"}", expect=413)
    call("HEAD", "/v1/events?device=a1", alice, expect=200)
    call("HEAD", "/v1/events", None, expect=401)
    call("GET", "/v1/events?scope=all", alice, expect=403)
    call("GET", "/v1/events?scope=some", alice, expect=400)
    call("GET", "/v1/events", "not.a.token", expect=401)
    # A stream: its headers, and its first event, then the client goes away.
    request = urllib.request.Request(server.base + "/v1/events?device=a2")
    request.add_header("Authorization", "Bearer " + alice)
    with urllib.request.urlopen(request, context=server.context, timeout=20) as response:
        document.check("GET", "/v1/events", response.status, response.headers, b"")
        first = b""
        while b"event: hello" not in first:
            first += response.readline()

    invited = call("POST", "/v1/calls", alice, {"to": "bob", "device": "a1"}, expect=201)["call"]
    call("POST", "/v1/calls", alice, {"to": "bob", "extra": 1}, expect=400)
    call("POST", "/v1/calls", alice, {"to": "bob", "sdp": {"type": "offer", "sdp": "v=0\r\n"}}, expect=400)
    call("POST", "/v1/calls", alice, {"to": "bob", "media": "secure-relay"}, expect=400)
    call("GET", "/v1/calls", alice, expect=200)
    call("GET", "/v1/calls?state=ringing,active&limit=5", admin, expect=200)
    call("GET", "/v1/calls?state=nope", alice, expect=400)
    call("GET", "/v1/calls?limit=0", alice, expect=400)
    call("GET", "/v1/calls?before=bad", alice, expect=400)
    call("GET", "/v1/calls/" + invited["id"], alice, expect=200)
    call("GET", "/v1/calls/" + invited["id"], carol, expect=404)
    call("GET", "/v1/calls/bad*id", alice, expect=404)
    call("POST", "/v1/calls/%s/ringing" % invited["id"], bob, {"device": "b1"}, expect=200)
    call("POST", "/v1/calls/%s/ringing" % invited["id"], alice, {"device": "a1"}, expect=403)
    call("POST", "/v1/calls/%s/accept" % invited["id"], bob, {"device": "b1"}, expect=200)
    call("POST", "/v1/calls/%s/accept" % invited["id"], bob, {"device": "b1"}, expect=409)
    candidate = {"candidate": "candidate:1 1 udp 2122260223 192.0.2.10 54400 typ host", "sdpMid": "0"}
    call("POST", "/v1/calls/%s/signals" % invited["id"], alice,
         {"device": "a1", "type": "candidate", "candidate": candidate}, expect=202)
    call("POST", "/v1/calls/%s/signals" % invited["id"], alice, {"device": "a1", "type": "nope"}, expect=400)
    call("POST", "/v1/calls/nosuchcall/signals", alice, {"device": "a1", "type": "end-of-candidates"}, expect=404)
    call("GET", "/v1/turn-credentials", alice, expect=200)
    call("GET", "/v1/turn-credentials?call=" + invited["id"], alice, expect=200)
    call("GET", "/v1/turn-credentials?call=nosuchcall", alice, expect=404)
    call("POST", "/v1/calls/%s/hangup" % invited["id"], alice, {"device": "a1"}, expect=200)
    call("GET", "/v1/turn-credentials?call=" + invited["id"], alice, expect=409)
    declined = call("POST", "/v1/calls", carol, {"to": "bob", "device": "c1"}, expect=201)["call"]
    call("POST", "/v1/calls/%s/decline" % declined["id"], bob, {"device": "b1"}, expect=200)
    call("POST", "/v1/calls/%s/decline" % declined["id"], bob, {"device": "b1"}, expect=409)
    call("GET", "/v1/relay/allocations", admin, expect=200)
    call("GET", "/v1/relay/allocations", alice, expect=403)

    missing = [(m, t, c) for m, t, c in document.success_statuses() if (m, t, c) not in document.seen]
    # /dev/token exists only with --dev-login; its 201 is covered by the web client's tests.
    missing = [entry for entry in missing if entry[1] != "/dev/token"]
    if missing:
        fail("success statuses never seen: %s" % missing)
    print("api conformance: %d (operation, status) pairs checked against the document" % len(document.seen))


def fuzz(server, smoke):
    """schemathesis against the live server, as alice, for a bounded time."""
    examples, seconds = ("5", "30") if smoke else ("30", "120")
    command = [
        # The `st` entry point, through this interpreter: pip's script folder may not be on PATH.
        sys.executable, "-c", "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())",
        "run", SPEC_PATH, "--url", server.base, "--tls-verify", server.ca,
        "-H", "Authorization: Bearer " + server.tokens["alice"],
        "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
        "response_schema_conformance",
        "--exclude-path", "/v1/events", "--max-examples", examples, "--max-time", seconds,
        "--request-timeout", "10", "--seed", "1", "--workers", "2", "--warnings", "off",
    ]
    print("api conformance: schemathesis, %s examples per operation, at most %s s" % (examples, seconds))
    # In the server's scratch folder: schemathesis keeps a cache where it runs.
    result = subprocess.run(command, cwd=server.dir)
    if result.returncode != 0:
        fail("schemathesis found responses that break the document (exit %d)" % result.returncode)


def main():
    if len(sys.argv) < 2:
        fail(__doc__)
    smoke = "--smoke" in sys.argv
    document = Document(open(SPEC_PATH).read())
    server = Server(sys.argv[1])
    try:
        drive(server, document)
        fuzz(server, smoke)
    finally:
        server.stop()
    print("api conformance: ok")


if __name__ == "__main__":
    main()
