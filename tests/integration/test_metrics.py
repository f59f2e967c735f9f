"""Observability: every metric moves as a scripted pull says it should; /healthz and /readyz
answer, and /readyz stays ready with the upstream down (serving from cache is the point)."""

import re

from pullthrough import *  # noqa: F401,F403 - fixtures and helpers


def metrics(reg) -> dict:
    """{'name{labels}': value} from /metrics."""
    out = {}
    for line in reg.get("/metrics").text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def value(m: dict, name: str, **labels) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return m.get(f"{name}{{{want}}}" if want else name, 0.0)


def test_metrics_follow_a_scripted_pull(make_pull, fake):
    m = seed_image(fake, layer_sizes=(100_000, 200_000))
    reg = proxy_of(make_pull, fake)
    before = metrics(reg)
    assert before["regcache_fills_in_flight"] == 0
    assert before["regcache_disk_bytes_bound"] > 0

    # Cold: a manifest miss and two blob misses (plus the config blob).
    assert_manifest(get_manifest(reg, "org/app", "v1"), m)
    blob_bytes = 0
    for d, data in m.blobs.items():
        assert reg.get(blob_path("org/app", d)).content == data
        blob_bytes += len(data)
    # A client has every byte once they are verified, while the fill goes on to store and
    # index them; a request before that ends joins the fill (coalesced), so wait for it.
    wait_until(lambda: metrics(reg)["regcache_fills_in_flight"] == 0, timeout=10, interval=0.02,
               what="the fills to be stored")
    # Warm: the same again, all hits.
    assert_manifest(get_manifest(reg, "org/app", "v1"), m)
    for d, data in m.blobs.items():
        assert reg.get(blob_path("org/app", d)).content == data

    after = metrics(reg)
    delta = lambda name, **labels: value(after, name, **labels) - value(before, name, **labels)
    assert delta("regcache_cache_requests_total", kind="manifest", outcome="miss") == 1
    assert delta("regcache_cache_requests_total", kind="manifest", outcome="hit") == 1
    assert delta("regcache_cache_requests_total", kind="blob", outcome="miss") == len(m.blobs)
    assert delta("regcache_cache_requests_total", kind="blob", outcome="hit") == len(m.blobs)
    assert delta("regcache_served_bytes_total", source="upstream") >= blob_bytes
    assert delta("regcache_served_bytes_total", source="cache") >= blob_bytes
    assert delta("regcache_requests_total", route="manifest", status="200") == 2
    assert delta("regcache_requests_total", route="blob", status="200") == 2 * len(m.blobs)
    assert delta("regcache_request_duration_seconds_count", route="blob") == 2 * len(m.blobs)
    assert after["regcache_fills_in_flight"] == 0
    assert after["regcache_connections"] >= 1
    assert after["regcache_disk_bytes_used"] >= blob_bytes

    # The JSON status agrees.
    status = reg.get("/api/status").json()
    assert status["cache"]["hits"] >= len(m.blobs) + 1
    assert status["cache"]["misses"] >= len(m.blobs) + 1
    assert 0 < status["cache"]["hit_ratio"] < 1


def test_upstream_errors_are_counted_and_readyz_stays_ready(make_pull, fake):
    m = seed_image(fake)
    reg = proxy_of(make_pull, fake, tag_ttl="1s")
    assert_manifest(get_manifest(reg, "org/app", "v1"), m)
    fake.stop()
    wait_until(lambda: reg.plain("GET", manifest_path("org/app", "v1"),
                                 headers={"Accept": ACCEPT_ALL}).headers.get("Warning"),
               timeout=10, interval=0.3, what="a stale answer")
    after = metrics(reg)
    assert value(after, "regcache_cache_requests_total", kind="manifest", outcome="stale") >= 1
    errors = [k for k in after if k.startswith("regcache_upstream_errors_total")]
    assert errors, "an upstream failure was not counted"

    health = reg.get("/healthz")
    assert health.status_code == 200
    ready = reg.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert re.search(r"regcache_requests_total\{route=\"other\"", reg.get("/metrics").text)
