"""Crash safety: kill -9 while an upload streams and right after a push was acknowledged, then
restart on the same data directory. Everything acknowledged (201) must be served with its exact
bytes; nothing half-written may ever be served or left under blobs/."""

import hashlib
import os
import re
import threading
import time

import pytest

from conftest import (
    ACCEPT_ALL, assert_error, push_artifact, push_blob, push_image, random_blob, request_bytes,
    sha256_digest, start_upload, unique_repo, with_query,
)

BIG = 32 << 20        # the interrupted upload's full size
KILL_AFTER = 8 << 20  # bytes sent before the kill
PIECE = 256 << 10


def big_payload() -> bytes:
    block = os.urandom(1 << 20)
    return b"".join(bytes([i]) + block[1:] for i in range(BIG >> 20))


def _path(location):
    m = re.match(r"https?://[^/]+(/.*)", location)
    return m.group(1) if m else location


class StreamingPatch(threading.Thread):
    """Sends a chunked PATCH of `data` piece by piece and never finishes it (no last chunk):
    the request is still streaming whenever the server dies."""

    def __init__(self, reg, location, data):
        super().__init__(daemon=True)
        self.conn = reg.raw(timeout=30)
        self.conn.send(request_bytes("PATCH", _path(location), reg.host, {
            "Content-Type": "application/octet-stream", "Transfer-Encoding": "chunked"}))
        self.data = data
        self.sent = 0
        self.error = None
        self.stop = threading.Event()

    def run(self):
        try:
            while self.sent < len(self.data) and not self.stop.is_set():
                piece = self.data[self.sent:self.sent + PIECE]
                self.conn.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
                self.sent += len(piece)
                if self.sent >= KILL_AFTER:
                    time.sleep(0.005)  # keep flowing, gently, until the kill
        except OSError as e:
            self.error = e

    def wait_sent(self, n, timeout=20):
        deadline = time.monotonic() + timeout
        while self.sent < n:
            assert self.is_alive() or self.sent >= n, f"sender died: {self.error!r}"
            assert time.monotonic() < deadline, f"only {self.sent} bytes sent"
            time.sleep(0.005)


def check_blob_files(data_dir):
    """Every file under blobs/ is a complete blob at blobs/sha256/<ab>/<hex>, hash == name."""
    root = data_dir / "blobs"
    assert root.is_dir(), f"{root} missing"
    count = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            m = re.fullmatch(r"sha256/([0-9a-f]{2})/([0-9a-f]{64})", rel)
            assert m and m.group(2).startswith(m.group(1)), f"stray file under blobs/: {rel}"
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            assert h.hexdigest() == m.group(2), f"blob file {rel} does not hash to its name"
            count += 1
    return count


def check_image(reg, repo, tag, m):
    g = reg.get(f"/v2/{repo}/manifests/{tag}", headers={"Accept": ACCEPT_ALL})
    assert g.status_code == 200, f"{repo}:{tag} lost after the crash"
    assert g.content == m.body
    for digest, data in m.blobs.items():
        b = reg.get(f"/v2/{repo}/blobs/{digest}")
        assert b.status_code == 200, f"blob {digest} of {repo}:{tag} lost after the crash"
        assert b.content == data


def test_kill9_during_upload_and_after_manifest_put(fresh_registry):
    reg = fresh_registry
    repo = unique_repo("crash")
    a = push_image(reg, repo, "a", layers=2, layer_size=300_000)
    extra = random_blob(50_000)
    extra_digest = push_blob(reg, repo, extra, "post_put")

    # B streams; while it does, C's blobs and manifest are pushed, and the kill follows C's 201.
    b_data = big_payload()
    b_digest = sha256_digest(b_data)
    b_loc = start_upload(reg, repo).headers["Location"]
    sender = StreamingPatch(reg, b_loc, b_data)
    sender.start()
    sender.wait_sent(KILL_AFTER)

    c = push_image(reg, repo, "c", layers=1, layer_size=100_000, method="chunked")
    reg.kill9()
    sender.stop.set()
    sender.join(10)
    sender.conn.close()

    reg.start()
    check_image(reg, repo, "a", a)
    check_image(reg, repo, "c", c)
    assert reg.get(f"/v2/{repo}/blobs/{extra_digest}").content == extra

    # B was never completed: its digest must not exist.
    assert_error(reg.head(f"/v2/{repo}/blobs/{b_digest}"), 404)

    # The interrupted upload resumes from what was kept, or is gone; never a blob.
    s = reg.get(b_loc)
    print(f"interrupted upload after restart: {s.status_code} Range={s.headers.get('Range')} "
          f"sent={sender.sent}")
    if s.status_code == 404:
        assert_error(s, 404, "BLOB_UPLOAD_UNKNOWN")
    else:
        assert s.status_code == 204, s.status_code
        m = re.fullmatch(r"0-(\d+)", s.headers.get("Range", ""))
        assert m, f"resumable upload without a valid Range: {s.headers.get('Range')!r}"
        kept = int(m.group(1)) + 1 if s.headers["Range"] != "0-0" else 0
        assert kept <= sender.sent, f"upload claims {kept} bytes, only {sender.sent} sent"
        if kept:
            assert_error(reg.head(f"/v2/{repo}/blobs/{sha256_digest(b_data[:kept])}"), 404)
        loc = s.headers.get("Location") or b_loc
        r = reg.patch(loc, data=b_data[kept:],
                      headers={"Content-Type": "application/octet-stream",
                               "Content-Range": f"{kept}-{len(b_data) - 1}"})
        assert r.status_code == 202, r.status_code
        r = reg.put(with_query(r.headers["Location"], digest=b_digest),
                    headers={"Content-Length": "0"})
        assert r.status_code == 201
        assert reg.get(f"/v2/{repo}/blobs/{b_digest}").content == b_data

    check_blob_files(reg.data_dir)


def test_kill9_right_after_each_acknowledged_push(fresh_registry):
    """Each 201 is durable: kill -9 immediately after it, restart, and it is there."""
    reg = fresh_registry
    repo = unique_repo("ack")
    pushed = []
    for i, method in enumerate(["post_put", "chunked", "single_post"]):
        m = push_image(reg, repo, f"t{i}", layers=1, layer_size=20_000 + i, method=method)
        reg.kill9()
        reg.start()
        pushed.append((f"t{i}", m))
        for tag, old in pushed:
            check_image(reg, repo, tag, old)
    tags = reg.get(f"/v2/{repo}/tags/list").json()["tags"]
    assert tags == ["t0", "t1", "t2"]
    assert check_blob_files(reg.data_dir) >= 6


def test_kill9_after_delete_stays_deleted(fresh_registry):
    reg = fresh_registry
    repo = unique_repo("delcrash")
    m = push_image(reg, repo, "x")
    keep = push_image(reg, repo, "keep")
    assert reg.delete(f"/v2/{repo}/manifests/{m.digest}").status_code == 202
    reg.kill9()
    reg.start()
    assert_error(reg.get(f"/v2/{repo}/manifests/x"), 404, "MANIFEST_UNKNOWN")
    assert_error(reg.get(f"/v2/{repo}/manifests/{m.digest}"), 404, "MANIFEST_UNKNOWN")
    check_image(reg, repo, "keep", keep)


def test_sigterm_stops_cleanly_and_data_persists(fresh_registry):
    reg = fresh_registry
    repo = unique_repo("term")
    m = push_image(reg, repo, "t")
    art, _ = push_artifact(reg, repo, m, artifact_type="application/vnd.example.sbom.v1")
    rc = reg.stop()
    assert rc == 0, f"SIGTERM exit code {rc}"
    reg.start()
    check_image(reg, repo, "t", m)
    assert reg.get(f"/v2/{repo}/tags/list").json()["tags"] == ["t"]
    assert reg.get("/v2/_catalog").json()["repositories"] == [repo]
    refs = reg.get(f"/v2/{repo}/referrers/{m.digest}").json()["manifests"]
    assert [d["digest"] for d in refs] == [art.digest]
    check_blob_files(reg.data_dir)


def test_upload_resumes_after_clean_restart(fresh_registry):
    reg = fresh_registry
    repo = unique_repo("resume")
    data = random_blob(500_000)
    loc = start_upload(reg, repo).headers["Location"]
    r = reg.patch(loc, data=data[:200_000],
                  headers={"Content-Type": "application/octet-stream",
                           "Content-Range": "0-199999"})
    assert r.status_code == 202
    assert reg.stop() in (0, None)
    reg.start()
    s = reg.get(loc)
    if s.status_code == 404:
        assert_error(s, 404, "BLOB_UPLOAD_UNKNOWN")
        return
    assert s.status_code == 204 and s.headers.get("Range") == "0-199999"
    r = reg.patch(s.headers.get("Location") or loc, data=data[200_000:],
                  headers={"Content-Type": "application/octet-stream",
                           "Content-Range": f"200000-{len(data) - 1}"})
    assert r.status_code == 202
    digest = sha256_digest(data)
    r = reg.put(with_query(r.headers["Location"], digest=digest),
                headers={"Content-Length": "0"})
    assert r.status_code == 201
    assert reg.get(f"/v2/{repo}/blobs/{digest}").content == data
