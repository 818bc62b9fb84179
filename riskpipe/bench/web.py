"""Workbench benchmark: p50/p95 latency of the list page and of the shipment page with
concurrent analysts on a published day.

Used by ``riskpipe bench``. Builds the day's look-up files as the nightly flow does after
publication (timed apart), starts the workbench the way users do, ``riskpipe serve --workers N``
(another process; N as serve's default unless given) on a free loopback port, logs a bench user
in and times one first (cold) request, warms every worker (untimed); then a load generator in
ANOTHER process (``python -m riskpipe.bench.web``: its clients' CPU is not the server's) runs
``users`` concurrent clients, at most one request in flight each, over ``requests`` requests to
127.0.0.1 only, under two load models, each reported under its own label:

- stress (closed loop): each client sends its next request as soon as the last one is answered,
  no think time; 20 such clients are far more than 20 people.
- users: each client reads the page before its next click, an exponential think time of mean
  :data:`THINK_MEAN_S` s (seeded), the issue's "20 concurrent users".

Pages: list pages (a mix of first pages, deeper pages, filters and sorts of the
all-scored view, the view that holds every shipment of the day) or shipment pages (listed targets
mostly, any scored shipment sometimes).
"""

from __future__ import annotations

import json
import os
import random
import re
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import httpx
import polars as pl

from riskpipe import schema as S
from riskpipe.config import load_settings
from riskpipe.lookup import prepare_day
from riskpipe.store import Layout
from riskpipe.users import UserStore
from riskpipe.web.data import WorkbenchData
from riskpipe.web.serving import default_workers

LOOPBACK = "127.0.0.1"
THINK_MEAN_S = 5.0  # mean think time of the users model: a quick analyst's look at a page
USERS_REQUESTS = 200  # requests of the users model (its wall time is about requests / users * think)
WARMUP_PER_WORKER = 3  # untimed requests per worker process before the clock (each has its own caches)
SERVER_START_S = 180  # riskpipe serve must answer within this


def web_summary_line(stage: str, detail: dict) -> str:
    """The line ``riskpipe bench`` prints under its table for a page: p50 and p95 of each load
    model, each labelled (stress: closed loop; users: with think time), and how measured."""
    page = stage.removeprefix("web ").removesuffix(" p95")
    line = (
        f"web {page} page, stress (closed loop, no think time): p50 {detail['p50_ms']:,.0f} ms, "
        f"p95 {detail['p95_ms']:,.0f} ms, max {detail['max_ms']:,.0f} ms, "
        f"{detail['requests']} requests by {detail['users']} concurrent clients in another process "
        f"(cold first {detail['cold_first_load_ms']:,.0f} ms; look-up files built in {detail.get('lookup_build_s', 0)} s"
        + _load_words(detail)
        + ")"
    )
    u = detail.get("users_model")
    if u:
        line += (
            f"; users (think time exponential, mean {u['think_mean_s']:g} s): p50 {u['p50_ms']:,.0f} ms, "
            f"p95 {u['p95_ms']:,.0f} ms, max {u['max_ms']:,.0f} ms, {u['requests']} requests by {detail['users']} users"
            + _load_words(u).replace("; ", " (", 1)
            + (")" if u.get("loadavg_1m") else "")
        )
    return line


def _load_words(detail: dict) -> str:
    """'; load average 4.2 -> 6.8' when the run recorded it."""
    load = detail.get("loadavg_1m")
    return f"; load average {load[0]:g} -> {load[1]:g}" if load else ""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def bench_list(
    home: Path,
    users: int = 20,
    requests: int = 400,
    day: str | None = None,
    seed: int = 7,
    think_mean_s: float | None = THINK_MEAN_S,
    users_requests: int = USERS_REQUESTS,
    workers: int | None = None,
) -> dict:
    """Latency of ``/list`` (ms): p50, p95, max, requests/s, and the first-load (cold) time, under
    the stress model (top level) and, unless ``think_mean_s`` is None, the users model
    (``users_model``)."""
    return _bench_pages(home, users, requests, day, seed, _list_urls, think_mean_s, users_requests, workers)


def bench_shipment(
    home: Path,
    users: int = 20,
    requests: int = 400,
    day: str | None = None,
    seed: int = 7,
    think_mean_s: float | None = THINK_MEAN_S,
    users_requests: int = USERS_REQUESTS,
    workers: int | None = None,
) -> dict:
    """Latency of the shipment page ``/shipment/<id>`` (ms), for shipments of the day's targeting
    list (what analysts open) and of the whole scored day, same harness as :func:`bench_list`."""
    return _bench_pages(home, users, requests, day, seed, _shipment_urls, think_mean_s, users_requests, workers)


def _list_urls(data: WorkbenchData, d: str, rng: random.Random, requests: int) -> list[str]:
    """A mix of first pages, deeper pages, filters and sorts of the all-scored view."""
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


def _shipment_urls(data: WorkbenchData, d: str, rng: random.Random, requests: int) -> list[str]:
    """Three in four requests open a listed target (the analyst's path), one in four any scored
    shipment of the day."""
    targets = pl.read_parquet(data.targets_path(date.fromisoformat(d)), columns=[S.SHIPMENT_ID])
    scores = pl.scan_parquet(data.scores_path(date.fromisoformat(d))).select(S.SHIPMENT_ID)
    others = scores.gather_every(max(1, scores.select(pl.len()).collect().item() // 2000)).collect()
    listed, anyone = targets[S.SHIPMENT_ID].to_list(), others[S.SHIPMENT_ID].to_list()
    return [
        f"/shipment/{rng.choice(listed if rng.random() < 0.75 and listed else anyone)}?day={d}" for _ in range(requests)
    ]


def _bench_pages(
    home: Path,
    users: int,
    requests: int,
    day: str | None,
    seed: int,
    urls_for,
    think_mean_s: float | None = None,
    users_requests: int = USERS_REQUESTS,
    workers: int | None = None,
) -> dict:
    """Start the workbench as users run it (``riskpipe serve --workers N``, another process) on
    loopback, log a bench analyst in, time a first (cold) request, then
    ``requests`` requests from ``users`` concurrent clients without think time (stress) and, when
    ``think_mean_s`` is given, ``users_requests`` more with think time (users); latencies in ms."""
    settings = load_settings(Path(home))
    data = WorkbenchData(settings)  # the bench's own view of the day, to pick the URLs
    days = data.days()
    if not days:
        raise ValueError(f"{home}: nothing published to benchmark (run the nightly flow first)")
    d = day or days[0].isoformat()
    t0 = time.perf_counter()
    prepare_day(Layout(Path(home)), date.fromisoformat(d))  # as the nightly flow does once the day is published
    lookup_s = time.perf_counter() - t0
    n_workers = workers or default_workers()
    name, password = f"bench-{secrets.token_hex(4)}", secrets.token_urlsafe(16)
    store = UserStore(settings.db_url)
    store.add(name, password, "analyst")
    port = _free_port()
    base = f"http://{LOOPBACK}:{port}"
    server: subprocess.Popen | None = None
    try:  # the user is removed whatever fails from here on, the start of the server included
        server = start_server(Path(home), port, n_workers)
        with httpx.Client(base_url=base, timeout=300) as c:
            found = re.search(r'name="csrf" value="([^"]+)"', c.get("/login").text)
            if found is None:
                raise RuntimeError("the login page has no CSRF token")
            token = found.group(1)
            c.post("/login", data={"username": name, "password": password, "csrf": token})
            cookies = dict(c.cookies)
            rng = random.Random(seed)
            urls = urls_for(data, d, rng, requests + 1)
            user_urls = urls_for(data, d, rng, users_requests) if think_mean_s else []
            t0 = time.perf_counter()
            first = c.get(urls.pop())
            cold_ms = (time.perf_counter() - t0) * 1000
            if first.status_code != 200:
                raise RuntimeError(f"first request answered {first.status_code}")
        # every worker process has its own caches: warm them all before the clock (the first
        # request above reached one of them), not timed
        load(base, cookies, urls[: WARMUP_PER_WORKER * n_workers], n_workers * WARMUP_PER_WORKER)
        load_before = _loadavg()
        latencies, wall = run_load_process(base, cookies, urls, users)
        load_stress = _loadavg()
        if user_urls:
            user_lat, user_wall = run_load_process(base, cookies, user_urls, users, think_mean_s, seed)
            load_users = _loadavg()
    finally:
        if server is not None:
            stop_server(server)
        try:
            store.remove(name)
        except Exception:  # noqa: BLE001 - best effort clean-up of the bench user
            pass
    out = {
        "day": d,
        "users": users,
        "lookup_build_s": round(lookup_s, 1),
        "load_generator": "separate process",
        "server": f"riskpipe serve --workers {n_workers} (separate process)",
        "workers": n_workers,
        "load_model": "stress (closed loop, no think time)",
        "cold_first_load_ms": round(cold_ms, 1),
        **_quantiles(latencies, wall),
        "loadavg_1m": [load_before, load_stress],  # before and after the run: what else ran on the machine
    }
    if user_urls:
        out["users_model"] = {
            "load_model": f"users (exponential think time, mean {think_mean_s:g} s)",
            "think_mean_s": think_mean_s,
            **_quantiles(user_lat, user_wall),
            "loadavg_1m": [load_stress, load_users],
        }
    return out


def _loadavg() -> float:
    """The machine's 1-minute load average (a latency figure means little without it)."""
    try:
        return round(os.getloadavg()[0], 1)
    except OSError:
        return -1.0


def _quantiles(latencies: list[float], wall: float) -> dict:
    """requests, p50, p95, max (ms) and requests/s of one run."""
    latencies = sorted(latencies)
    q = statistics.quantiles(latencies, n=100, method="inclusive")  # never beyond the slowest request
    return {
        "requests": len(latencies),
        "p50_ms": round(q[49], 1),
        "p95_ms": round(q[94], 1),
        "max_ms": round(latencies[-1], 1),
        "requests_per_s": round(len(latencies) / wall, 1),
    }


def start_server(home: Path, port: int, workers: int) -> subprocess.Popen:
    """``riskpipe serve --workers N`` on loopback, as users start the workbench, once it answers."""
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(
        [sys.executable, "-m", "riskpipe.cli", "--home", str(home), "serve"]
        + ["--host", LOOPBACK, "--port", str(port), "--workers", str(workers)],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            tail = log.read().decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"riskpipe serve exited ({proc.returncode}): {tail[0]}")
        try:
            if httpx.get(f"http://{LOOPBACK}:{port}/login", timeout=5).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop_server(proc)
    raise RuntimeError(f"riskpipe serve did not answer within {SERVER_START_S} s")


def stop_server(proc: subprocess.Popen) -> None:
    """Stop the server this bench started (SIGTERM: uvicorn stops its workers), killed if it hangs."""
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def run_load_process(
    base: str,
    cookies: dict[str, str],
    urls: list[str],
    users: int,
    think_mean_s: float | None = None,
    seed: int = 7,
) -> tuple[list[float], float]:
    """Run :func:`load` in a child process (``python -m riskpipe.bench.web``); its latencies (ms)
    and wall time (s). The spec goes over stdin: the session cookie never appears in a process list."""
    if not base.startswith(f"http://{LOOPBACK}:"):
        raise ValueError(f"the load generator only targets {LOOPBACK}, not {base}")
    spec = json.dumps(
        {"base": base, "cookies": cookies, "urls": urls, "users": users, "think_mean_s": think_mean_s, "seed": seed}
    )
    proc = subprocess.run(
        [sys.executable, "-m", "riskpipe.bench.web"], input=spec, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        tail = (proc.stderr or "").strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"load generator failed ({proc.returncode}): {tail[0]}")
    out = json.loads(proc.stdout)
    if out.get("pid") == os.getpid():
        raise RuntimeError("the load generator ran in the server's process")
    return [float(x) for x in out["latencies_ms"]], float(out["wall_s"])


def load(
    base: str,
    cookies: dict[str, str],
    urls: list[str],
    users: int,
    think_mean_s: float | None = None,
    seed: int = 7,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[list[float], float]:
    """``users`` clients, each with at most one request in flight (bounded concurrency), taking
    the next URL until none is left; latencies (ms) and wall time (s). Any answer but 200 fails.

    ``think_mean_s``: each client waits an exponential think time of this mean (seeded per client)
    before each click, its first included (users arrive spread out); None: no wait (stress)."""
    if not base.startswith(f"http://{LOOPBACK}:"):
        raise ValueError(f"the load generator only targets {LOOPBACK}, not {base}")
    todo = list(reversed(urls))
    latencies: list[float] = []
    lock = threading.Lock()
    # one client per analyst, made before the clock starts (building one costs tens of ms of CPU)
    clients = [httpx.Client(base_url=base, cookies=cookies, timeout=60) for _ in range(users)]

    def worker(item: tuple[int, httpx.Client]) -> None:
        i, client = item
        think = random.Random(seed * 1000 + i)
        with client:
            while True:
                if think_mean_s:
                    sleep(think.expovariate(1.0 / think_mean_s))
                with lock:
                    if not todo:
                        return
                    u = todo.pop()
                t = time.perf_counter()
                r = client.get(u)
                ms = (time.perf_counter() - t) * 1000
                if r.status_code != 200:
                    raise RuntimeError(f"{u} answered {r.status_code}")
                with lock:
                    latencies.append(ms)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(users) as pool:
        list(pool.map(worker, enumerate(clients)))
    return latencies, time.perf_counter() - t0


def _main() -> int:
    spec = json.loads(sys.stdin.read())
    think = spec.get("think_mean_s")
    latencies, wall = load(
        spec["base"],
        spec["cookies"],
        spec["urls"],
        int(spec["users"]),
        float(think) if think else None,
        int(spec.get("seed", 7)),
    )
    print(json.dumps({"latencies_ms": latencies, "wall_s": wall, "pid": os.getpid()}))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
