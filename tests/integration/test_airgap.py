"""warm, export and import: fill a cache from an upstream, carry it across an air gap as an OCI
image layout tar, and serve it on the other side with no upstream at all.

The module builds one scenario and each test checks a part of it:
  A  a regcache data dir warmed from the fake upstream (warm runs its own in-process server)
  T  `regcache export --all` of A: the tar
  B  a second regcache, offline, whose upstream address refuses connections, that imports T
     while it serves
skopeo (a Debian package CI installs) pulls from B and reads T directly.
"""

import json
import os
import re
import subprocess
import tarfile
from pathlib import Path

import pytest

from conftest import ACCEPT_ALL, config_blob, docker_manifest, index_manifest, oci_manifest, \
    random_blob
from fake_upstream import FakeUpstream
from pullthrough import UPSTREAM, PullRegistry, layout_blobs, need_tool, run_tool, \
    upstream_entry, write_pull_config

DEAD_UPSTREAM = "http://127.0.0.1:9"  # discard port: connections are refused
CLI_TIMEOUT = 120


def cli(binary, *args, check=None):
    """Runs `regcache ARGS`; `check` = the exit code required (None: any)."""
    p = subprocess.run([binary, *map(str, args)], capture_output=True, text=True,
                       timeout=CLI_TIMEOUT, stdin=subprocess.DEVNULL)
    if check is not None:
        assert p.returncode == check, \
            f"regcache {' '.join(map(str, args))} -> {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


def tool_environment(home: Path):
    home.mkdir(parents=True, exist_ok=True)
    (home / "auth.json").write_text("{}")
    env = dict(os.environ, HOME=str(home), XDG_RUNTIME_DIR=str(home),
               REGISTRY_AUTH_FILE=str(home / "auth.json"))
    for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY",
              "all_proxy", "NO_PROXY", "no_proxy"):
        env.pop(k, None)
    return env


def skopeo(env, *args, check=True):
    return run_tool(need_tool("skopeo"), "--insecure-policy", *args, env=env, check=check)


def store_snapshot(data_dir: Path):
    """path -> (size, mtime_ns) of every file under blobs/, and the index's data file."""
    out = {}
    for p in sorted((data_dir / "blobs").rglob("*")):
        if p.is_file():
            st = p.stat()
            out[str(p.relative_to(data_dir))] = (st.st_size, st.st_mtime_ns)
    st = (data_dir / "index" / "data.mdb").stat()
    out["index/data.mdb"] = (st.st_size, st.st_mtime_ns)
    return out


def oci_image(arch="amd64", sizes=(3000, 5000)):
    layers = [random_blob(n) for n in sizes]
    return oci_manifest(layers, config=config_blob(arch, layers))


class Image:
    """An image the fake upstream holds: its manifest (an index's children too) and blobs."""

    def __init__(self, repo, tag, top, children=()):
        self.repo, self.tag, self.top, self.children = repo, tag, top, list(children)

    @property
    def ref_name(self):
        return f"{UPSTREAM}/{self.repo}:{self.tag}"

    def manifests(self):
        return [self.top, *self.children]

    def blobs(self):
        out = {}
        for m in self.manifests():
            out.update(m.blobs)
        return out


def add_index(fake, repo, tag, archs):
    children = [(oci_image(arch), arch) for arch in archs]
    for child, _ in children:
        fake.add_manifest(repo, child.body, child.media_type, None, child.blobs.values())
    top = index_manifest(children)
    fake.add_manifest(repo, top.body, top.media_type, tag)
    return Image(repo, tag, top, [c for c, _ in children])


# ---------------------------------------------------------------------------------------------
# The scenario
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def upstream():
    fake = FakeUpstream().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def images(upstream):
    """app: an OCI image; multi: an index of amd64 and arm64; plat: an index warmed for arm64
    only; legacy: a Docker schema2 image. app and multi share nothing; legacy has its own."""
    app = oci_image()
    upstream.add_image("org/app", "v1", app)
    layers = [random_blob(4000)]
    legacy = docker_manifest(layers, config=config_blob("amd64", layers))
    upstream.add_image("org/legacy", "1.0", legacy)
    return {
        "app": Image("org/app", "v1", app),
        "multi": add_index(upstream, "org/multi", "v2", ("amd64", "arm64")),
        "plat": add_index(upstream, "org/plat", "v3", ("amd64", "arm64")),
        "legacy": Image("org/legacy", "1.0", legacy),
    }


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("airgap")


@pytest.fixture(scope="module")
def warmed(regcache_bin, work, upstream, images):
    """Data dir A warmed with every image (plat for linux/arm64 only). Returns (config, the
    warm runs' results, the fake's log of the first runs)."""
    config = work / "a.toml"
    write_pull_config(config, work / "a", [upstream_entry(UPSTREAM, upstream.url, default=True)])
    upstream.clear_log()
    first = cli(regcache_bin, "warm", "-c", config, f"{UPSTREAM}/org/app:v1", "org/multi:v2",
                "org/legacy:1.0", check=0)
    plat = cli(regcache_bin, "warm", "-c", config, "--platform", "linux/arm64", "org/plat:v3",
               check=0)
    log = upstream.log()
    again = cli(regcache_bin, "warm", "-c", config, f"{UPSTREAM}/org/app:v1", "org/multi:v2",
                "org/legacy:1.0", check=0)
    return config, {"first": first, "plat": plat, "again": again,
                    "again_log": upstream.log()[len(log):]}, log


@pytest.fixture(scope="module")
def exported(regcache_bin, work, warmed):
    tar = work / "images.tar"
    p = cli(regcache_bin, "export", "-c", warmed[0], "-o", tar, "--all", check=0)
    return tar, p


@pytest.fixture(scope="module")
def offline_b(regcache_bin, work, exported):
    """regcache B: offline, its upstream unreachable; T imported while it serves."""
    reg = PullRegistry(regcache_bin, work / "b",
                       [upstream_entry(UPSTREAM, DEAD_UPSTREAM, default=True)], offline=True)
    reg.start()
    p = cli(regcache_bin, "import", "-c", reg.config_path, exported[0], check=0)
    yield reg, p
    reg.close()


@pytest.fixture(scope="module")
def tool_env(work):
    return tool_environment(work / "home")


# ---------------------------------------------------------------------------------------------
# (a) warm
# ---------------------------------------------------------------------------------------------

def test_warm_fetches_every_blob_once_and_reports_each_image(warmed, images):
    _, runs, log = warmed
    blob_gets = {}
    for r in log:
        if r.method == "GET" and r.kind == "blobs":
            blob_gets[r.ref] = blob_gets.get(r.ref, 0) + 1
    wanted = {**images["app"].blobs(), **images["multi"].blobs(), **images["legacy"].blobs(),
              **images["plat"].children[1].blobs}
    assert blob_gets == {d: 1 for d in wanted}, "each blob fetched from upstream exactly once"

    out = runs["first"].stderr
    assert re.search(rf"warm\.image ref={UPSTREAM}/org/app:v1 manifests=1 blobs=3 .*bytes=\d+ "
                     r".*ms=\d+", out), out
    assert re.search(rf"warm\.image ref={UPSTREAM}/org/multi:v2 manifests=3 blobs=6 ", out), out
    assert "\r" not in out, "no progress bar when stderr is not a terminal"


def test_warm_with_platform_takes_only_that_platform(warmed, images, upstream):
    _, runs, log = warmed
    plat = images["plat"]
    fetched = {r.ref for r in log if r.method == "GET" and r.kind == "blobs"}
    assert set(plat.children[1].blobs) <= fetched
    assert not set(plat.children[0].blobs) & fetched, "amd64 blobs were fetched"
    assert re.search(rf"warm\.image ref={UPSTREAM}/org/plat:v3 manifests=2 blobs=3 ",
                     runs["plat"].stderr), runs["plat"].stderr


def test_warm_again_fetches_no_blob(warmed):
    _, runs, _ = warmed
    assert not [r for r in runs["again_log"] if r.kind == "blobs" and r.method == "GET"]
    assert "held=3" in runs["again"].stderr


def test_warm_names_the_refs_that_failed(regcache_bin, warmed, images):
    config = warmed[0]
    p = cli(regcache_bin, "warm", "-c", config, "org/app:v1", "org/missing:v9", "Bad_Name")
    assert p.returncode == 1
    assert re.search(r"warm\.failed ref=org/missing:v9 error=\".*404", p.stderr), p.stderr
    assert "warm.failed ref=Bad_Name" in p.stderr
    assert "warm.image ref=" in p.stderr  # the good one still went through


def test_warm_reads_refs_from_a_file(regcache_bin, warmed, work):
    refs = work / "refs.txt"
    refs.write_text("# images for the site\n\norg/app:v1   # the app\n  org/legacy:1.0\n")
    p = cli(regcache_bin, "warm", "-c", warmed[0], "-f", refs, check=0)
    assert p.stderr.count("warm.image ") == 2, p.stderr


# ---------------------------------------------------------------------------------------------
# (b) export on A, import on B (offline, no upstream): skopeo pulls everything
# ---------------------------------------------------------------------------------------------

def test_export_writes_an_oci_layout_with_full_refs(exported, images):
    tar, _ = exported
    with tarfile.open(tar) as t:
        names = t.getnames()
        layout = json.loads(t.extractfile("oci-layout").read())
        index = json.loads(t.extractfile("index.json").read())
    assert layout == {"imageLayoutVersion": "1.0.0"}
    by_ref = {d["annotations"]["org.opencontainers.image.ref.name"]: d for d in index["manifests"]}
    assert set(by_ref) == {img.ref_name for img in images.values()}
    for img in images.values():
        d = by_ref[img.ref_name]
        assert d["digest"] == img.top.digest and d["size"] == len(img.top.body)
        assert d["mediaType"] == img.top.media_type
        assert d["annotations"]["io.regcache.repository"] == f"{UPSTREAM}/{img.repo}"
    blob_entries = [n for n in names if n.startswith("blobs/sha256/") and len(n) > 20]
    assert len(blob_entries) == len(set(blob_entries)), "a blob written twice"
    plat_amd64 = images["plat"].children[0]
    assert f"blobs/sha256/{plat_amd64.digest.split(':')[1]}" not in names
    assert f"export.partial index={images['plat'].top.digest} child={plat_amd64.digest}" in \
        exported[1].stderr, "the platform left out is not reported"


def pulled_blobs(layout: Path, digest: str):
    return layout_blobs(layout, digest)


def test_skopeo_pulls_every_image_from_the_offline_import(offline_b, images, tool_env, work):
    reg, p = offline_b
    assert p.stderr.count("result=loaded") == len(images), p.stderr
    for key, img in images.items():
        base = f"docker://127.0.0.1:{reg.port}/{UPSTREAM}/{img.repo}"
        for ref in (f":{img.tag}", f"@{img.top.digest}"):
            out = work / f"pull-{key}-{ref[0] == '@'}"
            extra = []
            if key == "multi":
                extra = ["--all"]
            elif key == "plat":
                extra = ["--override-os", "linux", "--override-arch", "arm64"]
            if key == "legacy":
                # Docker schema2 is kept as is only by the dir: transport.
                skopeo(tool_env, "copy", "--src-tls-verify=false", *extra, base + ref,
                       f"dir:{out}")
                assert (out / "manifest.json").read_bytes() == img.top.body
                for d, data in img.top.blobs.items():
                    assert (out / d.split(":")[1]).read_bytes() == data
                continue
            skopeo(tool_env, "copy", "--src-tls-verify=false", "--preserve-digests", *extra,
                   base + ref, f"oci:{out}:x")
            got = json.loads((out / "index.json").read_text())["manifests"][0]["digest"]
            want = img.children[1] if key == "plat" else img.top
            assert got == want.digest
            blobs = pulled_blobs(out, got)
            expected = {want.digest: want.body, **want.blobs}
            if key == "multi":
                for child in img.children:
                    expected.update({child.digest: child.body, **child.blobs})
            assert blobs == expected, f"{key}{ref}: bytes differ"
    assert not [line for line in reg.log_text().splitlines() if "127.0.0.1:9" in line
                and "fill" in line], "B tried its upstream"


# ---------------------------------------------------------------------------------------------
# (c) skopeo reads the tar itself
# ---------------------------------------------------------------------------------------------

def test_skopeo_reads_the_exported_tar_by_full_ref(exported, images, tool_env, work):
    tar, _ = exported
    app = images["app"]
    raw = skopeo(tool_env, "inspect", "--raw", f"oci-archive:{tar}:{app.ref_name}").stdout
    assert raw.encode() == app.top.body
    out = work / "from-archive"
    skopeo(tool_env, "copy", "--all", "--preserve-digests",
           f"oci-archive:{tar}:{images['multi'].ref_name}", f"oci:{out}:m")
    multi = images["multi"]
    blobs = pulled_blobs(out, multi.top.digest)
    assert set(blobs) == {multi.top.digest, *[c.digest for c in multi.children],
                          *multi.blobs()}


# ---------------------------------------------------------------------------------------------
# (d) a damaged tar
# ---------------------------------------------------------------------------------------------

def entry_offset(tar: Path, name: str):
    with tarfile.open(tar) as t:
        m = t.getmember(name)
        return m.offset_data, m.size


def serve_offline(regcache_bin, workdir):
    reg = PullRegistry(regcache_bin, workdir, [upstream_entry(UPSTREAM, DEAD_UPSTREAM,
                                                              default=True)], offline=True)
    return reg


def manifest_status(reg, img):
    return reg.plain("GET", f"/v2/{UPSTREAM}/{img.repo}/manifests/{img.tag}",
                     headers={"Accept": ACCEPT_ALL}).status_code


def blob_status(reg, img, digest):
    return reg.plain("GET", f"/v2/{UPSTREAM}/{img.repo}/blobs/{digest}").status_code


def test_a_flipped_byte_in_a_layer_fails_that_image_only(regcache_bin, exported, images, work):
    tar, _ = exported
    app = images["app"]
    layer = app.top.doc["layers"][1]["digest"]
    entry = f"blobs/sha256/{layer.split(':')[1]}"
    offset, size = entry_offset(tar, entry)
    damaged = work / "damaged.tar"
    data = bytearray(tar.read_bytes())
    data[offset + size // 2] ^= 0x01
    damaged.write_bytes(bytes(data))

    reg = serve_offline(regcache_bin, work / "c")
    try:
        p = cli(regcache_bin, "import", "-c", reg.config_path, damaged)
        assert p.returncode == 1, p.stderr
        assert re.search(rf"import\.entry name={entry} error=\"content hashes to", p.stderr), \
            p.stderr
        assert re.search(rf"ref={app.ref_name} .*result=failed", p.stderr), p.stderr
        reg.start()
        assert manifest_status(reg, app) == 404
        assert blob_status(reg, app, layer) == 404
        for key in ("multi", "legacy"):
            img = images[key]
            assert manifest_status(reg, img) == 200, key
            for d in img.blobs():
                assert blob_status(reg, img, d) == 200
        assert not list((work / "c" / "data" / "tmp").iterdir()), "temp files left behind"
    finally:
        reg.close()


def test_a_truncated_tar_loads_the_images_that_arrived_whole(regcache_bin, exported, images,
                                                             work):
    tar, _ = exported
    with tarfile.open(tar) as t:
        last = [m for m in t.getmembers() if m.isfile()][-1]
    cut = work / "cut.tar"
    cut.write_bytes(tar.read_bytes()[:last.offset_data + last.size // 2])
    reg = serve_offline(regcache_bin, work / "d")
    try:
        p = cli(regcache_bin, "import", "-c", reg.config_path, cut)
        assert p.returncode == 1
        assert re.search(rf"import\.entry name={last.name} error=\"tar: entry cut short", p.stderr), \
            p.stderr
        loaded = re.findall(r"ref=(\S+) repository=\S+ digest=\S+ result=loaded", p.stderr)
        failed = re.findall(r"ref=(\S+) digest=\S+ result=failed", p.stderr)
        assert len(failed) >= 1 and len(loaded) + len(failed) == len(images), p.stderr
        reg.start()
        by_ref = {img.ref_name: img for img in images.values()}
        for ref in loaded:
            assert manifest_status(reg, by_ref[ref]) == 200
        for ref in failed:
            assert manifest_status(reg, by_ref[ref]) == 404
    finally:
        reg.close()


# ---------------------------------------------------------------------------------------------
# (e) re-import
# ---------------------------------------------------------------------------------------------

def test_reimport_copies_nothing_and_changes_nothing(regcache_bin, exported, offline_b, images):
    reg, _ = offline_b
    before = store_snapshot(reg.data_dir)
    p = cli(regcache_bin, "import", "-c", reg.config_path, exported[0], check=0)
    assert p.stderr.count("result=already held") == len(images), p.stderr
    assert "copied_blobs=0 copied_bytes=0" in p.stderr
    assert store_snapshot(reg.data_dir) == before


# ---------------------------------------------------------------------------------------------
# Export's edges
# ---------------------------------------------------------------------------------------------

def test_export_of_a_ref_not_cached_names_it(regcache_bin, warmed, work, images):
    out = work / "some.tar"
    p = cli(regcache_bin, "export", "-c", warmed[0], "-o", out, "org/app:v1", "org/nothere:v1")
    assert p.returncode == 1
    assert "export.failed ref=org/nothere:v1" in p.stderr
    with tarfile.open(out) as t:
        index = json.loads(t.extractfile("index.json").read())
    assert [d["digest"] for d in index["manifests"]] == [images["app"].top.digest]

    nothing = cli(regcache_bin, "export", "-c", warmed[0], "-o", work / "none.tar", "org/x:1")
    assert nothing.returncode == 1 and not (work / "none.tar").exists()


def test_export_since_takes_recent_tags_and_by_digest_refs(regcache_bin, warmed, work, images):
    out = work / "recent.tar"
    cli(regcache_bin, "export", "-c", warmed[0], "-o", out, "--since", "1h", check=0)
    with tarfile.open(out) as t:
        assert len(json.loads(t.extractfile("index.json").read())["manifests"]) == len(images)

    app = images["app"]
    out = work / "digest.tar"
    cli(regcache_bin, "export", "-c", warmed[0], "-o", out, f"org/app@{app.top.digest}", check=0)
    with tarfile.open(out) as t:
        d = json.loads(t.extractfile("index.json").read())["manifests"][0]
    assert d["annotations"]["org.opencontainers.image.ref.name"] == \
        f"{UPSTREAM}/org/app@{app.top.digest}"
