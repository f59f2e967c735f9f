"""Shared code for the pull-through cache tests (test_pull_*.py): a regcache with [[upstream]]
entries of the test's choosing, a fake upstream fixture, raw blob readers that tell a complete
transfer from a cut one, and bounded polling.

Use it with `from pullthrough import *`: that brings the fixtures (fake, fake2, make_pull) and
the helpers into the test module.

The tests in test_pull_*.py are written for the pull-through cache (GitHub issue "Pull-through
cache"): select them by file name (tests/integration/test_pull_*.py, or `--ignore-glob` to leave
them out). None is skipped or marked xfail: until the cache lands most of them fail, by design.
"""

import json
import os
import re
import socket
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import (ACCEPT_ALL, OCI_MANIFEST, HTTP_TIMEOUT, Manifest, RawConnection, Registry,
                      assert_error, check_error_body, config_blob, oci_manifest, random_blob,
                      request_bytes, sha256_digest)
from fake_upstream import FakeUpstream

UPSTREAM = "upstream.test"   # the name the fake upstream is configured under
CLIENT_TIMEOUT = 20.0        # any single client exchange with regcache; a hang fails the test


# ---------------------------------------------------------------------------------------------
# regcache with upstreams
# ---------------------------------------------------------------------------------------------

def upstream_entry(name, url, default=False, tag_ttl="5m", username=None, password_file=None):
    return {"name": name, "url": url, "default": default, "tag_ttl": tag_ttl,
            "username": username, "password_file": password_file}


def write_pull_config(path: Path, data_dir: Path, upstreams, offline=False,
                      namespaces=("local",), log_level="debug"):
    lines = ['listen = "127.0.0.1:0"', f'data_dir = "{data_dir}"',
             f"offline = {'true' if offline else 'false'}", f'log_level = "{log_level}"']
    for u in upstreams:
        lines += ["", "[[upstream]]", f"name = {json.dumps(u['name'])}",
                  f"url = {json.dumps(u['url'])}",
                  f"default = {'true' if u.get('default') else 'false'}"]
        if u.get("tag_ttl"):
            lines.append(f"tag_ttl = {json.dumps(u['tag_ttl'])}")
        if u.get("username"):
            lines.append(f"username = {json.dumps(u['username'])}")
        if u.get("password_file"):
            lines.append(f"password_file = {json.dumps(str(u['password_file']))}")
    ns = ", ".join(json.dumps(n) for n in namespaces)
    lines += ["", "[local]", f"namespaces = [{ns}]", ""]
    path.write_text("\n".join(lines))


class PullRegistry(Registry):
    """A Registry whose config lists the given upstreams. `cli_offline` starts it with
    `regcache serve --offline` (through a tiny exec wrapper, as Registry.start builds the
    command line itself)."""

    def __init__(self, binary, workdir, upstreams, offline=False, namespaces=("local",),
                 cli_offline=False):
        super().__init__(binary, workdir)
        self.real_binary = binary
        self.upstreams = list(upstreams)
        self.namespaces = namespaces
        self.configure(offline=offline, cli_offline=cli_offline)

    def configure(self, offline=False, cli_offline=False, upstreams=None):
        """Rewrites the config (takes effect at the next start)."""
        if upstreams is not None:
            self.upstreams = list(upstreams)
        write_pull_config(self.config_path, self.data_dir, self.upstreams, offline,
                          self.namespaces)
        if cli_offline:
            wrapper = self.workdir / "regcache-offline.sh"
            wrapper.write_text(f'#!/bin/sh\nexec "{self.real_binary}" "$@" --offline\n')
            wrapper.chmod(0o755)
            self.binary = str(wrapper)
        else:
            self.binary = self.real_binary

    # -- requests that may legitimately answer 5xx (the session's hook fails those) ----------

    def plain(self, method, path, **kw):
        kw.setdefault("timeout", CLIENT_TIMEOUT)
        kw.setdefault("allow_redirects", False)
        return requests.request(method, self.url(path), **kw)

    # -- the log ----------------------------------------------------------------------------

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def access_lines(self):
        """[(method, path, status)] from the access log, in order."""
        out = []
        for m in re.finditer(r'method=(\S+) path="([^"]*)" status=(\d+)', self.log_text()):
            out.append((m.group(1), m.group(2), int(m.group(3))))
        return out


@pytest.fixture
def make_pull(regcache_bin, tmp_path):
    """make_pull(upstreams=[upstream_entry(...)], offline=False, cli_offline=False) -> a started
    PullRegistry; all are closed at teardown."""
    made = []

    def make(upstreams, start=True, **kw):
        reg = PullRegistry(regcache_bin, tmp_path / f"regcache{len(made)}", upstreams, **kw)
        made.append(reg)
        return reg.start() if start else reg

    yield make
    for reg in made:
        reg.close()


@pytest.fixture
def fake():
    up = FakeUpstream().start()
    yield up
    up.stop()


@pytest.fixture
def fake2():
    """A second fake on another loopback address (127.0.0.2): a "CDN" or a second registry."""
    up = FakeUpstream(host="127.0.0.2").start()
    yield up
    up.stop()


def proxy_of(make_pull, fake, tag_ttl="5m", default=True, name=UPSTREAM, **kw):
    """A regcache with `fake` as its only upstream."""
    return make_pull([upstream_entry(name, fake.url, default=default, tag_ttl=tag_ttl, **kw)])


# ---------------------------------------------------------------------------------------------
# Content
# ---------------------------------------------------------------------------------------------

def seed_image(fake, repo="org/app", tag="v1", layer_sizes=(2048, 4096)) -> Manifest:
    """An OCI image with random layers, stored in `fake` as repo:tag."""
    layers = [random_blob(n) for n in layer_sizes]
    m = oci_manifest(layers, config=config_blob(layers=layers))
    fake.add_image(repo, tag, m)
    return m


def layer_digests(m: Manifest):
    return [d["digest"] for d in m.doc["layers"]]


# ---------------------------------------------------------------------------------------------
# Raw blob transfers
# ---------------------------------------------------------------------------------------------

class Transfer:
    """One response read off a raw socket, recording whether the body reached Content-Length."""

    def __init__(self):
        self.status = None
        self.headers = {}
        self.body = b""
        self.length = None       # Content-Length, if sent
        self.error = None        # the exception that ended the read early, if any
        self.header_time = None  # seconds from the request to the end of the headers
        self.started = None

    @property
    def complete(self) -> bool:
        return self.status is not None and self.length is not None and \
            len(self.body) == self.length and self.error is None

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)

    def __repr__(self):
        return (f"<Transfer {self.status} len={self.length} got={len(self.body)} "
                f"error={self.error!r}>")


def raw_get(port, path, headers=None, method="GET", timeout=CLIENT_TIMEOUT, read_limit=None,
            rate=None, on_headers=None) -> Transfer:
    """Sends one request on a new connection and reads the response until Content-Length
    bytes, EOF, a reset or `timeout` seconds without progress. `read_limit`: stop reading (and
    close the socket) after that many body bytes. `rate`: read at most that many bytes per
    second (a slow client). Never raises for a cut transfer: see Transfer.error."""
    t = Transfer()
    t.started = time.monotonic()
    conn = RawConnection(port, timeout)
    try:
        conn.send(request_bytes(method, path, f"127.0.0.1:{port}", headers or {}))
        try:
            head = conn.read_head()
        except (EOFError, OSError) as e:
            t.error = e
            return t
        t.header_time = time.monotonic() - t.started
        t.status = head.status
        t.headers = {k.lower(): v for k, v in head.header_list}
        if on_headers is not None:
            on_headers(t)
        if t.header("content-length") is not None:
            t.length = int(t.header("content-length"))
        if method == "HEAD" or t.status in (204, 304):
            t.body = b""
            if t.length is not None and method == "HEAD":
                t.length = 0
            return t
        body = bytearray(conn.buf)
        conn.buf = b""
        want = t.length
        deadline_step = timeout
        while want is None or len(body) < want:
            if read_limit is not None and len(body) >= read_limit:
                break
            if rate:
                time.sleep(min(1.0, 65536 / rate))
            try:
                conn.sock.settimeout(deadline_step)
                chunk = conn.sock.recv(65536 if not rate else max(1, min(65536, rate // 10)))
            except (OSError, socket.timeout) as e:
                t.error = e
                break
            if not chunk:
                if want is not None:
                    t.error = EOFError(f"closed after {len(body)} of {want} bytes")
                break
            body += chunk
        t.body = bytes(body[:want] if want is not None else body)
        return t
    finally:
        conn.close()


def blob_path(repo, digest, prefix=UPSTREAM):
    return f"/v2/{prefix + '/' if prefix else ''}{repo}/blobs/{digest}"


def manifest_path(repo, ref, prefix=UPSTREAM):
    return f"/v2/{prefix + '/' if prefix else ''}{repo}/manifests/{ref}"


def get_manifest(reg, repo, ref, prefix=UPSTREAM, method="GET"):
    return reg.request(method, manifest_path(repo, ref, prefix), headers={"Accept": ACCEPT_ALL},
                       timeout=CLIENT_TIMEOUT)


def assert_manifest(resp, m: Manifest):
    assert resp.status_code == 200, f"{resp.status_code} {resp.content[:300]!r}"
    assert resp.headers.get("Docker-Content-Digest") == m.digest
    if resp.request.method == "GET":
        assert resp.content == m.body, "manifest bytes differ from upstream's"


def run_parallel(n, fn, timeout=60.0):
    """Runs fn(i) for i in range(n) in threads started together; returns the results (an
    exception in a thread is re-raised here)."""
    results = [None] * n
    errors = [None] * n
    barrier = threading.Barrier(n)

    def body(i):
        try:
            barrier.wait(10)
            results[i] = fn(i)
        except BaseException as e:  # noqa: B902 - handed to the test thread
            errors[i] = e

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(n)]
    for th in threads:
        th.start()
    deadline = time.monotonic() + timeout
    for th in threads:
        th.join(max(0.0, deadline - time.monotonic()))
    assert not any(th.is_alive() for th in threads), f"clients still running after {timeout}s"
    for e in errors:
        if e is not None:
            raise e
    return results


# ---------------------------------------------------------------------------------------------
# Waiting
# ---------------------------------------------------------------------------------------------

def wait_until(predicate, timeout=5.0, interval=0.05, what="condition"):
    """Polls `predicate` until it returns a truthy value (returned) or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def assert_json_error(resp, statuses, codes=None):
    """An error response that may be a 5xx (so not through the session's hook)."""
    statuses = (statuses,) if isinstance(statuses, int) else tuple(statuses)
    assert resp.status_code in statuses, \
        f"expected {statuses}, got {resp.status_code}: {resp.content[:300]!r}"
    if resp.request.method == "HEAD":
        return []
    errors = check_error_body(resp.content, f"{resp.request.method} {resp.request.url}")
    if codes is not None:
        codes = {codes} if isinstance(codes, str) else set(codes)
        assert codes & {e["code"] for e in errors}, f"expected {codes}, got {errors}"
    return errors


def warning_logged(reg) -> bool:
    """spdlog writes the level name: a `warning` line."""
    return re.search(r"^\S+ warning ", reg.log_text(), re.M) is not None


# ---------------------------------------------------------------------------------------------
# Real clients and a real upstream: Debian's docker-registry, umoci, skopeo, podman
# ---------------------------------------------------------------------------------------------

TOOL_TIMEOUT = 120
MiB = 1 << 20


def need_tool(tool, package=None):
    import shutil
    path = shutil.which(tool)
    if not path:
        pytest.fail(f"`{tool}` not found: install the Debian package '{package or tool}' "
                    "(scripts/install-deps.sh does)")
    return path


def run_tool(*args, env=None, timeout=TOOL_TIMEOUT, check=True):
    import subprocess
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True,
                       timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    if check:
        assert p.returncode == 0, \
            f"{' '.join(map(str, args))} -> {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    return p


@pytest.fixture(scope="module")
def tool_env(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    (home / "auth.json").write_text("{}")  # podman insists that REGISTRY_AUTH_FILE exists
    env = dict(os.environ, HOME=str(home), XDG_RUNTIME_DIR=str(home),
               REGISTRY_AUTH_FILE=str(home / "auth.json"))
    for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY",
              "all_proxy", "NO_PROXY", "no_proxy"):
        env.pop(k, None)
    return env


class DockerRegistry:
    """Debian's docker-registry (the CNCF distribution registry) on 127.0.0.1:0, filesystem
    storage in a temp dir, no auth. Its access log (stderr) tells what it served, and to whom
    (the User-Agent)."""

    ACCESS = re.compile(r'"(GET|HEAD) (/v2/\S+) HTTP/1\.1" (\d{3}) \d+ "[^"]*" "([^"]*)"')

    def __init__(self, workdir: Path):
        import subprocess
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        cfg = workdir / "config.yml"
        cfg.write_text(
            "version: 0.1\n"
            "log:\n  level: info\n  accesslog:\n    disabled: false\n"
            f"storage:\n  filesystem:\n    rootdirectory: {workdir / 'data'}\n"
            "  delete:\n    enabled: true\n"
            "http:\n  addr: 127.0.0.1:0\n  secret: regcache-tests\n")
        self.log_path = workdir / "registry.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([need_tool("docker-registry"), "serve", str(cfg)],
                                         stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        m = wait_until(lambda: re.search(r"listening on 127\.0\.0\.1:(\d+)", self.log_text())
                       or (self.proc.poll() is not None and "exited"), 15,
                       what="docker-registry to listen")
        assert m != "exited", f"docker-registry exited:\n{self.log_text()}"
        self.port = int(m.group(1))

    @property
    def netloc(self):
        return f"127.0.0.1:{self.port}"

    @property
    def url(self):
        return f"http://{self.netloc}"

    def log_text(self):
        return self.log_path.read_text(errors="replace")

    def mark(self) -> int:
        return len(self.log_text())

    def access(self, since=0):
        """[(method, path, status, user_agent)] served since the log offset `since`."""
        return [(m.group(1), m.group(2), int(m.group(3)), m.group(4))
                for m in self.ACCESS.finditer(self.log_text()[since:])]

    def blob_gets(self, since=0, agent=None):
        return [a for a in self.access(since) if a[0] == "GET" and "/blobs/" in a[1]
                and (agent is None or agent in a[3])]

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except Exception:
                self.proc.kill()
                self.proc.wait(10)


def layout_descriptor(layout: Path, tag: str) -> dict:
    index = json.loads((layout / "index.json").read_text())
    for d in index["manifests"]:
        if d.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            return d
    raise AssertionError(f"tag {tag} not in {layout}/index.json: {index}")


def layout_blobs(layout: Path, digest: str) -> dict:
    """digest -> bytes of a manifest and everything it references, hashes checked."""
    out = {digest: _checked(layout, digest)}
    doc = json.loads(out[digest])
    for child in doc.get("manifests", []):
        out.update(layout_blobs(layout, child["digest"]))
    for d in [doc.get("config"), *doc.get("layers", [])]:
        if d:
            out[d["digest"]] = _checked(layout, d["digest"])
    return out


def _checked(layout, digest):
    data = (layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()
    assert sha256_digest(data) == digest, f"corrupt blob {digest} in {layout}"
    return data


@pytest.fixture(scope="module")
def oci_image(tool_env, tmp_path_factory):
    """An OCI layout with tag v1: umoci's empty image plus a 4 MiB random file and a text
    file. Returns (layout, manifest digest, {digest: bytes})."""
    need_tool("umoci")
    work = tmp_path_factory.mktemp("umoci")
    layout, bundle = work / "layout", work / "bundle"
    run_tool("umoci", "init", "--layout", layout, env=tool_env)
    run_tool("umoci", "new", "--image", f"{layout}:v1", env=tool_env)
    run_tool("umoci", "unpack", "--rootless", "--image", f"{layout}:v1", bundle, env=tool_env)
    (bundle / "rootfs" / "random.bin").write_bytes(os.urandom(4 * MiB))
    (bundle / "rootfs" / "hello.txt").write_text("pulled through regcache\n")
    run_tool("umoci", "repack", "--image", f"{layout}:v1", bundle, env=tool_env)
    run_tool("umoci", "config", "--image", f"{layout}:v1", "--architecture", "amd64",
             "--os", "linux", env=tool_env)
    digest = layout_descriptor(layout, "v1")["digest"]
    return layout, digest, layout_blobs(layout, digest)


def skopeo(env, *args, check=True):
    return run_tool(need_tool("skopeo"), "--insecure-policy", *args, env=env, check=check)


@pytest.fixture(scope="module")
def real_upstream(tmp_path_factory, tool_env, oci_image):
    """docker-registry holding the umoci image as org/app:v1 and library/alpine:v1."""
    layout = oci_image[0]
    up = DockerRegistry(tmp_path_factory.mktemp("docker-registry"))
    try:
        for repo in ("org/app", "library/alpine"):
            skopeo(tool_env, "copy", "--preserve-digests", "--dest-tls-verify=false",
                   f"oci:{layout}:v1", f"docker://{up.netloc}/{repo}:v1")
        yield up
    finally:
        up.close()


def real_upstream_entries(up):
    """regcache's upstreams for the real upstream: "docker.io" (the default, so bare names
    gain library/) and one named by its own host:port (what containerd's ns= names)."""
    return [upstream_entry("docker.io", up.url, default=True),
            upstream_entry(up.netloc, up.url)]
