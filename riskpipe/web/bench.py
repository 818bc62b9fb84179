"""Workbench benchmark: p50/p95 latency of the list page and of the shipment page with
concurrent analysts on a published day.

Used by ``riskpipe bench``; not part of the default tests. Starts the workbench in-process on a
free loopback port (uvicorn in a thread), logs a bench user in, then ``users`` threads issue
``requests`` requests in total: list pages (a mix of first pages, deeper pages, filters and sorts
of the all-scored view, the view that holds every shipment of the day) or shipment pages
(listed targets mostly, any scored shipment sometimes).
"""

from __future__ import annotations

import random
import secrets
import socket
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from riskpipe.config import load_settings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_list(home: Path, users: int = 20, requests: int = 400, day: str | None = None, seed: int = 7) -> dict:
    """Latency of ``/list`` (ms): p50, p95, max, requests/s, and the first-load (cold) time."""
    return _bench_pages(home, users, requests, day, seed, _list_urls)


def bench_shipment(home: Path, users: int = 20, requests: int = 400, day: str | None = None, seed: int = 7) -> dict:
    """Latency of the shipment page ``/shipment/<id>`` (ms), for shipments of the day's targeting
    list (what analysts open) and of the whole scored day, same harness as :func:`bench_list`."""
    return _bench_pages(home, users, requests, day, seed, _shipment_urls)


def _list_urls(data, d: str, rng: random.Random, requests: int) -> list[str]:
    """A mix of first pages, deeper pages, filters and sorts of the all-scored view."""
    from datetime import date

    df = data.day_frame(date.fromisoformat(d), "all")
    ports = df.options.get("port", [])[:5] if df else []
    urls = []
    for _ in range(requests):
        kind = rng.random()
        if kind < 0.4:
            urls.append(f"/list?day={d}&view=all&page={rng.randint(1, 20)}")
        elif kind < 0.7 and ports:
            urls.append(f"/list?day={d}&view=all&port={rng.choice(ports)}&page={rng.randint(1, 5)}")
        elif kind < 0.85:
            urls.append(f"/list?day={d}&view=all&sort=rule_score&desc=1&page={rng.randint(1, 3)}")
        else:
            urls.append(f"/list?day={d}")
    return urls


def _shipment_urls(data, d: str, rng: random.Random, requests: int) -> list[str]:
    """Three in four requests open a listed target (the analyst's path), one in four any scored
    shipment of the day."""
    from datetime import date

    import polars as pl

    from riskpipe import schema as S

    targets = pl.read_parquet(data.targets_path(date.fromisoformat(d)), columns=[S.SHIPMENT_ID])
    scores = pl.scan_parquet(data.scores_path(date.fromisoformat(d))).select(S.SHIPMENT_ID)
    others = scores.gather_every(max(1, scores.select(pl.len()).collect().item() // 2000)).collect()
    listed, anyone = targets[S.SHIPMENT_ID].to_list(), others[S.SHIPMENT_ID].to_list()
    return [
        f"/shipment/{rng.choice(listed if rng.random() < 0.75 and listed else anyone)}?day={d}" for _ in range(requests)
    ]


def _bench_pages(home: Path, users: int, requests: int, day: str | None, seed: int, urls_for) -> dict:
    """Start the workbench on loopback, log a bench analyst in, time a first (cold) request, then
    ``requests`` requests from ``users`` concurrent clients (latencies in ms)."""
    import re

    import uvicorn

    from riskpipe.users import UserStore
    from riskpipe.web import create_app

    settings = load_settings(Path(home))
    app = create_app(settings)
    data = app.state.data
    days = data.days()
    if not days:
        raise ValueError(f"{home}: nothing published to benchmark (run the nightly flow first)")
    d = day or days[0].isoformat()
    name, password = f"bench-{secrets.token_hex(4)}", secrets.token_urlsafe(16)
    store = UserStore(settings.db_url)
    store.add(name, password, "analyst")
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=300) as c:
            token = re.search(r'name="csrf" value="([^"]+)"', c.get("/login").text).group(1)
            c.post("/login", data={"username": name, "password": password, "csrf": token})
            cookies = dict(c.cookies)
            rng = random.Random(seed)
            urls = urls_for(data, d, rng, requests + 1)
            t0 = time.perf_counter()
            first = c.get(urls.pop())
            cold_ms = (time.perf_counter() - t0) * 1000
            if first.status_code != 200:
                raise RuntimeError(f"first request answered {first.status_code}")
        latencies: list[float] = []
        lock = threading.Lock()

        # one client per analyst, made before the clock starts: building an httpx client (its TLS
        # context) costs tens of ms of CPU in this process, which is not the server's time
        clients = [httpx.Client(base_url=base, cookies=cookies, timeout=60) for _ in range(users)]

        def worker(job: tuple[httpx.Client, list[str]]) -> None:
            client, chunk = job
            with client:
                for u in chunk:
                    t = time.perf_counter()
                    r = client.get(u)
                    ms = (time.perf_counter() - t) * 1000
                    if r.status_code != 200:
                        raise RuntimeError(f"{u} answered {r.status_code}")
                    with lock:
                        latencies.append(ms)

        chunks = [urls[i::users] for i in range(users)]
        t0 = time.perf_counter()
        with ThreadPoolExecutor(users) as pool:
            list(pool.map(worker, zip(clients, chunks, strict=False)))
        wall = time.perf_counter() - t0
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        try:
            store.remove(name)
        except Exception:  # noqa: BLE001 - best effort clean-up of the bench user
            pass
    latencies.sort()
    q = statistics.quantiles(latencies, n=100)
    return {
        "day": d,
        "users": users,
        "requests": len(latencies),
        "cold_first_load_ms": round(cold_ms, 1),
        "p50_ms": round(q[49], 1),
        "p95_ms": round(q[94], 1),
        "max_ms": round(latencies[-1], 1),
        "requests_per_s": round(len(latencies) / wall, 1),
    }
