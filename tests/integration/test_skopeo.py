"""Real clients: images built with umoci, pushed and pulled with skopeo, compared byte for byte.

skopeo and umoci are Debian packages that CI installs; when they are missing the tests fail
(with the package to install) rather than skip, so a broken CI image cannot pass silently.
"""

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ACCEPT_ALL, OCI_INDEX

TOOL_TIMEOUT = 120


def _need(tool):
    path = shutil.which(tool)
    if not path:
        pytest.fail(f"`{tool}` not found on PATH: install the Debian package '{tool}' "
                    "(CI installs it; these tests never skip)")
    return path


def run(*args, env=None):
    p = subprocess.run(list(args), capture_output=True, text=True, timeout=TOOL_TIMEOUT,
                       env=env)
    assert p.returncode == 0, \
        f"{' '.join(args)} -> {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    return p.stdout


@pytest.fixture(scope="module")
def tool_env(tmp_path_factory):
    _need("skopeo")
    _need("umoci")
    home = tmp_path_factory.mktemp("home")
    env = dict(os.environ, HOME=str(home), XDG_RUNTIME_DIR=str(home),
               REGISTRY_AUTH_FILE=str(home / "auth.json"))
    for k in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        env.pop(k, None)
    return env


def skopeo(env, *args):
    return run("skopeo", "--insecure-policy", *args, env=env)


# ---------------------------------------------------------------------------------------------
# The OCI layout helpers
# ---------------------------------------------------------------------------------------------

def blob_path(layout: Path, digest: str) -> Path:
    alg, hexpart = digest.split(":")
    return layout / "blobs" / alg / hexpart


def read_blob(layout: Path, digest: str) -> bytes:
    data = blob_path(layout, digest).read_bytes()
    assert "sha256:" + hashlib.sha256(data).hexdigest() == digest, f"corrupt blob {digest}"
    return data


def tagged_descriptor(layout: Path, tag: str) -> dict:
    index = json.loads((layout / "index.json").read_text())
    for d in index["manifests"]:
        if d.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            return d
    raise AssertionError(f"tag {tag} not in {layout}/index.json: {index}")


def reachable(layout: Path, digest: str) -> dict:
    """digest -> bytes of every blob reachable from a manifest or index (itself included)."""
    out = {}
    data = read_blob(layout, digest)
    out[digest] = data
    doc = json.loads(data)
    for child in doc.get("manifests", []):
        out.update(reachable(layout, child["digest"]))
    for d in [doc.get("config"), *doc.get("layers", [])]:
        if d:
            out[d["digest"]] = read_blob(layout, d["digest"])
    return out


def add_index(layout: Path, tag: str, children) -> str:
    """Writes an OCI index over `children` [(tag, arch)] into the layout under `tag`."""
    manifests = []
    for child_tag, arch in children:
        d = dict(tagged_descriptor(layout, child_tag))
        d.pop("annotations", None)
        d["platform"] = {"architecture": arch, "os": "linux"}
        manifests.append(d)
    body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX,
                       "manifests": manifests}).encode()
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    blob_path(layout, digest).write_bytes(body)
    index = json.loads((layout / "index.json").read_text())
    index["manifests"].append({"mediaType": OCI_INDEX, "digest": digest, "size": len(body),
                               "annotations": {"org.opencontainers.image.ref.name": tag}})
    (layout / "index.json").write_text(json.dumps(index))
    return digest


@pytest.fixture(scope="module")
def oci_layout(tool_env, tmp_path_factory):
    """An OCI layout with `v1` (amd64, a 3 MiB random file and small ones), `v1-arm64` (same
    layers, another config) and `multi` (an index over both)."""
    work = tmp_path_factory.mktemp("umoci")
    layout, bundle = work / "layout", work / "bundle"
    run("umoci", "init", "--layout", str(layout), env=tool_env)
    run("umoci", "new", "--image", f"{layout}:v1", env=tool_env)
    run("umoci", "unpack", "--rootless", "--image", f"{layout}:v1", str(bundle), env=tool_env)
    rootfs = bundle / "rootfs"
    (rootfs / "random.bin").write_bytes(os.urandom(3 << 20))
    (rootfs / "etc").mkdir(exist_ok=True)
    (rootfs / "etc" / "hello.txt").write_text("hello from regcache tests\n")
    (rootfs / "empty").write_bytes(b"")
    run("umoci", "repack", "--image", f"{layout}:v1", str(bundle), env=tool_env)
    run("umoci", "config", "--image", f"{layout}:v1", "--architecture", "amd64", "--os",
        "linux", "--config.cmd", "/bin/true", env=tool_env)
    run("umoci", "config", "--image", f"{layout}:v1", "--architecture", "arm64",
        "--tag", "v1-arm64", env=tool_env)
    add_index(layout, "multi", [("v1", "amd64"), ("v1-arm64", "arm64")])
    return layout


def compare_layouts(src: Path, src_tag: str, out: Path, out_tag: str):
    want = tagged_descriptor(src, src_tag)
    got = tagged_descriptor(out, out_tag)
    assert got["digest"] == want["digest"], "manifest digest changed in the round trip"
    want_blobs = reachable(src, want["digest"])
    got_blobs = reachable(out, got["digest"])
    assert set(got_blobs) == set(want_blobs)
    for digest, data in want_blobs.items():
        assert got_blobs[digest] == data, f"blob {digest} differs"
    return want_blobs


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------

def test_skopeo_copy_push_and_pull_roundtrip(registry, tool_env, oci_layout, tmp_path):
    ref = f"docker://{registry.host}/local/img:v1"
    skopeo(tool_env, "copy", "--preserve-digests", "--dest-tls-verify=false",
           f"oci:{oci_layout}:v1", ref)

    out = tmp_path / "out"
    skopeo(tool_env, "copy", "--preserve-digests", "--src-tls-verify=false", ref,
           f"oci:{out}:v1")
    blobs = compare_layouts(oci_layout, "v1", out, "v1")
    assert any(len(b) > (2 << 20) for b in blobs.values()), "the big layer is missing"

    # The registry serves the same bytes directly.
    want = tagged_descriptor(oci_layout, "v1")
    g = registry.get("/v2/local/img/manifests/v1", headers={"Accept": ACCEPT_ALL})
    assert g.status_code == 200 and g.content == blobs[want["digest"]]
    for digest, data in blobs.items():
        if digest != want["digest"]:
            assert registry.get(f"/v2/local/img/blobs/{digest}").content == data


def test_skopeo_inspect(registry, tool_env, oci_layout):
    ref = f"docker://{registry.host}/team/inspect/me:v1"
    skopeo(tool_env, "copy", "--preserve-digests", "--dest-tls-verify=false",
           f"oci:{oci_layout}:v1", ref)
    want = tagged_descriptor(oci_layout, "v1")

    info = json.loads(skopeo(tool_env, "inspect", "--tls-verify=false", ref))
    assert info["Digest"] == want["digest"]
    assert info["Architecture"] == "amd64" and info["Os"] == "linux"
    assert "v1" in info.get("RepoTags", [])

    raw = skopeo(tool_env, "inspect", "--raw", "--tls-verify=false", ref)
    assert raw.encode() == read_blob(oci_layout, want["digest"])

    tags = json.loads(skopeo(tool_env, "list-tags", "--tls-verify=false",
                             f"docker://{registry.host}/team/inspect/me"))
    assert tags["Tags"] == ["v1"]


def test_skopeo_copy_multi_arch_index(registry, tool_env, oci_layout, tmp_path):
    ref = f"docker://{registry.host}/local/multi:1"
    skopeo(tool_env, "copy", "--all", "--preserve-digests", "--dest-tls-verify=false",
           f"oci:{oci_layout}:multi", ref)
    out = tmp_path / "out"
    skopeo(tool_env, "copy", "--all", "--preserve-digests", "--src-tls-verify=false", ref,
           f"oci:{out}:multi")
    compare_layouts(oci_layout, "multi", out, "multi")

    g = registry.get("/v2/local/multi/manifests/1", headers={"Accept": ACCEPT_ALL})
    assert g.headers["Content-Type"].split(";")[0] == OCI_INDEX

    # Pulling one platform out of the index.
    out_arm = tmp_path / "arm"
    skopeo(tool_env, "--override-arch", "arm64", "copy", "--preserve-digests",
           "--src-tls-verify=false", ref, f"oci:{out_arm}:arm")
    assert tagged_descriptor(out_arm, "arm")["digest"] == \
        tagged_descriptor(oci_layout, "v1-arm64")["digest"]


def test_skopeo_delete(registry, tool_env, oci_layout):
    ref = f"docker://{registry.host}/local/deleteme:v1"
    skopeo(tool_env, "copy", "--preserve-digests", "--dest-tls-verify=false",
           f"oci:{oci_layout}:v1", ref)
    skopeo(tool_env, "delete", "--tls-verify=false", ref)
    p = subprocess.run(["skopeo", "--insecure-policy", "inspect", "--tls-verify=false", ref],
                       capture_output=True, text=True, timeout=TOOL_TIMEOUT, env=tool_env)
    assert p.returncode != 0, "image still inspectable after skopeo delete"
    want = tagged_descriptor(oci_layout, "v1")
    assert registry.get(f"/v2/local/deleteme/manifests/{want['digest']}").status_code == 404
