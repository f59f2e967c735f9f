"""The pull-through tests' own tools, checked without regcache: the fake upstream's content,
faults and log, and the raw transfer reader. If these fail, the pull-through failures mean
nothing; they pass whatever state regcache is in."""

import base64
import hashlib
import json
import os
import shutil
import subprocess
import time

import pytest
import requests

from pullthrough import *  # noqa: F401,F403 - fixtures and helpers

MiB = 1 << 20


def test_fake_serves_manifests_blobs_tags_and_logs(fake):
    m = seed_image(fake)
    base = fake.url
    r = requests.get(f"{base}/v2/org/app/manifests/v1", timeout=5)
    assert r.status_code == 200 and r.content == m.body
    assert r.headers["Docker-Content-Digest"] == m.digest
    h = requests.head(f"{base}/v2/org/app/manifests/{m.digest}", timeout=5)
    assert h.status_code == 200 and int(h.headers["Content-Length"]) == len(m.body)
    for d, data in m.blobs.items():
        assert requests.get(f"{base}/v2/org/app/blobs/{d}", timeout=5).content == data
    assert requests.get(f"{base}/v2/org/app/tags/list", timeout=5).json()["tags"] == ["v1"]
    assert requests.get(f"{base}/v2/org/app/manifests/nope", timeout=5).status_code == 404
    assert fake.count("GET", "manifests") == 2 and fake.count("HEAD", "manifests") == 1
    assert fake.count("GET", "blobs") == len(m.blobs) and fake.count(kind="tags") == 1
    assert fake.requests("GET", "manifests")[0].name == "org/app"


def test_fake_ranges_on_and_off(fake):
    data = os.urandom(1000)
    d = fake.add_blob(data)
    url = f"{fake.url}/v2/x/blobs/{d}"
    r = requests.get(url, headers={"Range": "bytes=100-"}, timeout=5)
    assert r.status_code == 206 and r.content == data[100:]
    assert r.headers["Content-Range"] == "bytes 100-999/1000"
    fake.ranges = False
    r = requests.get(url, headers={"Range": "bytes=100-"}, timeout=5)
    assert r.status_code == 200 and r.content == data


def test_fake_reset_and_corrupt(fake):
    data = os.urandom(2 * MiB)
    d = fake.add_blob(data)
    fake.reset_blob(d, after=MiB)
    t = raw_get(fake.port, f"/v2/x/blobs/{d}")
    assert t.status == 200 and t.length == len(data) and not t.complete
    assert len(t.body) <= MiB and data.startswith(t.body)
    fake.corrupt_blob(d)
    t = raw_get(fake.port, f"/v2/x/blobs/{d}")
    assert t.complete and t.body != data and len(t.body) == len(data)
    t = raw_get(fake.port, f"/v2/x/blobs/{d}")
    assert t.complete and t.body == data
    m = seed_image(fake)
    fake.corrupt_manifest("org/app", "v1")
    r = requests.get(f"{fake.url}/v2/org/app/manifests/v1", timeout=5)
    assert r.headers["Docker-Content-Digest"] == m.digest and sha256_digest(r.content) != m.digest


def test_fake_fail_counts_and_retry_after(fake):
    m = seed_image(fake)
    url = f"{fake.url}/v2/org/app/manifests/v1"
    fake.fail(500, times=2, path="/manifests/")
    assert [requests.get(url, timeout=5).status_code for _ in range(3)] == [500, 500, 200]
    fake.fail(429, times=1, retry_after="7")
    r = requests.get(url, timeout=5)
    assert r.status_code == 429 and r.headers["Retry-After"] == "7"
    assert r.json()["errors"][0]["code"] == "TOOMANYREQUESTS"


def test_fake_drip(fake):
    d = fake.add_blob(os.urandom(MiB))
    fake.drip_rate = 2 * MiB
    t0 = time.monotonic()
    t = raw_get(fake.port, f"/v2/x/blobs/{d}")
    took = time.monotonic() - t0
    assert t.complete and 0.35 < took < 3.0, took
    assert t.header_time < 0.3


def _bearer_get(url):
    r = requests.get(url, timeout=5)
    assert r.status_code == 401
    chal = r.headers["WWW-Authenticate"]
    assert chal.startswith("Bearer ")
    params = dict(p.split("=", 1) for p in chal[len("Bearer "):].split(","))
    params = {k: v.strip('"') for k, v in params.items()}
    assert params["realm"].startswith("http://127.0.0.1:")
    tok = requests.get(params["realm"], params={"service": params["service"],
                                                "scope": params["scope"]}, timeout=5).json()
    assert tok["expires_in"] == 300
    return requests.get(url, headers={"Authorization": f"Bearer {tok['token']}"}, timeout=5,
                        allow_redirects=False)


def test_fake_bearer_basic_and_redirect(fake, fake2):
    m = seed_image(fake)
    fake.require_bearer()
    r = _bearer_get(f"{fake.url}/v2/org/app/manifests/v1")
    assert r.status_code == 200 and r.content == m.body
    assert fake.token_requests("repository:org/app:pull") == 1

    d = layer_digests(m)[0]
    fake2.add_blob(m.blobs[d])
    fake.redirect_blobs_to(fake2)
    r = _bearer_get(f"{fake.url}/v2/org/app/blobs/{d}")
    assert r.status_code == 307 and r.headers["Location"].startswith("http://127.0.0.2:")
    assert requests.get(r.headers["Location"], timeout=5).content == m.blobs[d]
    assert fake2.count("GET", "cdn") == 1

    fake.bearer = False
    fake.require_basic("u", "p")
    url = f"{fake.url}/v2/org/app/manifests/v1"
    r = requests.get(url, timeout=5)
    assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Basic ")
    auth = "Basic " + base64.b64encode(b"u:p").decode()
    assert requests.get(url, headers={"Authorization": auth}, timeout=5).status_code == 200


def test_fake_stop_refuses_even_kept_alive_connections(fake):
    seed_image(fake)
    s = requests.Session()
    assert s.get(f"{fake.url}/v2/", timeout=5).status_code == 200
    fake.stop()
    with pytest.raises(requests.ConnectionError):
        s.get(f"{fake.url}/v2/", timeout=5)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{fake.url}/v2/", timeout=5)
    fake.restart()
    assert requests.get(f"{fake.url}/v2/", timeout=5).status_code == 200


def test_skopeo_pulls_from_the_fake_with_bearer_auth(fake, tmp_path):
    """A real client accepts the fake's protocol, token flow included."""
    skopeo = shutil.which("skopeo")
    assert skopeo, "install the Debian package skopeo"
    m = seed_image(fake)
    fake.require_bearer()
    env = dict(os.environ, HOME=str(tmp_path), XDG_RUNTIME_DIR=str(tmp_path))
    out = tmp_path / "out"
    p = subprocess.run([skopeo, "--insecure-policy", "copy", "--preserve-digests", "--src-tls-verify=false",
                        f"docker://{fake.netloc}/org/app:v1", f"oci:{out}:v1"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode == 0, p.stderr
    index = json.loads((out / "index.json").read_text())
    assert index["manifests"][0]["digest"] == m.digest
    for d, data in m.blobs.items():
        assert (out / "blobs" / "sha256" / d.split(":")[1]).read_bytes() == data
    assert fake.token_requests() >= 1
