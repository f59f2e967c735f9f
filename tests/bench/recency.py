#!/usr/bin/env python3
"""What recording access recency costs: cached manifest GETs by tag through the pull-through
path (where recency is recorded), with recording on and off, in one run.

Recording is switched off with REGCACHE_BENCH_NO_RECENCY=1, which exists for this bench only.
Usage: tests/bench/recency.py [--regcache build/regcache] [--rounds 5] [--seconds 5]
"""
import argparse
import os
import shutil
import statistics
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from core import Server, free_port, push_manifest, wrk_rps  # noqa: E402
from pull import start_upstream  # noqa: E402


def start(binary, tmp, upstream_port, name, env):
    port = free_port()
    cfg = os.path.join(tmp, f"{name}.toml")
    with open(cfg, "w") as f:
        f.write(f'listen = "127.0.0.1:{port}"\ndata_dir = "{tmp}/{name}"\nlog_level = "warn"\n'
                f'[[upstream]]\nname = "up"\nurl = "http://127.0.0.1:{upstream_port}"\n'
                f'default = true\ntag_ttl = "1h"\n')
    old = dict(os.environ)
    os.environ.update(env)
    try:
        return Server(name, [binary, "serve", "-c", cfg], port, tmp)
    finally:
        os.environ.clear()
        os.environ.update(old)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--regcache", default="build/regcache")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=64)
    args = ap.parse_args()
    binary = os.path.abspath(args.regcache)
    tmp = tempfile.mkdtemp(prefix="regcache-recency-")
    try:
        upstream = start_upstream(tmp)
        push_manifest(upstream.port, "bench/app", "v1")
        servers = {"recency on": start(binary, tmp, upstream.port, "on", {}),
                   "recency off": start(binary, tmp, upstream.port, "off",
                                        {"REGCACHE_BENCH_NO_RECENCY": "1"})}
        path = "/v2/up/bench/app/manifests/v1"
        rps = {name: [] for name in servers}
        for _ in range(args.rounds):  # interleaved, so drift hits both alike
            for name, s in servers.items():
                rps[name].append(wrk_rps(s.port, path, args.connections, args.seconds)[0])
        for s in servers.values():
            s.stop()
        upstream.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    on, off = statistics.median(rps["recency on"]), statistics.median(rps["recency off"])
    print(f"\ncached manifest GET by tag through the pull-through path, {args.connections} "
          f"connections, median of {args.rounds} rounds x {args.seconds}s")
    print(f"recency on   {on:10.0f} req/s\nrecency off  {off:10.0f} req/s\n"
          f"cost         {100 * (off - on) / off:9.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
