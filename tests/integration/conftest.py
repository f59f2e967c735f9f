"""Integration test harness: runs the real `regcache serve` binary on loopback and talks to it.

Fixtures:
  regcache_bin  the binary under test (env REGCACHE_BIN, else <repo>/build/regcache)
  registry      one server per test module (tests use unique repository names to share it)
  fresh_registry  a server of its own for one test (restarts, crashes, exact listings)

Helpers (import them with `from conftest import ...`): digests, random blobs, blob pushes by each
upload method, OCI/Docker manifests, error-body checks, and a raw HTTP/1.1 connection for tests
that need to see the wire.

Every response that goes through Registry's requests session is checked: a 5xx fails the test at
once, and a 4xx body, when there is one, must be the spec's error JSON.
"""

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parents[2]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
ALL_MANIFEST_TYPES = [OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST]
ACCEPT_ALL = ", ".join(ALL_MANIFEST_TYPES)

# The spec's error codes (distribution-spec "Error Codes").
SPEC_ERROR_CODES = {
    "BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN", "MANIFEST_INVALID", "MANIFEST_UNKNOWN", "NAME_INVALID",
    "NAME_UNKNOWN", "SIZE_INVALID", "UNAUTHORIZED", "DENIED", "UNSUPPORTED", "TOOMANYREQUESTS",
}

# "Legacy Docker support error codes" the spec says clients may meet.
LEGACY_ERROR_CODES = {"TAG_INVALID", "MANIFEST_UNVERIFIED"}

LISTENING_RE = re.compile(rb"listening addr=\S+:(\d+)")
START_TIMEOUT = 10.0
HTTP_TIMEOUT = 30.0


# ---------------------------------------------------------------------------------------------
# Digests and content
# ---------------------------------------------------------------------------------------------

def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def random_blob(size: int = 1024) -> bytes:
    return os.urandom(size)


def unknown_digest() -> str:
    """A well-formed digest of content nobody has pushed."""
    return sha256_digest(b"never pushed " + os.urandom(16))


def unique_repo(prefix: str = "t", namespace: str = "local") -> str:
    """A repository name no other test uses, valid per the spec's grammar."""
    return f"{namespace}/{prefix}-{uuid.uuid4().hex[:10]}"


# ---------------------------------------------------------------------------------------------
# Error bodies
# ---------------------------------------------------------------------------------------------

def check_error_body(body: bytes, where: str = "") -> list:
    """Asserts `body` is {"errors":[{"code":..., "message":...}, ...]}; returns the errors."""
    try:
        doc = json.loads(body)
    except ValueError:
        raise AssertionError(f"{where}: error body is not JSON: {body[:300]!r}")
    assert isinstance(doc, dict) and isinstance(doc.get("errors"), list) and doc["errors"], \
        f"{where}: error body lacks a non-empty 'errors' list: {doc!r}"
    for err in doc["errors"]:
        assert isinstance(err, dict), f"{where}: error entry is not an object: {err!r}"
        code = err.get("code")
        assert isinstance(code, str) and re.fullmatch(r"[A-Z_]+", code), \
            f"{where}: error code must be uppercase letters and underscores: {err!r}"
        # "The code field MUST be one of the following" (the spec's table), or a legacy
        # Docker code the spec names as optional.
        assert code in SPEC_ERROR_CODES | LEGACY_ERROR_CODES, \
            f"{where}: error code {code!r} is not one of the spec's codes"
        if "message" in err:
            assert isinstance(err["message"], str), f"{where}: message not a string: {err!r}"
    return doc["errors"]


def assert_error(resp, status, codes=None, need_message=False):
    """Asserts an error response: `status` (int or tuple of ints) and, for responses with a
    body (not HEAD), the spec's error JSON with at least one entry whose code is in `codes`."""
    statuses = (status,) if isinstance(status, int) else tuple(status)
    where = f"{resp.request.method} {resp.request.url}"
    assert resp.status_code in statuses, \
        f"{where}: expected {statuses}, got {resp.status_code}: {resp.content[:400]!r}"
    if resp.request.method == "HEAD":
        return []
    errors = check_error_body(resp.content, where)
    if codes is not None:
        codes = {codes} if isinstance(codes, str) else set(codes)
        got = [e["code"] for e in errors]
        assert codes & set(got), f"{where}: expected code in {sorted(codes)}, got {got}"
    if need_message:
        assert any(e.get("message") for e in errors), f"{where}: no message in {errors!r}"
    return errors


# ---------------------------------------------------------------------------------------------
# The server under test
# ---------------------------------------------------------------------------------------------

_LIVE_REGISTRIES = []  # for attaching server logs to failure reports


def write_config(path: Path, data_dir: Path, offline=True, namespaces=("local", "team"),
                 extra=""):
    ns = ", ".join(json.dumps(n) for n in namespaces)
    path.write_text(
        'listen = "127.0.0.1:0"\n'
        f'data_dir = "{data_dir}"\n'
        f"offline = {'true' if offline else 'false'}\n"
        f"{extra}"
        "\n[[upstream]]\n"
        'name = "docker.io"\n'
        'url = "http://127.0.0.1:9"\n'
        "default = true\n"
        "\n[local]\n"
        f"namespaces = [{ns}]\n")


class Registry:
    """One `regcache serve` process on 127.0.0.1 with its own config and data directory.

    The port is chosen by the server (listen port 0) and read from its `listening addr=` log
    line, so it changes across restarts; use `.base` / `.url()` after each start.
    """

    def __init__(self, binary: str, workdir: Path, **config):
        self.binary = binary
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.workdir / "data"
        self.config_path = self.workdir / "regcache.toml"
        self.log_path = self.workdir / "regcache.log"
        write_config(self.config_path, self.data_dir, **config)
        self.proc = None
        self.port = None
        self.starts = 0
        self.session = requests.Session()
        self.session.hooks["response"].append(self._check_response)
        _LIVE_REGISTRIES.append(self)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self):
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts} =====\n".encode())
            log.flush()
            offset = log.tell()
            self.proc = subprocess.Popen(
                [self.binary, "serve", "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            text = self._log_from(offset)
            m = LISTENING_RE.search(text)
            if m:
                self.port = int(m.group(1))
                break
            rc = self.proc.poll()
            if rc is not None:
                raise RuntimeError(
                    f"regcache exited with code {rc} before listening "
                    f"(is {self.binary} a real build?). Log:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.kill9()
                raise RuntimeError(
                    f"no 'listening addr=' line within {START_TIMEOUT}s. Log:\n"
                    f"{self.log_tail()}")
            time.sleep(0.02)
        self.session.close()  # drop keep-alive connections to the previous process
        return self

    def _log_from(self, offset: int) -> bytes:
        with open(self.log_path, "rb") as f:
            f.seek(offset)
            return f.read()

    def log_tail(self, lines: int = 80) -> str:
        if not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_bytes().decode("utf-8", "replace").splitlines()
        return "\n".join(text[-lines:])

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0):
        """SIGTERM and wait; returns the exit code. SIGKILL (and an error) on timeout."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
                raise AssertionError(f"regcache did not exit within {timeout}s of SIGTERM")
        return self.proc.returncode

    def kill9(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def restart(self):
        self.stop()
        return self.start()

    def close(self):
        try:
            if self.running():
                self.stop()
        finally:
            self.kill9()
            self.session.close()
            if self in _LIVE_REGISTRIES:
                _LIVE_REGISTRIES.remove(self)

    # -- HTTP -------------------------------------------------------------------------------

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, path_or_url: str) -> str:
        """An absolute URL for a path, or for a Location header (absolute or relative)."""
        if path_or_url.startswith(("http://", "https://")):
            parts = urlsplit(path_or_url)
            assert parts.hostname in ("127.0.0.1", "localhost"), \
                f"server pointed us off loopback: {path_or_url}"
            return path_or_url
        return urljoin(self.base + "/", path_or_url)

    def request(self, method, path, **kw):
        kw.setdefault("timeout", HTTP_TIMEOUT)
        kw.setdefault("allow_redirects", False)
        return self.session.request(method, self.url(path), **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def head(self, path, **kw):
        return self.request("HEAD", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def put(self, path, **kw):
        return self.request("PUT", path, **kw)

    def patch(self, path, **kw):
        return self.request("PATCH", path, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    @staticmethod
    def _check_response(resp, *args, **kwargs):
        where = f"{resp.request.method} {resp.request.url}"
        assert resp.status_code < 500, \
            f"server error: {where} -> {resp.status_code}: {resp.content[:500]!r}"
        if 400 <= resp.status_code < 500 and resp.request.method != "HEAD" and resp.content:
            check_error_body(resp.content, where)

    def raw(self, timeout: float = 10.0):
        return RawConnection(self.port, timeout)


# ---------------------------------------------------------------------------------------------
# Raw HTTP/1.1 on a socket
# ---------------------------------------------------------------------------------------------

class RawResponse:
    def __init__(self, version, status, reason, header_list, body=b""):
        self.version = version
        self.status = status
        self.reason = reason
        self.header_list = header_list  # [(name, value)] as received
        self.body = body

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.header_list:
            if k.lower() == name:
                return v
        return default

    def __repr__(self):
        return f"<RawResponse {self.status} {self.reason} {self.header_list} {self.body[:100]!r}>"


class RawConnection:
    """A client socket to the server with a tiny, strict HTTP/1.1 response reader."""

    def __init__(self, port, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data: bytes):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise EOFError("server closed the connection")
        self.buf += chunk

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(marker, 1)
        return head

    def _read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_head(self) -> RawResponse:
        head = self._read_until(b"\r\n\r\n").decode("latin-1")
        lines = head.split("\r\n")
        m = re.fullmatch(r"(HTTP/1\.[01]) (\d{3})(?: (.*))?", lines[0])
        assert m, f"bad status line {lines[0]!r}"
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            assert sep and name and name == name.strip(), f"bad header line {line!r}"
            headers.append((name, value.strip()))
        return RawResponse(m.group(1), int(m.group(2)), m.group(3) or "", headers)

    def read_response(self, method: str = "GET", skip_interim: bool = True) -> RawResponse:
        """Reads one response. 1xx interim responses are skipped unless skip_interim is False
        (then the interim response itself is returned)."""
        while True:
            resp = self.read_head()
            if 100 <= resp.status < 200:
                if skip_interim:
                    continue
                return resp
            break
        if method == "HEAD" or resp.status in (204, 304):
            return resp
        te = (resp.header("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            body = b""
            while True:
                size_line = self._read_until(b"\r\n").decode("latin-1")
                size = int(size_line.split(";")[0].strip(), 16)
                if size == 0:
                    while self._read_until(b"\r\n"):  # trailers up to the empty line
                        pass
                    break
                body += self._read_exact(size)
                assert self._read_exact(2) == b"\r\n", "chunk not followed by CRLF"
            resp.body = body
        elif resp.header("Content-Length") is not None:
            resp.body = self._read_exact(int(resp.header("Content-Length")))
        else:
            while True:
                try:
                    self._fill()
                except EOFError:
                    break
            resp.body, self.buf = self.buf, b""
        return resp

    def closed_by_peer(self, timeout: float = 5.0) -> bool:
        """True if the server closes (EOF or reset) within `timeout` with nothing more sent."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 16)
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        if data:
            self.buf += data
            return False
        return True


def request_bytes(method, target, host, headers=None, body=b"") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    if body and not any(k.lower() in ("content-length", "transfer-encoding")
                        for k in (headers or {})):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(data: bytes, sizes) -> bytes:
    """`data` in HTTP chunked encoding, cut into the given chunk sizes (cycled), terminated."""
    out, pos, i = [], 0, 0
    sizes = list(sizes)
    while pos < len(data):
        n = sizes[i % len(sizes)]
        piece = data[pos:pos + n]
        out.append(b"%x\r\n" % len(piece) + piece + b"\r\n")
        pos += n
        i += 1
    out.append(b"0\r\n\r\n")
    return b"".join(out)


# ---------------------------------------------------------------------------------------------
# Pushing blobs
# ---------------------------------------------------------------------------------------------

def with_query(location: str, **params) -> str:
    """Adds query parameters to an upload Location, which may already carry some."""
    from urllib.parse import urlencode
    sep = "&" if "?" in location else "?"
    return location + sep + urlencode(params)


def start_upload(reg: Registry, repo: str):
    """POST /v2/<repo>/blobs/uploads/; asserts 202 and returns the response."""
    r = reg.post(f"/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"})
    assert r.status_code == 202, f"upload POST: {r.status_code} {r.content[:300]!r}"
    assert r.headers.get("Location"), "upload POST: no Location"
    return r


def push_blob(reg: Registry, repo: str, data: bytes, method: str = "post_put") -> str:
    """Pushes `data` into `repo` and returns its digest. method: "post_put" (POST then one
    PUT with the body), "single_post" (POST ?digest= with the body), or "chunked" (POST,
    two PATCHes with Content-Range, closing PUT)."""
    digest = sha256_digest(data)
    octet = {"Content-Type": "application/octet-stream"}
    if method == "single_post":
        r = reg.post(f"/v2/{repo}/blobs/uploads/?digest={digest}", data=data, headers=octet)
    elif method == "post_put":
        loc = start_upload(reg, repo).headers["Location"]
        r = reg.put(with_query(loc, digest=digest), data=data, headers=octet)
    elif method == "chunked":
        loc = start_upload(reg, repo).headers["Location"]
        half = len(data) // 2
        for lo, hi in ((0, half), (half, len(data))):
            if hi == lo:
                continue
            r = reg.patch(loc, data=data[lo:hi],
                          headers={**octet, "Content-Range": f"{lo}-{hi - 1}"})
            assert r.status_code == 202, f"PATCH: {r.status_code} {r.content[:300]!r}"
            loc = r.headers["Location"]
        r = reg.put(with_query(loc, digest=digest), headers={"Content-Length": "0"})
    else:
        raise ValueError(method)
    assert r.status_code == 201, f"blob push ({method}): {r.status_code} {r.content[:300]!r}"
    assert r.headers.get("Location"), "blob push: no Location"
    return digest


# ---------------------------------------------------------------------------------------------
# Manifests
# ---------------------------------------------------------------------------------------------

def descriptor(media_type: str, data: bytes, **extra) -> dict:
    d = {"mediaType": media_type, "digest": sha256_digest(data), "size": len(data)}
    d.update(extra)
    return d


def manifest_descriptor(m: "Manifest", **extra) -> dict:
    return descriptor(m.media_type, m.body, **extra)


def config_blob(arch: str = "amd64", layers=()) -> bytes:
    cfg = {"architecture": arch, "os": "linux",
           "rootfs": {"type": "layers", "diff_ids": [sha256_digest(l) for l in layers]}}
    return json.dumps(cfg, separators=(",", ":")).encode()


def encode(doc: dict) -> bytes:
    """Manifest bytes with unusual formatting, so byte-exact storage is visible."""
    return (json.dumps(doc, indent=3) + "\n").encode()


class Manifest:
    def __init__(self, media_type, body, blobs=None):
        self.media_type = media_type
        self.body = body
        self.digest = sha256_digest(body)
        self.blobs = blobs or {}  # digest -> bytes this manifest needs (config and layers)

    @property
    def doc(self):
        return json.loads(self.body)


def oci_manifest(layers, config=None, subject=None, artifact_type=None, annotations=None,
                 config_media_type=OCI_CONFIG, layer_media_type=OCI_LAYER) -> Manifest:
    config = config if config is not None else config_blob(layers=layers)
    doc = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(config_media_type, config),
        "layers": [descriptor(layer_media_type, l) for l in layers],
    }
    if artifact_type:
        doc["artifactType"] = artifact_type
    if subject is not None:
        doc["subject"] = subject
    if annotations:
        doc["annotations"] = annotations
    blobs = {sha256_digest(b): b for b in [config, *layers]}
    return Manifest(OCI_MANIFEST, encode(doc), blobs)


def docker_manifest(layers, config=None) -> Manifest:
    config = config if config is not None else config_blob(layers=layers)
    doc = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": descriptor(DOCKER_CONFIG, config),
        "layers": [descriptor(DOCKER_LAYER, l) for l in layers],
    }
    blobs = {sha256_digest(b): b for b in [config, *layers]}
    return Manifest(DOCKER_MANIFEST, encode(doc), blobs)


def index_manifest(children, media_type=OCI_INDEX, subject=None, artifact_type=None,
                   annotations=None) -> Manifest:
    """An OCI index or Docker manifest list over `children` [(Manifest, arch)]."""
    doc = {"schemaVersion": 2, "mediaType": media_type, "manifests": [
        manifest_descriptor(m, platform={"architecture": arch, "os": "linux"})
        for m, arch in children]}
    if artifact_type:
        doc["artifactType"] = artifact_type
    if subject is not None:
        doc["subject"] = subject
    if annotations:
        doc["annotations"] = annotations
    return Manifest(media_type, encode(doc))


def put_manifest(reg: Registry, repo: str, ref: str, m: Manifest, content_type=None):
    """PUT the manifest; returns the response (not asserted)."""
    return reg.put(f"/v2/{repo}/manifests/{ref}", data=m.body,
                   headers={"Content-Type": content_type or m.media_type})


def push_manifest(reg: Registry, repo: str, ref: str, m: Manifest):
    """PUT the manifest and assert the spec's success response; returns the response."""
    r = put_manifest(reg, repo, ref, m)
    assert r.status_code == 201, f"manifest PUT {repo}:{ref}: {r.status_code} {r.content[:300]!r}"
    assert r.headers.get("Location"), "manifest PUT: no Location"
    assert r.headers.get("Docker-Content-Digest") == m.digest, \
        f"manifest PUT: Docker-Content-Digest {r.headers.get('Docker-Content-Digest')} != {m.digest}"
    return r


def push_image(reg: Registry, repo: str, tag=None, layers=2, layer_size=2048, arch="amd64",
               method="post_put", **manifest_kw) -> Manifest:
    """Pushes random layers, a config and an OCI image manifest (tagged `tag`, else by digest)."""
    layer_data = [random_blob(layer_size) for _ in range(layers)]
    m = oci_manifest(layer_data, config=config_blob(arch, layer_data), **manifest_kw)
    for data in m.blobs.values():
        push_blob(reg, repo, data, method)
    push_manifest(reg, repo, tag or m.digest, m)
    return m


def empty_config_descriptor() -> dict:
    return descriptor(OCI_EMPTY, b"{}")


def push_artifact(reg: Registry, repo: str, subject: Manifest, artifact_type=None,
                  annotations=None, ref=None):
    """Pushes an artifact manifest (empty config, one small layer) whose subject is `subject`.
    Returns (Manifest, response)."""
    layer = random_blob(64)
    doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": empty_config_descriptor(),
           "layers": [descriptor("application/octet-stream", layer)],
           "subject": manifest_descriptor(subject)}
    if artifact_type:
        doc["artifactType"] = artifact_type
    if annotations:
        doc["annotations"] = annotations
    m = Manifest(OCI_MANIFEST, encode(doc), {sha256_digest(b"{}"): b"{}",
                                             sha256_digest(layer): layer})
    for data in m.blobs.values():
        push_blob(reg, repo, data)
    r = push_manifest(reg, repo, ref or m.digest, m)
    return m, r


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def regcache_bin():
    path = os.environ.get("REGCACHE_BIN") or str(REPO_ROOT / "build" / "regcache")
    path = os.path.abspath(path)
    if not os.access(path, os.X_OK):
        pytest.fail(f"regcache binary not found or not executable: {path} "
                    "(set REGCACHE_BIN or build with `ninja -C build regcache`)")
    return path


@pytest.fixture(scope="module")
def registry(regcache_bin, tmp_path_factory):
    reg = Registry(regcache_bin, tmp_path_factory.mktemp("regcache"))
    try:
        reg.start()
        yield reg
    finally:
        reg.close()


@pytest.fixture
def fresh_registry(regcache_bin, tmp_path):
    reg = Registry(regcache_bin, tmp_path / "regcache")
    try:
        reg.start()
        yield reg
    finally:
        reg.close()


@pytest.fixture
def make_registry(regcache_bin, tmp_path):
    """A factory for servers with a custom config: make_registry(offline=..., extra=...)."""
    made = []

    def make(**config):
        reg = Registry(regcache_bin, tmp_path / f"regcache{len(made)}", **config)
        made.append(reg)
        return reg

    yield make
    for reg in made:
        reg.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for reg in list(_LIVE_REGISTRIES):
            report.sections.append(
                (f"regcache log ({reg.log_path})", reg.log_tail(60)))
