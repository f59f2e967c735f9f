#!/usr/bin/env python3
"""Air-gap benchmark: how long `regcache export` and `regcache import` take for about 1 GiB of
images, and how much memory they need.

Builds N images of random layers in the integration suite's fake upstream, warms them into data
dir A (through warm's in-process registry), then times, each on a cold page cache where the
kernel lets us drop it (root) and a warm one otherwise:
  - export --all of A to a tar;
  - import of that tar into an empty data dir B (every byte hashed, fsynced, renamed);
  - re-import into B (everything held: no copy);
and prints MB/s and the peak RSS of each command. Run once, by hand:

Usage: tests/bench/airgap.py [--regcache build/regcache] [--images 4] [--layer-mib 128]
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from conftest import config_blob, oci_manifest  # noqa: E402
from fake_upstream import FakeUpstream  # noqa: E402
from pullthrough import upstream_entry, write_pull_config  # noqa: E402

MiB = 1 << 20


# A child's peak RSS counts the memory of the process it was forked from (Linux keeps the
# pre-exec high-water mark), and this process holds the fake upstream's layers: so the
# command is started by a small fresh interpreter that reports its child's peak.
LAUNCHER = """
import os, subprocess, sys
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(p.pid, 0)
print(usage.ru_maxrss, flush=True)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run(binary, *args):
    """Runs regcache; returns (seconds, its peak RSS in MiB, its stderr)."""
    start = time.monotonic()
    p = subprocess.run([sys.executable, "-c", LAUNCHER, binary, *map(str, args)],
                       capture_output=True, text=True)
    seconds = time.monotonic() - start
    if p.returncode != 0:
        sys.exit(f"regcache {' '.join(map(str, args))} -> {p.returncode}\n{p.stderr}")
    return seconds, int(p.stdout.split()[-1]) / 1024, p.stderr


def drop_caches():
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def seed(fake, images, layer_mib):
    total = 0
    for i in range(images):
        layers = [os.urandom(layer_mib * MiB) for _ in range(2)]
        m = oci_manifest(layers, config=config_blob("amd64", layers))
        fake.add_image(f"bench/img{i}", "v1", m)
        total += sum(len(b) for b in m.blobs.values())
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--regcache", default=os.path.join(HERE, "..", "..", "build", "regcache"))
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--layer-mib", type=int, default=128)
    args = ap.parse_args()
    binary = os.path.abspath(args.regcache)

    tmp = tempfile.mkdtemp(prefix="regcache-airgap-bench-")
    fake = FakeUpstream().start()
    try:
        total = seed(fake, args.images, args.layer_mib)
        a, b = Path(tmp) / "a.toml", Path(tmp) / "b.toml"
        write_pull_config(a, Path(tmp) / "a",
                          [upstream_entry("upstream.test", fake.url, default=True)])
        write_pull_config(b, Path(tmp) / "b",
                          [upstream_entry("upstream.test", "http://127.0.0.1:9", default=True)],
                          offline=True)
        refs = [f"bench/img{i}:v1" for i in range(args.images)]
        warm_s, _, _ = run(binary, "warm", "-c", a, *refs)
        tar = os.path.join(tmp, "images.tar")

        cold = drop_caches()
        export_s, export_rss, _ = run(binary, "export", "-c", a, "-o", tar, "--all")
        cold = drop_caches() and cold
        import_s, import_rss, _ = run(binary, "import", "-c", b, tar)
        again_s, _, out = run(binary, "import", "-c", b, tar)
        assert "copied_bytes=0" in out, out

        size = os.path.getsize(tar)
        print(f"images={args.images} blob_bytes={total} ({total / MiB:.0f} MiB) "
              f"tar_bytes={size} page_cache={'cold' if cold else 'warm (not root)'}")
        print(f"warm    {warm_s:7.2f} s  {total / MiB / warm_s:8.0f} MiB/s  (from the fake upstream)")
        print(f"export  {export_s:7.2f} s  {size / MiB / export_s:8.0f} MiB/s  "
              f"peak RSS {export_rss:.0f} MiB")
        print(f"import  {import_s:7.2f} s  {size / MiB / import_s:8.0f} MiB/s  "
              f"peak RSS {import_rss:.0f} MiB")
        print(f"re-import (all held) {again_s:7.2f} s")
    finally:
        fake.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
