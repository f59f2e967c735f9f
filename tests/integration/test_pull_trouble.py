"""Upstream trouble: a stale cached tag is served with `Warning: 110` when upstream is down,
failing (5xx), refusing (401) or rate-limiting (429); with nothing cached the client gets the
right error promptly, never a hang. 5xx answers are read with plain requests (the session's hook
fails every 5xx)."""

import time

import pytest

from pullthrough import *  # noqa: F401,F403 - fixtures and helpers


def cache_tag(make_pull, fake, tag_ttl="1s"):
    m = seed_image(fake)
    reg = proxy_of(make_pull, fake, tag_ttl=tag_ttl)
    assert_manifest(get_manifest(reg, "org/app", "v1"), m)
    for d, data in m.blobs.items():
        assert reg.get(blob_path("org/app", d)).content == data
    return reg, m


def assert_stale(reg, m, method="GET"):
    t0 = time.monotonic()
    r = reg.plain(method, manifest_path("org/app", "v1"), headers={"Accept": ACCEPT_ALL})
    assert time.monotonic() - t0 < 15, "the stale answer took too long"
    assert r.status_code == 200, f"{r.status_code} {r.content[:300]!r}"
    assert r.headers.get("Docker-Content-Digest") == m.digest
    if method == "GET":
        assert r.content == m.body
    warning = r.headers.get("Warning", "")
    assert warning.startswith("110"), f"a stale answer needs `Warning: 110 ...`, got {warning!r}"


def test_dead_upstream_serves_stale_tag_with_warning(make_pull, fake):
    reg, m = cache_tag(make_pull, fake)
    fake.stop()
    time.sleep(1.1)  # let the tag's TTL run out
    assert_stale(reg, m)
    assert_stale(reg, m, "HEAD")
    # Cached blobs and digests need no upstream at all.
    for d, data in m.blobs.items():
        r = reg.plain("GET", blob_path("org/app", d))
        assert r.status_code == 200 and r.content == data
    r = reg.plain("GET", manifest_path("org/app", m.digest), headers={"Accept": ACCEPT_ALL})
    assert r.status_code == 200 and r.content == m.body
    wait_until(lambda: warning_logged(reg), 5, what="a warning in regcache's log")


def test_dead_upstream_uncached_is_a_prompt_json_5xx(make_pull, fake):
    reg, m = cache_tag(make_pull, fake)
    fake.stop()
    for path in (manifest_path("org/app", "other"), manifest_path("never/seen", "v1"),
                 blob_path("org/app", unknown_digest())):
        t0 = time.monotonic()
        r = reg.plain("GET", path, headers={"Accept": ACCEPT_ALL})
        assert time.monotonic() - t0 < 15, f"{path} took {time.monotonic() - t0:.1f}s"
        assert_json_error(r, (502, 503, 504))


def test_upstream_refusing_connections_from_the_start(make_pull, fake):
    """regcache starts and serves (local repositories, the base endpoint) with every upstream
    down."""
    fake.stop()
    reg = make_pull([upstream_entry(UPSTREAM, fake.url, default=True),
                     upstream_entry("docker.io", "http://127.0.0.1:9")])
    assert reg.get("/v2/").status_code == 200
    img = push_image(reg, "local/app", "v1")
    assert_manifest(get_manifest(reg, "local/app", "v1", prefix=""), img)
    r = reg.plain("GET", manifest_path("org/app", "v1"), headers={"Accept": ACCEPT_ALL})
    assert_json_error(r, (502, 503, 504))


@pytest.mark.parametrize("status", [500, 502, 503, 401, 429])
def test_upstream_errors_serve_stale_tag_with_warning(make_pull, fake, status):
    reg, m = cache_tag(make_pull, fake)
    fake.fail(status, times=-1, path="/manifests/", retry_after="1" if status == 429 else None)
    time.sleep(1.1)  # let the tag's TTL run out
    assert_stale(reg, m)
    wait_until(lambda: warning_logged(reg), 5, what="a warning in regcache's log")


def test_upstream_500_on_a_cold_manifest_is_retried(make_pull, fake):
    m = seed_image(fake)
    fake.fail(500, times=1, path="/manifests/")
    reg = proxy_of(make_pull, fake)
    assert_manifest(get_manifest(reg, "org/app", m.digest), m)
    assert fake.count(kind="manifests") >= 2


def test_upstream_persistent_5xx_uncached_is_a_json_5xx(make_pull, fake):
    seed_image(fake)
    fake.fail(500, times=-1, path="/manifests/")
    reg = proxy_of(make_pull, fake)
    t0 = time.monotonic()
    r = reg.plain("GET", manifest_path("org/app", "v1"), headers={"Accept": ACCEPT_ALL})
    assert time.monotonic() - t0 < 15
    assert_json_error(r, (502, 503))


def test_upstream_429_uncached_is_toomanyrequests(make_pull, fake):
    seed_image(fake)
    fake.fail(429, times=-1, path="/manifests/", retry_after="30")
    reg = proxy_of(make_pull, fake)
    t0 = time.monotonic()
    r = reg.plain("GET", manifest_path("org/app", "v1"), headers={"Accept": ACCEPT_ALL})
    assert time.monotonic() - t0 < 15, "a Retry-After of 30 s must not hold the client"
    assert_json_error(r, 429, "TOOMANYREQUESTS")


def test_upstream_429_then_ok_on_blob(make_pull, fake):
    """A 429 with a short Retry-After on a blob: either retried after it (then 200 with the
    bytes) or passed on as 429 TOOMANYREQUESTS; never a 5xx, never wrong bytes."""
    m = seed_image(fake)
    d = layer_digests(m)[0]
    fake.fail(429, times=1, path="/blobs/", retry_after="1")
    reg = proxy_of(make_pull, fake)
    r = reg.plain("GET", blob_path("org/app", d))
    if r.status_code == 200:
        assert r.content == m.blobs[d]
    else:
        assert_json_error(r, 429, "TOOMANYREQUESTS")
        r = reg.get(blob_path("org/app", d))
        assert r.status_code == 200 and r.content == m.blobs[d]


def test_upstream_401_without_credentials_uncached(make_pull, fake):
    seed_image(fake)
    fake.require_basic("alice", "s3cret")
    reg = proxy_of(make_pull, fake)
    r = reg.plain("GET", manifest_path("org/app", "v1"), headers={"Accept": ACCEPT_ALL})
    assert_json_error(r, (401, 403), ("DENIED", "UNAUTHORIZED"))


from conftest import push_image, unknown_digest  # noqa: E402
