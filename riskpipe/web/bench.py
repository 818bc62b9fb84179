"""List-page benchmark: p50/p95 latency with concurrent analysts on a published day.

Used by ``riskpipe bench``; not part of the default tests. Starts the workbench in-process on a
free loopback port (uvicorn in a thread), logs a bench user in, then ``users`` threads issue
``requests`` list requests in total (a mix of first pages, deeper pages, filters and sorts of the
all-scored view, the view that holds every shipment of the day).
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
            t0 = time.perf_counter()
            first = c.get(f"/list?day={d}&view=all")
            cold_ms = (time.perf_counter() - t0) * 1000
            if first.status_code != 200:
                raise RuntimeError(f"list page answered {first.status_code}")
            df = data.day_frame(days[0] if day is None else __import__("datetime").date.fromisoformat(d), "all")
            ports = df.options.get("port", [])[:5] if df else []
        rng = random.Random(seed)
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
            list(pool.map(worker, zip(clients, chunks)))
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
