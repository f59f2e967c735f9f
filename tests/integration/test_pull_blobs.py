"""Pull-through blobs against the fake upstream: one fill per digest for any number of readers,
streaming before the fill ends, slow and vanishing clients, Range on a blob being filled, and
broken fills (reset, corruption) that must fail their readers and leave nothing cached."""

import re
import threading
import time

from pullthrough import *  # noqa: F401,F403 - fixtures and helpers

MiB = 1 << 20


def big_image(fake, size):
    m = seed_image(fake, layer_sizes=(size,))
    d = layer_digests(m)[0]
    return m, d, m.blobs[d]


def blob_gets(fake, digest):
    return fake.count("GET", ref=digest)


def test_blob_pull_through_then_from_cache(make_pull, fake):
    m, d, data = big_image(fake, 3 * MiB)
    reg = proxy_of(make_pull, fake)
    t = raw_get(reg.port, blob_path("org/app", d))
    assert t.status == 200 and t.complete and t.body == data, t
    assert t.header("docker-content-digest") == d
    h = reg.head(blob_path("org/app", d))
    assert h.status_code == 200 and int(h.headers["Content-Length"]) == len(data)
    n = len(fake.log())
    t = raw_get(reg.port, blob_path("org/app", d))
    assert t.complete and t.body == data
    assert len(fake.log()) == n, "a cached blob went upstream"


def test_twenty_clients_one_cold_blob_one_upstream_get(make_pull, fake):
    size = 8 * MiB
    m, d, data = big_image(fake, size)
    fake.drip_rate = 4 * MiB  # about 2 s of fill, so every client joins a running fill
    reg = proxy_of(make_pull, fake)

    started = time.monotonic()
    results = run_parallel(20, lambda i: raw_get(reg.port, blob_path("org/app", d)), timeout=90)
    fill_time = time.monotonic() - started
    for t in results:
        assert t.status == 200 and t.complete, t
        assert t.body == data, "a client got wrong bytes"
    assert blob_gets(fake, d) == 1, f"{blob_gets(fake, d)} upstream GETs for one blob"
    # Headers come as soon as upstream's do, not after the fill.
    slowest_headers = max(t.header_time for t in results)
    assert slowest_headers < min(1.0, fill_time / 2), \
        f"headers took {slowest_headers:.2f}s of a {fill_time:.2f}s fill"


def test_slow_client_does_not_slow_the_fill(make_pull, fake):
    m, d, data = big_image(fake, 6 * MiB)
    fake.drip_rate = 4 * MiB  # a 1.5 s fill; the slow client alone would need 24 s
    reg = proxy_of(make_pull, fake)
    slow = {}

    def start_slow(_):
        slow["t"] = raw_get(reg.port, blob_path("org/app", d), rate=256 * 1024, read_limit=MiB)

    th = threading.Thread(target=start_slow, args=(0,), daemon=True)
    th.start()
    wait_until(lambda: blob_gets(fake, d) == 1, 10, what="the fill to start")
    # A fast client that arrives while the slow one crawls gets everything promptly.
    t0 = time.monotonic()
    fast = raw_get(reg.port, blob_path("org/app", d))
    assert fast.complete and fast.body == data, fast
    assert time.monotonic() - t0 < 6.0, "the fast client was held to the slow client's pace"
    th.join(30)
    assert blob_gets(fake, d) == 1


def test_client_disconnecting_mid_fill_does_not_stop_it(make_pull, fake):
    m, d, data = big_image(fake, 4 * MiB)
    fake.drip_rate = 4 * MiB  # about 1 s
    reg = proxy_of(make_pull, fake)
    t = raw_get(reg.port, blob_path("org/app", d), read_limit=256 * 1024)
    assert t.status == 200 and not t.complete  # we hung up early

    # The fill goes on without any reader; then the blob is served with no upstream GET.
    def cached():
        n = blob_gets(fake, d)
        r = raw_get(reg.port, blob_path("org/app", d))
        return r.complete and r.body == data and blob_gets(fake, d) == n == 1
    wait_until(cached, timeout=15, interval=0.5, what="the abandoned fill to land in the cache")
    assert blob_gets(fake, d) == 1


def test_range_on_a_blob_being_filled(make_pull, fake):
    m, d, data = big_image(fake, 4 * MiB)
    fake.drip_rate = 2 * MiB  # about 2 s
    reg = proxy_of(make_pull, fake)
    first = {}
    th = threading.Thread(target=lambda: first.setdefault(
        "t", raw_get(reg.port, blob_path("org/app", d))), daemon=True)
    th.start()
    wait_until(lambda: blob_gets(fake, d) >= 1, 10, what="the fill to start")

    lo, hi = 3 * MiB, 3 * MiB + 99_999  # past what has arrived so far
    t = raw_get(reg.port, blob_path("org/app", d), headers={"Range": f"bytes={lo}-{hi}"})
    assert t.status == 206, t
    assert t.complete and t.body == data[lo:hi + 1]
    assert t.header("content-range") == f"bytes {lo}-{hi}/{len(data)}"
    th.join(30)
    assert first["t"].complete and first["t"].body == data
    # One fill serves both; a Range-only GET upstream would also be acceptable if it came
    # on top, but a second whole GET would not.
    whole = [r for r in fake.requests("GET", ref=d) if "range" not in r.headers]
    assert len(whole) == 1


def test_reset_mid_blob_resumes_with_range(make_pull, fake):
    m, d, data = big_image(fake, 4 * MiB)
    cut = 3 * MiB // 2
    fake.reset_blob(d, after=cut)
    reg = proxy_of(make_pull, fake)
    t = raw_get(reg.port, blob_path("org/app", d))
    assert t.status == 200 and t.complete and t.body == data, t
    gets = fake.requests("GET", ref=d)
    assert len(gets) == 2, f"expected the first GET and one resume, got {gets}"
    rng = gets[1].headers.get("range", "")
    m_ = re.fullmatch(r"bytes=(\d+)-", rng)
    assert m_ and 0 < int(m_.group(1)) <= cut, f"the resume asked for {rng!r}"
    n = len(fake.log())
    t = raw_get(reg.port, blob_path("org/app", d))
    assert t.complete and t.body == data and len(fake.log()) == n


def test_reset_mid_blob_without_ranges_fails_readers_and_caches_nothing(make_pull, fake):
    m, d, data = big_image(fake, 4 * MiB)
    fake.ranges = False
    fake.reset_blob(d, after=2 * MiB)
    reg = proxy_of(make_pull, fake)
    t = raw_get(reg.port, blob_path("org/app", d))
    assert not t.complete, f"the reader of a broken fill saw a complete transfer: {t}"
    assert data.startswith(t.body), "the bytes sent before the failure were wrong"

    # Nothing cached: the next request starts a fresh fill and succeeds.
    before = blob_gets(fake, d)
    t = raw_get(reg.port, blob_path("org/app", d))
    assert t.complete and t.body == data, t
    assert blob_gets(fake, d) > before, "no fresh fill: was the broken one cached?"


def test_corrupt_blob_fails_readers_and_caches_nothing(make_pull, fake):
    m, d, data = big_image(fake, 2 * MiB)
    fake.corrupt_blob(d)
    reg = proxy_of(make_pull, fake)
    results = run_parallel(3, lambda i: raw_get(reg.port, blob_path("org/app", d)))
    for t in results:
        # A client arriving after the fill failed gets an error answer, complete as such.
        if t.status is not None and t.status >= 500:
            continue
        assert not t.complete, f"corrupt bytes were delivered as a complete transfer: {t}"
        assert t.status is None or t.status == 200 or t.status >= 500, t
    gets = blob_gets(fake, d)
    assert gets >= 1

    # The corrupt bytes were not cached: the next request fetches again and gets the real ones.
    t = raw_get(reg.port, blob_path("org/app", d))
    assert t.complete and t.body == data, t
    assert blob_gets(fake, d) >= 2, "no second upstream GET: was the corrupt fill cached?"


def test_blob_500_is_retried(make_pull, fake):
    m, d, data = big_image(fake, 256 * 1024)
    fake.fail(500, times=1, method="GET", path="/blobs/")
    reg = proxy_of(make_pull, fake)
    t = raw_get(reg.port, blob_path("org/app", d))
    assert t.status == 200 and t.complete and t.body == data, t
    assert blob_gets(fake, d) == 2
