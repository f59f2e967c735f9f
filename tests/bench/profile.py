#!/usr/bin/env python3
"""Where regcache spends its CPU under run.py's cached workloads: perf samples (cpu-clock, so
it works without hardware counters) of the regcache process while hload drives one workload,
then perf report's top symbols by self time.

Usage: tests/bench/profile.py [--regcache build-bench/regcache] [--seconds 8]
           [--workloads manifest,blob4k,big] [--out DIR]
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402

CASES = {  # workload: (path key, method, connections)
    "manifest": ("manifest", "GET", 128),
    "blob4k": ("blob4k", "GET", 64),
    "big": ("big", "GET", 1),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--regcache", default="build-bench/regcache")
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--workloads", default="manifest,blob4k,big")
    ap.add_argument("--out", default=None, help="keep perf.data files here")
    args = ap.parse_args()
    cfg = dict(run.QUICK)
    tmp = tempfile.mkdtemp(prefix="regcache-profile-")
    out = args.out or tmp
    os.makedirs(out, exist_ok=True)
    try:
        tool = run.build_hload(tmp)
        servers, paths = run.setup_cached(os.path.abspath(args.regcache), tmp, cfg)
        rc = servers["regcache"]
        for name in args.workloads.split(","):
            key, method, conns = CASES[name]
            data = os.path.join(out, f"perf-{name}.data")
            perf = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "1999", "-g",
                                     "-o", data, "-p", str(rc.proc.pid), "--", "sleep",
                                     str(args.seconds + 1)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            header = run.ACCEPT if key == "manifest" else "X-Bench: profile"
            r = run.hload(tool, rc.port, paths["regcache"][key], method, conns, args.seconds,
                          header=header)
            perf.wait(timeout=60)
            print(f"\n=== {name}: {method} x{conns}: {r['rps']:.0f} req/s, "
                  f"{r['bytes'] / args.seconds / 1e6:.0f} MB/s ===", flush=True)
            report = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children",
                                     "--percent-limit", "1.5", "-g", "none", "--sort",
                                     "dso,symbol"], capture_output=True, text=True)
            print("\n".join(line for line in report.stdout.splitlines()
                            if line.strip() and not line.startswith("#")), flush=True)
    finally:
        for s in list(run.RUNNING):
            s.stop()
        if not args.out:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
