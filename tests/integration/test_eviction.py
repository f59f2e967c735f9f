"""Eviction: pulling more than max_cache_size through the cache keeps the disk under the bound,
by evicting the least recently used cached images as whole images, never pushed content and
never a base layer an image still held needs. kill -9 during eviction leaves a store fsck
finds clean."""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import push_image, sha256_digest
from pullthrough import *  # noqa: F401,F403 - fixtures and helpers
from pullthrough import PullRegistry

MiB = 1 << 20
BOUND = 12 * MiB


def with_bound(reg: PullRegistry, bound: int):
    """Adds max_cache_size to the config PullRegistry wrote (it has no knob for it)."""
    text = reg.config_path.read_text()
    reg.config_path.write_text(text.replace('log_level = "debug"',
                                            f'log_level = "debug"\nmax_cache_size = {bound}', 1))
    return reg


def bounded_proxy(make_pull, fake, bound=BOUND):
    reg = make_pull([upstream_entry(UPSTREAM, fake.url, default=True)], start=False)
    return with_bound(reg, bound).start()


def cached_bytes_on_disk(reg, pushed: set) -> int:
    """Bytes of blob files the cache holds that were not pushed."""
    total = 0
    for path in (reg.data_dir / "blobs").rglob("*"):
        if path.is_file() and f"sha256:{path.name}" not in pushed:
            total += path.stat().st_size
    return total


def pull_image(reg, repo, tag, m):
    assert_manifest(get_manifest(reg, repo, tag), m)
    for d, data in m.blobs.items():
        r = reg.get(blob_path(repo, d))
        assert r.status_code == 200 and r.content == data


def seed_family(fake, count, base):
    """`count` images that share `base` as their first layer, each with 2 MiB of its own."""
    images = []
    for i in range(count):
        own = os.urandom(2 * MiB)
        m = oci_manifest([base, own], config=config_blob(layers=[base, own]))
        fake.add_image(f"org/app{i}", "v1", m)
        images.append(m)
    return images


def test_pulling_past_the_bound_evicts_lru_images_only(make_pull, fake):
    base = os.urandom(1 * MiB)
    images = seed_family(fake, 8, base)  # 8 x 2 MiB + 1 MiB shared: 17 MiB > 12 MiB
    reg = bounded_proxy(make_pull, fake)

    local = push_image(reg, "local/keep", "v1")
    pushed = {d for d in local.blobs}

    for i, m in enumerate(images):
        pull_image(reg, f"org/app{i}", "v1", m)
    # The newest image is used again last: it must survive.
    pull_image(reg, "org/app7", "v1", images[7])

    wait_until(lambda: cached_bytes_on_disk(reg, pushed) <= BOUND, timeout=30, interval=0.5,
               what="the cache to shrink under max_cache_size")

    # The most recently used image is served from the cache: no upstream request for it.
    fake.clear_log()
    pull_image(reg, "org/app7", "v1", images[7])
    assert fake.count(name="org/app7") == 0, "the most recently used image went upstream again"

    # The shared base layer still serves the image that needs it.
    r = reg.get(blob_path("org/app7", sha256_digest(base)))
    assert r.status_code == 200 and r.content == base

    # The oldest image was evicted: asking for it again goes upstream (and works).
    fake.clear_log()
    pull_image(reg, "org/app0", "v1", images[0])
    assert fake.count("GET", "manifests", name="org/app0") > 0

    # Pushed content is untouched.
    r = reg.get(f"/v2/local/keep/manifests/v1", headers={"Accept": ACCEPT_ALL})
    assert r.status_code == 200 and r.content == local.body
    for d, data in local.blobs.items():
        assert reg.get(f"/v2/local/keep/blobs/{d}").content == data

    metrics = reg.get("/metrics").text
    evictions = [line for line in metrics.splitlines()
                 if line.startswith("regcache_evictions_total ")]
    assert evictions and int(evictions[0].split()[1]) > 0


@pytest.mark.parametrize("delay", [0.0, 0.2, 0.6])
def test_kill9_during_eviction_leaves_a_clean_store(make_pull, fake, regcache_bin, delay):
    base = os.urandom(1 * MiB)
    images = seed_family(fake, 8, base)
    reg = bounded_proxy(make_pull, fake)
    for i, m in enumerate(images):
        pull_image(reg, f"org/app{i}", "v1", m)
    # Eviction runs on the next housekeeping tick (every 5 s): kill around it.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "evict.done" not in reg.log_text():
        time.sleep(0.05)
    time.sleep(delay)
    reg.kill9()

    fsck = subprocess.run([regcache_bin, "fsck", "-c", str(reg.config_path)],
                          capture_output=True, text=True, timeout=120)
    assert fsck.returncode == 0, f"fsck after kill -9:\n{fsck.stdout}\n{fsck.stderr}"

    reg.start()
    pull_image(reg, "org/app7", "v1", images[7])
    pull_image(reg, "org/app0", "v1", images[0])
