#!/usr/bin/env python3
"""Registry-core benchmark: regcache beside Debian's docker-registry, in the same run.

Measures, for each server:
  - peak RSS (VmHWM) while pushing a large blob (chunked PATCH, as Docker sends it) and
    then pulling it back;
  - requests/s for a cached manifest GET by tag at 64 connections (wrk), median of rounds.

Usage: tests/bench/core.py [--regcache build/regcache] [--blob-gib 2] [--rounds 3]
Only loopback addresses are used.
"""
import argparse
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

CHUNK = 1 << 20


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(port, timeout=15.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/v2/")
            c.getresponse().read()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server on {port} did not come up")


def vm_hwm_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


class Server:
    def __init__(self, name, argv, port, cwd):
        self.name, self.port = name, port
        self.log = open(os.path.join(cwd, f"{name}.log"), "w")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=self.log, cwd=cwd)
        wait_http(port)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start_regcache(binary, tmp):
    port = free_port()
    cfg = os.path.join(tmp, "regcache.toml")
    with open(cfg, "w") as f:
        f.write(f'listen = "127.0.0.1:{port}"\ndata_dir = "{tmp}/regcache-data"\n'
                f'log_level = "warn"\n[local]\nnamespaces = ["bench"]\n')
    return Server("regcache", [binary, "serve", "-c", cfg], port, tmp)


def start_distribution(tmp):
    port = free_port()
    cfg = os.path.join(tmp, "registry.yml")
    with open(cfg, "w") as f:
        f.write(f"version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
                f"storage:\n  filesystem:\n    rootdirectory: {tmp}/registry-data\n"
                f"  delete:\n    enabled: true\n"
                f"http:\n  addr: 127.0.0.1:{port}\n")
    return Server("docker-registry", ["docker-registry", "serve", cfg], port, tmp)


def push_blob_chunked(port, repo, total, pattern):
    """Streams `total` bytes with one chunked PATCH, then PUTs the digest."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    c.request("POST", f"/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"})
    r = c.getresponse()
    r.read()
    assert r.status == 202, r.status
    location = r.getheader("Location")
    if location.startswith("http"):
        location = "/" + location.split("/", 3)[3]
    h = hashlib.sha256()

    def body():
        sent = 0
        while sent < total:
            piece = pattern[: min(CHUNK, total - sent)]
            h.update(piece)
            sent += len(piece)
            yield piece

    c.request("PATCH", location, body=body(), encode_chunked=True,
              headers={"Content-Type": "application/octet-stream",
                       "Transfer-Encoding": "chunked"})
    r = c.getresponse()
    r.read()
    assert r.status == 202, r.status
    location = r.getheader("Location")
    if location.startswith("http"):
        location = "/" + location.split("/", 3)[3]
    digest = "sha256:" + h.hexdigest()
    sep = "&" if "?" in location else "?"
    c.request("PUT", f"{location}{sep}digest={digest}", headers={"Content-Length": "0"})
    r = c.getresponse()
    r.read()
    assert r.status == 201, (r.status)
    return digest


def pull_blob(port, repo, digest, expect):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    c.request("GET", f"/v2/{repo}/blobs/{digest}")
    r = c.getresponse()
    assert r.status == 200, r.status
    got = 0
    while True:
        b = r.read(CHUNK)
        if not b:
            break
        got += len(b)
    assert got == expect, (got, expect)


def push_small(port, repo, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("POST", f"/v2/{repo}/blobs/uploads/", headers={"Content-Length": "0"})
    r = c.getresponse()
    r.read()
    location = r.getheader("Location")
    if location.startswith("http"):
        location = "/" + location.split("/", 3)[3]
    sep = "&" if "?" in location else "?"
    c.request("PUT", f"{location}{sep}digest={digest}", body=data,
              headers={"Content-Type": "application/octet-stream"})
    r = c.getresponse()
    r.read()
    assert r.status == 201, r.status
    return digest


def push_manifest(port, repo, tag):
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    layer = os.urandom(4096)
    cd = push_small(port, repo, config)
    ld = push_small(port, repo, layer)
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": cd, "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": ld, "size": len(layer)}],
    }).encode()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("PUT", f"/v2/{repo}/manifests/{tag}", body=manifest,
              headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    r = c.getresponse()
    r.read()
    assert r.status == 201, r.status


def wrk_rps(port, path, connections, seconds):
    script = ('wrk.headers["Accept"] = "application/vnd.oci.image.manifest.v1+json"\n')
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", f.name,
         f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, check=True).stdout
    os.unlink(f.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        raise RuntimeError(f"wrk saw errors on {port}:\n{out}")
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[p99.group(2)]
    return rps, float(p99.group(1)) * scale


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--regcache", default="build/regcache")
    ap.add_argument("--blob-gib", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    args = ap.parse_args()
    binary = os.path.abspath(args.regcache)
    total = int(args.blob_gib * (1 << 30))
    pattern = os.urandom(CHUNK)

    rows = []
    tmp = tempfile.mkdtemp(prefix="regcache-bench-")
    try:
        servers = [start_regcache(binary, tmp), start_distribution(tmp)]
        results = {}
        for s in servers:
            t0 = time.time()
            digest = push_blob_chunked(s.port, "bench/big", total, pattern)
            push_s = time.time() - t0
            push_hwm = vm_hwm_kib(s.proc.pid)
            t0 = time.time()
            pull_blob(s.port, "bench/big", digest, total)
            pull_s = time.time() - t0
            pull_hwm = vm_hwm_kib(s.proc.pid)
            push_manifest(s.port, "bench/app", "v1")
            rounds = [wrk_rps(s.port, "/v2/bench/app/manifests/v1", 64, args.seconds)
                      for _ in range(args.rounds)]
            results[s.name] = {
                "push_mb_s": total / push_s / 1e6, "push_peak_rss_mib": push_hwm / 1024,
                "pull_mb_s": total / pull_s / 1e6, "pull_peak_rss_mib": pull_hwm / 1024,
                "manifest_rps_64": statistics.median(r[0] for r in rounds),
                "manifest_p99_ms_64": statistics.median(r[1] for r in rounds),
            }
        for s in servers:
            s.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    a, b = results["regcache"], results["docker-registry"]
    print(f"\nblob {args.blob_gib:g} GiB, manifest GET by tag at 64 connections, "
          f"median of {args.rounds} rounds x {args.seconds}s")
    print(f"{'metric':28} {'regcache':>12} {'docker-registry':>16} {'ratio':>8}")
    for key in a:
        ratio = a[key] / b[key] if b[key] else float("inf")
        print(f"{key:28} {a[key]:12.1f} {b[key]:16.1f} {ratio:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
