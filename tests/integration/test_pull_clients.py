"""Real clients pulling through regcache from a real upstream (Debian's docker-registry holding an
image built with umoci): skopeo by upstream-name prefix and by bare name on the default
upstream, podman directly and through a registries.conf mirror. Bytes and digests must match
upstream's, and a second pull must send no blob request upstream (docker-registry's access log
counts them).

Each client is first checked against docker-registry directly (test_*_direct), so that a failure
in the pull-through tests is regcache's, not the setup's."""

import shutil
import tempfile

import pytest

from pullthrough import *  # noqa: F401,F403 - fixtures and helpers

_PODMEN = []


@pytest.fixture(autouse=True)
def _close_podmen():
    yield
    while _PODMEN:
        _PODMEN.pop().close()


def regcache_for(make_pull, up):
    return make_pull(real_upstream_entries(up))


def skopeo_pull(env, ref, out: Path):
    skopeo(env, "copy", "--preserve-digests", "--src-tls-verify=false", ref, f"oci:{out}:v1")
    return layout_blobs(out, layout_descriptor(out, "v1")["digest"])


def assert_same_image(got: dict, oci_image):
    _, digest, want = oci_image
    assert set(got) == set(want), "a different set of blobs came through"
    for d, data in want.items():
        assert got[d] == data, f"blob {d} differs from upstream's"
    assert digest in got


# ---------------------------------------------------------------------------------------------
# skopeo
# ---------------------------------------------------------------------------------------------

def test_skopeo_direct(real_upstream, tool_env, oci_image, tmp_path):
    got = skopeo_pull(tool_env, f"docker://{real_upstream.netloc}/org/app:v1", tmp_path / "o")
    assert_same_image(got, oci_image)


def test_skopeo_pull_through_prefix(make_pull, real_upstream, tool_env, oci_image, tmp_path):
    reg = regcache_for(make_pull, real_upstream)
    ref = f"docker://{reg.host}/docker.io/org/app:v1"
    mark = real_upstream.mark()
    assert_same_image(skopeo_pull(tool_env, ref, tmp_path / "first"), oci_image)
    fetched = real_upstream.blob_gets(mark)
    assert fetched, "the first pull fetched no blob from upstream (did it go through regcache?)"
    assert not real_upstream.blob_gets(mark, agent="skopeo"), "skopeo reached upstream itself"

    mark = real_upstream.mark()
    assert_same_image(skopeo_pull(tool_env, ref, tmp_path / "second"), oci_image)
    assert real_upstream.blob_gets(mark) == [], "the second pull fetched blobs upstream again"


def test_skopeo_bare_name_on_default_upstream_gains_library(make_pull, real_upstream, tool_env,
                                                            oci_image, tmp_path):
    reg = regcache_for(make_pull, real_upstream)
    mark = real_upstream.mark()
    got = skopeo_pull(tool_env, f"docker://{reg.host}/alpine:v1", tmp_path / "o")
    assert_same_image(got, oci_image)
    paths = [a[1] for a in real_upstream.access(mark)]
    assert any(p.startswith("/v2/library/alpine/manifests/") for p in paths), paths

    repos = reg.get("/v2/_catalog").json()["repositories"]
    assert "docker.io/library/alpine" in repos, repos
    tags = reg.get("/v2/docker.io/library/alpine/tags/list").json()
    assert "v1" in tags["tags"]
    info = json.loads(skopeo(tool_env, "inspect", "--tls-verify=false",
                             f"docker://{reg.host}/alpine:v1").stdout)
    assert info["Digest"] == oci_image[1]


# ---------------------------------------------------------------------------------------------
# podman
# ---------------------------------------------------------------------------------------------

class Podman:
    """podman as root with its own storage (vfs), run root, registries.conf and events file.
    podman refuses a --runroot longer than 50 characters, so that one lives in a short temp
    dir of its own (removed by close())."""

    def __init__(self, base: Path, env: dict, registries_conf: str):
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        conf = base / "registries.conf"
        conf.write_text(registries_conf)
        self.runroot = Path(tempfile.mkdtemp(prefix="rcpod-", dir="/tmp"))
        self.env = dict(env, CONTAINERS_REGISTRIES_CONF=str(conf))
        self.prefix = [need_tool("podman"), "--root", base / "root", "--runroot", self.runroot,
                       "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs",
                       "--events-backend", "file", "--tmpdir", base / "tmp"]
        _PODMEN.append(self)

    def close(self):
        shutil.rmtree(self.runroot, ignore_errors=True)

    def __call__(self, *args, check=True):
        return run_tool(*self.prefix, *args, env=self.env, check=check)

    def digest(self, ref):
        return self("image", "inspect", "--format", "{{.Digest}}", ref).stdout.strip()


def insecure(*hosts):
    out = 'unqualified-search-registries = []\nshort-name-mode = "disabled"\n'
    for h in hosts:
        out += f'\n[[registry]]\nlocation = "{h}"\ninsecure = true\n'
    return out


def test_podman_direct(real_upstream, tool_env, oci_image, tmp_path):
    podman = Podman(tmp_path / "p", tool_env, insecure(real_upstream.netloc))
    ref = f"{real_upstream.netloc}/org/app:v1"
    podman("pull", ref)
    assert podman.digest(ref) == oci_image[1]


def test_podman_pull_through_regcache(make_pull, real_upstream, tool_env, oci_image, tmp_path):
    reg = regcache_for(make_pull, real_upstream)
    ref = f"{reg.host}/docker.io/org/app:v1"
    mark = real_upstream.mark()
    first = Podman(tmp_path / "first", tool_env, insecure(reg.host))
    first("pull", ref)
    assert first.digest(ref) == oci_image[1]
    assert real_upstream.blob_gets(mark), "the first pull fetched no blob from upstream"
    assert not real_upstream.blob_gets(mark, agent="podman")

    # A second podman with empty storage: everything from the cache.
    mark = real_upstream.mark()
    second = Podman(tmp_path / "second", tool_env, insecure(reg.host))
    second("pull", ref)
    assert second.digest(ref) == oci_image[1]
    assert real_upstream.blob_gets(mark) == [], "the second pull fetched blobs upstream again"
    served = [a for a in reg.access_lines() if "/blobs/" in a[1] and a[0] == "GET"]
    assert served and all(a[2] in (200, 206) for a in served), served

    # The image podman stored holds upstream's bytes: its layer diff matches the config's.
    cfg = json.loads(second("image", "inspect", ref).stdout)[0]
    assert cfg["RootFS"]["Layers"], cfg


def test_podman_mirror_with_path(make_pull, real_upstream, tool_env, oci_image, tmp_path):
    """registries.conf `[[registry.mirror]] location = "R/docker.io"`: podman asks regcache for
    /v2/docker.io/library/alpine/...; the primary location refuses connections (port 9), so
    only the mirror can succeed."""
    reg = regcache_for(make_pull, real_upstream)
    conf = ('unqualified-search-registries = []\n'
            '[[registry]]\nprefix = "docker.io"\nlocation = "127.0.0.1:9"\ninsecure = true\n'
            f'[[registry.mirror]]\nlocation = "{reg.host}/docker.io"\ninsecure = true\n')
    podman = Podman(tmp_path / "p", tool_env, conf)
    podman("pull", "docker.io/library/alpine:v1")
    assert podman.digest("docker.io/library/alpine:v1") == oci_image[1]
    assert any(p.startswith("/v2/docker.io/library/alpine/") and s == 200
               for _, p, s in reg.access_lines()), reg.access_lines()
