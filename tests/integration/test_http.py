"""HTTP/1.1 behaviour seen on the wire, with raw sockets: persistence, pipelining, chunked
request bodies, Expect: 100-continue, limits, and clients that misbehave."""

import re
import socket
import time

import pytest

from conftest import (
    RawConnection, chunked, push_blob, random_blob, request_bytes, sha256_digest,
    start_upload, unique_repo, with_query, check_error_body,
)


def _path(location):
    """The request-target for a Location (absolute or relative)."""
    m = re.match(r"https?://[^/]+(/.*)", location)
    return m.group(1) if m else location


def _range_end(resp):
    m = re.fullmatch(r"0-(\d+)", resp.header("Range") or "")
    assert m, f"bad or missing Range header: {resp.header('Range')!r}"
    return int(m.group(1))


def _still_serving(reg):
    with reg.raw() as c:
        c.send(request_bytes("GET", "/v2/", reg.host))
        assert c.read_response().status == 200


def test_keep_alive_two_requests_one_connection(registry):
    with registry.raw() as c:
        for _ in range(2):
            c.send(request_bytes("GET", "/v2/", registry.host))
            r = c.read_response()
            assert r.status == 200
            assert r.version == "HTTP/1.1"
            assert (r.header("Connection") or "").lower() != "close"


def test_pipelined_requests_answered_in_order(registry):
    repo = unique_repo("pipe")
    blobs = [random_blob(n) for n in (100, 70000, 5)]
    digests = [push_blob(registry, repo, b) for b in blobs]
    host = registry.host
    reqs = b"".join([
        request_bytes("GET", f"/v2/{repo}/blobs/{digests[0]}", host),
        request_bytes("HEAD", f"/v2/{repo}/blobs/{digests[1]}", host),
        request_bytes("GET", f"/v2/{repo}/blobs/{digests[1]}", host),
        request_bytes("GET", f"/v2/{repo}/blobs/{sha256_digest(b'missing')}", host),
        request_bytes("GET", f"/v2/{repo}/blobs/{digests[2]}", host),
    ])
    with registry.raw() as c:
        c.send(reqs)
        r = c.read_response()
        assert (r.status, r.body) == (200, blobs[0])
        r = c.read_response("HEAD")
        assert r.status == 200 and r.header("Content-Length") == str(len(blobs[1]))
        r = c.read_response()
        assert (r.status, r.body) == (200, blobs[1])
        r = c.read_response()
        assert r.status == 404
        check_error_body(r.body)
        r = c.read_response()
        assert (r.status, r.body) == (200, blobs[2])


def test_three_pipelined_gets_in_one_send(registry):
    with registry.raw() as c:
        c.send(request_bytes("GET", "/v2/", registry.host) * 3)
        for _ in range(3):
            assert c.read_response().status == 200


def test_patch_with_transfer_encoding_chunked(registry):
    """Docker and containerd stream layers as a chunked PATCH without Content-Range."""
    repo = unique_repo("te")
    data = random_blob(1_000_003)
    digest = sha256_digest(data)
    loc = start_upload(registry, repo).headers["Location"]
    with registry.raw() as c:
        head = request_bytes("PATCH", _path(loc), registry.host, {
            "Content-Type": "application/octet-stream",
            "Transfer-Encoding": "chunked",
        })
        c.send(head)
        # Odd chunk sizes, sent in pieces that split chunk headers.
        body = chunked(data, [1, 7, 65536, 12345, 300000])
        for i in range(0, len(body), 40000):
            c.send(body[i:i + 40000])
        r = c.read_response()
        assert r.status == 202, r
        assert _range_end(r) == len(data) - 1
        loc = r.header("Location")
        assert loc

        # The same connection serves the closing PUT.
        c.send(request_bytes("PUT", _path(with_query(loc, digest=digest)), registry.host,
                             {"Content-Length": "0"}))
        r = c.read_response()
        assert r.status == 201, r
    assert registry.get(f"/v2/{repo}/blobs/{digest}").content == data


def test_chunked_request_with_trailer_and_extension(registry):
    repo = unique_repo("te2")
    data = b"hello chunked world"
    digest = sha256_digest(data)
    loc = start_upload(registry, repo).headers["Location"]
    with registry.raw() as c:
        c.send(request_bytes("PATCH", _path(loc), registry.host,
                             {"Transfer-Encoding": "chunked"}))
        c.send(b"5;ext=1\r\nhello\r\nE\r\n chunked world\r\n0\r\nX-Trailer: yes\r\n\r\n")
        r = c.read_response()
        assert r.status == 202, r
        assert _range_end(r) == len(data) - 1
        loc = r.header("Location")
    r = registry.put(with_query(loc, digest=digest), headers={"Content-Length": "0"})
    assert r.status_code == 201


def test_expect_100_continue(registry):
    repo = unique_repo("expect")
    data = random_blob(200000)
    digest = sha256_digest(data)
    loc = start_upload(registry, repo).headers["Location"]
    with registry.raw() as c:
        c.send(request_bytes("PUT", _path(with_query(loc, digest=digest)), registry.host, {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(len(data)),
            "Expect": "100-continue",
        }))
        interim = c.read_response(skip_interim=False)
        assert interim.status == 100, f"expected 100 Continue first, got {interim}"
        assert interim.version == "HTTP/1.1"
        c.send(data)
        r = c.read_response()
        assert r.status == 201, r
    assert registry.get(f"/v2/{repo}/blobs/{digest}").content == data


def test_expect_100_continue_raw_bytes(registry):
    """The interim response is literally `HTTP/1.1 100 Continue`."""
    repo = unique_repo("expect2")
    loc = start_upload(registry, repo).headers["Location"]
    with registry.raw() as c:
        c.send(request_bytes("PATCH", _path(loc), registry.host, {
            "Content-Length": "3", "Expect": "100-continue"}))
        deadline = time.monotonic() + 5
        while b"\r\n\r\n" not in c.buf and time.monotonic() < deadline:
            c._fill()
        assert c.buf.startswith(b"HTTP/1.1 100 Continue\r\n"), c.buf[:100]
        c.buf = c.buf.split(b"\r\n\r\n", 1)[1]
        c.send(b"abc")
        assert c.read_response().status == 202


def test_header_block_over_64k_431(registry):
    pad = "x" * 1000
    headers = {f"X-Pad-{i}": pad for i in range(70)}  # ~71 KB of header block
    with registry.raw() as c:
        try:
            c.send(request_bytes("GET", "/v2/", registry.host, headers))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may stop reading once over the limit
        try:
            r = c.read_response()
        except (ConnectionResetError, EOFError) as e:
            pytest.fail(f"no 431 response readable ({e!r}); the server must answer before "
                        "closing and not reset the connection")
        assert r.status == 431, r
    _still_serving(registry)


def test_single_huge_header_line_431(registry):
    with registry.raw() as c:
        try:
            c.send(request_bytes("GET", "/v2/", registry.host, {"X-Big": "y" * 70000}))
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            r = c.read_response()
        except (ConnectionResetError, EOFError) as e:
            pytest.fail(f"no 431 response readable ({e!r})")
        assert r.status == 431, r
    _still_serving(registry)


def test_client_vanishing_mid_patch(registry):
    """Half a PATCH body, then the client is gone: the server goes on serving, and the upload
    keeps what arrived so the client can resume (the spec's "Resumable Push" use case)."""
    repo = unique_repo("vanish")
    data = random_blob(1 << 20)
    half = 256 * 1024
    loc = start_upload(registry, repo).headers["Location"]
    c = registry.raw()
    c.send(request_bytes("PATCH", _path(loc), registry.host, {
        "Content-Type": "application/octet-stream",
        "Content-Length": str(len(data)),
    }))
    c.send(data[:half])
    c.sock.shutdown(socket.SHUT_WR)
    c.close()

    _still_serving(registry)

    # The upload status settles at the bytes received.
    deadline = time.monotonic() + 5
    while True:
        s = registry.get(loc)
        assert s.status_code == 204, s.status_code
        if s.headers.get("Range") == f"0-{half - 1}" or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    assert s.headers.get("Range") == f"0-{half - 1}", \
        f"upload status after a vanished client: Range {s.headers.get('Range')!r}"

    r = registry.patch(s.headers["Location"], data=data[half:],
                       headers={"Content-Range": f"{half}-{len(data) - 1}"})
    assert r.status_code == 202
    digest = sha256_digest(data)
    r = registry.put(with_query(r.headers["Location"], digest=digest),
                     headers={"Content-Length": "0"})
    assert r.status_code == 201
    assert registry.get(f"/v2/{repo}/blobs/{digest}").content == data


def test_client_reset_mid_patch(registry):
    """Same, but the client resets the connection (SO_LINGER 0) instead of closing."""
    repo = unique_repo("reset")
    loc = start_upload(registry, repo).headers["Location"]
    c = registry.raw()
    c.send(request_bytes("PATCH", _path(loc), registry.host, {"Content-Length": "1000000"}))
    c.send(b"z" * 100000)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    c.close()
    _still_serving(registry)
    s = registry.get(loc)
    assert s.status_code in (204, 404)


@pytest.mark.parametrize("garbage", [
    b"GARBAGE\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n\r\n",  # a TLS hello
    b"GET /v2/ HTTP/1.1\r\nHost x\r\n\r\n",
    b"GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
], ids=["word", "tls", "header-without-colon", "content-length"])
def test_garbage_request_400(registry, garbage):
    with registry.raw() as c:
        c.send(garbage)
        try:
            r = c.read_response()
        except (ConnectionResetError, EOFError) as e:
            pytest.fail(f"no response to a malformed request ({e!r})")
        assert r.status == 400, r
        assert c.closed_by_peer(5), "the server should close after a malformed request"
    _still_serving(registry)


def test_connection_close_honoured(registry):
    with registry.raw() as c:
        c.send(request_bytes("GET", "/v2/", registry.host, {"Connection": "close"}))
        assert c.read_response().status == 200
        assert c.closed_by_peer(5)


def test_http_1_0_without_keep_alive_closes(registry):
    with registry.raw() as c:
        c.send(b"GET /v2/ HTTP/1.0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200
        assert c.closed_by_peer(5)


def test_many_idle_connections_do_not_block_others(registry):
    idle = [registry.raw() for _ in range(50)]
    try:
        for c in idle[:25]:
            c.send(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n")  # headers never finished
        _still_serving(registry)
    finally:
        for c in idle:
            c.close()
    _still_serving(registry)


def test_absolute_form_request_target(registry):
    # RFC 9112 3.2.2: "A server MUST accept the absolute-form in requests".
    with registry.raw() as c:
        c.send(request_bytes("GET", f"http://{registry.host}/v2/", registry.host))
        assert c.read_response().status == 200


def test_lowercase_header_names(registry):
    repo = unique_repo("lower")
    data = b"lowercase headers"
    loc = start_upload(registry, repo).headers["Location"]
    with registry.raw() as c:
        c.send(f"PATCH {_path(loc)} HTTP/1.1\r\nhost: {registry.host}\r\n"
               f"content-length: {len(data)}\r\ncontent-range: 0-{len(data) - 1}\r\n\r\n"
               .encode() + data)
        r = c.read_response()
        assert r.status == 202, r
        assert _range_end(r) == len(data) - 1


def test_pipelined_patch_status_and_put(registry):
    """A request body inside a pipeline must be framed exactly: PATCH with a body, then the
    status GET and the closing PUT, all in one send."""
    repo = unique_repo("pipepatch")
    data = random_blob(100_000)
    digest = sha256_digest(data)
    loc = _path(start_upload(registry, repo).headers["Location"])
    host = registry.host
    with registry.raw() as c:
        c.send(request_bytes("PATCH", loc, host, {"Content-Range": f"0-{len(data) - 1}"}, data)
               + request_bytes("GET", loc, host)
               + request_bytes("PUT", _path(with_query(loc, digest=digest)), host,
                               {"Content-Length": "0"}))
        r = c.read_response()
        assert r.status == 202, r
        r = c.read_response()
        assert r.status == 204 and _range_end(r) == len(data) - 1, r
        r = c.read_response()
        assert r.status == 201, r
    assert registry.get(f"/v2/{repo}/blobs/{digest}").content == data


def test_content_length_and_chunked_together_do_not_desync(registry):
    """RFC 9112 6.3: Transfer-Encoding overrides Content-Length, or the request is refused with
    400 and the connection closed. Either way the next request must not be read out of the
    body (request smuggling)."""
    repo = unique_repo("smuggle")
    loc = _path(start_upload(registry, repo).headers["Location"])
    smuggled = request_bytes("DELETE", loc, registry.host)
    body = b"5\r\nhello\r\n0\r\n\r\n"
    with registry.raw() as c:
        c.send(request_bytes("PATCH", loc, registry.host, {
            "Transfer-Encoding": "chunked", "Content-Length": str(len(body) + len(smuggled))})
            + body + smuggled)
        r = c.read_response()
        assert r.status in (202, 400), r
        if r.status == 202:
            assert _range_end(r) == 4
            # The bytes after the chunked body are the next request: the DELETE.
            r2 = c.read_response()
            assert r2.status in (202, 204), r2
    _still_serving(registry)


def test_conflicting_content_lengths_400(registry):
    repo = unique_repo("cl2")
    loc = _path(start_upload(registry, repo).headers["Location"])
    with registry.raw() as c:
        c.send(f"PATCH {loc} HTTP/1.1\r\nHost: {registry.host}\r\nContent-Length: 3\r\n"
               f"Content-Length: 5\r\n\r\nabcde".encode())
        try:
            r = c.read_response()
        except (ConnectionResetError, EOFError) as e:
            pytest.fail(f"no response ({e!r})")
        assert r.status == 400, r
    _still_serving(registry)


def test_put_right_after_patch_on_another_connection(registry):
    """skopeo and containerd send the PATCH and the closing PUT on different pooled
    connections: once the PATCH's 202 has arrived, the PUT must find the upload ready."""
    repo = unique_repo("race")
    failures = []
    for i in range(150):
        data = random_blob(20_000 + i)
        digest = sha256_digest(data)
        loc = _path(start_upload(registry, repo).headers["Location"])
        with registry.raw() as a, registry.raw() as b:
            a.send(request_bytes("PATCH", loc, registry.host,
                                 {"Content-Type": "application/octet-stream"}, data))
            r = a.read_response()
            assert r.status == 202, r
            b.send(request_bytes("PUT", _path(with_query(r.header("Location"), digest=digest)),
                                 registry.host, {"Content-Length": "0"}))
            r = b.read_response()
            if r.status != 201:
                failures.append((i, r.status, r.body[:200]))
    assert not failures, f"{len(failures)}/150 closing PUTs failed right after a 202 PATCH: " \
                         f"{failures[:3]}"


def test_responses_carry_date(registry):
    # RFC 9110 6.6.1: an origin server with a clock MUST send Date in 2xx, 3xx and 4xx.
    with registry.raw() as c:
        c.send(request_bytes("GET", "/v2/", registry.host)
               + request_bytes("GET", f"/v2/{unique_repo('date')}/tags/list", registry.host))
        for _ in range(2):
            r = c.read_response()
            assert r.header("Date"), r


def test_204_upload_status_has_no_content_length(registry):
    # RFC 9110 8.6: "A server MUST NOT send a Content-Length header field in any response with
    # a status code of 1xx (Informational) or 204 (No Content)."
    loc = _path(start_upload(registry, unique_repo("nocl")).headers["Location"])
    with registry.raw() as c:
        c.send(request_bytes("GET", loc, registry.host))
        r = c.read_response()
        assert r.status == 204, r
        assert r.header("Content-Length") is None, r
        assert r.header("Transfer-Encoding") is None, r
        c.send(request_bytes("GET", "/v2/", registry.host))  # framing still right
        assert c.read_response().status == 200
