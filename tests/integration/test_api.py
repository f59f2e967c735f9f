"""The distribution-spec v1.1.1 API against local (pushable) repositories, success and error
paths. Section names in comments refer to distribution-spec-v1.1.1.md."""

import json
import re

import pytest

from conftest import (
    ACCEPT_ALL, DOCKER_LIST, DOCKER_MANIFEST, OCI_CONFIG, OCI_INDEX, OCI_MANIFEST, Manifest,
    assert_error, docker_manifest, encode, index_manifest, manifest_descriptor, oci_manifest,
    push_artifact, push_blob, push_image, push_manifest, put_manifest, random_blob,
    sha256_digest, start_upload, unique_repo, unknown_digest, with_query, config_blob,
    descriptor,
)

OCTET = {"Content-Type": "application/octet-stream"}


def range_end(resp):
    """The <end-of-range> of an upload `Range: 0-<end>` header (asserting its form)."""
    value = resp.headers.get("Range")
    assert value is not None, f"{resp.request.method} {resp.request.url}: no Range header"
    m = re.fullmatch(r"0-(\d+)", value)
    assert m, f"Range header must be '0-<end-of-range>', got {value!r}"
    return int(m.group(1))


def upload_uuid(location):
    return location.split("?")[0].rstrip("/").rsplit("/", 1)[-1]


# =============================================================================================
# end-1: GET /v2/
# =============================================================================================

def test_base_endpoint_answers_200_with_api_version(registry):
    r = registry.get("/v2/")
    assert r.status_code == 200
    assert r.headers.get("Docker-Distribution-API-Version") == "registry/2.0"


def test_unknown_path_is_404_not_5xx(registry):
    r = registry.get("/v2/local/x/nonsense/endpoint")
    assert r.status_code in (400, 404, 405)


# =============================================================================================
# end-2: blobs GET / HEAD, Range
# =============================================================================================

@pytest.mark.parametrize("method", ["post_put", "single_post", "chunked"])
def test_blob_head_and_get_after_push(registry, method):
    repo = unique_repo("blob")
    data = random_blob(5000)
    digest = push_blob(registry, repo, data, method)

    h = registry.head(f"/v2/{repo}/blobs/{digest}")
    assert h.status_code == 200
    assert h.headers.get("Docker-Content-Digest") == digest
    assert h.headers.get("Content-Length") == str(len(data))
    assert h.content == b""

    g = registry.get(f"/v2/{repo}/blobs/{digest}")
    assert g.status_code == 200
    assert g.content == data
    assert g.headers.get("Docker-Content-Digest") == digest
    assert g.headers.get("Content-Length") == str(len(data))
    assert g.headers.get("Content-Type", "").split(";")[0] == "application/octet-stream"


def test_blob_unknown_is_404_blob_unknown(registry):
    repo = unique_repo("blobunk")
    push_blob(registry, repo, random_blob(10))  # the repository exists
    d = unknown_digest()
    assert_error(registry.head(f"/v2/{repo}/blobs/{d}"), 404)
    assert_error(registry.get(f"/v2/{repo}/blobs/{d}"), 404, "BLOB_UNKNOWN")


def test_blob_of_another_repository_is_not_visible(registry):
    a, b = unique_repo("iso-a"), unique_repo("iso-b")
    push_blob(registry, b, random_blob(10))
    digest = push_blob(registry, a, random_blob(100))
    assert_error(registry.head(f"/v2/{b}/blobs/{digest}"), 404)
    assert_error(registry.get(f"/v2/{b}/blobs/{digest}"), 404, "BLOB_UNKNOWN")


@pytest.mark.parametrize("spec,first,last", [
    ("bytes=10-99", 10, 99),
    ("bytes=990-", 990, 999),
    ("bytes=-5", 995, 999),
    ("bytes=900-5000", 900, 999),  # last clamped to the size
    ("bytes=0-0", 0, 0),
])
def test_blob_range_get_single_range_206(registry, spec, first, last):
    repo = unique_repo("range")
    data = random_blob(1000)
    digest = push_blob(registry, repo, data)
    r = registry.get(f"/v2/{repo}/blobs/{digest}", headers={"Range": spec})
    assert r.status_code == 206, (r.status_code, r.headers)
    assert r.headers.get("Content-Range") == f"bytes {first}-{last}/1000"
    assert r.content == data[first:last + 1]
    assert r.headers.get("Content-Length") == str(last - first + 1)


@pytest.mark.parametrize("spec", ["bytes=1000-", "bytes=5000-6000"])
def test_blob_range_unsatisfiable_416(registry, spec):
    repo = unique_repo("range416")
    data = random_blob(1000)
    digest = push_blob(registry, repo, data)
    r = registry.get(f"/v2/{repo}/blobs/{digest}", headers={"Range": spec})
    assert r.status_code == 416, (r.status_code, r.headers)
    # RFC 9110 14.4: a 416 to a byte-range request SHOULD carry Content-Range: bytes */size.
    if "Content-Range" in r.headers:
        assert r.headers["Content-Range"] == "bytes */1000"


# =============================================================================================
# end-4a/5/6/13: uploads
# =============================================================================================

def test_upload_post_starts_session(registry):
    repo = unique_repo("up")
    r = start_upload(registry, repo)
    loc = r.headers["Location"]
    uid = r.headers.get("Docker-Upload-UUID")
    assert uid, "POST: no Docker-Upload-UUID"
    assert uid in loc, f"Location {loc} does not name the upload {uid}"
    # Nothing uploaded yet: no Range, or Docker's legacy "0-0" for an empty session.
    assert r.headers.get("Range") in (None, "0-0")


def test_upload_two_posts_get_distinct_sessions(registry):
    repo = unique_repo("up2")
    a = start_upload(registry, repo).headers["Location"]
    b = start_upload(registry, repo).headers["Location"]
    assert upload_uuid(a) != upload_uuid(b)


def test_upload_status_of_fresh_session_is_204(registry):
    repo = unique_repo("upst")
    loc = start_upload(registry, repo).headers["Location"]
    r = registry.get(loc)
    assert r.status_code == 204
    assert r.headers.get("Location")
    # The status response MUST carry Range; with nothing uploaded the only form clients know is
    # Docker's "0-0".
    assert r.headers.get("Range") == "0-0"


def test_upload_monolithic_post_then_put(registry):
    repo = unique_repo("mono")
    data = random_blob(70000)
    digest = sha256_digest(data)
    loc = start_upload(registry, repo).headers["Location"]
    r = registry.put(with_query(loc, digest=digest), data=data, headers=OCTET)
    assert r.status_code == 201
    assert r.headers.get("Docker-Content-Digest") == digest
    # <blob-location> is a pullable blob URL.
    g = registry.get(r.headers["Location"])
    assert g.status_code == 200 and g.content == data


def test_upload_chunked_with_content_range(registry):
    repo = unique_repo("chunk")
    data = random_blob(300000)
    digest = sha256_digest(data)
    r = start_upload(registry, repo)
    loc = r.headers["Location"]
    cuts = [0, 1, 100000, 299999, 300000]  # a 1-byte chunk, big ones, a 1-byte final one
    for lo, hi in zip(cuts, cuts[1:]):
        r = registry.patch(loc, data=data[lo:hi],
                           headers={**OCTET, "Content-Range": f"{lo}-{hi - 1}"})
        assert r.status_code == 202, r.content
        assert r.headers.get("Location")
        assert range_end(r) == hi - 1
        loc = r.headers["Location"]

    s = registry.get(loc)
    assert s.status_code == 204
    assert range_end(s) == len(data) - 1
    assert s.headers.get("Location")

    r = registry.put(with_query(loc, digest=digest), headers={"Content-Length": "0"})
    assert r.status_code == 201
    assert r.headers.get("Docker-Content-Digest") == digest
    assert registry.get(f"/v2/{repo}/blobs/{digest}").content == data


def test_upload_patch_without_content_range_appends(registry):
    repo = unique_repo("stream")
    data = random_blob(200000)
    digest = sha256_digest(data)
    loc = start_upload(registry, repo).headers["Location"]
    r = registry.patch(loc, data=data[:50000], headers=OCTET)
    assert r.status_code == 202
    assert range_end(r) == 49999
    r = registry.patch(r.headers["Location"], data=data[50000:150000], headers=OCTET)
    assert r.status_code == 202
    assert range_end(r) == 149999
    # The final chunk travels in the closing PUT.
    r = registry.put(with_query(r.headers["Location"], digest=digest), data=data[150000:],
                     headers=OCTET)
    assert r.status_code == 201
    assert registry.get(f"/v2/{repo}/blobs/{digest}").content == data


def test_upload_final_chunk_in_put_with_content_range(registry):
    repo = unique_repo("putcr")
    data = random_blob(1000)
    digest = sha256_digest(data)
    loc = start_upload(registry, repo).headers["Location"]
    r = registry.patch(loc, data=data[:600], headers={**OCTET, "Content-Range": "0-599"})
    assert r.status_code == 202
    r = registry.put(with_query(r.headers["Location"], digest=digest), data=data[600:],
                     headers={**OCTET, "Content-Range": "600-999"})
    assert r.status_code == 201
    assert registry.get(f"/v2/{repo}/blobs/{digest}").content == data


def test_upload_chunk_out_of_order_416(registry):
    repo = unique_repo("ooo")
    data = random_blob(3000)
    loc = start_upload(registry, repo).headers["Location"]
    r = registry.patch(loc, data=data[:1000], headers={**OCTET, "Content-Range": "0-999"})
    assert r.status_code == 202
    loc = r.headers["Location"]

    # A gap, an overlap, and a restart from zero are all out of order.
    for lo, hi in ((2000, 2999), (500, 1499), (0, 999)):
        r = registry.patch(loc, data=data[lo:hi + 1],
                           headers={**OCTET, "Content-Range": f"{lo}-{hi}"})
        assert r.status_code == 416, (lo, hi, r.status_code)
        if r.content:
            assert_error(r, 416)

    # The session survives; GET tells where to continue.
    s = registry.get(loc)
    assert s.status_code == 204 and range_end(s) == 999
    r = registry.patch(s.headers["Location"], data=data[1000:],
                       headers={**OCTET, "Content-Range": "1000-2999"})
    assert r.status_code == 202 and range_end(r) == 2999
    digest = sha256_digest(data)
    r = registry.put(with_query(r.headers["Location"], digest=digest),
                     headers={"Content-Length": "0"})
    assert r.status_code == 201
    assert registry.get(f"/v2/{repo}/blobs/{digest}").content == data


def test_upload_final_chunk_in_put_out_of_order_416(registry):
    repo = unique_repo("putooo")
    data = random_blob(1000)
    loc = start_upload(registry, repo).headers["Location"]
    r = registry.patch(loc, data=data[:600], headers={**OCTET, "Content-Range": "0-599"})
    assert r.status_code == 202
    r = registry.put(with_query(r.headers["Location"], digest=sha256_digest(data)),
                     data=data[500:], headers={**OCTET, "Content-Range": "500-999"})
    assert r.status_code == 416, r.status_code
    assert_error(registry.head(f"/v2/{repo}/blobs/{sha256_digest(data)}"), 404)


def test_upload_first_chunk_not_at_zero_416(registry):
    repo = unique_repo("ooo0")
    loc = start_upload(registry, repo).headers["Location"]
    r = registry.patch(loc, data=b"x" * 10, headers={**OCTET, "Content-Range": "5-14"})
    assert r.status_code == 416


def test_upload_content_range_length_mismatch(registry):
    """Content-Range says 100 bytes, the body has 10. The spec does not say what to do; the
    registry may refuse the chunk, but must never claim bytes it did not receive."""
    repo = unique_repo("crlen")
    loc = start_upload(registry, repo).headers["Location"]
    r = registry.patch(loc, data=b"x" * 10, headers={**OCTET, "Content-Range": "0-99"})
    assert r.status_code in (202, 400, 416), r.status_code
    s = registry.get(loc)
    assert s.status_code == 204
    if r.status_code == 202:
        assert range_end(s) == 9
    else:
        assert s.headers.get("Range") in (None, "0-0")


def test_upload_put_wrong_digest_400_digest_invalid(registry):
    repo = unique_repo("baddig")
    data = random_blob(1000)
    wrong = unknown_digest()
    loc = start_upload(registry, repo).headers["Location"]
    r = registry.put(with_query(loc, digest=wrong), data=data, headers=OCTET)
    assert_error(r, 400, "DIGEST_INVALID")
    assert_error(registry.head(f"/v2/{repo}/blobs/{wrong}"), 404)
    assert_error(registry.head(f"/v2/{repo}/blobs/{sha256_digest(data)}"), 404)


def test_upload_put_without_digest_400(registry):
    repo = unique_repo("nodig")
    loc = start_upload(registry, repo).headers["Location"]
    r = registry.put(loc, data=b"abc", headers=OCTET)
    assert_error(r, (400, 404), {"DIGEST_INVALID", "BLOB_UPLOAD_INVALID", "SIZE_INVALID"})


def test_upload_put_malformed_digest_400(registry):
    repo = unique_repo("maldig")
    loc = start_upload(registry, repo).headers["Location"]
    r = registry.put(with_query(loc, digest="sha256:xyz"), data=b"abc", headers=OCTET)
    assert_error(r, 400, "DIGEST_INVALID")


def test_upload_delete_then_status_404(registry):
    repo = unique_repo("updel")
    loc = start_upload(registry, repo).headers["Location"]
    r = registry.patch(loc, data=b"partial", headers=OCTET)
    assert r.status_code == 202
    loc = r.headers["Location"]
    d = registry.delete(loc)
    assert d.status_code in (202, 204), d.status_code
    assert_error(registry.get(loc), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(registry.patch(loc, data=b"more", headers=OCTET), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(registry.put(with_query(loc, digest=sha256_digest(b"partial"))), 404,
                 "BLOB_UPLOAD_UNKNOWN")


def test_upload_unknown_uuid_404(registry):
    repo = unique_repo("upunk")
    start_upload(registry, repo)  # the repository has an upload; this uuid is not it
    bogus = f"/v2/{repo}/blobs/uploads/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
    assert_error(registry.get(bogus), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(registry.patch(bogus, data=b"abc", headers=OCTET), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(registry.put(bogus + "?digest=" + sha256_digest(b"abc"), data=b"abc",
                              headers=OCTET), 404, "BLOB_UPLOAD_UNKNOWN")
    assert_error(registry.delete(bogus), 404, "BLOB_UPLOAD_UNKNOWN")


def test_upload_completed_session_is_gone(registry):
    repo = unique_repo("updone")
    data = random_blob(100)
    loc = start_upload(registry, repo).headers["Location"]
    r = registry.put(with_query(loc, digest=sha256_digest(data)), data=data, headers=OCTET)
    assert r.status_code == 201
    assert_error(registry.get(loc), 404, "BLOB_UPLOAD_UNKNOWN")


def test_upload_same_blob_twice_is_fine(registry):
    repo = unique_repo("dup")
    data = random_blob(4096)
    d1 = push_blob(registry, repo, data)
    d2 = push_blob(registry, repo, data, "single_post")
    assert d1 == d2
    assert registry.get(f"/v2/{repo}/blobs/{d1}").content == data


def test_upload_empty_blob(registry):
    repo = unique_repo("empty")
    digest = push_blob(registry, repo, b"")
    h = registry.head(f"/v2/{repo}/blobs/{digest}")
    assert h.status_code == 200 and h.headers.get("Content-Length") == "0"
    assert registry.get(f"/v2/{repo}/blobs/{digest}").content == b""


# --- end-4b: single POST ---------------------------------------------------------------------

def test_single_post_with_digest_201(registry):
    repo = unique_repo("single")
    data = random_blob(12345)
    digest = sha256_digest(data)
    r = registry.post(f"/v2/{repo}/blobs/uploads/?digest={digest}", data=data, headers=OCTET)
    assert r.status_code == 201
    assert r.headers.get("Location")
    assert r.headers.get("Docker-Content-Digest") == digest
    g = registry.get(r.headers["Location"])
    assert g.status_code == 200 and g.content == data


def test_single_post_wrong_digest_400(registry):
    repo = unique_repo("singlebad")
    data = random_blob(100)
    wrong = unknown_digest()
    r = registry.post(f"/v2/{repo}/blobs/uploads/?digest={wrong}", data=data, headers=OCTET)
    assert_error(r, 400, "DIGEST_INVALID")
    assert_error(registry.head(f"/v2/{repo}/blobs/{wrong}"), 404)


# --- end-11: cross-repository mount ----------------------------------------------------------

def test_mount_from_other_repo_201(registry):
    src, dst = unique_repo("msrc"), unique_repo("mdst")
    data = random_blob(3000)
    digest = push_blob(registry, src, data)
    r = registry.post(f"/v2/{dst}/blobs/uploads/?mount={digest}&from={src}",
                      headers={"Content-Length": "0"})
    assert r.status_code == 201, r.content
    assert r.headers.get("Location")
    assert r.headers.get("Docker-Content-Digest") == digest
    assert registry.get(r.headers["Location"]).content == data
    assert registry.get(f"/v2/{dst}/blobs/{digest}").content == data


def test_mount_without_from_201_or_202(registry):
    src, dst = unique_repo("mnf-src"), unique_repo("mnf-dst")
    data = random_blob(3000)
    digest = push_blob(registry, src, data)
    r = registry.post(f"/v2/{dst}/blobs/uploads/?mount={digest}",
                      headers={"Content-Length": "0"})
    assert r.status_code in (201, 202), r.status_code
    assert r.headers.get("Location")
    if r.status_code == 201:
        assert registry.get(f"/v2/{dst}/blobs/{digest}").content == data
    else:  # an upload session began: it must work
        loc = r.headers["Location"]
        p = registry.put(with_query(loc, digest=digest), data=data, headers=OCTET)
        assert p.status_code == 201


def test_mount_of_blob_that_exists_nowhere_starts_upload_202(registry):
    src, dst = unique_repo("mno-src"), unique_repo("mno-dst")
    push_blob(registry, src, random_blob(10))
    data = random_blob(500)
    digest = sha256_digest(data)
    r = registry.post(f"/v2/{dst}/blobs/uploads/?mount={digest}&from={src}",
                      headers={"Content-Length": "0"})
    assert r.status_code == 202, r.status_code
    loc = r.headers.get("Location")
    assert loc
    assert_error(registry.head(f"/v2/{dst}/blobs/{digest}"), 404)
    p = registry.put(with_query(loc, digest=digest), data=data, headers=OCTET)
    assert p.status_code == 201
    assert registry.get(f"/v2/{dst}/blobs/{digest}").content == data


def test_mount_from_repo_lacking_blob_202_or_201(registry):
    """`from` names a repository without the blob, which exists in a third one. The spec lets
    the registry treat `from` as optional (201) or decline (202, an upload session)."""
    holder, src, dst = unique_repo("ml-h"), unique_repo("ml-s"), unique_repo("ml-d")
    data = random_blob(700)
    digest = push_blob(registry, holder, data)
    push_blob(registry, src, random_blob(10))
    r = registry.post(f"/v2/{dst}/blobs/uploads/?mount={digest}&from={src}",
                      headers={"Content-Length": "0"})
    assert r.status_code in (201, 202)
    assert r.headers.get("Location")
    if r.status_code == 202:
        p = registry.put(with_query(r.headers["Location"], digest=digest), data=data,
                         headers=OCTET)
        assert p.status_code == 201
    assert registry.get(f"/v2/{dst}/blobs/{digest}").content == data


# =============================================================================================
# end-2/end-10: blob DELETE
# =============================================================================================

def test_blob_delete_202_then_404(registry):
    repo = unique_repo("bdel")
    data = random_blob(100)
    digest = push_blob(registry, repo, data)
    r = registry.delete(f"/v2/{repo}/blobs/{digest}")
    assert r.status_code == 202
    assert_error(registry.head(f"/v2/{repo}/blobs/{digest}"), 404)
    assert_error(registry.get(f"/v2/{repo}/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    assert_error(registry.delete(f"/v2/{repo}/blobs/{digest}"), 404, "BLOB_UNKNOWN")


def test_blob_delete_in_one_repo_keeps_it_in_another(registry):
    a, b = unique_repo("bdel-a"), unique_repo("bdel-b")
    data = random_blob(100)
    digest = push_blob(registry, a, data)
    push_blob(registry, b, data)
    assert registry.delete(f"/v2/{a}/blobs/{digest}").status_code == 202
    assert_error(registry.head(f"/v2/{a}/blobs/{digest}"), 404)
    assert registry.get(f"/v2/{b}/blobs/{digest}").content == data


def test_blob_delete_unknown_404(registry):
    repo = unique_repo("bdelunk")
    push_blob(registry, repo, random_blob(10))
    assert_error(registry.delete(f"/v2/{repo}/blobs/{unknown_digest()}"), 404, "BLOB_UNKNOWN")


# =============================================================================================
# end-3/end-7: manifests
# =============================================================================================

def check_manifest_served(reg, repo, ref, m: Manifest):
    g = reg.get(f"/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT_ALL})
    assert g.status_code == 200, g.content
    assert g.content == m.body, "manifest bytes changed"
    assert g.headers.get("Content-Type", "").split(";")[0].strip() == m.media_type
    assert g.headers.get("Docker-Content-Digest") == m.digest
    h = reg.head(f"/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT_ALL})
    assert h.status_code == 200
    assert h.headers.get("Content-Length") == str(len(m.body))
    assert h.headers.get("Docker-Content-Digest") == m.digest
    assert h.headers.get("Content-Type", "").split(";")[0].strip() == m.media_type
    assert h.content == b""


def test_manifest_put_by_tag_and_get_by_tag_and_digest(registry):
    repo = unique_repo("man")
    m = push_image(registry, repo, "v1")
    check_manifest_served(registry, repo, "v1", m)
    check_manifest_served(registry, repo, m.digest, m)


def test_manifest_put_location_is_pullable(registry):
    repo = unique_repo("manloc")
    layer = random_blob(100)
    m = oci_manifest([layer])
    for b in m.blobs.values():
        push_blob(registry, repo, b)
    r = push_manifest(registry, repo, "latest", m)
    g = registry.get(r.headers["Location"], headers={"Accept": ACCEPT_ALL})
    assert g.status_code == 200 and g.content == m.body


def test_manifest_put_by_digest(registry):
    repo = unique_repo("mandig")
    m = push_image(registry, repo)  # pushed by digest
    check_manifest_served(registry, repo, m.digest, m)
    t = registry.get(f"/v2/{repo}/tags/list")
    assert t.status_code == 200
    assert not t.json().get("tags"), "a push by digest must not create a tag"


def test_manifest_put_by_wrong_digest_400(registry):
    repo = unique_repo("manwrong")
    layer = random_blob(100)
    m = oci_manifest([layer])
    for b in m.blobs.values():
        push_blob(registry, repo, b)
    r = put_manifest(registry, repo, unknown_digest(), m)
    assert_error(r, 400, {"DIGEST_INVALID", "MANIFEST_INVALID"})


def test_manifest_accept_variants(registry):
    repo = unique_repo("accept")
    m = push_image(registry, repo, "t")
    for accept in (OCI_MANIFEST, f"{DOCKER_MANIFEST}, {OCI_MANIFEST};q=0.9", "*/*",
                   f"{OCI_INDEX}, {OCI_MANIFEST}"):
        g = registry.get(f"/v2/{repo}/manifests/t", headers={"Accept": accept})
        assert g.status_code == 200, accept
        assert g.content == m.body
        assert g.headers["Content-Type"].split(";")[0].strip() == OCI_MANIFEST


def test_manifest_tag_moves_on_repush(registry):
    repo = unique_repo("retag")
    m1 = push_image(registry, repo, "moving")
    m2 = push_image(registry, repo, "moving")
    check_manifest_served(registry, repo, "moving", m2)
    check_manifest_served(registry, repo, m1.digest, m1)


def test_manifest_same_bytes_twice_is_idempotent(registry):
    repo = unique_repo("idem")
    m = push_image(registry, repo, "a")
    push_manifest(registry, repo, "a", m)
    push_manifest(registry, repo, "b", m)
    check_manifest_served(registry, repo, "b", m)


def test_oci_index_accepted(registry):
    repo = unique_repo("index")
    amd = push_image(registry, repo, arch="amd64")
    arm = push_image(registry, repo, arch="arm64")
    idx = index_manifest([(amd, "amd64"), (arm, "arm64")])
    push_manifest(registry, repo, "multi", idx)
    check_manifest_served(registry, repo, "multi", idx)
    check_manifest_served(registry, repo, idx.digest, idx)


def test_docker_schema2_manifest_accepted(registry):
    repo = unique_repo("docker")
    layers = [random_blob(300), random_blob(400)]
    m = docker_manifest(layers)
    for b in m.blobs.values():
        push_blob(registry, repo, b)
    push_manifest(registry, repo, "d1", m)
    check_manifest_served(registry, repo, "d1", m)


def test_docker_manifest_list_accepted(registry):
    repo = unique_repo("dlist")
    children = []
    for arch in ("amd64", "arm64"):
        layers = [random_blob(200)]
        m = docker_manifest(layers, config=config_blob(arch, layers))
        for b in m.blobs.values():
            push_blob(registry, repo, b)
        push_manifest(registry, repo, m.digest, m)
        children.append((m, arch))
    lst = index_manifest(children, media_type=DOCKER_LIST)
    push_manifest(registry, repo, "list", lst)
    check_manifest_served(registry, repo, "list", lst)


def test_manifest_with_missing_layer_400_manifest_blob_unknown(registry):
    repo = unique_repo("missing")
    present, absent = random_blob(100), random_blob(100)
    m = oci_manifest([present, absent])
    for d, b in m.blobs.items():
        if b is not absent:
            push_blob(registry, repo, b)
    r = put_manifest(registry, repo, "x", m)
    assert_error(r, 400, "MANIFEST_BLOB_UNKNOWN")
    assert_error(registry.get(f"/v2/{repo}/manifests/x"), 404, "MANIFEST_UNKNOWN")


def test_manifest_with_missing_config_400_manifest_blob_unknown(registry):
    repo = unique_repo("missingcfg")
    layer = random_blob(100)
    m = oci_manifest([layer])
    push_blob(registry, repo, layer)
    assert_error(put_manifest(registry, repo, "x", m), 400, "MANIFEST_BLOB_UNKNOWN")


def test_manifest_layer_only_in_other_repo_is_unknown(registry):
    other, repo = unique_repo("mo-other"), unique_repo("mo-repo")
    layer = random_blob(100)
    m = oci_manifest([layer])
    push_blob(registry, other, layer)
    for b in m.blobs.values():
        if b is not layer:
            push_blob(registry, repo, b)
    assert_error(put_manifest(registry, repo, "x", m), 400, "MANIFEST_BLOB_UNKNOWN")


def test_index_with_missing_child_400_manifest_blob_unknown(registry):
    repo = unique_repo("idxmiss")
    amd = push_image(registry, repo, arch="amd64")
    ghost = oci_manifest([random_blob(10)])  # never pushed
    idx = index_manifest([(amd, "amd64"), (ghost, "arm64")])
    assert_error(put_manifest(registry, repo, "multi", idx), 400, "MANIFEST_BLOB_UNKNOWN")


@pytest.mark.parametrize("body", [
    b"{not json",
    b"",
    b"[]",
    b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"}',
    b'{"schemaVersion": 1, "mediaType": "application/vnd.oci.image.manifest.v1+json",'
    b' "config": {}, "layers": []}',
    b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",'
    b' "config": {"mediaType": "application/vnd.oci.image.config.v1+json",'
    b' "digest": "sha256:nothex", "size": 2}, "layers": []}',
], ids=["broken", "empty", "array", "no-config", "schema1", "bad-digest"])
def test_manifest_invalid_400_manifest_invalid(registry, body):
    repo = unique_repo("invalid")
    push_blob(registry, repo, random_blob(10))
    r = registry.put(f"/v2/{repo}/manifests/bad", data=body,
                     headers={"Content-Type": OCI_MANIFEST})
    assert_error(r, 400, "MANIFEST_INVALID")
    assert_error(registry.get(f"/v2/{repo}/manifests/bad"), 404, "MANIFEST_UNKNOWN")


def _padded_manifest(repo_blobs, total_size):
    """A valid OCI manifest padded with an annotation to exactly `total_size` bytes."""
    layer = random_blob(10)
    base = oci_manifest([layer], annotations={"pad": ""})
    doc = base.doc
    pad = total_size - len(json.dumps(doc).encode())
    assert pad > 0
    doc["annotations"]["pad"] = "p" * pad
    body = json.dumps(doc).encode()
    assert len(body) == total_size
    repo_blobs.update(base.blobs)
    return Manifest(OCI_MANIFEST, body)


def test_manifest_of_4_megabytes_accepted(registry):
    # "Client and registry implementations SHOULD expect to be able to support manifest pushes
    # of at least 4 megabytes."
    repo = unique_repo("big")
    blobs = {}
    m = _padded_manifest(blobs, 4_000_000)
    for b in blobs.values():
        push_blob(registry, repo, b)
    push_manifest(registry, repo, "big", m)
    assert registry.get(f"/v2/{repo}/manifests/big",
                        headers={"Accept": OCI_MANIFEST}).content == m.body


def test_manifest_over_4_mib_413(registry):
    repo = unique_repo("huge")
    blobs = {}
    m = _padded_manifest(blobs, 4 * 1024 * 1024 + 1024)
    for b in blobs.values():
        push_blob(registry, repo, b)
    try:
        r = put_manifest(registry, repo, "huge", m)
    except Exception as e:  # requests.ConnectionError: the response was lost
        pytest.fail(f"oversize manifest PUT: no response readable ({e!r}); the server must "
                    "answer 413 and close gracefully (read or linger), not reset")
    assert_error(r, 413)
    assert_error(registry.get(f"/v2/{repo}/manifests/huge"), 404, "MANIFEST_UNKNOWN")


def test_manifest_delete_by_digest_202_then_404(registry):
    repo = unique_repo("mdel")
    m = push_image(registry, repo, "gone")
    push_image(registry, repo, "stays")
    r = registry.delete(f"/v2/{repo}/manifests/{m.digest}")
    assert r.status_code == 202
    assert_error(registry.get(f"/v2/{repo}/manifests/{m.digest}"), 404, "MANIFEST_UNKNOWN")
    assert_error(registry.head(f"/v2/{repo}/manifests/{m.digest}"), 404)
    # "... and any tag pointing to that digest will return a 404."
    assert_error(registry.get(f"/v2/{repo}/manifests/gone"), 404, "MANIFEST_UNKNOWN")
    assert "gone" not in (registry.get(f"/v2/{repo}/tags/list").json().get("tags") or [])
    assert registry.get(f"/v2/{repo}/manifests/stays",
                        headers={"Accept": ACCEPT_ALL}).status_code == 200
    assert_error(registry.delete(f"/v2/{repo}/manifests/{m.digest}"), 404, "MANIFEST_UNKNOWN")


def test_manifest_delete_by_tag_202_removes_only_the_tag(registry):
    repo = unique_repo("tdel")
    m = push_image(registry, repo, "one")
    push_manifest(registry, repo, "two", m)
    r = registry.delete(f"/v2/{repo}/manifests/one")
    assert r.status_code == 202
    assert_error(registry.get(f"/v2/{repo}/manifests/one"), 404, "MANIFEST_UNKNOWN")
    check_manifest_served(registry, repo, "two", m)
    check_manifest_served(registry, repo, m.digest, m)
    assert registry.get(f"/v2/{repo}/tags/list").json()["tags"] == ["two"]
    assert_error(registry.delete(f"/v2/{repo}/manifests/one"), 404, "MANIFEST_UNKNOWN")


def test_manifest_unknown_tag_404(registry):
    repo = unique_repo("munk")
    push_image(registry, repo, "exists")
    assert_error(registry.get(f"/v2/{repo}/manifests/nope"), 404, "MANIFEST_UNKNOWN")
    assert_error(registry.head(f"/v2/{repo}/manifests/nope"), 404)
    assert_error(registry.get(f"/v2/{repo}/manifests/{unknown_digest()}"), 404,
                 "MANIFEST_UNKNOWN")


def test_manifest_of_unknown_repository_404(registry):
    repo = unique_repo("never")
    assert_error(registry.get(f"/v2/{repo}/manifests/latest"), 404,
                 {"MANIFEST_UNKNOWN", "NAME_UNKNOWN"})
    assert_error(registry.head(f"/v2/{repo}/manifests/latest"), 404)
    assert_error(registry.get(f"/v2/{repo}/blobs/{unknown_digest()}"), 404,
                 {"BLOB_UNKNOWN", "NAME_UNKNOWN"})


# =============================================================================================
# end-8: tags
# =============================================================================================

TAGS = ["alpha", "beta", "delta", "epsilon", "gamma", "v1", "v10", "v2"]  # lexical order


def _tagged_repo(reg):
    repo = unique_repo("tags")
    m = push_image(reg, repo, TAGS[0])
    for t in reversed(TAGS[1:]):
        push_manifest(reg, repo, t, m)
    return repo


def _next_link(resp):
    link = resp.headers.get("Link")
    if link is None:
        return None
    m = re.fullmatch(r'\s*<([^>]+)>\s*;\s*rel="?next"?\s*', link)
    assert m, f"Link header not RFC 5988 with rel=\"next\": {link!r}"
    return m.group(1)


def test_tags_list_all_in_lexical_order(registry):
    repo = _tagged_repo(registry)
    r = registry.get(f"/v2/{repo}/tags/list")
    assert r.status_code == 200
    assert r.json() == {"name": repo, "tags": TAGS}


def test_tags_list_pagination_with_n_and_link(registry):
    repo = _tagged_repo(registry)
    r = registry.get(f"/v2/{repo}/tags/list?n=3")
    assert r.status_code == 200
    assert r.json()["tags"] == TAGS[:3]
    link = _next_link(r)
    assert link, "n < number of tags: expected a Link rel=next"
    assert link.startswith(f"/v2/{repo}/tags/list?") or \
        f"/v2/{repo}/tags/list?" in link, link
    assert "n=3" in link and "last=gamma" not in link

    seen, pages = list(r.json()["tags"]), 1
    while link:
        r = registry.get(link)
        assert r.status_code == 200
        page = r.json()["tags"] or []
        assert len(page) <= 3
        seen += page
        pages += 1
        link = _next_link(r)
        assert pages < 10
    assert seen == TAGS


def test_tags_list_n_and_last(registry):
    repo = _tagged_repo(registry)
    r = registry.get(f"/v2/{repo}/tags/list?n=2&last=delta")
    assert r.status_code == 200
    assert r.json()["tags"] == ["epsilon", "gamma"]
    r = registry.get(f"/v2/{repo}/tags/list?last=v1")  # n is optional with last
    assert r.json()["tags"] == ["v10", "v2"]
    r = registry.get(f"/v2/{repo}/tags/list?n=100")
    assert r.json()["tags"] == TAGS
    assert "Link" not in r.headers
    r = registry.get(f"/v2/{repo}/tags/list?n=2&last=v2")
    assert (r.json().get("tags") or []) == []
    assert "Link" not in r.headers


def test_tags_list_n_zero_is_empty_without_link(registry):
    repo = _tagged_repo(registry)
    r = registry.get(f"/v2/{repo}/tags/list?n=0")
    assert r.status_code == 200
    assert (r.json().get("tags") or []) == []
    assert "Link" not in r.headers


def test_tags_list_unknown_repository_404(registry):
    assert_error(registry.get(f"/v2/{unique_repo('notags')}/tags/list"), 404, "NAME_UNKNOWN")


# =============================================================================================
# _catalog (Docker registry API; not in the OCI spec, served with the same pagination rules)
# =============================================================================================

def test_catalog_lists_repositories_with_pagination(fresh_registry):
    reg = fresh_registry
    repos = sorted(["local/cat-a", "local/cat-b/x", "local/cat-c", "team/cat-d", "team/z/y"])
    for repo in repos:
        push_image(reg, repo, "t", layers=1, layer_size=10)

    r = reg.get("/v2/_catalog")
    assert r.status_code == 200
    assert r.json()["repositories"] == repos

    r = reg.get("/v2/_catalog?n=2")
    assert r.json()["repositories"] == repos[:2]
    seen, link = list(repos[:2]), _next_link(r)
    assert link, "expected Link rel=next"
    while link:
        r = reg.get(link)
        assert r.status_code == 200
        seen += r.json()["repositories"]
        link = _next_link(r)
        assert len(seen) <= len(repos)
    assert seen == repos

    r = reg.get(f"/v2/_catalog?n=2&last={repos[1]}")
    assert r.json()["repositories"] == repos[2:4]
    r = reg.get("/v2/_catalog?n=0")
    assert (r.json().get("repositories") or []) == []
    assert "Link" not in r.headers


# =============================================================================================
# end-12: referrers
# =============================================================================================

SBOM = "application/vnd.example.sbom.v1"
SIG = "application/vnd.example.signature.v1"


def _referrers(reg, repo, digest, params=""):
    r = reg.get(f"/v2/{repo}/referrers/{digest}{params}")
    assert r.status_code == 200, r.content
    assert r.headers.get("Content-Type", "").split(";")[0].strip() == OCI_INDEX
    doc = r.json()
    assert doc.get("schemaVersion") == 2
    assert doc.get("mediaType") == OCI_INDEX
    assert isinstance(doc.get("manifests"), list)
    return r, doc


def test_referrers_list_and_filter(registry):
    repo = unique_repo("ref")
    subject = push_image(registry, repo, "app")
    sbom, r1 = push_artifact(registry, repo, subject, artifact_type=SBOM,
                             annotations={"org.example.sbom.format": "json"})
    assert r1.headers.get("OCI-Subject") == subject.digest
    sig, r2 = push_artifact(registry, repo, subject, artifact_type=SIG)
    assert r2.headers.get("OCI-Subject") == subject.digest

    _, doc = _referrers(registry, repo, subject.digest)
    by_digest = {d["digest"]: d for d in doc["manifests"]}
    assert set(by_digest) == {sbom.digest, sig.digest}
    d = by_digest[sbom.digest]
    assert d["mediaType"] == OCI_MANIFEST
    assert d["size"] == len(sbom.body)
    assert d["artifactType"] == SBOM
    assert d.get("annotations") == {"org.example.sbom.format": "json"}
    assert by_digest[sig.digest]["artifactType"] == SIG

    r, doc = _referrers(registry, repo, subject.digest, f"?artifactType={SBOM}")
    assert [d["digest"] for d in doc["manifests"]] == [sbom.digest]
    assert r.headers.get("OCI-Filters-Applied") == "artifactType"

    r, doc = _referrers(registry, repo, subject.digest, "?artifactType=application/none")
    assert doc["manifests"] == []


def test_referrers_artifact_type_defaults_to_config_media_type(registry):
    repo = unique_repo("refcfg")
    subject = push_image(registry, repo, "app")
    # An image manifest without artifactType: the descriptor takes config.mediaType.
    ref = push_image(registry, repo, subject=manifest_descriptor(subject),
                     annotations={"k": "v"})
    _, doc = _referrers(registry, repo, subject.digest)
    [d] = doc["manifests"]
    assert d["digest"] == ref.digest
    assert d["artifactType"] == OCI_CONFIG
    assert d.get("annotations") == {"k": "v"}


def test_referrers_index_without_artifact_type_omits_it(registry):
    repo = unique_repo("refidx")
    subject = push_image(registry, repo, "app")
    child = push_image(registry, repo)
    idx = index_manifest([(child, "amd64")], subject=manifest_descriptor(subject))
    r = push_manifest(registry, repo, idx.digest, idx)
    assert r.headers.get("OCI-Subject") == subject.digest
    _, doc = _referrers(registry, repo, subject.digest)
    [d] = doc["manifests"]
    assert d["digest"] == idx.digest and d["mediaType"] == OCI_INDEX
    assert "artifactType" not in d or d["artifactType"] in ("", None)


def test_referrer_pushed_before_its_subject_is_accepted(registry):
    # "A registry MUST initially accept an otherwise valid manifest with a subject field that
    # references a manifest that does not exist in the repository".
    repo = unique_repo("reffirst")
    layers = [random_blob(50)]
    subject = oci_manifest(layers)  # not pushed yet
    art, r = push_artifact(registry, repo, subject, artifact_type=SBOM)
    assert r.headers.get("OCI-Subject") == subject.digest
    _, doc = _referrers(registry, repo, subject.digest)
    assert [d["digest"] for d in doc["manifests"]] == [art.digest]
    for b in subject.blobs.values():
        push_blob(registry, repo, b)
    push_manifest(registry, repo, "late", subject)
    _, doc = _referrers(registry, repo, subject.digest)
    assert [d["digest"] for d in doc["manifests"]] == [art.digest]


def test_referrers_of_deleted_referrer_disappear(registry):
    repo = unique_repo("refdel")
    subject = push_image(registry, repo, "app")
    art, _ = push_artifact(registry, repo, subject, artifact_type=SBOM)
    assert registry.delete(f"/v2/{repo}/manifests/{art.digest}").status_code == 202
    _, doc = _referrers(registry, repo, subject.digest)
    assert doc["manifests"] == []


def test_referrers_of_unknown_digest_is_empty_index(registry):
    repo = unique_repo("refunk")
    push_image(registry, repo, "app")
    r, doc = _referrers(registry, repo, unknown_digest())
    assert doc["manifests"] == []


def test_referrers_are_per_repository(registry):
    a, b = unique_repo("refa"), unique_repo("refb")
    subject = push_image(registry, a, "app")
    for blob in subject.blobs.values():
        push_blob(registry, b, blob)
    push_manifest(registry, b, "app", subject)
    push_artifact(registry, a, subject, artifact_type=SBOM)
    _, doc = _referrers(registry, b, subject.digest)
    assert doc["manifests"] == []


def test_referrers_invalid_digest_400(registry):
    repo = unique_repo("refbad")
    push_image(registry, repo, "app")
    assert_error(registry.get(f"/v2/{repo}/referrers/sha256:nothex"), 400, "DIGEST_INVALID")


# =============================================================================================
# Names, digests, references
# =============================================================================================

INVALID_NAMES = ["local/Upper", "Local/app", "local//b", "local/-lead", "local/trail-",
                 "local/a..b", "local/a___b"]


@pytest.mark.parametrize("name", INVALID_NAMES)
def test_invalid_repository_name(registry, name):
    d = unknown_digest()
    calls = [
        registry.get(f"/v2/{name}/manifests/latest"),
        registry.get(f"/v2/{name}/blobs/{d}"),
        registry.post(f"/v2/{name}/blobs/uploads/", headers={"Content-Length": "0"}),
        registry.get(f"/v2/{name}/tags/list"),
        registry.put(f"/v2/{name}/manifests/latest", data=b"{}",
                     headers={"Content-Type": OCI_MANIFEST}),
    ]
    for r in calls:
        # The spec's code is NAME_INVALID (400); a router that cannot even parse the path
        # answering 404 is tolerated.
        assert r.status_code in (400, 404), (r.request.method, r.request.url, r.status_code)
        if r.status_code == 400:
            assert_error(r, 400, "NAME_INVALID")
        else:
            assert_error(r, 404)


def test_name_too_long_rejected(registry):
    name = "local/" + "a" * 300
    r = registry.get(f"/v2/{name}/manifests/latest")
    assert_error(r, (400, 404), {"NAME_INVALID", "NAME_UNKNOWN", "MANIFEST_UNKNOWN"})


@pytest.mark.parametrize("bad", ["sha256:xyz", "sha256:" + "A" * 64, "sha256:" + "a" * 63,
                                 "sha256:"])
def test_invalid_digest_in_url_400(registry, bad):
    repo = unique_repo("baddigest")
    push_image(registry, repo, "t")
    assert_error(registry.get(f"/v2/{repo}/blobs/{bad}"), 400, "DIGEST_INVALID")
    assert_error(registry.head(f"/v2/{repo}/blobs/{bad}"), 400)
    assert_error(registry.delete(f"/v2/{repo}/blobs/{bad}"), 400, "DIGEST_INVALID")
    assert_error(registry.get(f"/v2/{repo}/manifests/{bad}"), 400, "DIGEST_INVALID")


@pytest.mark.parametrize("tag", ["-lead", ".dot", "x" * 129, "a+b"])
def test_invalid_tag_on_put_400(registry, tag):
    repo = unique_repo("badtag")
    layer = random_blob(10)
    m = oci_manifest([layer])
    for b in m.blobs.values():
        push_blob(registry, repo, b)
    r = put_manifest(registry, repo, tag, m)
    assert r.status_code in (400, 404), r.status_code
    assert_error(r, r.status_code)


def test_longest_valid_tag_accepted(registry):
    repo = unique_repo("longtag")
    tag = "_" + "a" * 127
    m = push_image(registry, repo, tag)
    check_manifest_served(registry, repo, tag, m)


# =============================================================================================
# Upstream-backed repositories refuse writes
# =============================================================================================

@pytest.mark.parametrize("repo", ["someorg/app", "docker.io/someorg/app"])
def test_push_to_upstream_backed_repo_405_unsupported(registry, repo):
    r = registry.post(f"/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"})
    assert_error(r, 405, "UNSUPPORTED", need_message=True)

    data = random_blob(10)
    r = registry.post(f"/v2/{repo}/blobs/uploads/?digest={sha256_digest(data)}", data=data,
                      headers=OCTET)
    assert_error(r, 405, "UNSUPPORTED", need_message=True)

    m = oci_manifest([data])
    r = put_manifest(registry, repo, "latest", m)
    assert_error(r, 405, "UNSUPPORTED", need_message=True)

    r = registry.delete(f"/v2/{repo}/manifests/latest")
    assert_error(r, 405, "UNSUPPORTED")
    r = registry.delete(f"/v2/{repo}/blobs/{sha256_digest(data)}")
    assert_error(r, 405, "UNSUPPORTED")


def test_mount_into_upstream_backed_repo_405(registry):
    src = unique_repo("msrc-up")
    digest = push_blob(registry, src, random_blob(10))
    r = registry.post(f"/v2/someorg/app/blobs/uploads/?mount={digest}&from={src}",
                      headers={"Content-Length": "0"})
    assert_error(r, 405, "UNSUPPORTED")


def test_team_namespace_is_local_too(registry):
    repo = unique_repo("deep", namespace="team") + "/x/y"
    m = push_image(registry, repo, "t")
    check_manifest_served(registry, repo, "t", m)


# =============================================================================================
# Media types without a mediaType field, concurrency, big blobs
# =============================================================================================

def test_manifest_without_media_type_field_uses_content_type(registry):
    # "The Content-Type header SHOULD match what the client pushed as the manifest's
    # Content-Type"; the body has no mediaType to say otherwise.
    repo = unique_repo("nomt")
    layer = random_blob(100)
    base = oci_manifest([layer])
    doc = base.doc
    del doc["mediaType"]
    m = Manifest(OCI_MANIFEST, encode(doc), base.blobs)
    for b in m.blobs.values():
        push_blob(registry, repo, b)
    push_manifest(registry, repo, "t", m)
    check_manifest_served(registry, repo, "t", m)


def test_manifest_without_content_type_uses_media_type_field(registry):
    repo = unique_repo("noct")
    layers = [random_blob(100)]
    m = docker_manifest(layers)
    for b in m.blobs.values():
        push_blob(registry, repo, b)
    r = registry.put(f"/v2/{repo}/manifests/t", data=m.body)  # no Content-Type
    assert r.status_code == 201, r.content
    check_manifest_served(registry, repo, "t", m)


def test_manifest_from_another_repository_is_not_visible(registry):
    a, b = unique_repo("mvis-a"), unique_repo("mvis-b")
    m = push_image(registry, a, "t")
    push_image(registry, b, "t")
    assert_error(registry.get(f"/v2/{b}/manifests/{m.digest}", headers={"Accept": ACCEPT_ALL}),
                 404, "MANIFEST_UNKNOWN")


def test_concurrent_pushes_and_pulls(registry):
    from concurrent.futures import ThreadPoolExecutor
    repo = unique_repo("conc")
    shared = random_blob(200_000)

    def work(i):
        own = random_blob(50_000 + i)
        d1 = push_blob(registry, repo, own, ["post_put", "chunked"][i % 2])
        d2 = push_blob(registry, repo, shared)  # everyone uploads the same blob too
        assert registry.get(f"/v2/{repo}/blobs/{d1}").content == own
        assert registry.get(f"/v2/{repo}/blobs/{d2}").content == shared
        m = push_image(registry, repo, f"c{i}", layers=1, layer_size=1000)
        return m

    with ThreadPoolExecutor(8) as pool:
        images = list(pool.map(work, range(16)))
    tags = registry.get(f"/v2/{repo}/tags/list").json()["tags"]
    assert tags == sorted(f"c{i}" for i in range(16))
    for i, m in enumerate(images):
        check_manifest_served(registry, repo, f"c{i}", m)


def _rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_large_blob_streams_with_flat_memory(fresh_registry):
    """DESIGN: uploads stream to disk; memory is flat in blob size. A 96 MiB chunked upload and
    its download must not grow the server's RSS by anything like the blob's size."""
    reg = fresh_registry
    repo = unique_repo("large")
    block = random_blob(1 << 20)
    blocks = [bytes([i]) + block[1:] for i in range(96)]
    import hashlib
    h = hashlib.sha256()
    for b in blocks:
        h.update(b)
    digest = "sha256:" + h.hexdigest()
    before = _rss_kib(reg.proc.pid)

    loc = start_upload(reg, repo).headers["Location"]
    r = reg.patch(loc, data=iter(blocks), headers=OCTET)  # a generator: Transfer-Encoding chunked
    assert r.status_code == 202, r.content
    assert range_end(r) == (96 << 20) - 1
    r = reg.put(with_query(r.headers["Location"], digest=digest), headers={"Content-Length": "0"})
    assert r.status_code == 201

    g = reg.get(f"/v2/{repo}/blobs/{digest}", stream=True)
    assert g.status_code == 200
    assert g.headers.get("Content-Length") == str(96 << 20)
    got = hashlib.sha256()
    for piece in g.iter_content(1 << 20):
        got.update(piece)
    assert "sha256:" + got.hexdigest() == digest
    grown = _rss_kib(reg.proc.pid) - before
    assert grown < 40 * 1024, f"RSS grew by {grown} KiB for a 96 MiB blob"


def test_mount_from_upstream_backed_repo_starts_upload(registry):
    # Offline, with nothing cached: nothing to mount, so an upload session begins.
    dst = unique_repo("mup")
    r = registry.post(f"/v2/{dst}/blobs/uploads/?mount={unknown_digest()}&from=someorg/app",
                      headers={"Content-Length": "0"})
    assert r.status_code == 202, r.status_code
    assert r.headers.get("Location")


def test_referrers_tag_schema_tag_is_an_ordinary_tag(registry):
    # Clients without the referrers API push an index to the tag "<alg>-<ref>".
    repo = unique_repo("reftag")
    subject = push_image(registry, repo, "app")
    tag = subject.digest.replace(":", "-")
    idx = index_manifest([])
    push_manifest(registry, repo, tag, idx)
    check_manifest_served(registry, repo, tag, idx)


@pytest.mark.parametrize("query", ["n=abc", "n=-1", "n=99999999999999999999", "last="])
def test_tags_list_odd_parameters_not_5xx(registry, query):
    repo = _tagged_repo(registry)
    r = registry.get(f"/v2/{repo}/tags/list?{query}")
    assert r.status_code in (200, 400), r.status_code
    if r.status_code == 400:
        assert_error(r, 400)


def test_blob_repush_after_delete(registry):
    repo = unique_repo("repush")
    data = random_blob(1000)
    digest = push_blob(registry, repo, data)
    assert registry.delete(f"/v2/{repo}/blobs/{digest}").status_code == 202
    assert push_blob(registry, repo, data, "chunked") == digest
    assert registry.get(f"/v2/{repo}/blobs/{digest}").content == data


def test_manifest_repush_after_delete(registry):
    repo = unique_repo("mrepush")
    m = push_image(registry, repo, "t")
    assert registry.delete(f"/v2/{repo}/manifests/{m.digest}").status_code == 202
    push_manifest(registry, repo, "t", m)
    check_manifest_served(registry, repo, "t", m)
