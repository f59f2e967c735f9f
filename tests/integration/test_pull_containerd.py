"""containerd's mirror convention: a hosts.toml host that serves another registry gets `?ns=<that
registry>` on pull and resolve requests. regcache is configured with an upstream named after the
real upstream's host:port, so ns= routes to it. First as raw HTTP (what containerd sends), then
with a real containerd run by hand (its own config, root, state and socket in a temp dir) and
`ctr images pull --hosts-dir`.

The containerd tests are skipped only when containerd cannot start here (no socket within the
start timeout); a missing binary is a failure (install the Debian package containerd)."""

import subprocess
import time

import pytest

from pullthrough import *  # noqa: F401,F403 - fixtures and helpers


def test_ns_request_raw_http(make_pull, real_upstream, oci_image):
    reg = make_pull(real_upstream_entries(real_upstream))
    _, digest, blobs = oci_image
    ns = real_upstream.netloc
    mark = real_upstream.mark()

    t = raw_get(reg.port, f"/v2/org/app/manifests/v1?ns={ns}",
                headers={"Accept": ACCEPT_ALL})
    assert t.status == 200 and t.complete, t
    assert t.header("docker-content-digest") == digest and t.body == blobs[digest]
    h = raw_get(reg.port, f"/v2/org/app/manifests/v1?ns={ns}", method="HEAD",
                headers={"Accept": ACCEPT_ALL})
    assert h.status == 200 and h.header("docker-content-digest") == digest
    for d, data in blobs.items():
        if d == digest:
            continue
        t = raw_get(reg.port, f"/v2/org/app/blobs/{d}?ns={ns}")
        assert t.status == 200 and t.complete and t.body == data, t
    assert real_upstream.access(mark), "nothing reached the upstream"

    # The same names with another ns are refused without an upstream request.
    mark = real_upstream.mark()
    t = raw_get(reg.port, "/v2/org/app/manifests/v1?ns=127.0.0.1:1")
    assert t.status == 404 and b"NAME_UNKNOWN" in t.body
    assert real_upstream.access(mark) == []


class Containerd:
    """A containerd of our own: config.toml (version 2, CRI off), root, state and sockets in a
    short temp dir (a unix socket path must stay under 108 bytes)."""

    START_TIMEOUT = 20

    def __init__(self):
        import tempfile
        self.dir = Path(tempfile.mkdtemp(prefix="rcctd-", dir="/tmp"))
        self.sock = self.dir / "c.sock"
        cfg = self.dir / "config.toml"
        cfg.write_text(
            "version = 2\n"
            f'root = "{self.dir / "root"}"\n'
            f'state = "{self.dir / "state"}"\n'
            'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
            f'[grpc]\n  address = "{self.sock}"\n'
            f'[ttrpc]\n  address = "{self.sock}.ttrpc"\n'
            '[debug]\n  address = ""\n'
            '[metrics]\n  address = ""\n')
        self.log_path = self.dir / "containerd.log"
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([need_tool("containerd"), "--config", str(cfg)],
                                         stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        deadline = time.monotonic() + self.START_TIMEOUT
        while not self.sock.exists() and self.proc.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        self.ok = self.sock.exists() and self.proc.poll() is None

    def log_text(self):
        return self.log_path.read_text(errors="replace")

    def ctr(self, *args, check=True, env=None):
        return run_tool(need_tool("ctr", "containerd"), "--address", self.sock, *args,
                        env=env, check=check)

    def close(self):
        import shutil
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        # Snapshots may hold mounts; unmount anything left below our dir before removing it.
        subprocess.run(["sh", "-c", f"grep -o ' {self.dir}[^ ]*' /proc/mounts | sort -r | "
                        "xargs -r -n1 umount -l"], timeout=30, capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def containerd():
    """A containerd per test: its content store is shared across namespaces, so a blob pulled
    by one test would let the next skip fetching it."""
    need_tool("containerd")
    need_tool("ctr", "containerd")
    c = Containerd()
    try:
        if not c.ok:
            pytest.skip(f"containerd could not start on this machine:\n{c.log_text()[-2000:]}")
        yield c
    finally:
        c.close()


def write_hosts(hosts_dir: Path, upstream_netloc: str, mirror_netloc: str):
    d = hosts_dir / upstream_netloc
    d.mkdir(parents=True, exist_ok=True)
    (d / "hosts.toml").write_text(
        f'server = "http://{upstream_netloc}"\n\n'
        f'[host."http://{mirror_netloc}"]\n'
        '  capabilities = ["pull", "resolve"]\n')


def test_ctr_pull_direct(containerd, real_upstream, oci_image, tmp_path, tool_env):
    """The setup itself: containerd pulls straight from docker-registry."""
    hosts = tmp_path / "hosts"
    (hosts / real_upstream.netloc).mkdir(parents=True)
    (hosts / real_upstream.netloc / "hosts.toml").write_text(
        f'server = "http://{real_upstream.netloc}"\n\n'
        f'[host."http://{real_upstream.netloc}"]\n  capabilities = ["pull", "resolve"]\n')
    ref = f"{real_upstream.netloc}/library/alpine:v1"
    containerd.ctr("-n", "direct", "images", "pull", "--plain-http", "--hosts-dir", hosts, ref,
                   env=tool_env)
    out = containerd.ctr("-n", "direct", "images", "ls").stdout
    assert oci_image[1] in out, out


def test_ctr_pull_through_regcache_with_ns(containerd, make_pull, real_upstream, oci_image,
                                           tmp_path, tool_env):
    reg = make_pull(real_upstream_entries(real_upstream))
    hosts = tmp_path / "hosts"
    write_hosts(hosts, real_upstream.netloc, reg.host)
    ref = f"{real_upstream.netloc}/org/app:v1"
    mark = real_upstream.mark()

    containerd.ctr("-n", "through", "images", "pull", "--plain-http", "--hosts-dir", hosts,
                   ref, env=tool_env)
    out = containerd.ctr("-n", "through", "images", "ls").stdout
    assert oci_image[1] in out, out

    # containerd got it from regcache, not by falling back to the upstream itself.
    direct = [a for a in real_upstream.access(mark) if "containerd" in a[3]
              and ("/manifests/" in a[1] or "/blobs/" in a[1])]
    assert direct == [], f"containerd fell back to the upstream: {direct}"
    served = reg.access_lines()
    assert any("/manifests/" in p and s == 200 for _, p, s in served), served
    assert any("/blobs/" in p and m == "GET" and s == 200 for m, p, s in served), served
    # ... and regcache fetched what it served from the upstream named by ns=.
    assert real_upstream.blob_gets(mark), "regcache fetched no blob from upstream"
    assert all(p.startswith("/v2/org/app/") for _, p, _, _ in real_upstream.access(mark)
               if p != "/v2/")
