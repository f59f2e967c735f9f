"""Pull-through routing: ?ns=, an upstream-name prefix, local namespaces, the default upstream
with Docker Hub's library/, and pushes refused on upstream-backed repositories. The fake upstream's
log shows what reached it (and that refused requests reach nothing)."""

import pytest

from pullthrough import *  # noqa: F401,F403 - fixtures and helpers


def test_ns_selects_the_upstream(make_pull, fake, fake2):
    m = seed_image(fake2, "org/app", "v1")
    reg = make_pull([upstream_entry(UPSTREAM, fake.url, default=True),
                     upstream_entry("second.test", fake2.url)])
    r = reg.get("/v2/org/app/manifests/v1?ns=second.test", headers={"Accept": ACCEPT_ALL})
    assert_manifest(r, m)
    assert fake2.count(kind="manifests", name="org/app") >= 1
    assert fake.count(kind="manifests") == 0, "the default upstream was asked despite ns="

    blob = layer_digests(m)[0]
    b = reg.get(f"/v2/org/app/blobs/{blob}?ns=second.test")
    assert b.status_code == 200 and b.content == m.blobs[blob]


def test_unknown_ns_is_name_unknown_and_sends_nothing(make_pull, fake):
    seed_image(fake, "org/app", "v1")
    reg = proxy_of(make_pull, fake)
    for path in ("/v2/org/app/manifests/v1?ns=nowhere.example",
                 f"/v2/org/app/blobs/{unknown_digest_()}?ns=nowhere.example",
                 "/v2/org/app/tags/list?ns=nowhere.example"):
        r = reg.get(path)
        errors = assert_error(r, 404, "NAME_UNKNOWN", need_message=True)
        assert any(UPSTREAM in e.get("message", "") for e in errors), \
            f"the message should list the configured upstreams: {errors}"
    assert fake.log() == [], f"an unknown ns= reached the upstream: {fake.log()}"


def test_prefix_selects_the_upstream(make_pull, fake, fake2):
    m = seed_image(fake2, "org/app", "v2")
    reg = make_pull([upstream_entry(UPSTREAM, fake.url, default=True),
                     upstream_entry("second.test", fake2.url)])
    assert_manifest(get_manifest(reg, "org/app", "v2", prefix="second.test"), m)
    assert [r.path for r in fake2.requests(kind="manifests")][0] == "/v2/org/app/manifests/v2"
    assert fake.count(kind="manifests") == 0


def test_bare_name_goes_to_the_default_upstream(make_pull, fake):
    m = seed_image(fake, "org/app", "v1")
    reg = proxy_of(make_pull, fake)
    assert_manifest(get_manifest(reg, "org/app", "v1", prefix=""), m)
    assert fake.requests(kind="manifests")[0].name == "org/app"


def test_docker_io_single_component_names_gain_library(make_pull, fake, fake2):
    m = seed_image(fake2, "library/alpine", "3")
    reg = make_pull([upstream_entry(UPSTREAM, fake.url),
                     upstream_entry("docker.io", fake2.url, default=True)])
    assert_manifest(get_manifest(reg, "alpine", "3", prefix=""), m)
    assert fake2.requests(kind="manifests")[0].name == "library/alpine"
    # The prefixed form too, and the same cached content behind both.
    assert_manifest(get_manifest(reg, "alpine", "3", prefix="docker.io"), m)
    assert_manifest(get_manifest(reg, "library/alpine", "3", prefix="docker.io"), m)
    assert all(r.name == "library/alpine" for r in fake2.requests(kind="manifests"))
    assert fake.log() == []


def test_local_namespace_is_never_fetched(make_pull, fake):
    seed_image(fake, "local/app", "v1")  # the same name upstream must not leak through
    reg = proxy_of(make_pull, fake)
    r = get_manifest(reg, "local/app", "v1", prefix="")
    assert_error(r, 404, ("MANIFEST_UNKNOWN", "NAME_UNKNOWN"))
    assert fake.log() == []

    # Pushes into the local namespace keep working next to the upstreams.
    repo = "local/pushed"
    img = push_image(reg, repo, "v1")
    assert_manifest(get_manifest(reg, repo, "v1", prefix=""), img)
    assert fake.log() == []


@pytest.mark.parametrize("path_prefix,query", [("", ""), (UPSTREAM + "/", ""),
                                              ("", "?ns=" + UPSTREAM)])
def test_pushes_into_upstream_repos_are_unsupported(make_pull, fake, path_prefix, query):
    m = seed_image(fake, "org/app", "v1")
    reg = proxy_of(make_pull, fake)
    base = f"/v2/{path_prefix}org/app"
    data = b"pushed"
    attempts = [
        reg.post(f"{base}/blobs/uploads/{query}", headers={"Content-Length": "0"}),
        reg.post(f"{base}/blobs/uploads/{query}{'&' if query else '?'}"
                 f"digest={sha256_digest(data)}", data=data),
        reg.put(f"{base}/manifests/v9{query}", data=m.body,
                headers={"Content-Type": OCI_MANIFEST}),
        reg.delete(f"{base}/manifests/{m.digest}{query}"),
        reg.delete(f"{base}/blobs/{layer_digests(m)[0]}{query}"),
    ]
    for r in attempts:
        errors = assert_error(r, 405, "UNSUPPORTED", need_message=True)
        assert any("local" in e.get("message", "") for e in errors), \
            f"the message should say pushes go to local/: {errors}"
    assert [r for r in fake.log() if r.method not in ("GET", "HEAD")] == []


def unknown_digest_():
    from conftest import unknown_digest
    return unknown_digest()


from conftest import push_image  # noqa: E402
