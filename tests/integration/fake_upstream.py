"""A fake upstream registry for the pull-through tests: in-memory, threaded, HTTP/1.1, with faults.

It serves the read side of the distribution spec (/v2/, manifests and blobs by GET and HEAD,
tags/list) from dicts the test fills, records every request it receives (method, path, query,
headers) in a thread-safe log, and can be told to misbehave:

  require_bearer()      401 + `WWW-Authenticate: Bearer realm=.../token,service=fake,scope=...`
                        and a /token endpoint that counts its requests per scope
  require_basic(u, p)   401 + `WWW-Authenticate: Basic realm="fake"` unless the credentials match
  reset_blob(d, n)      send n bytes of blob d, then reset the connection (RST)
  corrupt_blob(d)       serve blob d with one byte flipped (full length: looks complete)
  corrupt_manifest(..)  serve a manifest whose bytes do not match its digest
  fail(status, times)   answer `times` matching requests with `status` (500, 429 + Retry-After...)
  manifest_delay        seconds to wait before answering a manifest request
  drip_rate             blob bodies at most this many bytes per second
  ranges                Range support on blobs (206); False: Range is ignored, 200 with everything
  redirect_blobs_to(f)  blob GETs answer 307 to the same blob on another FakeUpstream
  stop()                closes the listener: the address refuses connections from then on

Start it with FakeUpstream().start() (port 0 on 127.0.0.1, or host="127.0.0.2" for a second
"host"); stop() ends it. Loopback only.
"""

import base64
import hashlib
import json
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

MANIFEST_TYPES_DEFAULT = "application/vnd.oci.image.manifest.v1+json"

_ROUTE = re.compile(r"^/v2/(?P<name>.+)/(?P<kind>manifests|blobs)/(?P<ref>[^/]+)$")
_TAGS = re.compile(r"^/v2/(?P<name>.+)/tags/list$")
_REDIRECTED = re.compile(r"^/cdn/(?P<digest>sha256:[0-9a-f]{64})$")


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class LoggedRequest:
    method: str
    path: str           # without the query
    query: dict         # name -> first value
    headers: dict       # lower-cased name -> value
    time: float

    @property
    def kind(self) -> str:
        """"manifests", "blobs", "tags", "token", "base", "cdn" or "other"."""
        if self.path == "/token":
            return "token"
        if self.path in ("/v2", "/v2/"):
            return "base"
        if _REDIRECTED.match(self.path):
            return "cdn"
        if _TAGS.match(self.path):
            return "tags"
        m = _ROUTE.match(self.path)
        return m.group("kind") if m else "other"

    @property
    def name(self):
        m = _ROUTE.match(self.path) or _TAGS.match(self.path)
        return m.group("name") if m else None

    @property
    def ref(self):
        m = _ROUTE.match(self.path)
        if m:
            return m.group("ref")
        m = _REDIRECTED.match(self.path)
        return m.group("digest") if m else None


@dataclass
class _Fault:
    status: int
    times: int                  # remaining; -1 forever
    method: str = None          # None: any
    path_re: re.Pattern = None  # None: any /v2/ API path (not /v2/ itself, not /token)
    retry_after: str = None


@dataclass
class _BlobFault:
    kind: str        # "reset" or "corrupt"
    times: int       # remaining; -1 forever
    after: int = 0   # bytes sent before the reset


class FakeUpstream:
    """The fake registry. Every public method is thread-safe (one lock, `_lock`)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, service: str = "fake"):
        assert host.startswith("127."), "loopback only"
        self.host_ip = host
        self._want_port = port
        self.service = service
        self._lock = threading.Lock()
        # Content (guarded by _lock).
        self.blobs = {}        # digest -> bytes
        self.manifests = {}    # digest -> (media_type, bytes)
        self.tags = {}         # repo -> {tag: digest}
        # Behaviour (guarded by _lock; plain attributes may be set directly by tests).
        self.drip_rate = None  # bytes per second for blob bodies, None: as fast as possible
        self.ranges = True
        self.manifest_delay = 0.0  # seconds before answering a manifest GET or HEAD
        self.bearer = False
        self.basic = None      # (user, password) or None
        self.redirect_target = None
        self._faults = []
        self._blob_faults = {}      # digest -> [_BlobFault]
        self._manifest_faults = {}  # (repo, ref) -> remaining count
        self._tokens = {}           # token -> scope
        self._token_requests = {}   # scope -> count
        self._log = []
        self._conns = set()         # open client sockets, closed by stop()
        self._stopping = threading.Event()
        self._server = None
        self._thread = None
        self.port = None

    # -- lifecycle --------------------------------------------------------------------------

    def start(self):
        handler = _make_handler(self)
        self._server = _Server((self.host_ip, self._want_port), handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._stopping.clear()
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stops listening (later connections are refused) and aborts bodies being sent."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
            self._server = None
        # Kept-alive connections would otherwise go on being served.
        with self._lock:
            conns, self._conns = list(self._conns), set()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def restart(self):
        """Listens again on the same port (the content and the log are kept)."""
        self._want_port = self.port
        return self.start()

    @property
    def url(self) -> str:
        return f"http://{self.host_ip}:{self.port}"

    @property
    def netloc(self) -> str:
        return f"{self.host_ip}:{self.port}"

    # -- content ----------------------------------------------------------------------------

    def add_blob(self, data: bytes) -> str:
        d = _digest(data)
        with self._lock:
            self.blobs[d] = data
        return d

    def add_manifest(self, repo: str, body: bytes, media_type: str = MANIFEST_TYPES_DEFAULT,
                     tag: str = None, blobs=()) -> str:
        """Stores a manifest (and the blobs it needs); tags it when `tag` is given."""
        d = _digest(body)
        with self._lock:
            self.manifests[d] = (media_type, body)
            for b in blobs:
                self.blobs[_digest(b)] = b
            self.tags.setdefault(repo, {})
            if tag is not None:
                self.tags[repo][tag] = d
        return d

    def add_image(self, repo: str, tag: str, m) -> str:
        """Stores a conftest.Manifest `m` with its blobs under repo:tag."""
        return self.add_manifest(repo, m.body, m.media_type, tag, m.blobs.values())

    def set_tag(self, repo: str, tag: str, digest: str):
        with self._lock:
            self.tags.setdefault(repo, {})[tag] = digest

    def remove_blob(self, digest: str):
        with self._lock:
            self.blobs.pop(digest, None)

    # -- faults -----------------------------------------------------------------------------

    def fail(self, status: int, times: int = 1, method: str = None, path: str = None,
             retry_after: str = None):
        """Answers the next `times` matching API requests (-1: all) with `status` and an
        error body. `path` is a regular expression searched in the request path."""
        with self._lock:
            self._faults.append(_Fault(status, times, method,
                                       re.compile(path) if path else None, retry_after))

    def clear_faults(self):
        with self._lock:
            self._faults.clear()
            self._blob_faults.clear()
            self._manifest_faults.clear()

    def reset_blob(self, digest: str, after: int, times: int = 1):
        """The next `times` GETs of `digest` send `after` body bytes, then an RST."""
        with self._lock:
            self._blob_faults.setdefault(digest, []).append(_BlobFault("reset", times, after))

    def corrupt_blob(self, digest: str, times: int = 1):
        """The next `times` GETs of `digest` send the full length with one byte flipped."""
        with self._lock:
            self._blob_faults.setdefault(digest, []).append(_BlobFault("corrupt", times))

    def corrupt_manifest(self, repo: str, ref: str, times: int = 1):
        """The next `times` GETs of repo's manifest `ref` send altered bytes (same length,
        same Docker-Content-Digest header)."""
        with self._lock:
            self._manifest_faults[(repo, ref)] = times

    def require_bearer(self):
        self.bearer = True

    def require_basic(self, user: str, password: str):
        self.basic = (user, password)

    def redirect_blobs_to(self, other: "FakeUpstream"):
        """Blob GETs answer 307 to `other`'s /cdn/<digest>; `other` must hold the blob."""
        self.redirect_target = other

    # -- the log ----------------------------------------------------------------------------

    def log(self):
        with self._lock:
            return list(self._log)

    def requests(self, method=None, kind=None, ref=None, name=None):
        return [r for r in self.log()
                if (method is None or r.method == method) and (kind is None or r.kind == kind)
                and (ref is None or r.ref == ref) and (name is None or r.name == name)]

    def count(self, method=None, kind=None, ref=None, name=None) -> int:
        return len(self.requests(method, kind, ref, name))

    def token_requests(self, scope: str = None) -> int:
        with self._lock:
            if scope is None:
                return sum(self._token_requests.values())
            return self._token_requests.get(scope, 0)

    def clear_log(self):
        with self._lock:
            self._log.clear()

    # -- internals used by the handler ------------------------------------------------------

    def _record(self, method, path, query, headers):
        entry = LoggedRequest(method, path, query, headers, time.monotonic())
        with self._lock:
            self._log.append(entry)
        return entry

    def _take_fault(self, method, path):
        with self._lock:
            for f in self._faults:
                if f.times == 0:
                    continue
                if f.method is not None and f.method != method:
                    continue
                if f.path_re is not None and not f.path_re.search(path):
                    continue
                if f.times > 0:
                    f.times -= 1
                return f
        return None

    def _take_blob_fault(self, digest):
        with self._lock:
            for f in self._blob_faults.get(digest, []):
                if f.times == 0:
                    continue
                if f.times > 0:
                    f.times -= 1
                return _BlobFault(f.kind, 1, f.after)
        return None

    def _take_manifest_fault(self, repo, ref):
        with self._lock:
            n = self._manifest_faults.get((repo, ref), 0)
            if n == 0:
                return False
            if n > 0:
                self._manifest_faults[(repo, ref)] = n - 1
            return True

    def _issue_token(self, scope):
        with self._lock:
            self._token_requests[scope] = self._token_requests.get(scope, 0) + 1
            token = f"tok{len(self._tokens)}-{hashlib.sha1(scope.encode()).hexdigest()[:8]}"
            self._tokens[token] = scope
            return token

    def _token_scope(self, token):
        with self._lock:
            return self._tokens.get(token)


# ---------------------------------------------------------------------------------------------
# The request handler
# ---------------------------------------------------------------------------------------------

class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default 5 drops SYNs of a burst: 1 s client stalls
    daemon_threads = True


def _make_handler(fake: FakeUpstream):
    class Handler(_Handler):
        upstream = fake
    return Handler


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream: FakeUpstream = None
    timeout = 30  # an idle keep-alive connection is dropped after this

    def setup(self):
        super().setup()
        with self.upstream._lock:
            self.upstream._conns.add(self.connection)

    def finish(self):
        with self.upstream._lock:
            self.upstream._conns.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    def log_message(self, fmt, *args):  # quiet: the test reads upstream.log() instead
        pass

    def do_GET(self):
        self._dispatch()

    def do_HEAD(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def do_PUT(self):
        self._dispatch()

    def do_PATCH(self):
        self._dispatch()

    def do_DELETE(self):
        self._dispatch()

    # -- plumbing ---------------------------------------------------------------------------

    def _dispatch(self):
        up = self.upstream
        parts = urlsplit(self.path)
        path = parts.path
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        headers = {k.lower(): v for k, v in self.headers.items()}
        entry = up._record(self.command, path, query, headers)
        # Drain a request body so the connection stays usable.
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)

        if entry.kind == "token":
            return self._token(query)
        if entry.kind == "cdn":
            return self._blob(entry.ref, cdn=True)
        if not self._authorized(entry):
            return
        if entry.kind == "base":
            return self._send(200, b"{}", {"Content-Type": "application/json"})
        fault = up._take_fault(self.command, path)
        if fault is not None:
            extra = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            code = {429: "TOOMANYREQUESTS", 401: "UNAUTHORIZED", 403: "DENIED",
                    404: "NAME_UNKNOWN"}.get(fault.status, "UNKNOWN")
            return self._error(fault.status, code, f"injected {fault.status}", extra)
        if self.command not in ("GET", "HEAD"):
            return self._error(405, "UNSUPPORTED", "the fake upstream is read-only")
        if entry.kind == "tags":
            return self._tags(entry.name)
        if entry.kind == "manifests":
            return self._manifest(entry.name, entry.ref)
        if entry.kind == "blobs":
            return self._blob(entry.ref)
        return self._error(404, "NAME_UNKNOWN", "no such endpoint")

    def _send(self, status, body=b"", headers=None, head_length=None):
        self.send_response(status)
        hdrs = dict(headers or {})
        hdrs.setdefault("Content-Length", str(len(body) if head_length is None else head_length))
        hdrs.setdefault("Docker-Distribution-API-Version", "registry/2.0")
        for k, v in hdrs.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _error(self, status, code, message, headers=None):
        body = json.dumps({"errors": [{"code": code, "message": message}]}).encode()
        self._send(status, body, {"Content-Type": "application/json", **(headers or {})})

    # -- auth -------------------------------------------------------------------------------

    def _authorized(self, entry) -> bool:
        up = self.upstream
        auth = entry.headers.get("authorization", "")
        if up.basic is not None:
            want = "Basic " + base64.b64encode(f"{up.basic[0]}:{up.basic[1]}".encode()).decode()
            if auth == want:
                return True
            self._error(401, "UNAUTHORIZED", "basic credentials required",
                        {"WWW-Authenticate": 'Basic realm="fake"'})
            return False
        if up.bearer:
            scope = f"repository:{entry.name}:pull" if entry.name else ""
            token = auth[len("Bearer "):] if auth.startswith("Bearer ") else None
            granted = up._token_scope(token) if token else None
            if granted is not None and (entry.kind == "base" or granted == scope):
                return True
            challenge = f'Bearer realm="{up.url}/token",service="{up.service}"'
            if scope:
                challenge += f',scope="{scope}"'
            self._error(401, "UNAUTHORIZED", "bearer token required",
                        {"WWW-Authenticate": challenge})
            return False
        return True

    def _token(self, query):
        scope = query.get("scope", "")
        if query.get("service") != self.upstream.service:
            return self._send(400, b'{"details":"wrong service"}',
                              {"Content-Type": "application/json"})
        token = self.upstream._issue_token(scope)
        body = json.dumps({"token": token, "access_token": token, "expires_in": 300,
                           "issued_at": "2026-01-01T00:00:00Z"}).encode()
        self._send(200, body, {"Content-Type": "application/json"})

    # -- content ----------------------------------------------------------------------------

    def _tags(self, name):
        with self.upstream._lock:
            tags = self.upstream.tags.get(name)
            tags = sorted(tags) if tags is not None else None
        if tags is None:
            return self._error(404, "NAME_UNKNOWN", f"no repository {name}")
        body = json.dumps({"name": name, "tags": tags}).encode()
        self._send(200, body, {"Content-Type": "application/json"})

    def _manifest(self, name, ref):
        up = self.upstream
        with up._lock:
            digest = ref if ref.startswith("sha256:") else up.tags.get(name, {}).get(ref)
            found = up.manifests.get(digest) if digest else None
        if found is None:
            return self._error(404, "MANIFEST_UNKNOWN", f"no manifest {name}:{ref}")
        media_type, body = found
        if up.manifest_delay:
            up._stopping.wait(up.manifest_delay)
        if self.command == "GET" and up._take_manifest_fault(name, ref):
            body = bytearray(body)
            body[len(body) // 2] ^= 0x20
            body = bytes(body)
        self._send(200, body, {"Content-Type": media_type, "Docker-Content-Digest": digest,
                               "ETag": f'"{digest}"'})

    def _blob(self, digest, cdn=False):
        up = self.upstream
        with up._lock:
            data = up.blobs.get(digest)
            target = up.redirect_target
        if data is None:
            return self._error(404, "BLOB_UNKNOWN", f"no blob {digest}")
        if target is not None and not cdn and self.command == "GET":
            return self._send(307, b"", {"Location": f"{target.url}/cdn/{digest}"})

        start, end, status = 0, len(data), 200
        headers = {"Content-Type": "application/octet-stream", "Docker-Content-Digest": digest,
                   "ETag": f'"{digest}"'}
        if up.ranges:
            headers["Accept-Ranges"] = "bytes"
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", "").strip())
            if m:
                start = int(m.group(1))
                end = min(len(data), int(m.group(2)) + 1) if m.group(2) else len(data)
                if start >= len(data) or start >= end:
                    return self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
        if self.command == "HEAD":
            return self._send(status, b"", headers, head_length=end - start)

        fault = up._take_blob_fault(digest)
        body = data[start:end]
        if fault is not None and fault.kind == "corrupt":
            body = bytearray(body)
            body[len(body) // 2] ^= 0xFF
            body = bytes(body)
        self.send_response(status)
        headers["Content-Length"] = str(len(body))
        headers["Docker-Distribution-API-Version"] = "registry/2.0"
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        limit = len(body)
        if fault is not None and fault.kind == "reset":
            limit = max(0, min(limit, fault.after - start))
        if not self._write_body(body[:limit]):
            return
        if limit < len(body):
            # Give the reader time to take the bytes sent so far: an RST makes the kernel drop
            # whatever is still unread, and the resume offset would then be anybody's guess.
            up._stopping.wait(0.3)
            self._reset()

    def _write_body(self, body) -> bool:
        """Writes `body`, at the drip rate if one is set; False when aborted."""
        up = self.upstream
        rate = up.drip_rate
        try:
            if not rate:
                self.wfile.write(body)
                self.wfile.flush()
                return True
            tick = 0.02
            step = max(1, int(rate * tick))
            next_at = time.monotonic()
            for pos in range(0, len(body), step):
                if up._stopping.is_set():
                    self._reset()
                    return False
                self.wfile.write(body[pos:pos + step])
                self.wfile.flush()
                next_at += tick
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            return True
        except (BrokenPipeError, ConnectionResetError, socket.timeout, OSError):
            self.close_connection = True
            return False

    def _reset(self):
        """Ends the connection with an RST (SO_LINGER 0), like a peer or middlebox dying."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass
