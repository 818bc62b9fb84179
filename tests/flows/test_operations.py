"""Operating the nightly run: its CLI shows a row per step and how to see the run, a failed
night prints at most 3 lines and alerts ``notify_url`` once (step and error named), runs have
names that say what they are about, logs reach the Prefect API, timeouts come from the home's
settings, and ``riskpipe schedule``'s server serves the UI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from riskpipe.config import load_settings
from riskpipe.store import Layout

ROOT = Path(__file__).resolve().parents[2]
NIGHT_STEPS = ["resolve-date", "ingest", "features", "score", "stage", "rank", "publish", "lookup", "record", "history"]


def test_a_night_in_the_cli_shows_its_steps_in_order_and_how_to_see_the_run(world, home_copy, monkeypatch, capfd):
    from prefect.client.orchestration import get_client

    from riskpipe import cli

    day = world["day"]
    saved = dict(os.environ)  # the CLI sets Prefect's environment for its process
    monkeypatch.setattr(sys, "argv", ["riskpipe", "--home", str(home_copy), "nightly", "--date", day])
    try:
        with pytest.raises(SystemExit) as done:
            cli.main()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    out, err = capfd.readouterr()
    assert (done.value.code or 0) == 0, err
    summary = next(line for line in err.splitlines() if line.startswith("steps: "))
    names = [part.split()[0] for part in summary.removeprefix("steps: ").split(", ")]
    assert names == NIGHT_STEPS
    assert f"Prefect run nightly-{day} is recorded in" in err and "prefect server start" in err
    assert "/runs/flow-run/" not in out + err  # no link to the ephemeral API that ended with the run
    assert "top targets" in out

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs()
    assert f"nightly-{day}" in {r.name for r in runs}


def test_run_names_say_what_a_run_is_about(home_copy):
    from prefect import flow
    from prefect.runtime import flow_run

    from flows.demo import demo_flow
    from flows.generate import generate_flow
    from flows.hooks import nightly_run_name, retrain_run_name
    from flows.ingest import ingest_flow
    from flows.nightly import nightly_flow
    from flows.retrain import retrain_flow

    (home_copy / "riskpipe.toml").write_text('timezone = "Pacific/Kiritimati"\n')  # UTC+14: "today" differs

    @flow(flow_run_name=nightly_run_name)
    def nightly_probe(home: str, day: str | None = None) -> str:
        return flow_run.name

    @flow(flow_run_name=retrain_run_name)
    def retrain_probe(home: str, until: str | None = None) -> str:
        return flow_run.name

    today = datetime.now(ZoneInfo("Pacific/Kiritimati")).date().isoformat()
    assert nightly_probe(str(home_copy), "2026-02-01") == "nightly-2026-02-01"
    assert nightly_probe(str(home_copy)) in {
        f"nightly-{today}",
        f"nightly-{datetime.now(ZoneInfo('Pacific/Kiritimati')).date()}",
    }
    assert retrain_probe(str(home_copy), "2026-02-01") == "retrain-until-2026-02-01"
    assert retrain_probe(str(home_copy)).startswith("retrain-until-20")
    assert nightly_flow.flow_run_name is nightly_run_name and retrain_flow.flow_run_name is retrain_run_name
    assert generate_flow.flow_run_name.format(start="2026-01-05", days=7) == "generate-2026-01-05-7d"
    assert demo_flow.flow_run_name.format(start="2026-01-05", days=28) == "demo-2026-01-05-28d"
    assert ingest_flow.flow_run_name().startswith("ingest-20")
    for f in (nightly_flow, retrain_flow, ingest_flow, generate_flow, demo_flow):
        assert f.timeout_seconds and f.timeout_seconds >= 3600, f.name
    assert nightly_flow.on_failure_hooks and nightly_flow.on_crashed_hooks
    assert retrain_flow.on_failure_hooks and retrain_flow.on_crashed_hooks


def test_scheduled_flows_and_io_tasks_take_their_timeouts_from_the_home(home_copy):
    from flows.deploy import deployment_specs
    from flows.ingest import ingest_files
    from flows.nightly import io_task, publish_outputs, stage
    from flows.retrain import import_outcomes

    settings = load_settings(
        home_copy, {"nightly_timeout_seconds": 1800, "retrain_timeout_seconds": 5400, "io_timeout_seconds": 600}
    )
    (nightly, n_opts), (retrain, r_opts), (landed, l_opts) = deployment_specs(home_copy, settings)
    assert (nightly.name, nightly.timeout_seconds, n_opts["name"]) == ("nightly", 1800, "riskpipe-nightly")
    assert (retrain.name, retrain.timeout_seconds, r_opts["name"]) == ("retrain", 5400, "riskpipe-retrain")
    assert nightly.on_failure_hooks == nightly.on_crashed_hooks != []  # kept by with_options
    assert (landed.name, landed.timeout_seconds, l_opts["name"]) == ("ingest-landed", 600, "riskpipe-ingest-landed")
    for t in (ingest_files, stage, publish_outputs, import_outcomes):
        assert t.timeout_seconds == 3600  # the default
        assert io_task(t, settings).timeout_seconds == 600


class _Receiver(BaseHTTPRequestHandler):
    posts: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).posts.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_a_failed_night_prints_at_most_3_lines_and_alerts_once(world, home_copy):
    """The real CLI in its own process (on the session's Prefect API, which saves a second
    Prefect start): the night fails inside the flow (the day's raw files are damaged, which
    pre-flight does not read), prints the one useful line instead of 75-85 lines of traceback,
    and posts exactly one alert naming the step."""
    import prefect.settings
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName, LogFilter, LogFilterFlowRunId

    day = world["day"]
    for part in Layout(home_copy).raw_shipments_day(datetime.fromisoformat(day).date()).glob("*.parquet"):
        part.write_bytes(b"not parquet")
    _Receiver.posts = []
    receiver = HTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    (home_copy / "riskpipe.toml").write_text(f'notify_url = "json://127.0.0.1:{receiver.server_address[1]}/alerts"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PREFECT_API_URL"] = prefect.settings.PREFECT_API_URL.value()  # the harness's server
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    code = "import sys; from riskpipe.cli import main; sys.argv[0] = 'riskpipe'; main()"
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, "--home", str(home_copy), "nightly", "--date", day, "--skip-ingest"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        receiver.shutdown()
        receiver.server_close()
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode != 0
    assert 1 <= len(lines) <= 3, "\n".join(lines)
    assert any(line.startswith("error: nightly step 'features' failed:") for line in lines), lines
    assert "Traceback" not in done.stdout + done.stderr

    assert len(_Receiver.posts) == 1, _Receiver.posts
    alert = _Receiver.posts[0]
    assert alert["title"] == f"riskpipe nightly failed: nightly-{day}"
    assert alert["message"].startswith(
        f"riskpipe run nightly-{day} (nightly, day {day}) ended Failed at step 'features': "
    )
    assert "parquet" in alert["message"].lower() and "\n" not in alert["message"]

    # the run's log reached the API at INFO (the UI's log tab), under its name
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[f"nightly-{day}"])))
        ours = [r for r in runs if r.parameters.get("home") == str(home_copy)]  # the session has other nights
        assert len(ours) == 1 and ours[0].state is not None and ours[0].state.is_failed(), ours
        failed = ours
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[failed[0].id])))
    info = [log.message for log in logs if log.level == 20]
    assert f"Beginning flow run 'nightly-{day}' for flow 'nightly'" in info
    assert any(m.startswith(f"alert sent for nightly-{day}") for m in info)


@pytest.mark.slow  # ~15-20 s: a real `prefect server start`
def test_the_schedule_server_serves_the_ui_pointed_at_its_api(tmp_path):
    import httpx
    import prefect

    from flows.deploy import start_local_server, ui_url

    ui_files = Path(prefect.__file__).parent / "server" / "ui" / "index.html"
    assert ui_files.exists()  # the UI's static files ship with this Prefect build
    proc, api_url = start_local_server(tmp_path / ".prefect")
    try:
        page = httpx.get(ui_url(api_url) + "/", headers={"Accept": "text/html"}, follow_redirects=True, timeout=30)
        assert page.status_code == 200 and "<html" in page.text.lower()
        assert httpx.get(ui_url(api_url) + "/ui-settings", timeout=30).json()["api_url"] == api_url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert (tmp_path / ".prefect" / "ui").is_dir()  # copied under the Prefect home, not into the package


def test_an_alert_names_the_step_of_a_failed_timed_out_or_crashed_run(home_copy):
    from prefect.states import Crashed, Failed

    from flows.hooks import describe_failure
    from riskpipe.runsteps import StepFailed

    params = {"home": str(home_copy), "day": "2026-02-01"}
    failed = describe_failure(
        "nightly", "nightly-2026-02-01", params, Failed(data=StepFailed("nightly", "features", "no ingested manifests"))
    )
    assert (failed.step, failed.error, failed.state, failed.day) == (
        "features",
        "no ingested manifests",
        "Failed",
        "2026-02-01",
    )
    timeout = TimeoutError("Scope timed out after 7200.0 second(s).")
    timeout.__context__ = KeyboardInterrupt()
    timeout.__context__.riskpipe_step = ("nightly", "score")
    timed_out = describe_failure("nightly", "nightly-2026-02-01", params, Failed(name="TimedOut", data=timeout))
    assert (timed_out.step, timed_out.state) == ("score", "TimedOut")
    assert timed_out.error == "Scope timed out after 7200.0 second(s)."
    crashed = describe_failure(
        "retrain",
        "retrain-until-2026-02-01",
        {"home": str(home_copy), "until": "2026-02-01"},
        Crashed(message="Flow run process exited with non-zero status code -9."),
    )
    assert (crashed.step, crashed.state, crashed.day) == (None, "Crashed", "2026-02-01")
    assert "status code -9" in crashed.body() and "step 'unknown'" in crashed.body()
