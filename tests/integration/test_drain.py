"""Graceful stop: SIGTERM stops accepting, lets a transfer in flight finish, then exits."""

import os
import signal
import socket
import time

from conftest import push_blob, request_bytes, sha256_digest, unique_repo

MiB = 1 << 20


def test_sigterm_during_a_pull_finishes_it(fresh_registry):
    reg = fresh_registry
    repo = unique_repo("drain")
    data = os.urandom(16 * MiB)
    digest = push_blob(reg, repo, data)

    conn = socket.create_connection(("127.0.0.1", reg.port), timeout=30)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    conn.sendall(request_bytes("GET", f"/v2/{repo}/blobs/{digest}", reg.host))
    received = conn.recv(64 * 1024)
    assert received.startswith(b"HTTP/1.1 200")

    reg.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    # No new connections once draining.
    try:
        socket.create_connection(("127.0.0.1", reg.port), timeout=2).close()
        refused = False
    except OSError:
        refused = True
    assert refused, "a draining server still accepted a new connection"

    # The transfer in flight completes, read slowly.
    while True:
        chunk = conn.recv(256 * 1024)
        if not chunk:
            break
        received += chunk
        time.sleep(0.002)
    conn.close()
    head, _, body = received.partition(b"\r\n\r\n")
    assert len(body) == len(data) and sha256_digest(body) == digest

    reg.proc.wait(timeout=15)
    assert reg.proc.returncode == 0
    assert b"serve.drained" in reg.log_path.read_bytes()
