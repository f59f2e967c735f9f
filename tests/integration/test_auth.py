"""Client auth against the real server: htpasswd users with bcrypt passwords, anonymous pull on
and off, per-namespace write permission, the 401 challenge real clients act on, credentials
never in the log, the JSON access log, and bcrypt kept off the event loop.
"""

import base64
import gzip
import io
import json
import os
import shutil
import subprocess
import tarfile
import threading
import time

import pytest
import requests

from conftest import (OCI_LAYER, assert_error, config_blob, descriptor, oci_manifest,
                      push_blob, push_image, put_manifest, random_blob, sha256_digest,
                      unique_repo)

USERS = {"alice": "alice-pw-1", "bob": "bob-pw-2", "carol": "carol-pw-3"}
NAMESPACES = ("local", "team-a", "team-b", "team-ab")
ALLOW = """
[[auth.allow]]
user = "alice"
namespaces = ["team-a", "local/shared"]

[[auth.allow]]
user = "bob"
namespaces = ["team-b"]
"""
TOOL_TIMEOUT = 120


def bcrypt_entry(user, password):
    """An htpasswd line as `htpasswd -B` makes it (Debian's apache2-utils), else from libcrypt
    through Python's crypt module (the same $2y$ format)."""
    if shutil.which("htpasswd"):
        p = subprocess.run(["htpasswd", "-nbB", user, password], capture_output=True, text=True,
                           check=True)
        return p.stdout.strip()
    import crypt  # deprecated in 3.11, still present in Debian 12's Python
    return f"{user}:{crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=32))}"


@pytest.fixture(scope="module")
def htpasswd(tmp_path_factory):
    path = tmp_path_factory.mktemp("auth") / "htpasswd"
    lines = ["# regcache test users", ""] + [bcrypt_entry(u, p) for u, p in USERS.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def auth_extra(htpasswd, anonymous_pull=True, log_format="text"):
    return (f'log_format = "{log_format}"\n'
            f'[auth]\nhtpasswd = "{htpasswd}"\n'
            f"anonymous_pull = {'true' if anonymous_pull else 'false'}\n" + ALLOW)


@pytest.fixture
def open_registry(make_registry, htpasswd):
    """Auth on, anonymous pull allowed."""
    return make_registry(namespaces=NAMESPACES, extra=auth_extra(htpasswd)).start()


@pytest.fixture
def closed_registry(make_registry, htpasswd):
    """Auth on, anonymous pull refused."""
    return make_registry(namespaces=NAMESPACES,
                         extra=auth_extra(htpasswd, anonymous_pull=False)).start()


def as_user(reg, user):
    reg.session.auth = (user, USERS[user]) if user else None
    return reg


def assert_challenge(resp):
    assert_error(resp, 401, "UNAUTHORIZED")
    assert resp.headers.get("WWW-Authenticate") == 'Basic realm="regcache"', resp.headers


# ---------------------------------------------------------------------------------------------
# Anonymous pull, pushes and the challenge
# ---------------------------------------------------------------------------------------------

def test_anonymous_pull_allowed_when_configured(open_registry):
    reg = as_user(open_registry, "alice")
    repo = unique_repo("pull", "team-a")
    m = push_image(reg, repo, "v1")

    reg = as_user(reg, None)
    r = reg.get(f"/v2/{repo}/manifests/v1", headers={"Accept": m.media_type})
    assert r.status_code == 200 and r.content == m.body
    assert reg.get(f"/v2/{repo}/tags/list").json()["tags"] == ["v1"]
    # Docker's probe: 200, so anonymous pulls go ahead; the challenge beside it makes skopeo
    # and podman send their login with pushes.
    r = reg.get("/v2/")
    assert r.status_code == 200
    assert r.headers.get("WWW-Authenticate") == 'Basic realm="regcache"'
    assert reg.get("/api/status").status_code == 200


def test_anonymous_pull_denied_when_configured(closed_registry):
    reg = as_user(closed_registry, "alice")
    repo = unique_repo("closed", "team-a")
    push_image(reg, repo, "v1")

    reg = as_user(reg, None)
    for path in ("/v2/", f"/v2/{repo}/manifests/v1", f"/v2/{repo}/tags/list", "/v2/_catalog",
                 "/api/status"):
        assert_challenge(reg.get(path))
    assert_challenge(reg.head(f"/v2/{repo}/manifests/v1"))
    # Operational endpoints stay open for probes and Prometheus.
    for path in ("/metrics", "/healthz", "/readyz"):
        assert reg.get(path).status_code == 200, path

    reg = as_user(reg, "bob")  # any valid user may pull
    assert reg.get(f"/v2/{repo}/manifests/v1").status_code == 200
    assert reg.get("/v2/").status_code == 200


def test_push_without_credentials_is_challenged(open_registry):
    reg = as_user(open_registry, None)
    repo = unique_repo("anon", "team-a")
    assert_challenge(reg.post(f"/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"}))
    assert_challenge(reg.put(f"/v2/{repo}/manifests/v1", data=b"{}",
                             headers={"Content-Type": "application/json"}))
    assert_challenge(reg.delete(f"/v2/{repo}/manifests/sha256:" + "0" * 64))


def test_wrong_password_is_challenged_even_where_anonymous_would_pass(open_registry):
    reg = open_registry
    reg.session.auth = ("alice", "not-her-password")
    assert_challenge(reg.get("/v2/"))  # `docker login` with a typo fails here
    assert_challenge(reg.get(f"/v2/{unique_repo('x', 'team-a')}/tags/list"))
    assert_challenge(reg.post(f"/v2/{unique_repo('x', 'team-a')}/blobs/uploads/",
                              headers={"Content-Length": "0"}))
    reg.session.auth = ("mallory", "whatever")
    assert_challenge(reg.get("/v2/"))
    reg.session.auth = None
    assert_challenge(reg.get("/v2/", headers={"Authorization": "Bearer abc.def"}))
    # Empty Basic credentials are what containers/image sends without a login: anonymous.
    r = reg.get("/v2/", headers={"Authorization": "Basic " + base64.b64encode(b":").decode()})
    assert r.status_code == 200


# ---------------------------------------------------------------------------------------------
# Per-namespace write permission
# ---------------------------------------------------------------------------------------------

def test_users_push_only_into_their_namespaces(open_registry):
    reg = as_user(open_registry, "alice")
    push_image(reg, unique_repo("mine", "team-a"), "v1")
    push_image(reg, "local/shared/" + unique_repo("tool", "x").split("/")[1], "v1")

    for repo in (unique_repo("theirs", "team-b"), unique_repo("edge", "team-ab"),
                 unique_repo("priv", "local")):
        r = reg.post(f"/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"})
        errors = assert_error(r, 403, "DENIED", need_message=True)
        namespace = repo.split("/")[0]
        assert any(namespace in e["message"] for e in errors), errors

    reg = as_user(reg, "bob")
    repo = unique_repo("bobs", "team-b")
    push_image(reg, repo, "v1")
    assert_error(reg.post(f"/v2/{unique_repo('no', 'team-a')}/blobs/uploads/",
                          headers={"Content-Length": "0"}), 403, "DENIED")

    # A user with no [[auth.allow]] entry may pull but push nowhere.
    reg = as_user(reg, "carol")
    assert reg.get(f"/v2/{repo}/tags/list").status_code == 200
    assert_error(reg.post(f"/v2/{unique_repo('c', 'team-b')}/blobs/uploads/",
                          headers={"Content-Length": "0"}), 403, "DENIED")


def test_deletes_follow_write_permission(open_registry):
    reg = as_user(open_registry, "bob")
    repo = unique_repo("del", "team-b")
    m = push_image(reg, repo, "v1")
    digest = m.digest
    reg = as_user(reg, "alice")
    assert_error(reg.delete(f"/v2/{repo}/manifests/{digest}"), 403, "DENIED")
    reg = as_user(reg, "bob")
    assert reg.delete(f"/v2/{repo}/manifests/{digest}").status_code == 202


def test_a_body_sent_while_credentials_are_verified_arrives_whole(open_registry, htpasswd):
    """Cold cache: the single-POST upload's body arrives during the bcrypt and must be kept."""
    reg = as_user(open_registry, "bob")
    repo = unique_repo("cold", "team-b")
    data = random_blob(256 * 1024)
    digest = push_blob(reg, repo, data, method="single_post")
    assert reg.get(f"/v2/{repo}/blobs/{digest}").content == data


# ---------------------------------------------------------------------------------------------
# Real clients
# ---------------------------------------------------------------------------------------------

def make_oci_layout(path):
    """A one-layer image as an OCI layout directory, tagged v1."""
    (path / "blobs" / "sha256").mkdir(parents=True)

    def put(data):
        d = sha256_digest(data)
        (path / "blobs" / "sha256" / d.split(":")[1]).write_bytes(data)
        return d

    tar_bytes = io.BytesIO()
    with tarfile.open(fileobj=tar_bytes, mode="w") as tar:
        payload = os.urandom(4096)
        info = tarfile.TarInfo("hello.bin")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    layer = gzip.compress(tar_bytes.getvalue())
    config = config_blob()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": put(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER + "+gzip", "digest": put(layer),
                    "size": len(layer)}],
    }).encode()
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": put(manifest),
        "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": "v1"}}]}
    (path / "index.json").write_text(json.dumps(index))
    (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return path


@pytest.fixture
def skopeo_env(tmp_path):
    if not shutil.which("skopeo"):
        pytest.fail("`skopeo` not found on PATH: install the Debian package 'skopeo'")
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, HOME=str(home), XDG_RUNTIME_DIR=str(home),
               REGISTRY_AUTH_FILE=str(home / "auth.json"))
    for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        env.pop(k, None)
    return env


def skopeo(env, *args):
    return subprocess.run(["skopeo", "--insecure-policy", *args], capture_output=True,
                          text=True, timeout=TOOL_TIMEOUT, env=env)


@pytest.mark.parametrize("anonymous_pull", [True, False])
def test_skopeo_push_with_credentials(make_registry, htpasswd, skopeo_env, tmp_path,
                                      anonymous_pull):
    reg = make_registry(namespaces=NAMESPACES,
                        extra=auth_extra(htpasswd, anonymous_pull=anonymous_pull)).start()
    layout = make_oci_layout(tmp_path / "layout")
    ref = f"docker://{reg.host}/{unique_repo('skopeo', 'team-a')}:v1"

    p = skopeo(skopeo_env, "copy", "--dest-tls-verify=false", f"oci:{layout}:v1", ref)
    assert p.returncode != 0, "an anonymous push went through"
    p = skopeo(skopeo_env, "copy", "--dest-tls-verify=false", "--dest-creds",
               f"alice:{USERS['alice']}", f"oci:{layout}:v1", ref.replace("team-a", "team-b"))
    assert p.returncode != 0 and "denied" in p.stderr.lower(), p.stderr
    p = skopeo(skopeo_env, "copy", "--dest-tls-verify=false", "--dest-creds",
               f"alice:{USERS['alice']}", f"oci:{layout}:v1", ref)
    assert p.returncode == 0, p.stderr

    pull = ["copy", "--src-tls-verify=false", ref, f"oci:{tmp_path / 'pulled'}:v1"]
    p = skopeo(skopeo_env, *pull)
    assert (p.returncode == 0) == anonymous_pull, p.stderr
    p = skopeo(skopeo_env, "copy", "--src-creds", f"bob:{USERS['bob']}", *pull[1:])
    assert p.returncode == 0, p.stderr


# ---------------------------------------------------------------------------------------------
# Logs
# ---------------------------------------------------------------------------------------------

def test_credentials_never_reach_the_log(make_registry, htpasswd):
    reg = make_registry(namespaces=NAMESPACES,
                        extra='log_level = "debug"\n' + auth_extra(htpasswd)).start()
    reg = as_user(reg, "alice")
    repo = unique_repo("log", "team-a")
    push_image(reg, repo, "v1")
    reg.get(f"/v2/{repo}/tags/list?n=10&token=sekrit-query-token")
    reg.session.auth = ("alice", "wrong-" + USERS["alice"])
    reg.get("/v2/")
    reg.stop()

    log = reg.log_path.read_text()
    assert "user=alice" in log
    for secret in (USERS["alice"], base64.b64encode(f"alice:{USERS['alice']}".encode()).decode(),
                   "sekrit-query-token", "Authorization", "authorization"):
        assert secret not in log, f"{secret!r} is in the server log"


def test_json_access_log_lines_carry_the_fields(make_registry, htpasswd):
    reg = make_registry(namespaces=NAMESPACES,
                        extra=auth_extra(htpasswd, log_format="json")).start()
    reg = as_user(reg, "bob")
    repo = unique_repo("json", "team-b")
    push_image(reg, repo, "v1")
    reg.get(f'/v2/{repo}/manifests/v1?x="quoted"')
    reg.stop()

    lines = [line for line in reg.log_path.read_text().splitlines()
             if line.startswith("{")]
    docs = [json.loads(line) for line in lines]  # every line parses
    access = [d for d in docs if d.get("event") == "access"]
    events = [d for d in docs if "msg" in d]
    assert events and all({"time", "level", "msg"} <= d.keys() for d in events)
    get = [d for d in access if d["method"] == "GET" and "/manifests/v1" in d["path"]]
    assert get, access
    line = get[-1]
    for key in ("time", "req", "conn", "client", "status", "bytes", "ms", "user"):
        assert key in line, (key, line)
    assert line["status"] == 200 and line["user"] == "bob"
    assert line["path"] == f"/v2/{repo}/manifests/v1"  # no query string
    assert isinstance(line["bytes"], int) and isinstance(line["ms"], float)


def test_access_log_names_upstream_and_cache_outcome(make_registry, htpasswd):
    """A pull-through request (upstream unreachable here) says which upstream it went to."""
    reg = make_registry(namespaces=NAMESPACES, offline=False,
                        extra=auth_extra(htpasswd, log_format="json")).start()
    # Straight through requests: the session's hook fails any 5xx, and this one is a 503.
    requests.get(reg.url("/v2/library/nothing/manifests/latest"), timeout=30)
    reg.stop()
    access = [json.loads(line) for line in reg.log_path.read_text().splitlines()
              if line.startswith('{"time"') and '"event":"access"' in line]
    line = [d for d in access if d["path"] == "/v2/library/nothing/manifests/latest"][-1]
    assert line["upstream"] == "docker.io" and line["cache"] == "miss", line


# ---------------------------------------------------------------------------------------------
# bcrypt stays off the event loop
# ---------------------------------------------------------------------------------------------

def test_bcrypt_does_not_stall_other_requests(make_registry, tmp_path):
    # A costlier hash than the default 5, so the verifications clearly outlast the probe.
    path = tmp_path / "slow-htpasswd"
    import crypt
    entries = []
    for i in range(20):
        salt = crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 10)
        entries.append(f"user{i}:{crypt.crypt(f'pw{i}', salt)}")
    path.write_text("\n".join(entries) + "\n")
    reg = make_registry(namespaces=NAMESPACES, extra=auth_extra(path)).start()

    results = []

    def authenticated(i):
        r = requests.get(reg.url("/v2/"), auth=(f"user{i}", f"pw{i}"), timeout=60)
        results.append(r.status_code)

    threads = [threading.Thread(target=authenticated, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    time.sleep(0.05)  # let the verifications start
    latencies = []
    for _ in range(5):
        start = time.monotonic()
        r = requests.get(reg.url("/v2/"), timeout=10)
        latencies.append(time.monotonic() - start)
        assert r.status_code == 200
    for t in threads:
        t.join()
    assert results == [200] * 20
    assert max(latencies) < 0.1, f"anonymous /v2/ took {max(latencies):.3f}s during bcrypts"
