"""``riskpipe bench --stages web``: the load generator runs in another process, on loopback only,
with at most one request in flight per client, and the bench reports p50/p95 per page."""

from __future__ import annotations

import pytest

from riskpipe.bench import web as bench_web
from riskpipe.bench.web import bench_list, bench_shipment, load, web_summary_line
from riskpipe.lookup import ready_lookup
from riskpipe.store import Layout

from .conftest import DAY, build_home


def test_the_load_generator_targets_loopback_only() -> None:
    with pytest.raises(ValueError, match="127.0.0.1"):
        load("http://10.0.0.1:8000", {}, ["/list"], 2)
    with pytest.raises(ValueError, match="127.0.0.1"):
        bench_web.run_load_process("http://example.org:80", {}, ["/list"], 2)


def test_both_pages_are_measured_by_a_load_generator_in_another_process(tmp_path, monkeypatch) -> None:
    home = tmp_path / "home"
    build_home(home)
    spawned: list[list[str]] = []
    real_run = bench_web.subprocess.run

    def spy(cmd, **kw):
        spawned.append(list(cmd))
        return real_run(cmd, **kw)

    monkeypatch.setattr(bench_web.subprocess, "run", spy)
    shipment = bench_shipment(home, users=3, requests=12, day=DAY.isoformat())
    listing = bench_list(home, users=3, requests=12, day=DAY.isoformat())
    assert [c[-2:] for c in spawned] == [["-m", "riskpipe.bench.web"]] * 2  # one generator process per page
    for res in (shipment, listing):
        assert res["requests"] == 12 and res["users"] == 3
        assert 0 < res["p50_ms"] <= res["p95_ms"] <= res["max_ms"]
    assert ready_lookup(Layout(home), DAY) is not None  # built before the clock, as the nightly flow does
    line = web_summary_line("web shipment p95", shipment)
    assert "p50" in line and "p95" in line and "another process" in line
