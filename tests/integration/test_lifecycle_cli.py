"""gc, fsck and du against a real data directory, with the server running beside them."""

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import Registry, push_blob, push_image, random_blob, sha256_digest


def run(reg: Registry, *args, timeout=120):
    """Runs `regcache <args> -c <the server's config>` and returns the CompletedProcess."""
    return subprocess.run([reg.binary, *args, "-c", str(reg.config_path)], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def blob_path(reg: Registry, digest: str) -> Path:
    alg, hex_ = digest.split(":")
    return reg.data_dir / "blobs" / alg / hex_[:2] / hex_


def pull_exact(reg: Registry, repo: str, ref: str, m):
    r = reg.get(f"/v2/{repo}/manifests/{ref}", headers={"Accept": m.media_type})
    assert r.status_code == 200, r.content[:200]
    assert r.content == m.body
    for digest, data in m.blobs.items():
        r = reg.get(f"/v2/{repo}/blobs/{digest}")
        assert r.status_code == 200, f"{digest}: {r.status_code}"
        assert r.content == data


def delete_image(reg: Registry, repo: str, m):
    """Deletes the manifest and its blob links through the API: its blobs become garbage."""
    assert reg.delete(f"/v2/{repo}/manifests/{m.digest}").status_code == 202
    for digest in m.blobs:
        assert reg.delete(f"/v2/{repo}/blobs/{digest}").status_code == 202


def freed_bytes(out: str) -> int:
    m = re.search(r"freed (\d+) bytes", out)
    assert m, out
    return int(m.group(1))


@pytest.fixture
def reg(make_registry):
    r = make_registry()
    r.start()
    return r


# ---------------------------------------------------------------------------------------------
# gc

def test_gc_online_frees_deleted_blobs_and_keeps_referenced_images(reg):
    repo = "local/lifecycle"
    kept = push_image(reg, repo, tag="kept", layer_size=4096)
    doomed = push_image(reg, repo, tag="doomed", layer_size=8192)
    delete_image(reg, repo, doomed)

    p = run(reg, "gc", "--grace", "0s")

    assert p.returncode == 0, p.stderr
    assert freed_bytes(p.stdout) == sum(len(b) for b in doomed.blobs.values())
    for digest in doomed.blobs:
        assert digest in p.stdout
        assert not blob_path(reg, digest).exists()
        assert reg.get(f"/v2/{repo}/blobs/{digest}").status_code == 404
    pull_exact(reg, repo, "kept", kept)
    assert run(reg, "fsck", "--grace", "0s").returncode == 0


def test_gc_dry_run_lists_and_deletes_nothing(reg):
    repo = "local/dry"
    doomed = push_image(reg, repo, tag="x")
    delete_image(reg, repo, doomed)

    p = run(reg, "gc", "--grace", "0s", "--dry-run")

    assert p.returncode == 0, p.stderr
    assert "would remove" in p.stdout
    for digest in doomed.blobs:
        assert digest in p.stdout
        assert blob_path(reg, digest).exists()


def test_gc_keeps_a_blob_another_repository_still_links(reg):
    data = random_blob(3000)
    push_blob(reg, "local/one", data)
    digest = push_blob(reg, "local/two", data)
    assert reg.delete(f"/v2/local/one/blobs/{digest}").status_code == 202

    p = run(reg, "gc", "--grace", "0s")

    assert p.returncode == 0, p.stderr
    assert freed_bytes(p.stdout) == 0
    assert reg.get(f"/v2/local/two/blobs/{digest}").content == data


# ---------------------------------------------------------------------------------------------
# fsck

def flip_byte(path: Path):
    with open(path, "r+b") as f:
        first = f.read(1)
        f.seek(0)
        f.write(bytes([first[0] ^ 0x01]))


def test_fsck_finds_a_flipped_byte_and_repair_lets_it_be_pushed_again(reg):
    repo = "local/fsck"
    m = push_image(reg, repo, tag="v1")
    p = run(reg, "fsck", "--grace", "0s")
    assert p.returncode == 0, p.stdout + p.stderr

    digest, data = next(iter(m.blobs.items()))
    flip_byte(blob_path(reg, digest))
    p = run(reg, "fsck")
    assert p.returncode == 1, p.stdout
    assert re.search(rf"^corrupt-blob {re.escape(digest)} path=", p.stdout, re.M), p.stdout

    p = run(reg, "fsck", "--repair")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "repaired:" in p.stdout
    p = run(reg, "fsck", "--grace", "0s")
    assert p.returncode == 0, p.stdout
    assert reg.get(f"/v2/{repo}/blobs/{digest}").status_code == 404

    push_blob(reg, repo, data)
    pull_exact(reg, repo, "v1", m)


def test_fsck_reports_damage_of_every_side_and_repair_cleans_it(reg):
    repo = "local/damage"
    m = push_image(reg, repo, tag="v1")
    digest = next(iter(m.blobs))
    blob_path(reg, digest).unlink()  # a record without its file
    stray = random_blob(100)  # a file without a record
    path = blob_path(reg, sha256_digest(stray))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(stray)
    (reg.data_dir / "tmp" / "999999999-0-crashed").write_bytes(b"partial fill")

    p = run(reg, "fsck", "--grace", "0s")
    assert p.returncode == 1
    for kind in ("missing-file", "unindexed-blob", "temp-file"):
        assert re.search(rf"^{kind} ", p.stdout, re.M), p.stdout

    assert run(reg, "fsck", "--grace", "0s", "--repair").returncode == 0
    p = run(reg, "fsck", "--grace", "0s")
    assert p.returncode == 0, p.stdout


# ---------------------------------------------------------------------------------------------
# Crashes during gc

def make_garbage(reg: Registry, repo: str, blobs: int, files: int):
    """Pushed-then-unlinked blobs (records gc deletes) and record-less blob files."""
    for _ in range(blobs):
        digest = push_blob(reg, repo, random_blob(512))
        assert reg.delete(f"/v2/{repo}/blobs/{digest}").status_code == 202
    for _ in range(files):
        data = os.urandom(256)
        path = blob_path(reg, sha256_digest(data))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def assert_clean_after_crash(reg: Registry, repo: str, kept):
    reg.start()
    # What a crash can leave is files without records: garbage for the next gc, not damage.
    p = run(reg, "fsck")
    assert p.returncode == 0, p.stdout
    pull_exact(reg, repo, "kept", kept)
    assert run(reg, "gc", "--grace", "0s").returncode == 0
    p = run(reg, "fsck", "--grace", "0s")
    assert p.returncode == 0, p.stdout
    pull_exact(reg, repo, "kept", kept)


def test_kill9_of_the_server_during_gc_leaves_nothing_wrong(reg):
    repo = "local/crash"
    kept = push_image(reg, repo, tag="kept")
    make_garbage(reg, repo, blobs=150, files=3000)

    gc = subprocess.Popen([reg.binary, "gc", "--grace", "0s", "-c", str(reg.config_path)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.05)
    reg.kill9()
    out, err = gc.communicate(timeout=120)
    assert gc.returncode == 0, err

    assert_clean_after_crash(reg, repo, kept)


@pytest.mark.parametrize("delay", [0.01, 0.05, 0.15])
def test_kill9_of_gc_midway_leaves_nothing_wrong(reg, delay):
    repo = "local/crashgc"
    kept = push_image(reg, repo, tag="kept")
    make_garbage(reg, repo, blobs=100, files=3000)

    gc = subprocess.Popen([reg.binary, "gc", "--grace", "0s", "-c", str(reg.config_path)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    gc.send_signal(signal.SIGKILL)
    gc.wait(10)

    reg.kill9()  # and the server too: restart from whatever is on disk
    assert_clean_after_crash(reg, repo, kept)


# ---------------------------------------------------------------------------------------------
# du

def test_du_json_matches_what_was_pushed(reg):
    a = push_image(reg, "local/app", tag="a", layers=2, layer_size=1000)
    b = push_image(reg, "local/app", tag="b", layers=1, layer_size=3000)
    c = push_image(reg, "team/tool", tag="c", layers=3, layer_size=500)
    pull_exact(reg, "local/app", "a", a)

    p = run(reg, "du", "--json", "--server", reg.base)

    assert p.returncode == 0, p.stderr
    du = json.loads(p.stdout)
    app_blobs = {**a.blobs, **b.blobs}
    all_blobs = {**app_blobs, **c.blobs}
    assert du["blobs"] == len(all_blobs)
    assert du["bytes"] == sum(len(v) for v in all_blobs.values())
    assert du["pushed"] == {"blobs": len(all_blobs), "bytes": du["bytes"]}
    assert du["cached"] == {"blobs": 0, "bytes": 0}
    assert du["manifests"] == 3 and du["tags"] == 3
    repos = {r["name"]: r for r in du["repositories"]}
    assert repos["local/app"]["kind"] == "pushed"
    assert repos["local/app"]["upstream"] is None
    assert repos["local/app"]["blobs"] == len(app_blobs)
    assert repos["local/app"]["bytes"] == sum(len(v) for v in app_blobs.values())
    assert repos["team/tool"]["bytes"] == sum(len(v) for v in c.blobs.values())
    assert du["local"]["repositories"] == 2
    assert du["disk"]["blobs"] == du["bytes"]
    assert du["disk"]["total"] >= du["disk"]["blobs"] + du["disk"]["index"]
    if reg.get("/api/status").status_code == 200:
        assert isinstance(du["hit_ratio"], float)


def test_du_says_when_the_server_is_not_running(reg):
    push_image(reg, "local/app", tag="a")
    reg.stop()

    p = run(reg, "du")

    assert p.returncode == 0, p.stderr
    assert "hit ratio: n/a (server not running)" in p.stdout
    assert "local/app" in p.stdout
