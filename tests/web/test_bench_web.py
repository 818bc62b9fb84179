"""``riskpipe bench --stages web``: the load generator runs in another process, on loopback only,
with at most one request in flight per client, and the bench reports p50/p95 per page."""

from __future__ import annotations

import random

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
    shipment = bench_shipment(home, users=3, requests=12, day=DAY.isoformat(), think_mean_s=None, workers=1)
    listing = bench_list(home, users=3, requests=12, day=DAY.isoformat(), think_mean_s=None, workers=1)
    assert [c[-2:] for c in spawned] == [["-m", "riskpipe.bench.web"]] * 2  # one generator process per page
    for res in (shipment, listing):
        assert res["requests"] == 12 and res["users"] == 3
        assert 0 < res["p50_ms"] <= res["p95_ms"] <= res["max_ms"]
    assert ready_lookup(Layout(home), DAY) is not None  # built before the clock, as the nightly flow does
    line = web_summary_line("web shipment p95", shipment)
    assert "p50" in line and "p95" in line and "another process" in line


class _FakeClient:
    """Stands in for httpx.Client in :func:`load` (no server): every GET answers 200."""

    def __init__(self, **_kw) -> None:
        self.got: list[str] = []

    def __enter__(self) -> _FakeClient:
        return self

    def __exit__(self, *_exc) -> None:
        return None

    def get(self, url: str):
        self.got.append(url)
        return type("R", (), {"status_code": 200})()


def test_users_model_thinks_before_every_click_and_stress_never(monkeypatch) -> None:
    monkeypatch.setattr(bench_web.httpx, "Client", _FakeClient)
    urls = [f"/list?page={i}" for i in range(30)]
    slept: list[float] = []
    latencies, _ = load("http://127.0.0.1:1", {}, urls, 4, think_mean_s=2.0, seed=3, sleep=slept.append)
    assert len(latencies) == 30
    # one think time before each of the 30 clicks, plus at most one per client that found nothing left
    assert 30 <= len(slept) <= 34 and all(s > 0 for s in slept)
    assert 1.0 < sum(slept) / len(slept) < 3.5  # exponential with mean 2 s (seeded)
    again: list[float] = []
    load("http://127.0.0.1:1", {}, urls, 4, think_mean_s=2.0, seed=3, sleep=again.append)
    # seeded: every think time is one of its client's seeded draws (which client takes which click
    # depends on thread scheduling, so the two runs' multisets may differ under load)
    streams = [random.Random(3 * 1000 + i) for i in range(4)]
    seeded = {s.expovariate(1.0 / 2.0) for s in streams for _ in range(35)}
    assert set(slept) <= seeded and set(again) <= seeded and 30 <= len(again) <= 34
    stress: list[float] = []
    load("http://127.0.0.1:1", {}, urls, 4, sleep=stress.append)
    assert stress == []


def test_bench_reports_stress_and_users_models_each_labelled(tmp_path) -> None:
    home = tmp_path / "home"
    build_home(home)
    res = bench_list(home, users=2, requests=6, day=DAY.isoformat(), think_mean_s=0.01, users_requests=5, workers=1)
    assert res["requests"] == 6 and res["load_model"].startswith("stress")
    u = res["users_model"]
    assert u["requests"] == 5 and u["think_mean_s"] == 0.01 and u["load_model"].startswith("users")
    assert 0 < u["p50_ms"] <= u["p95_ms"] <= u["max_ms"]
    line = web_summary_line("web list p95", res)
    stress_part, users_part = line.split("; users")
    assert "stress (closed loop, no think time)" in stress_part and f"p95 {res['p95_ms']:,.0f} ms" in stress_part
    assert "think time exponential, mean 0.01 s" in users_part and f"p95 {u['p95_ms']:,.0f} ms" in users_part
    # the machine's load during each run is part of the figure (2 cores shared with other work)
    assert len(res["loadavg_1m"]) == 2 and len(u["loadavg_1m"]) == 2
    assert "load average" in stress_part and "load average" in users_part


def test_the_bench_serves_the_workbench_as_users_do_with_worker_processes(tmp_path, monkeypatch) -> None:
    home = tmp_path / "home"
    build_home(home)
    started: list[list[str]] = []
    real_popen = bench_web.subprocess.Popen

    def spy(cmd, **kw):
        started.append(list(cmd))
        return real_popen(cmd, **kw)

    monkeypatch.setattr(bench_web.subprocess, "Popen", spy)
    res = bench_shipment(home, users=2, requests=6, day=DAY.isoformat(), think_mean_s=None, workers=2)
    servers = [c for c in started if "riskpipe.cli" in c]  # (subprocess.run starts the load generator by Popen too)
    assert len(servers) == 1 and servers[0][1:5] == ["-m", "riskpipe.cli", "--home", str(home)]
    assert servers[0][5:] == ["serve", "--host", "127.0.0.1", "--port", servers[0][-3], "--workers", "2"]
    assert res["workers"] == 2 and res["server"].startswith("riskpipe serve --workers 2") and res["requests"] == 6


def test_a_server_that_fails_to_start_leaves_no_bench_account(tmp_path, monkeypatch) -> None:
    """Review finding: the bench analyst was added before start_server and outside the
    try/finally, so a failed start left an active account behind."""
    from riskpipe.users import UserStore

    home = tmp_path / "home"
    settings = build_home(home)
    before = UserStore(settings.db_url).list()

    def boom(*_a, **_k):
        raise RuntimeError("riskpipe serve exited (1): address already in use")

    stopped: list[object] = []
    monkeypatch.setattr(bench_web, "start_server", boom)
    monkeypatch.setattr(bench_web, "stop_server", stopped.append)
    with pytest.raises(RuntimeError, match="address already in use"):
        bench_list(home, users=1, requests=2, day=DAY.isoformat(), think_mean_s=None, workers=1)
    assert UserStore(settings.db_url).list() == before and stopped == []
