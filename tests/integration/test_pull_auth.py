"""Upstream authentication: Docker Hub's Bearer token flow with tokens cached per scope, Basic
when the upstream asks for it, and blob redirects to another host followed without credentials.
Secrets must never reach regcache's log."""

from pullthrough import *  # noqa: F401,F403 - fixtures and helpers


def pull_all(reg, repo, m, prefix=UPSTREAM):
    assert_manifest(get_manifest(reg, repo, "v1", prefix=prefix), m)
    for d, data in m.blobs.items():
        r = reg.get(blob_path(repo, d, prefix))
        assert r.status_code == 200 and r.content == data


def issued_tokens(fake):
    return {r.headers["authorization"][len("Bearer "):] for r in fake.log()
            if r.headers.get("authorization", "").startswith("Bearer ")}


def test_bearer_token_flow_and_per_scope_cache(make_pull, fake):
    a = seed_image(fake, "org/app")
    b = seed_image(fake, "org/other")
    fake.require_bearer()
    reg = proxy_of(make_pull, fake)

    pull_all(reg, "org/app", a)
    scope_a = "repository:org/app:pull"
    assert fake.token_requests(scope_a) == 1, \
        f"one token for the scope, reused for every request: {fake.token_requests(scope_a)}"
    token_reqs = fake.requests(kind="token")
    assert all(r.query.get("service") == "fake" for r in token_reqs)

    pull_all(reg, "org/other", b)
    assert fake.token_requests("repository:org/other:pull") == 1
    assert fake.token_requests(scope_a) == 1

    # Authenticated requests carried the tokens; regcache logged none of them.
    tokens = issued_tokens(fake)
    assert tokens, "no request carried a Bearer token"
    log = reg.log_text()
    for tok in tokens:
        assert tok not in log, "a token was written to regcache's log"


def test_basic_auth_with_password_file(make_pull, fake, tmp_path):
    m = seed_image(fake)
    fake.require_basic("alice", "s3cret-pw")
    pw = tmp_path / "pw"
    pw.write_text("s3cret-pw\n")
    reg = proxy_of(make_pull, fake, username="alice", password_file=pw)
    pull_all(reg, "org/app", m)
    assert any(r.headers.get("authorization", "").startswith("Basic ") for r in fake.log())
    assert "s3cret-pw" not in reg.log_text()


def test_bearer_with_credentials_sends_them_to_the_realm_only(make_pull, fake, tmp_path):
    m = seed_image(fake)
    fake.require_bearer()
    pw = tmp_path / "pw"
    pw.write_text("hunter2\n")
    reg = proxy_of(make_pull, fake, username="bob", password_file=pw)
    pull_all(reg, "org/app", m)
    for r in fake.log():
        auth = r.headers.get("authorization", "")
        if r.kind == "token":
            assert auth.startswith("Basic "), "the token request should carry the credentials"
        else:
            assert not auth.startswith("Basic "), f"credentials sent to {r.path}"
    assert "hunter2" not in reg.log_text()


def test_blob_redirect_followed_without_authorization(make_pull, fake, fake2):
    m = seed_image(fake)
    for d, data in m.blobs.items():
        fake2.add_blob(data)
    fake.require_bearer()
    fake.redirect_blobs_to(fake2)
    reg = proxy_of(make_pull, fake)
    pull_all(reg, "org/app", m)

    cdn = fake2.requests("GET", kind="cdn")
    assert {r.ref for r in cdn} == set(m.blobs), "every blob should come from the redirect"
    for r in cdn:
        assert "authorization" not in r.headers, \
            f"credentials were forwarded to the redirect host: {r.headers}"
    # The 307 came from the authenticated upstream request.
    assert all(r.headers.get("authorization", "").startswith("Bearer ")
               for r in fake.requests("GET", kind="blobs"))
