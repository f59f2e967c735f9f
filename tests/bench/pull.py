#!/usr/bin/env python3
"""Pull-through benchmark: a cold blob through regcache beside Debian's docker-registry in
proxy mode, both in front of the same docker-registry upstream on loopback, in one run.

Measures:
  - one client, cold 256 MiB blob: MB/s, and as a ratio of pulling straight from upstream;
  - 16 clients asking for the same cold blob at once: how many times the upstream served it,
    the slowest client's time over one client alone, and the latest first byte.
Each cold measurement starts the proxy on an empty data directory. Clients are curl
processes (so the load generator is not the bottleneck). Only loopback addresses are used.

Usage: tests/bench/pull.py [--regcache build/regcache] [--mib 256] [--rounds 3]
"""
import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from core import (CHUNK, Server, free_port, push_blob_chunked, wait_http)  # noqa: E402


def start_upstream(tmp):
    port = free_port()
    cfg = os.path.join(tmp, "upstream.yml")
    with open(cfg, "w") as f:
        f.write(f"version: 0.1\nlog:\n  level: error\n"
                f"storage:\n  filesystem:\n    rootdirectory: {tmp}/upstream-data\n"
                f"http:\n  addr: 127.0.0.1:{port}\n")
    return Server("upstream", ["docker-registry", "serve", cfg], port, tmp)


def start_regcache(binary, tmp, upstream_port, name):
    port = free_port()
    data = os.path.join(tmp, name)
    shutil.rmtree(data, ignore_errors=True)
    cfg = os.path.join(tmp, f"{name}.toml")
    with open(cfg, "w") as f:
        f.write(f'listen = "127.0.0.1:{port}"\ndata_dir = "{data}"\nlog_level = "warn"\n'
                f'[[upstream]]\nname = "up"\nurl = "http://127.0.0.1:{upstream_port}"\n'
                f'default = true\n')
    return Server(name, [binary, "serve", "-c", cfg], port, tmp)


def start_distribution_proxy(tmp, upstream_port, name):
    port = free_port()
    data = os.path.join(tmp, name)
    shutil.rmtree(data, ignore_errors=True)
    cfg = os.path.join(tmp, f"{name}.yml")
    with open(cfg, "w") as f:
        f.write(f"version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
                f"storage:\n  filesystem:\n    rootdirectory: {data}\n"
                f"http:\n  addr: 127.0.0.1:{port}\n"
                f"proxy:\n  remoteurl: http://127.0.0.1:{upstream_port}\n")
    return Server(name, ["docker-registry", "serve", cfg], port, tmp)


def curl_many(port, path, n):
    """Starts n curls at once; returns [(first_byte_s, total_s, bytes)]."""
    fmt = "%{time_starttransfer} %{time_total} %{size_download} %{http_code}\n"
    procs = [subprocess.Popen(["curl", "-s", "-o", "/dev/null", "-w", fmt,
                               f"http://127.0.0.1:{port}{path}"],
                              stdout=subprocess.PIPE, text=True) for _ in range(n)]
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=600)
        first, total, size, code = out.split()
        if code != "200":
            raise RuntimeError(f"curl got {code} for {path} on {port}")
        results.append((float(first), float(total), int(size)))
    return results


def upstream_gets(log_path, digest):
    with open(log_path, errors="replace") as f:
        return sum(1 for line in f if f'"GET /v2/bench/big/blobs/{digest}' in line)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--regcache", default="build/regcache")
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=16)
    args = ap.parse_args()
    binary = os.path.abspath(args.regcache)
    total = args.mib << 20
    tmp = tempfile.mkdtemp(prefix="regcache-pullbench-")
    try:
        upstream = start_upstream(tmp)
        digest = push_blob_chunked(upstream.port, "bench/big", total, os.urandom(CHUNK))
        path = f"/v2/bench/big/blobs/{digest}"
        upstream_log = os.path.join(tmp, "upstream.log")

        direct = [curl_many(upstream.port, path, 1)[0] for _ in range(args.rounds)]
        rows = {"direct from upstream": {
            "one_mb_s": total / statistics.median(r[1] for r in direct) / 1e6,
            "one_first_byte_ms": statistics.median(r[0] for r in direct) * 1000}}

        peers = {"regcache": lambda i: start_regcache(binary, tmp, upstream.port, f"rc{i}"),
                 "registry proxy": lambda i: start_distribution_proxy(tmp, upstream.port,
                                                                      f"dp{i}")}
        for name, start in peers.items():
            singles, many = [], []
            fetches, firsts = [], []
            for i in range(args.rounds):
                s = start(f"{i}a")
                singles.append(curl_many(s.port, path, 1)[0])
                s.stop()
                s = start(f"{i}b")
                before = upstream_gets(upstream_log, digest)
                res = curl_many(s.port, path, args.clients)
                time.sleep(0.5)  # let the upstream log catch up
                fetches.append(upstream_gets(upstream_log, digest) - before)
                many.append(max(r[1] for r in res))
                firsts.append(max(r[0] for r in res))
                s.stop()
            one = statistics.median(r[1] for r in singles)
            rows[name] = {
                "one_mb_s": total / one / 1e6,
                "one_first_byte_ms": statistics.median(r[0] for r in singles) * 1000,
                "many_upstream_fetches": statistics.median(fetches),
                "many_slowest_over_one": statistics.median(many) / one,
                "many_latest_first_byte_ms": statistics.median(firsts) * 1000,
            }
        upstream.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    base = rows["direct from upstream"]["one_mb_s"]
    print(f"\ncold {args.mib} MiB blob, {args.clients} clients for the shared case, "
          f"median of {args.rounds} rounds")
    print(f"{'source':22} {'1 client MB/s':>14} {'vs direct':>10} {'1st byte ms':>12} "
          f"{'upstream GETs':>14} {'slowest/one':>12} {'last 1st byte ms':>17}")
    for name, r in rows.items():
        print(f"{name:22} {r['one_mb_s']:14.0f} {r['one_mb_s'] / base:10.2f} "
              f"{r['one_first_byte_ms']:12.1f} "
              f"{r.get('many_upstream_fetches', float('nan')):14.0f} "
              f"{r.get('many_slowest_over_one', float('nan')):12.2f} "
              f"{r.get('many_latest_first_byte_ms', float('nan')):17.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
