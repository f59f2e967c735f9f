"""TLS and abuse limits against a running `regcache serve`: skopeo over TLS with a test CA,
certificate reload on SIGHUP, slowloris, oversized headers, many idle connections, a corpus of
malformed requests, the per-client rate limit, the per-upstream fill limit, and proof that
`ns=` and name prefixes never reach an unconfigured host."""

import hashlib
import json
import os
import resource
import signal
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import Registry
from pullthrough import *  # noqa: F401,F403 - fixtures (fake, make_pull) and helpers


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_ca(d: Path):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "2", "-subj", "/CN=regcache test CA", "-keyout", "ca.key",
            "-out", "ca.crt", cwd=d)


def make_server_cert(d: Path, name: str):
    """name.crt / name.key for 127.0.0.1, signed by the CA in d."""
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-subj", "/CN=127.0.0.1", "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "ext.cnf", "-out", f"{name}.crt", cwd=d)


def served_serial(port, ca) -> int:
    ctx = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            der = tls.getpeercert(binary_form=True)
    out = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-serial"], input=der,
                         capture_output=True, check=True).stdout.decode()
    return int(out.strip().split("=")[1], 16)


def cert_serial(path: Path) -> int:
    out = subprocess.run(["openssl", "x509", "-in", str(path), "-noout", "-serial"],
                         capture_output=True, check=True, text=True).stdout
    return int(out.strip().split("=")[1], 16)


def wait_for(predicate, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def timed_get(reg, path="/v2/"):
    start = time.monotonic()
    resp = requests.get(f"http://127.0.0.1:{reg.port}{path}", timeout=5)
    return resp.status_code, time.monotonic() - start


def raw_exchange(port, data: bytes, timeout=5.0) -> bytes:
    """Sends `data` on a fresh connection and reads until the server closes or goes quiet."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        try:
            s.sendall(data)
        except OSError:
            pass
        out = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
                if b"\r\n\r\n" in out and len(out) > 4096:
                    break
        except (socket.timeout, ConnectionResetError):
            pass
    return out


@pytest.fixture
def tls_dir(tmp_path):
    d = tmp_path / "pki"
    d.mkdir()
    make_ca(d)
    make_server_cert(d, "server")
    return d


@pytest.fixture
def tls_registry(regcache_bin, tmp_path, tls_dir):
    live_crt, live_key = tls_dir / "live.crt", tls_dir / "live.key"
    live_crt.write_bytes((tls_dir / "server.crt").read_bytes())
    live_key.write_bytes((tls_dir / "server.key").read_bytes())
    reg = Registry(regcache_bin, tmp_path / "regcache",
                   extra=f'\n[tls]\ncert = "{live_crt}"\nkey = "{live_key}"\n')
    try:
        reg.start()
        yield reg
    finally:
        reg.close()


def oci_layout(d: Path):
    """A one-layer OCI image layout at d (what skopeo copies from)."""
    blobs = d / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> dict:
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return {"digest": "sha256:" + digest, "size": len(data)}

    layer = put(os.urandom(200_000))
    config = put(json.dumps({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]}}).encode())
    manifest = put(json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer}],
    }).encode())
    (d / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (d / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", **manifest,
         "annotations": {"org.opencontainers.image.ref.name": "v1"}}]}))
    return layer


# ---------------------------------------------------------------------------------------------
# TLS
# ---------------------------------------------------------------------------------------------

def test_skopeo_pushes_and_pulls_over_tls_with_a_test_ca(tls_registry, tls_dir, tmp_path):
    if subprocess.run(["which", "skopeo"], capture_output=True).returncode != 0:
        pytest.skip("skopeo not installed")
    certs = tmp_path / "certs.d"
    certs.mkdir()
    (certs / "ca.crt").write_bytes((tls_dir / "ca.crt").read_bytes())
    layer = oci_layout(tmp_path / "layout")
    ref = f"127.0.0.1:{tls_registry.port}/local/tls-app:v1"
    subprocess.run(["skopeo", "copy", "--dest-cert-dir", str(certs),
                    f"oci:{tmp_path / 'layout'}:v1", f"docker://{ref}"],
                   check=True, capture_output=True, timeout=60)
    out = tmp_path / "out"
    subprocess.run(["skopeo", "copy", "--src-cert-dir", str(certs), f"docker://{ref}",
                    f"dir:{out}"], check=True, capture_output=True, timeout=60)
    # skopeo may compress the layer on the way in: check a layer-sized blob came back whole.
    pulled = json.loads((out / "manifest.json").read_text())
    got = pulled["layers"][0]
    assert (out / got["digest"].split(":")[1]).stat().st_size == got["size"] >= layer["size"] // 2

    # Without the CA the client refuses the server: the certificate is really checked.
    bad = subprocess.run(["skopeo", "inspect", "--raw", f"docker://{ref}"], capture_output=True,
                         timeout=60)
    assert bad.returncode != 0


def test_sighup_serves_a_new_cert_to_new_connections_and_keeps_the_old_on_a_broken_one(
        tls_registry, tls_dir):
    ca = tls_dir / "ca.crt"
    first = served_serial(tls_registry.port, ca)
    assert first == cert_serial(tls_dir / "server.crt")

    # Broken: the old certificate keeps serving, and the log says why.
    (tls_dir / "live.crt").write_text("-----BEGIN CERTIFICATE-----\nbroken\n")
    tls_registry.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: b"serve.reload_tls kept=old" in tls_registry.log_path.read_bytes(),
             what="the refused reload's log line")
    assert b"live.crt" in tls_registry.log_path.read_bytes()
    assert served_serial(tls_registry.port, ca) == first
    assert requests.get(f"https://127.0.0.1:{tls_registry.port}/v2/", verify=str(ca),
                        timeout=5).status_code == 200

    # A new valid pair: new connections see it.
    make_server_cert(tls_dir, "second")
    (tls_dir / "live.key").write_bytes((tls_dir / "second.key").read_bytes())
    (tls_dir / "live.crt").write_bytes((tls_dir / "second.crt").read_bytes())
    tls_registry.proc.send_signal(signal.SIGHUP)
    second = cert_serial(tls_dir / "second.crt")
    wait_for(lambda: served_serial(tls_registry.port, ca) == second, what="the new certificate")
    assert second != first


# ---------------------------------------------------------------------------------------------
# Limits
# ---------------------------------------------------------------------------------------------

def limits_registry(make_registry, limits: str):
    reg = make_registry(extra=f"\n[limits]\n{limits}\n")
    return reg.start()


def test_slowloris_clients_are_cut_while_a_normal_client_is_served(make_registry):
    reg = limits_registry(make_registry, 'request_timeout = "2s"')
    slow = []
    for _ in range(20):
        s = socket.create_connection(("127.0.0.1", reg.port), timeout=5)
        s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n")
        slow.append(s)

    stop = threading.Event()
    cut = []

    def trickle(s):
        try:
            while not stop.is_set():
                s.sendall(b"X")  # one byte of a header that never ends
                time.sleep(0.5)
        except OSError:
            cut.append(time.monotonic())

    start = time.monotonic()
    threads = [threading.Thread(target=trickle, args=(s,)) for s in slow]
    for t in threads:
        t.start()
    latencies = []
    try:
        while time.monotonic() - start < 4:
            status, took = timed_get(reg)
            assert status == 200
            latencies.append(took)
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        for s in slow:
            s.close()
    assert len(cut) == 20, "every trickling client is cut at the header deadline"
    assert max(cut) - start < 4.5
    assert sorted(latencies)[len(latencies) // 2] < 0.05
    assert max(latencies) < 0.5


def test_oversized_headers_get_431(registry):
    with socket.create_connection(("127.0.0.1", registry.port), timeout=5) as s:
        s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n")
        head = s.recv(4096)
    assert head.startswith(b"HTTP/1.1 431 ")
    assert registry.get("/v2/").status_code == 200


def test_2000_idle_connections_do_not_stop_other_clients(registry):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4500:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    idle = []
    try:
        for _ in range(2000):
            idle.append(socket.create_connection(("127.0.0.1", registry.port), timeout=5))
        latencies = []
        for _ in range(50):
            status, took = timed_get(registry)
            assert status == 200
            latencies.append(took)
        assert sorted(latencies)[25] < 0.05
        assert max(latencies) < 0.5
    finally:
        for s in idle:
            s.close()


# A single-request upload reads its whole body before answering: body errors show in the answer.
MONO = b"POST /v2/local/x/blobs/uploads/?digest=sha256:" + b"0" * 64 + b" HTTP/1.1\r\nHost: x\r\n"

MALFORMED = [
    b"FOO /v2/ HTTP/1.1\r\nHost: x\r\n\r\n",
    b"G\x00ET /v2/ HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v2/ HTTP/9.9\r\nHost: x\r\n\r\n",
    b"GET /v2/ HTTP/1.1.1\r\nHost: x\r\n\r\n",
    b"GET /v2/ FTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v2/\r\nHost: x\r\n\r\n",
    b"GET\r\n\r\n",
    b" GET /v2/ HTTP/1.1\r\n\r\n",
    b"GET /v2/ HTTP/1.1\r\nHost x\r\n\r\n",
    b"GET /v2/ HTTP/1.1\r\n: empty\r\n\r\n",
    b"GET /v2/ HTTP/1.1\r\nHo st: x\r\n\r\n",
    b"GET /v2/ HTTP/1.1\r\nHost: x\x00y\r\n\r\n",
    b"GET /v2/a\x00b HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v2/a b/manifests/1 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v2/../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v2/local/%2e%2e/x/manifests/1 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v2/local/..%2f..%2fx/manifests/1 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v2/local\\..\\x/manifests/1 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v2/local/a%5cb/manifests/1 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v2/local/a%00/manifests/1 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v2/local/a%zz/manifests/1 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v2/local/a%/manifests/1 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v2/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v2/" + b"a/" * 5000 + b"manifests/1 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v2/local/x/manifests/1?" + b"q" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET http://[::1 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /v2/local/x/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"POST /v2/local/x/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"POST /v2/local/x/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
    b"Content-Length: 2\r\n\r\nab",
    b"POST /v2/local/x/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nContent-Length: "
    b"99999999999999999999999\r\n\r\n",
    b"POST /v2/local/x/blobs/uploads/ HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    MONO + b"Transfer-Encoding: chunked\r\n\r\n"
    b"fffffffffffffffffffff\r\n",
    MONO + b"Transfer-Encoding: chunked\r\n\r\n"
    b"-5\r\nhello\r\n0\r\n\r\n",
    MONO + b"Transfer-Encoding: chunked\r\n\r\n"
    b"zz\r\nhello\r\n0\r\n\r\n",
    MONO + b"Transfer-Encoding: chunked\r\n\r\n"
    b"5;\x00ext\r\nhello\r\n0\r\n\r\n",
    MONO + b"Transfer-Encoding: chunked\r\n\r\n"
    b"5 junk junk\r\nhello\r\n0\r\n\r\n",
    MONO + b"Transfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhelloXX0\r\n\r\n",
    MONO + b"Transfer-Encoding: gzip, chunked"
    b"\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-\x7f: a\r\n\r\n",
    b"GET /v2/ HTTP/1.1\nHost: \x00x\n\n",
    b"GET /v2/ HTTP/1.1\r\nHost: x\r\n" + b"X-H: v\r\n" * 10000 + b"\r\n",
    b"GET /v2/ HTTP/1.1\r\nHost: x\r\nX-Long: " + b"v" * 100000 + b"\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 100,
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    b"GET /v2/ HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n",
    b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n",
    b"GET /v2/local/x/manifests/1 HTTP/1.1\r\nHost: x\r\nRange: bytes=-\r\n\r\n",
    b"DELETE /v2/docker.io/../../x/manifests/1 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /v2//manifests/1 HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\r\n\r\n\r\n\r\n",
    b"\xff\xfe\xfd\xfc" * 64,
]


def test_a_malformed_request_corpus_gets_4xx_or_a_close_and_the_server_keeps_serving(registry):
    assert len(MALFORMED) >= 50
    for i, data in enumerate(MALFORMED):
        answer = raw_exchange(registry.port, data, timeout=3)
        assert registry.running(), f"crashed on corpus entry {i}"
        if answer:
            status = int(answer.split(b" ", 2)[1])
            # An upgrade request to /v2/ is simply answered; everything else is refused.
            assert 400 <= status < 500 or (status == 200 and b"Upgrade" in data), \
                f"entry {i}: {answer[:100]!r}"
    assert registry.get("/v2/").status_code == 200


def test_a_client_over_its_rate_gets_429_with_retry_after(make_registry):
    reg = limits_registry(make_registry, "[limits.rate_limit]\nrequests_per_second = 1\n"
                                         "burst = 5")
    statuses = []
    with requests.Session() as s:
        for _ in range(8):
            resp = s.get(f"http://127.0.0.1:{reg.port}/v2/", timeout=5)
            statuses.append(resp.status_code)
            if resp.status_code == 429:
                assert int(resp.headers["Retry-After"]) >= 1
                assert resp.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
    assert statuses[:5] == [200] * 5
    assert 429 in statuses[5:]


def test_max_fills_per_upstream_runs_one_fill_at_a_time(make_pull, fake):
    reg = make_pull([upstream_entry(UPSTREAM, fake.url, default=True)], start=False)
    with open(reg.config_path, "a") as f:
        f.write("\n[limits]\nmax_fills_per_upstream = 1\n")
    reg.start()
    size = 48 * 1024
    fake.drip_rate = 96 * 1024  # half a second per blob
    blobs = [os.urandom(size) for _ in range(3)]
    digests = [fake.add_blob(b) for b in blobs]
    results = {}

    def pull(i):
        resp = requests.get(f"http://127.0.0.1:{reg.port}/v2/{UPSTREAM}/org/app/blobs/"
                            f"{digests[i]}", timeout=30)
        results[i] = (resp.status_code, hashlib.sha256(resp.content).hexdigest())

    threads = [threading.Thread(target=pull, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(40)
    for i, d in enumerate(digests):
        assert results[i] == (200, d.split(":")[1])
    gets = sorted(r.time for r in fake.requests(method="GET", kind="blobs"))
    assert len(gets) == 3
    # Each fill takes ~0.5 s; with one slot the next GET leaves only when the last one ended.
    assert gets[1] - gets[0] >= 0.4 and gets[2] - gets[1] >= 0.4


def test_ns_and_prefixes_never_reach_an_unconfigured_host(make_pull, fake):
    other = FakeUpstream().start()
    try:
        other.add_blob(b"secret")
        reg = make_pull([upstream_entry(UPSTREAM, fake.url, default=False)])
        host = other.netloc
        paths = [
            f"/v2/org/app/manifests/v1?ns={host}",
            f"/v2/org/app/manifests/v1?ns={other.url}",
            f"/v2/{host}/org/app/manifests/v1",
            f"/v2/{host}/org/app/blobs/sha256:{'a' * 64}",
            f"/v2/org/app/tags/list?ns={host}",
            f"/v2/org/app/manifests/v1?ns=169.254.169.254",
            f"/v2/http:%2f%2f{host}/org/app/manifests/v1",
            f"/v2/org/app/blobs/sha256:{'b' * 64}?ns={host}%2f",
        ]
        for path in paths:
            resp = reg.plain("GET", path)
            assert 400 <= resp.status_code < 500, (path, resp.status_code)
        assert other.count() == 0, "a request left for a host no upstream names"
    finally:
        other.stop()
