from __future__ import annotations

import threading
import time

from riskpipe.web.data import SingleFlightLRU


def test_concurrent_misses_compute_once_and_share_the_value():
    cache = SingleFlightLRU(4)
    calls = []

    def compute():
        calls.append(1)
        time.sleep(0.05)
        return "v"

    out = []
    threads = [threading.Thread(target=lambda: out.append(cache.get_or_compute("k", compute))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out == ["v"] * 8
    assert len(calls) == 1


def test_least_recently_used_is_evicted_and_none_is_not_cached():
    cache = SingleFlightLRU(2)
    calls: list[str] = []

    def make(key):
        return lambda: calls.append(key) or key

    cache.get_or_compute("a", make("a"))
    cache.get_or_compute("b", make("b"))
    cache.get_or_compute("a", make("a"))  # hit: a is now most recent
    cache.get_or_compute("c", make("c"))  # evicts b
    cache.get_or_compute("b", make("b"))
    assert calls == ["a", "b", "c", "b"]
    assert cache.get_or_compute("n", lambda: None) is None
    assert cache.get_or_compute("n", lambda: "later") == "later"
