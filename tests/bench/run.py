#!/usr/bin/env python3
"""The benchmark suite: regcache beside its peers, every workload, one table, one run.

Peers, all on 127.0.0.1 and started here from Debian's packages (scripts/install-deps.sh --bench):
  registry        docker-registry (the CNCF registry) holding pushed content
  registry proxy  docker-registry in proxy mode in front of `registry`
  nginx static    nginx serving the very same blob files (hardlinks to regcache's store) and the
                  manifest as static files with sendfile: the practical limit
  nginx cache     nginx with proxy_cache and proxy_cache_lock in front of an upstream (cold pulls)
regcache serves the cached workloads through its pull-through path (tag_ttl 1h), the path a
mirror's clients take. Rounds are interleaved across servers, so drift on this shared machine
hits every server alike; each figure is the median over rounds, and ratios are regcache over
the peer, from the same run. See tests/bench/README.md for each workload.

Usage: tests/bench/run.py [--quick] [--regcache build/regcache] [--index-bench PATH]
"""
import argparse
import hashlib
import http.client
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from core import CHUNK, free_port, push_blob_chunked, push_small, wait_http  # noqa: E402

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ACCEPT = f"Accept: {OCI_MANIFEST}"
MIB = 1 << 20
GIB = 1 << 30
TICK = os.sysconf("SC_CLK_TCK")

FULL = dict(rounds=5, seconds=3.0, big_seconds=4.0, big=GIB, cold=256 * MIB, cold_rounds=3, clients=16,
            link_rate=100 * 1000 * 1000,
            index_blobs=1000000, index_tags=100000, lookups=200000)
QUICK = dict(rounds=3, seconds=0.7, big_seconds=1.5, big=256 * MIB, cold=64 * MIB, cold_rounds=1, clients=16,
             link_rate=100 * 1000 * 1000,
             index_blobs=200000, index_tags=20000, lookups=50000)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Processes: start, stop, CPU and memory from /proc
# ---------------------------------------------------------------------------------------------

RUNNING = []  # every Proc not yet stopped, so an error stops them all


class Proc:
    """A server process we started; `pids()` includes nginx's workers."""

    def __init__(self, name, argv, port, tmp, env=None, ready_path="/v2/"):
        self.name, self.port = name, port
        self.log_path = os.path.join(tmp, f"{name}.log")
        self.logf = open(self.log_path, "w")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(argv, stdout=self.logf, stderr=self.logf, cwd=tmp,
                                     env={**os.environ, **(env or {})})
        RUNNING.append(self)
        wait_ready(port, ready_path, self.proc)
        self.startup_s = time.monotonic() - t0

    def pids(self):
        out = [self.proc.pid]
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                out += [int(p) for p in f.read().split()]
        except OSError:
            pass
        return out

    def cpu_s(self):
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])  # utime, stime
            except OSError:
                pass
        return total / TICK

    def rss_mib(self):
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
            except OSError:
                pass
        return total / 1024

    def stop(self):
        if self in RUNNING:
            RUNNING.remove(self)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logf.close()


def wait_ready(port, path, proc, timeout=30.0):
    """Polls until `path` answers; returns seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server on {port} exited with {proc.returncode}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", path)
            c.getresponse().read()
            c.close()
            return time.monotonic() - t0
        except OSError:
            time.sleep(0.002)
    raise RuntimeError(f"server on {port} did not come up")


class RssSampler:
    """Peak VmRSS of a server (all its processes) sampled every 50 ms while in a `with`."""

    def __init__(self, server):
        self.server, self.peak, self._stop = server, 0.0, threading.Event()

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.server.rss_mib())
            self._stop.wait(0.05)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


# ---------------------------------------------------------------------------------------------
# Peers
# ---------------------------------------------------------------------------------------------

def start_registry(tmp, name, proxy_of=None, access_log=False):
    port = free_port()
    data = os.path.join(tmp, name)
    cfg = os.path.join(tmp, f"{name}.yml")
    with open(cfg, "w") as f:
        f.write(f"version: 0.1\nlog:\n  level: error\n  accesslog:\n"
                f"    disabled: {'false' if access_log else 'true'}\n"
                f"storage:\n  filesystem:\n    rootdirectory: {data}\n"
                f"http:\n  addr: 127.0.0.1:{port}\n")
        if proxy_of:
            f.write(f"proxy:\n  remoteurl: http://127.0.0.1:{proxy_of}\n")
    return Proc(name, ["docker-registry", "serve", cfg], port, tmp)


def start_regcache(binary, tmp, name, upstreams, local=None):
    """upstreams: [(name, port)]; the first is the default."""
    port = free_port()
    cfg = os.path.join(tmp, f"{name}.toml")
    with open(cfg, "w") as f:
        f.write(f'listen = "127.0.0.1:{port}"\ndata_dir = "{tmp}/{name}"\n'
                f'log_level = "warn"\n')
        for i, (up, up_port) in enumerate(upstreams):
            f.write(f'[[upstream]]\nname = "{up}"\nurl = "http://127.0.0.1:{up_port}"\n'
                    f'tag_ttl = "1h"\n{"default = true" if i == 0 else ""}\n')
        if local:
            f.write(f'[local]\nnamespaces = ["{local}"]\n')
    return Proc(name, [binary, "serve", "-c", cfg], port, tmp)


NGINX_COMMON = """
daemon off;
user root;
worker_processes 2;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  client_body_temp_path {prefix}/body;
  proxy_temp_path {prefix}/proxy_temp;
  types {{ }}
  default_type application/octet-stream;
  server {{
    listen 127.0.0.1:{port};
    {server}
  }}
}}
"""

NGINX_STATIC = """
    root {root};
    location = /v2/ {{ return 200 '{{}}'; }}
    location ~ /manifests/ {{ default_type {media}; }}
"""

NGINX_CACHE = """
    location / {{
      proxy_pass http://127.0.0.1:{upstream};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache regcache_bench;
      proxy_cache_lock on;
      proxy_cache_lock_timeout 600s;
      proxy_cache_lock_age 600s;
      proxy_cache_valid 200 1h;
    }}
"""


def start_nginx(tmp, name, server_block, http_extra=""):
    prefix = os.path.join(tmp, name)
    os.makedirs(prefix, exist_ok=True)
    port = free_port()
    conf = NGINX_COMMON.format(prefix=prefix, port=port, server=server_block)
    conf = conf.replace("http {\n", "http {\n" + http_extra, 1)
    path = os.path.join(prefix, "nginx.conf")
    with open(path, "w") as f:
        f.write(conf)
    return Proc(name, ["nginx", "-p", prefix, "-c", path, "-e", f"{prefix}/error.log"], port,
                tmp)


def start_nginx_static(tmp, root):
    return start_nginx(tmp, "nginx-static", NGINX_STATIC.format(root=root, media=OCI_MANIFEST))


def start_nginx_cache(tmp, name, upstream_port):
    prefix = os.path.join(tmp, name)
    shutil.rmtree(prefix, ignore_errors=True)
    extra = (f"  proxy_cache_path {prefix}/cache levels=1:2 keys_zone=regcache_bench:10m "
             f"max_size=20g inactive=1h use_temp_path=off;\n")
    return start_nginx(tmp, name, NGINX_CACHE.format(upstream=upstream_port), extra)


# ---------------------------------------------------------------------------------------------
# Content
# ---------------------------------------------------------------------------------------------

def push_image(port, repo, tag, layer):
    """Pushes a config, `layer` and a manifest; returns (manifest bytes, layer digest)."""
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    cd, ld = push_small(port, repo, config), push_small(port, repo, layer)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd,
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld,
                    "size": len(layer)}],
    }).encode()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("PUT", f"/v2/{repo}/manifests/{tag}", body=manifest,
              headers={"Content-Type": OCI_MANIFEST})
    r = c.getresponse()
    r.read()
    assert r.status == 201, r.status
    return manifest, ld


def get(port, path, accept=OCI_MANIFEST, method="GET"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    c.request(method, path, headers={"Accept": accept})
    r = c.getresponse()
    n = 0
    while True:
        b = r.read(CHUNK)
        if not b:
            break
        n += len(b)
    c.close()
    if r.status != 200:
        raise RuntimeError(f"{method} {path} on {port}: {r.status}")
    return n


def regcache_blob_file(tmp, name, digest):
    hexd = digest.split(":", 1)[1]
    return os.path.join(tmp, name, "blobs", "sha256", hexd[:2], hexd)


# ---------------------------------------------------------------------------------------------
# Load
# ---------------------------------------------------------------------------------------------

def build_hload(tmp):
    out = os.path.join(tmp, "hload")
    subprocess.run(["cc", "-O2", "-pthread", "-o", out, os.path.join(HERE, "hload.c")],
                   check=True)
    return out


def hload(tool, port, path, method, conns, seconds, header=ACCEPT):
    threads = 1 if conns == 1 else 2
    argv = [tool, "-p", str(port), "-m", method, "-c", str(conns), "-t", str(threads), "-d",
            str(seconds), "-H", header, path]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    if out.returncode != 0:
        raise RuntimeError(f"hload failed: {out.stderr}")
    r = json.loads(out.stdout)
    if r["non2xx"] or (r["requests"] == 0 and r["bytes"] == 0):
        raise RuntimeError(f"hload {method} x{conns} against {port} {path}: {r}")
    return r


def curl_many(port, path, n, timeout=600):
    """Starts n curls at once; returns [(first_byte_s, total_s, bytes)]."""
    fmt = "%{time_starttransfer} %{time_total} %{size_download} %{http_code}\n"
    procs = [subprocess.Popen(["curl", "-s", "-o", "/dev/null", "-m", str(timeout), "-w", fmt,
                               f"http://127.0.0.1:{port}{path}"],
                              stdout=subprocess.PIPE, text=True) for _ in range(n)]
    results = []
    for p in procs:
        out, _ = p.communicate(timeout=timeout + 10)
        first, total, size, code = out.split()
        if code != "200":
            raise RuntimeError(f"curl got {code} for {path} on {port}")
        results.append((float(first), float(total), int(size)))
    return results


def hold_connections(port, n, seconds_hold=1.0):
    """Opens n keep-alive connections, makes one request on each, holds them idle."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        socks.append(s)
    for s in socks:
        s.recv(65536)
    time.sleep(seconds_hold)
    return socks


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------

COLUMNS = ["regcache", "registry", "registry proxy", "nginx static", "nginx cache"]
BASELINE = "regcache base"  # a column of its own with --baseline, right after regcache
HIGHER_BETTER = ("req/s", "MB/s")


class Table:
    def __init__(self):
        self.rows = []  # (workload, metric, {column: [values]})

    def add(self, workload, metric, column, value):
        for w, m, vals in self.rows:
            if w == workload and m == metric:
                vals.setdefault(column, []).append(value)
                return
        self.rows.append((workload, metric, {column: [value]}))

    def render(self):
        head = f"| workload | metric | {' | '.join(COLUMNS)} | " + " | ".join(
            f"rc/{c.split()[0][:3]}{'-' + c.split()[1][:2] if ' ' in c else ''}"
            for c in COLUMNS[1:]) + " |"
        lines = [head, "|" + " --- |" * (2 + 2 * len(COLUMNS) - 1)]
        for w, m, vals in self.rows:
            med = {c: statistics.median(v) for c, v in vals.items()}
            cells = [fmt(med.get(c)) for c in COLUMNS]
            rc = med.get("regcache")
            ratios = []
            for c in COLUMNS[1:]:
                peer = med.get(c)
                ratios.append(f"{rc / peer:.2f}" if rc is not None and peer else "")
            lines.append(f"| {w} | {m} | " + " | ".join(cells) + " | " + " | ".join(ratios) +
                         " |")
        return "\n".join(lines)

    def as_json(self):
        return [{"workload": w, "metric": m,
                 **{c: statistics.median(v) for c, v in vals.items()}} for w, m, vals in self.rows]


def fmt(v):
    if v is None:
        return "—"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3g}"


# ---------------------------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------------------------

def bench_requests(table, tool, servers, paths, cfg):
    """Manifest GET/HEAD at 1/16/128 connections and 4 KiB blob GETs at 64, interleaved."""
    cases = [("manifest GET", "GET", c) for c in (1, 16, 128)]
    cases += [("manifest HEAD", "HEAD", c) for c in (1, 16, 128)]
    cases += [("4 KiB blob GET", "GET", 64)]
    for rnd in range(cfg["rounds"]):
        log(f"requests: round {rnd + 1}/{cfg['rounds']}")
        for what, method, conns in cases:
            for name, s in servers.items():
                key = "blob4k" if "blob" in what else "manifest"
                before = s.cpu_s()
                with RssSampler(s) as rss:
                    r = hload(tool, s.port, paths[name][key], method, conns, cfg["seconds"])
                cpu_us = (s.cpu_s() - before) / r["requests"] * 1e6
                w = f"{what}, {conns} conn"
                table.add(w, "req/s", name, r["rps"])
                table.add(w, "p50 ms", name, r["p50_ms"])
                table.add(w, "p99 ms", name, r["p99_ms"])
                if conns == 128 and method == "GET":
                    table.add(w, "server CPU us/req", name, cpu_us)
                    table.add(w, "peak RSS MiB", name, rss.peak)


def children_cpu_s():
    """CPU seconds of this script's finished children: hload, once it has been waited for."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def bench_big(table, tool, servers, paths, cfg):
    """A cached big blob to 1 and 8 clients: MB/s, server CPU s per GiB, RSS during it.

    On loopback the kernel's receive work for a segment runs in whichever context gets to it
    first, the sender's softirq or the reader's recv, so a server that sends faster is
    charged for more of its client's work. The server + client row counts both sides."""
    size = cfg["big"]
    label = f"{size // GIB} GiB" if size >= GIB else f"{size // MIB} MiB"
    for rnd in range(cfg["rounds"]):
        log(f"big blob: round {rnd + 1}/{cfg['rounds']}")
        for clients in (1, 8):
            for name, s in servers.items():
                before, client_before = s.cpu_s(), children_cpu_s()
                with RssSampler(s) as rss:
                    r = hload(tool, s.port, paths[name]["big"], "GET", clients,
                              cfg["big_seconds"], header="X-Bench: big")
                cpu, client_cpu = s.cpu_s() - before, children_cpu_s() - client_before
                w = f"cached {label} blob, {clients} client{'s' if clients > 1 else ''}"
                gib = r["bytes"] / GIB
                table.add(w, "MB/s", name, r["bytes"] / cfg["big_seconds"] / 1e6)
                table.add(w, "server CPU s/GiB", name, cpu / gib)
                table.add(w, "server + client CPU s/GiB", name, (cpu + client_cpu) / gib)
                if clients == 1:
                    table.add(f"RSS during a {label} transfer", "peak MiB", name, rss.peak)


def start_link(tmp, upstream_port, rate):
    """tests/bench/link.py: `upstream_port` passed through at `rate` bytes/s per connection."""
    port = free_port()
    return Proc("wan-link", [sys.executable, os.path.join(HERE, "link.py"), str(port),
                             str(upstream_port), str(rate)], port, tmp)


def upstream_blob_gets(log_path, digest):
    with open(log_path, errors="replace") as f:
        return sum(1 for line in f if f"GET /v2/bench/cold/blobs/{digest}" in line)


def cold_starters(binary, tmp, tag, upstream_port):
    """Starters of each proxy on an empty cache in front of `upstream_port`, by column; each
    takes a round label that names its data dir (rc-<tag><label>, dp-..., nx-...)."""
    return {
        "regcache": lambda i: start_regcache(binary, tmp, f"rc-{tag}{i}", [("up", upstream_port)]),
        "registry proxy": lambda i: start_registry(tmp, f"dp-{tag}{i}", proxy_of=upstream_port),
        "nginx cache": lambda i: start_nginx_cache(tmp, f"nx-{tag}{i}", upstream_port),
    }


def bench_cold(table, binary, tmp, cfg):
    """Cold pull-through: each measurement starts its proxy on an empty cache."""
    size = cfg["cold"]
    label = f"{size // MIB} MiB"
    up = start_registry(tmp, "cold-upstream", access_log=True)
    try:
        digest = push_blob_chunked(up.port, "bench/cold", size, os.urandom(CHUNK))
        starters = cold_starters(binary, tmp, "cold", up.port)
        rc_path = f"/v2/up/bench/cold/blobs/{digest}"
        plain_path = f"/v2/bench/cold/blobs/{digest}"
        n = cfg["clients"]
        for rnd in range(cfg["cold_rounds"]):
            log(f"cold pull-through: round {rnd + 1}/{cfg['cold_rounds']}")
            direct = curl_many(up.port, plain_path, 1)[0]
            table.add(f"cold {label} pull, 1 client", "MB/s", "registry", size / direct[1] / 1e6)
            for name, start in starters.items():
                path = rc_path if name == "regcache" else plain_path
                s = start(f"{rnd}a")
                one = curl_many(s.port, path, 1)[0]
                s.stop()
                w1 = f"cold {label} pull, 1 client"
                table.add(w1, "MB/s", name, size / one[1] / 1e6)
                table.add(w1, "first byte ms", name, one[0] * 1000)
                s = start(f"{rnd}b")
                before = upstream_blob_gets(up.log_path, digest)
                res = curl_many(s.port, path, n)
                time.sleep(0.3)  # let the upstream's access log catch up
                fetches = upstream_blob_gets(up.log_path, digest) - before
                s.stop()
                wn = f"cold {label} pull, {n} clients same blob"
                table.add(wn, "upstream fetches", name, fetches)
                table.add(wn, "slowest / single", name, max(r[1] for r in res) / one[1])
                table.add(wn, "wall s", name, max(r[1] for r in res))
                table.add(wn, "latest first byte ms", name, max(r[0] for r in res) * 1000)
                for p in (f"rc-cold{rnd}a", f"rc-cold{rnd}b", f"dp-cold{rnd}a", f"dp-cold{rnd}b",
                          f"nx-cold{rnd}a", f"nx-cold{rnd}b"):
                    shutil.rmtree(os.path.join(tmp, p), ignore_errors=True)
        bench_cold_link(table, binary, tmp, cfg, up, digest)
    finally:
        up.stop()


def bench_cold_link(table, binary, tmp, cfg, up, digest):
    """The cold single-client pull again with the upstream behind a WAN-like link, as a mirror
    meets it: on loopback every process shares two cores, and the proxies' own CPU (a copy in,
    a hash, a copy out) then bounds them; behind a link the network does."""
    rate = cfg["link_rate"]
    link = start_link(tmp, up.port, rate)
    starters = cold_starters(binary, tmp, "link", link.port)
    w = f"cold {cfg['cold'] // MIB} MiB pull, 1 client, {rate // 1000000} MB/s upstream"
    plain_path = f"/v2/bench/cold/blobs/{digest}"
    try:
        for rnd in range(cfg["cold_rounds"]):
            log(f"cold pull behind a {rate // 1000000} MB/s link: "
                f"round {rnd + 1}/{cfg['cold_rounds']}")
            direct = curl_many(link.port, plain_path, 1)[0]
            table.add(w, "MB/s", "registry", cfg["cold"] / direct[1] / 1e6)
            for name, start in starters.items():
                s = start(rnd)
                path = f"/v2/up/bench/cold/blobs/{digest}" if name == "regcache" else plain_path
                one = curl_many(s.port, path, 1)[0]
                s.stop()
                table.add(w, "MB/s", name, cfg["cold"] / one[1] / 1e6)
                table.add(w, "first byte ms", name, one[0] * 1000)
                for p in (f"rc-link{rnd}", f"dp-link{rnd}", f"nx-link{rnd}"):
                    shutil.rmtree(os.path.join(tmp, p), ignore_errors=True)
    finally:
        link.stop()


def du_mib(path):
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
            except OSError:
                pass
    return total / MIB


def bench_index(table, binary, index_bench, tool, tmp, cfg):
    """An index with many blob records and tags: fill, start-up, lookups direct and over HTTP."""
    name = "rc-index"
    s = start_regcache(binary, tmp, name, [], local="bench")
    _, _ = push_image(s.port, "bench/idx", "v1", os.urandom(4096))
    c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
    c.request("HEAD", "/v2/bench/idx/manifests/v1", headers={"Accept": OCI_MANIFEST})
    digest = c.getresponse().getheader("Docker-Content-Digest")
    s.stop()
    blobs, tags = cfg["index_blobs"], cfg["index_tags"]
    label = f"index of {blobs / 1e6:g}M blobs, {tags // 1000}k tags"
    data = os.path.join(tmp, name)
    log(f"index: filling {blobs} blobs and {tags} tags")
    fill = subprocess.run([index_bench, "fill", data, "bench/idx", digest, "--blobs", str(blobs),
                           "--tags", str(tags)], capture_output=True, text=True, check=True,
                          timeout=900)
    table.add(label, "fill s (direct loader)", "regcache", json.loads(fill.stdout)["seconds"])
    table.add(label, "data dir MiB", "regcache", du_mib(data))

    # Start-up: exec to /v2/ answering, a few times; page cache warm after the first.
    for _ in range(cfg["rounds"]):
        s = start_regcache(binary, tmp, name, [], local="bench")
        table.add(label, "start-up ms", "regcache", s.startup_s * 1000)
        s.stop()
    s = start_regcache(binary, tmp, name, [], local="bench")
    try:
        with open(os.path.join(tmp, "tag-paths"), "w") as f:
            for i in range(20000):
                k = (i * 7919) % tags
                f.write(f"/v2/bench/idx-s{k // 100:05d}/manifests/t{k % 100:03d}\n")
        for _ in range(cfg["rounds"]):
            r = hload(tool, s.port, "@" + os.path.join(tmp, "tag-paths"), "HEAD", 1,
                      cfg["seconds"])
            table.add(label, "HTTP HEAD random tag p50 us", "regcache", r["p50_ms"] * 1000)
            table.add(label, "HTTP HEAD random tag p99 us", "regcache", r["p99_ms"] * 1000)
    finally:
        s.stop()
    out = subprocess.run([index_bench, "lookup", data, "bench/idx", "--blobs", str(blobs),
                          "--tags", str(tags), "--count", str(cfg["lookups"])],
                         capture_output=True, text=True, check=True, timeout=600)
    r = json.loads(out.stdout)
    for what in ("blob", "tag"):
        table.add(label, f"direct {what} lookup p50 us", "regcache", r[f"{what}_p50_us"])
        table.add(label, f"direct {what} lookup p99 us", "regcache", r[f"{what}_p99_us"])
    shutil.rmtree(data, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Setup of the cached workloads
# ---------------------------------------------------------------------------------------------

def setup_cached(binary, tmp, cfg, baseline=None):
    """Starts registry, registry proxy, regcache and nginx static, with the same content; and
    a second regcache from the `baseline` binary when given, for an A/B of a change."""
    registry = start_registry(tmp, "registry")
    manifest, small = push_image(registry.port, "bench/app", "v1", os.urandom(4096))
    log(f"pushing the {cfg['big'] // MIB} MiB blob")
    big = push_blob_chunked(registry.port, "bench/app", cfg["big"], os.urandom(CHUNK))
    proxy = start_registry(tmp, "registry-proxy", proxy_of=registry.port)
    regcache = start_regcache(binary, tmp, "regcache", [("up", registry.port)])
    regcaches = {"regcache": regcache}
    if baseline:
        regcaches[BASELINE] = start_regcache(baseline, tmp, "regcache-base",
                                             [("up", registry.port)])

    # Warm the caches: the manifest, the small blob and the big one.
    warm = [(r.port, "/v2/up/bench/app") for r in regcaches.values()]
    for port, prefix in warm + [(proxy.port, "/v2/bench/app")]:
        get(port, f"{prefix}/manifests/v1")
        get(port, f"{prefix}/blobs/{small}")
        get(port, f"{prefix}/blobs/{big}")
    time.sleep(1)  # the proxy stores in the background

    # nginx's root: the manifest as a file, the blobs as hardlinks to regcache's own files.
    root = os.path.join(tmp, "nginx-root")
    blobs = os.path.join(root, "v2", "bench", "app", "blobs")
    os.makedirs(blobs)
    os.makedirs(os.path.join(root, "v2", "bench", "app", "manifests"))
    with open(os.path.join(root, "v2", "bench", "app", "manifests", "v1"), "wb") as f:
        f.write(manifest)
    for d in (small, big):
        os.link(regcache_blob_file(tmp, "regcache", d), os.path.join(blobs, d))
    nginx = start_nginx_static(tmp, root)

    servers = {**regcaches, "registry": registry, "registry proxy": proxy, "nginx static": nginx}
    paths = {}
    for name in servers:
        prefix = "/v2/up/bench/app" if name in regcaches else "/v2/bench/app"
        paths[name] = {"manifest": f"{prefix}/manifests/v1", "blob4k": f"{prefix}/blobs/{small}",
                       "big": f"{prefix}/blobs/{big}"}
    for name, s in servers.items():  # every server answers every path before timing starts
        for key, p in paths[name].items():
            if key != "big":
                get(s.port, p)
    return servers, paths


def machine():
    model = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kib = int(f.readline().split()[1])
    return (f"{os.cpu_count()} CPUs ({model}), {mem_kib / (1 << 20):.1f} GiB RAM, "
            f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller sizes and rounds (< 3 min)")
    ap.add_argument("--regcache", default="build/regcache")
    ap.add_argument("--index-bench", default=None,
                    help="index_bench binary (default: next to --regcache)")
    ap.add_argument("--only", default="requests,big,rss,cold,index",
                    help="comma-separated subset of workloads")
    ap.add_argument("--json", default=None, help="also write the medians here")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    ap.add_argument("--baseline", default=None,
                    help="another regcache binary, measured beside --regcache in the cached "
                         "workloads (an A/B of a change)")
    ap.add_argument("--servers", default=None,
                    help="comma-separated columns to measure in the cached workloads "
                         "(default: all)")
    args = ap.parse_args()
    if args.baseline:
        COLUMNS.insert(1, BASELINE)
    cfg = QUICK if args.quick else FULL
    only = set(args.only.split(","))
    binary = os.path.abspath(args.regcache)
    index_bench = os.path.abspath(args.index_bench or
                                  os.path.join(os.path.dirname(binary), "index_bench"))
    for tool in ("docker-registry", "nginx", "curl", "cc"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: scripts/install-deps.sh --bench")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))

    started = time.monotonic()
    load_before = os.getloadavg()
    table = Table()
    tmp = tempfile.mkdtemp(prefix="regcache-bench-")
    servers = {}
    try:
        tool = build_hload(tmp)
        if only & {"requests", "big", "rss"}:
            servers, paths = setup_cached(binary, tmp, cfg,
                                          args.baseline and os.path.abspath(args.baseline))
            if args.servers:
                keep = set(args.servers.split(","))
                for name in [n for n in servers if n not in keep]:
                    servers.pop(name).stop()
            if "rss" in only:
                for name, s in servers.items():
                    table.add("RSS idle", "MiB", name, s.rss_mib())
            if "requests" in only:
                bench_requests(table, tool, servers, paths, cfg)
            if "big" in only:
                bench_big(table, tool, servers, paths, cfg)
            if "rss" in only:
                for name, s in servers.items():
                    socks = hold_connections(s.port, 1000)
                    table.add("RSS with 1000 idle keep-alive conns", "MiB", name, s.rss_mib())
                    for sock in socks:
                        sock.close()
            for s in servers.values():
                s.stop()
            servers = {}
        if "cold" in only:
            bench_cold(table, binary, tmp, cfg)
        if "index" in only:
            if os.path.exists(index_bench):
                bench_index(table, binary, index_bench, tool, tmp, cfg)
            else:
                log(f"{index_bench} missing (-DREGCACHE_BENCH=ON): index rows left out")
    finally:
        for s in list(RUNNING):
            s.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    print(f"\n{'quick' if args.quick else 'full'} run, {time.strftime('%Y-%m-%d %H:%M %Z')}, "
          f"{machine()} (at start: {' '.join(f'{x:.2f}' for x in load_before)}); "
          f"medians of {cfg['rounds']} rounds x {cfg['seconds']:g}s "
          f"({cfg['cold_rounds']} for cold pulls); took {time.monotonic() - started:.0f}s")
    print(table.render())
    if args.json:
        with open(args.json, "w") as f:
            json.dump(table.as_json(), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
