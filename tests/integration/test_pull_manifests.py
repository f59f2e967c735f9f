"""Pull-through manifests against the fake upstream: digests cached forever, tags trusted for
tag_ttl then revalidated with HEAD, shared upstream requests, verification of what upstream
sends, tag lists and the catalog, and offline mode. The fake's request log is the witness."""

import time

import requests

from pullthrough import *  # noqa: F401,F403 - fixtures and helpers


def manifest_gets(fake, repo="org/app"):
    return fake.count("GET", "manifests", name=repo)


def manifest_heads(fake, repo="org/app"):
    return fake.count("HEAD", "manifests", name=repo)


def test_manifest_by_digest_is_cached_forever(make_pull, fake):
    m = seed_image(fake)
    reg = proxy_of(make_pull, fake, tag_ttl="1s")
    assert_manifest(get_manifest(reg, "org/app", m.digest), m)
    first = len(fake.log())
    assert first >= 1

    # Past the tag TTL a digest still needs no upstream traffic at all, GET or HEAD.
    time.sleep(1.1)  # waiting for time itself: the TTL has to run out
    for method in ("GET", "HEAD", "GET"):
        assert_manifest(get_manifest(reg, "org/app", m.digest, method=method), m)
    assert len(fake.log()) == first, f"digest requests went upstream: {fake.log()[first:]}"


def test_tag_is_trusted_within_ttl(make_pull, fake):
    m = seed_image(fake)
    reg = proxy_of(make_pull, fake, tag_ttl="5m")
    assert_manifest(get_manifest(reg, "org/app", "v1"), m)
    n = len(fake.log())
    for method in ("GET", "HEAD") * 3:
        assert_manifest(get_manifest(reg, "org/app", "v1", method=method), m)
    assert len(fake.log()) == n, f"a fresh tag went upstream: {fake.log()[n:]}"


def test_unchanged_tag_is_revalidated_with_head_only(make_pull, fake):
    m = seed_image(fake)
    reg = proxy_of(make_pull, fake, tag_ttl="1s")
    assert_manifest(get_manifest(reg, "org/app", "v1"), m)
    gets = manifest_gets(fake)
    assert gets == 1

    for _ in range(2):
        heads = manifest_heads(fake)
        time.sleep(1.1)  # let the TTL run out
        assert_manifest(get_manifest(reg, "org/app", "v1"), m)
        assert manifest_heads(fake) > heads, "a stale tag was not revalidated upstream"
        assert manifest_gets(fake) == gets, \
            "an unchanged tag was fetched again with GET (HEAD's digest matched)"
    # A revalidated tag is fresh again: no upstream request right after.
    n = len(fake.log())
    assert_manifest(get_manifest(reg, "org/app", "v1"), m)
    assert len(fake.log()) == n


def test_moved_tag_is_picked_up_after_ttl(make_pull, fake):
    old = seed_image(fake)
    reg = proxy_of(make_pull, fake, tag_ttl="2s")
    assert_manifest(get_manifest(reg, "org/app", "v1"), old)
    cached_at = time.monotonic()

    new = seed_image(fake, tag="v1", layer_sizes=(1000,))
    if time.monotonic() - cached_at < 1.5:
        assert_manifest(get_manifest(reg, "org/app", "v1"), old)  # still within the TTL

    r = wait_until(lambda: (lambda r: r if r.headers.get("Docker-Content-Digest") == new.digest
                            else None)(get_manifest(reg, "org/app", "v1")),
                   timeout=6.0, interval=0.2, what="the moved tag")
    assert_manifest(r, new)
    # The new digest was fetched (by digest after a HEAD, or by tag).
    assert fake.count("GET", "manifests", ref=new.digest) + \
        fake.count("GET", "manifests", ref="v1") >= 1


def test_client_head_on_moved_tag_makes_no_upstream_get(make_pull, fake):
    old = seed_image(fake)
    reg = proxy_of(make_pull, fake, tag_ttl="1s")
    assert_manifest(get_manifest(reg, "org/app", "v1"), old)
    gets = manifest_gets(fake)

    new = seed_image(fake, tag="v1", layer_sizes=(1000,))
    time.sleep(1.1)  # let the TTL run out
    h = get_manifest(reg, "org/app", "v1", method="HEAD")
    assert h.status_code == 200
    assert h.headers.get("Docker-Content-Digest") == new.digest, \
        "a HEAD on a stale tag must answer with the upstream's current digest"
    assert int(h.headers.get("Content-Length", -1)) == len(new.body)
    assert manifest_gets(fake) == gets, "a client HEAD caused an upstream manifest GET"

    # The GET that follows fetches the new manifest.
    assert_manifest(get_manifest(reg, "org/app", "v1"), new)


def test_concurrent_requests_for_a_cold_tag_share_one_upstream_request(make_pull, fake):
    m = seed_image(fake)
    fake.manifest_delay = 0.5  # so the requests overlap
    reg = proxy_of(make_pull, fake)

    def pull(_):
        return requests.get(reg.url(manifest_path("org/app", "v1")),
                            headers={"Accept": ACCEPT_ALL}, timeout=CLIENT_TIMEOUT)

    for r in run_parallel(10, pull):
        assert_manifest(r, m)
    assert manifest_gets(fake) == 1, \
        f"10 concurrent requests made {manifest_gets(fake)} upstream manifest GETs"


def test_corrupt_manifest_from_upstream_is_never_served_or_cached(make_pull, fake):
    m = seed_image(fake)
    reg = proxy_of(make_pull, fake)
    for ref in (m.digest, "v1"):
        fake.corrupt_manifest("org/app", ref, times=-1)  # retrying cannot help
        r = reg.plain("GET", manifest_path("org/app", ref), headers={"Accept": ACCEPT_ALL})
        assert r.status_code != 200 or r.content == m.body, \
            f"served manifest bytes that do not match {m.digest} (by {ref})"
        # By digest the corrupt bytes are all upstream has: an error. By tag, regcache may
        # resolve the tag with HEAD and fetch by digest, which this fake does not corrupt.
        if ref == m.digest:
            assert r.status_code >= 400, f"expected an error for a corrupt manifest, got {r}"
        if r.content:
            check_error_body(r.content)
    fake.clear_faults()

    # Nothing was cached: the next requests fetch again and get the real bytes.
    before = manifest_gets(fake)
    assert_manifest(get_manifest(reg, "org/app", m.digest), m)
    assert_manifest(get_manifest(reg, "org/app", "v1"), m)
    assert manifest_gets(fake) > before


def test_upstream_404_is_manifest_unknown(make_pull, fake):
    seed_image(fake)
    reg = proxy_of(make_pull, fake)
    assert_error(get_manifest(reg, "org/app", "nope"), 404, "MANIFEST_UNKNOWN")
    assert_error(get_manifest(reg, "org/app", unknown_digest()), 404, "MANIFEST_UNKNOWN")
    r = reg.get(blob_path("org/app", unknown_digest()))
    assert_error(r, 404, "BLOB_UNKNOWN")


def test_tag_list_comes_from_upstream_then_from_cache(make_pull, fake):
    m = seed_image(fake)
    fake.set_tag("org/app", "never-pulled", m.digest)
    reg = proxy_of(make_pull, fake)
    assert_manifest(get_manifest(reg, "org/app", "v1"), m)

    r = reg.get(f"/v2/{UPSTREAM}/org/app/tags/list")
    assert r.status_code == 200
    assert sorted(r.json()["tags"]) == ["never-pulled", "v1"], "tags should come from upstream"
    assert fake.count("GET", "tags") >= 1

    fake.stop()
    r = reg.plain("GET", f"/v2/{UPSTREAM}/org/app/tags/list")
    assert r.status_code == 200, f"{r.status_code} {r.content[:200]!r}"
    assert r.json()["tags"] == ["v1"], "with upstream down, the cached tags are listed"


def test_catalog_lists_cached_repositories(make_pull, fake):
    m = seed_image(fake, "org/app")
    m2 = seed_image(fake, "team/tool", "latest")
    reg = proxy_of(make_pull, fake)
    assert_manifest(get_manifest(reg, "org/app", "v1"), m)
    assert_manifest(get_manifest(reg, "team/tool", "latest", prefix=""), m2)
    repos = reg.get("/v2/_catalog").json()["repositories"]
    assert f"{UPSTREAM}/org/app" in repos and f"{UPSTREAM}/team/tool" in repos, repos


def _cache_everything(reg, m):
    assert_manifest(get_manifest(reg, "org/app", "v1"), m)
    for d, data in m.blobs.items():
        r = reg.get(blob_path("org/app", d))
        assert r.status_code == 200 and r.content == data


def _check_offline(reg, fake, m):
    n = len(fake.log())
    assert_manifest(get_manifest(reg, "org/app", "v1"), m)
    assert_manifest(get_manifest(reg, "org/app", m.digest), m)
    for d, data in m.blobs.items():
        r = reg.get(blob_path("org/app", d))
        assert r.status_code == 200 and r.content == data
    assert_error(get_manifest(reg, "org/app", "uncached"), 404, "MANIFEST_UNKNOWN")
    assert_error(get_manifest(reg, "other/repo", "v1"), 404, ("MANIFEST_UNKNOWN", "NAME_UNKNOWN"))
    assert_error(reg.get(blob_path("org/app", unknown_digest())), 404, "BLOB_UNKNOWN")
    assert len(fake.log()) == n, f"offline mode contacted the upstream: {fake.log()[n:]}"


def test_offline_config_serves_cache_and_never_contacts_upstream(make_pull, fake):
    m = seed_image(fake)
    seed_image(fake, "other/repo")
    reg = proxy_of(make_pull, fake, tag_ttl="1s")
    _cache_everything(reg, m)
    reg.stop()
    reg.configure(offline=True)
    reg.start()
    time.sleep(1.1)  # the tag is past its TTL: online, it would be revalidated
    _check_offline(reg, fake, m)


def test_offline_flag_serves_cache_and_never_contacts_upstream(make_pull, fake):
    m = seed_image(fake)
    seed_image(fake, "other/repo")
    reg = proxy_of(make_pull, fake, tag_ttl="1s")
    _cache_everything(reg, m)
    reg.stop()
    reg.configure(offline=False, cli_offline=True)
    reg.start()
    assert "offline=true" in reg.log_text().split("start #2")[-1]
    time.sleep(1.1)
    _check_offline(reg, fake, m)


from conftest import unknown_digest  # noqa: E402
