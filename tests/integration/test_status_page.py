"""The status page and /api/status (issue "A status page"): after a scripted pull through a
fake upstream the JSON's numbers are what happened; a slow fill shows up while it runs; and a
headless Chromium renders the page with the hit ratio and the fill in flight (screenshot in
tests/artifacts/status-page.png).

The browser test needs Debian's `chromium` and node/npm (scripts/install-deps.sh installs
them); it runs tests/browser/status_page.mjs with playwright-core, installed from
tests/browser/package-lock.json by `npm ci` when node_modules is missing.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from conftest import REPO_ROOT, RawConnection, request_bytes
from pullthrough import (ACCEPT_ALL, CLIENT_TIMEOUT, UPSTREAM, blob_path, get_manifest,
                         layer_digests, proxy_of, random_blob, seed_image, wait_until)
from pullthrough import fake, make_pull  # noqa: F401 - fixtures

BROWSER_DIR = REPO_ROOT / "tests" / "browser"
ARTIFACTS = REPO_ROOT / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"


def status(reg) -> dict:
    r = requests.get(reg.url("/api/status"), timeout=CLIENT_TIMEOUT)
    assert r.status_code == 200, r.content[:300]
    assert r.headers["Content-Type"] == "application/json"
    return r.json()


def pull(reg, repo, m) -> int:
    """GETs the manifest and every blob it names; returns the body bytes received."""
    got = 0
    r = get_manifest(reg, repo, "v1")
    assert r.status_code == 200, r.content[:300]
    got += len(r.content)
    for digest in [m.doc["config"]["digest"]] + layer_digests(m):
        r = reg.get(blob_path(repo, digest), timeout=CLIENT_TIMEOUT)
        assert r.status_code == 200, r.content[:300]
        got += len(r.content)
    return got


def test_status_numbers_after_a_scripted_pull(make_pull, fake):
    m = seed_image(fake, "org/app", "v1", layer_sizes=(2048, 4096))
    reg = proxy_of(make_pull, fake)

    cold = pull(reg, "org/app", m)
    wait_until(lambda: status(reg)["fills"]["in_flight"] == 0, 10, what="fills to land")
    warm = pull(reg, "org/app", m)
    assert cold == warm

    # onFinished runs once the last byte is out, so the counters may trail the client a moment.
    s = wait_until(lambda: (lambda s: s if s["cache"]["hits"] == 4 else None)(status(reg)), 5,
                   what="the second pull's hits")
    c = s["cache"]
    assert (c["hits"], c["misses"], c["stale"], c["coalesced"]) == (4, 4, 0, 0), c
    assert c["hit_ratio"] == pytest.approx(0.5)
    assert c["bytes_from_upstream"] == cold
    assert c["bytes_from_cache"] == warm
    assert s["top_images"][0] == {"image": f"{UPSTREAM}/org/app:v1", "pulls": 2}
    assert s["fills"] == {"in_flight": 0, "list": []}
    assert sum(b["hits"] for b in s["history"]) == 4
    assert sum(b["bytes_upstream"] for b in s["history"]) == cold

    up = s["upstreams"][0]
    assert (up["name"], up["url"], up["reachable"], up["last_error"]) == \
        (UPSTREAM, fake.url, True, None)
    assert up["token"] == "none" and s["errors"] == []
    assert s["offline"] is False and s["disk"]["bound"] > 0

    # The index totals are measured on the pool at most every 30 s, not per request: the first
    # measurement was queued by the first /api/status, mid-pull, so it holds some of the blobs.
    s = wait_until(lambda: (lambda s: s if s["disk"]["measured_at"] else None)(status(reg)), 5,
                   what="the index totals")
    assert 0 <= s["disk"]["cached_bytes"] <= cold - len(m.body)
    assert s["disk"]["pushed_bytes"] == 0


def test_an_upstream_failure_is_reported_without_secrets(make_pull, fake):
    seed_image(fake, "org/app", "v1")
    reg = proxy_of(make_pull, fake)
    fake.fail(503, times=10)
    r = reg.plain("GET", f"/v2/{UPSTREAM}/org/app/manifests/v1",
                  headers={"Accept": ACCEPT_ALL})
    assert r.status_code >= 500
    s = status(reg)
    up = s["upstreams"][0]
    assert up["last_error"] and up["last_failure"]
    assert s["errors"][0]["upstream"] == UPSTREAM and s["errors"][0]["kind"] == "5xx"
    assert "127.0.0.1:" not in json.dumps(s["errors"])  # no client addresses
    metrics = reg.get("/metrics").text
    assert f'regcache_upstream_errors_total{{upstream="{UPSTREAM}",kind="5xx"}}' in metrics


def test_the_page_is_served_from_the_binary(make_pull, fake):
    reg = proxy_of(make_pull, fake)
    for path in ("/", "/ui/"):
        r = requests.get(reg.url(path), timeout=CLIENT_TIMEOUT)
        assert r.status_code == 200
        assert r.headers["Content-Type"] == "text/html; charset=utf-8"
        assert r.headers["Cache-Control"] == "no-cache"
        csp = r.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "script-src 'sha256-" in csp
        assert "unsafe-inline" not in csp
        assert b"/api/status" in r.content


class SlowFill:
    """A blob GET held open on a raw socket while its fill drips from the fake upstream."""

    def __init__(self, reg, fake, size=1 << 20, rate=64 << 10):
        self.data = random_blob(size)
        self.digest = fake.add_blob(self.data)
        fake.drip_rate = rate
        self.conn = RawConnection(reg.port, CLIENT_TIMEOUT)
        self.conn.send(request_bytes("GET", blob_path("org/slow", self.digest), reg.host))
        head = self.conn.read_head()
        assert head.status == 200, head

    def close(self):
        self.conn.close()


def wait_for_fill(reg, digest):
    def seen():
        s = status(reg)
        fills = [f for f in s["fills"]["list"] if f["digest"] == digest and f["written"] > 0]
        return fills[0] if fills else None
    return wait_until(seen, 10, what="the fill in /api/status")


def test_a_slow_fill_shows_while_in_flight(make_pull, fake):
    reg = proxy_of(make_pull, fake)
    slow = SlowFill(reg, fake)
    try:
        f = wait_for_fill(reg, slow.digest)
        assert (f["upstream"], f["repository"], f["size"], f["clients"]) == \
            (UPSTREAM, "org/slow", len(slow.data), 1)
        assert f["state"] == "streaming" and 0 < f["written"] < len(slow.data)
        assert status(reg)["fills"]["in_flight"] == 1
    finally:
        slow.close()
        fake.stop()  # aborts the drip: the fill fails and leaves nothing behind


def browser_setup():
    for tool, package in (("node", "nodejs"), ("npm", "npm"), (CHROMIUM, "chromium")):
        if not shutil.which(tool):
            pytest.fail(f"`{tool}` not found: install the Debian package '{package}' "
                        "(scripts/install-deps.sh does)")
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        p = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=BROWSER_DIR,
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, f"npm ci failed:\n{p.stdout}\n{p.stderr}"


def test_browser_shows_hit_ratio_and_fill(make_pull, fake, tmp_path):
    browser_setup()
    m = seed_image(fake, "org/app", "v1")
    reg = proxy_of(make_pull, fake)
    pull(reg, "org/app", m)
    wait_until(lambda: status(reg)["fills"]["in_flight"] == 0, 10, what="fills to land")
    pull(reg, "org/app", m)  # hits: a hit ratio of 50%
    slow = SlowFill(reg, fake, size=4 << 20, rate=128 << 10)
    try:
        wait_for_fill(reg, slow.digest)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / "status-page.png"
        env = dict(os.environ, HOME=str(tmp_path))
        p = subprocess.run(["node", str(BROWSER_DIR / "status_page.mjs"), reg.base + "/",
                            str(shot)], capture_output=True, text=True, timeout=120, env=env)
        assert p.returncode == 0, f"browser test failed:\n{p.stdout}\n{p.stderr}"
        assert shot.stat().st_size > 0
        result = json.loads(p.stdout.strip().splitlines()[-1])
        assert result["hitRatio"] == "50.0%"
        assert slow.digest[:19] in result["fillRow"]
        assert "org/slow" in result["fillRow"]
    finally:
        slow.close()
        fake.stop()
