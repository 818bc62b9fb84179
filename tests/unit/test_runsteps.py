"""Step events (what the CLI's progress rows and the failure alert are built from) and the
alert itself: posted once to a local HTTP receiver, naming run, day, step and error."""

from __future__ import annotations

import json
import pickle
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from io import StringIO

import pytest
from rich.console import Console

from riskpipe import runsteps
from riskpipe.errors import RiskpipeError
from riskpipe.notify import Failure, apprise_url, send
from riskpipe.runsteps import StepEvent, StepFailed, Steps, run_step, watching


def test_run_step_announces_boundaries_and_names_the_failing_step():
    seen: list[StepEvent] = []
    with watching(seen.append):
        assert run_step("nightly", "features", lambda x: x + 1, 1) == 2
        with pytest.raises(StepFailed) as caught:
            run_step("nightly", "score", lambda: (_ for _ in ()).throw(ValueError("bad\n  column x")))
    assert [(e.step, e.kind) for e in seen] == [
        ("features", "start"),
        ("features", "done"),
        ("score", "start"),
        ("score", "failed"),
    ]
    assert str(caught.value) == "nightly step 'score' failed: bad column x"
    assert isinstance(caught.value, RiskpipeError) and isinstance(caught.value.__cause__, ValueError)
    assert seen[-1].detail == "bad column x"
    again = pickle.loads(pickle.dumps(caught.value))
    assert (again.flow, again.step, again.error, str(again)) == ("nightly", "score", "bad column x", str(caught.value))
    run_step("nightly", "quiet", lambda: None)  # nobody listening: nothing recorded
    assert len(seen) == 4


def test_progress_is_reported_for_the_running_step_only_when_someone_listens():
    assert runsteps.progress_for("ingest") is None
    seen: list[StepEvent] = []

    def ingest() -> None:
        report = runsteps.progress_for("ingest")
        report(1, 3)

    with watching(seen.append):
        run_step("nightly", "ingest", ingest)
    assert [(e.flow, e.kind, e.done, e.total) for e in seen if e.kind == "progress"] == [("nightly", "progress", 1, 3)]


def test_a_listener_that_fails_does_not_fail_the_run():
    def broken(event: StepEvent) -> None:
        raise RuntimeError("display gone")

    with watching(broken):
        assert run_step("retrain", "fit", lambda: 7) == 7


def test_straight_line_steps_and_the_cli_summary():
    from riskpipe.progress import StepBars

    out = StringIO()
    bars = StepBars(Console(file=out, force_terminal=False))
    with bars, watching(bars):
        runsteps.run_started("retrain", "retrain-until-2026-02-01", "abc")
        steps = Steps("retrain")
        for name in ("champion", "labels", "fit"):
            steps.next(name)
        steps.end()
    assert out.getvalue() == ""  # not a terminal: no live rows, nothing half-drawn in a log file
    assert bars.run_name == "retrain-until-2026-02-01" and bars.run_id == "abc"
    assert [name for name, _ in bars.finished] == ["champion", "labels", "fit"]
    assert bars.summary().startswith("steps: champion ") and ", labels " in bars.summary()


class _Receiver(BaseHTTPRequestHandler):
    posts: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).posts.append({"path": self.path, "body": json.loads(body)})
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def receiver():
    _Receiver.posts = []
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1], _Receiver.posts
    server.shutdown()
    server.server_close()


FAILURE = Failure(
    flow="nightly",
    run_name="nightly-2026-02-01",
    day="2026-02-01",
    step="features",
    error="no ingested manifests for arrival date 2026-02-01",
)


@pytest.mark.parametrize("scheme", ["json", "http"])
def test_an_alert_is_posted_once_with_run_day_step_and_error(receiver, scheme):
    port, posts = receiver
    send(f"{scheme}://127.0.0.1:{port}/alerts", FAILURE)
    assert len(posts) == 1 and posts[0]["path"] == "/alerts"
    body = posts[0]["body"]
    assert body["title"] == "riskpipe nightly failed: nightly-2026-02-01"
    assert body["message"] == (
        "riskpipe run nightly-2026-02-01 (nightly, day 2026-02-01) ended Failed at step "
        "'features': no ingested manifests for arrival date 2026-02-01"
    )
    assert body["type"] == "failure"


def test_an_alert_that_cannot_be_sent_raises_one_line_without_the_url(receiver):
    port, _ = receiver
    with pytest.raises(RiskpipeError, match="could not be delivered"):
        send(f"json://127.0.0.1:{port + 1 if port < 65535 else port - 1}/x", FAILURE)
    with pytest.raises(RiskpipeError, match="not a URL apprise can send to") as caught:
        send("nonsense-scheme://secret-token@host", FAILURE)
    assert "secret-token" not in str(caught.value)
    assert apprise_url("https://hooks.example.org/a") == "jsons://hooks.example.org/a"
    assert apprise_url("slack://a/b/c") == "slack://a/b/c"


def test_on_a_terminal_each_step_gets_a_row_with_its_progress():
    from riskpipe.progress import StepBars

    out = StringIO()
    bars = StepBars(Console(file=out, force_terminal=True, width=100))

    def ingest() -> None:
        report = runsteps.progress_for("ingest")
        report(1, 4)
        report(4, 4)

    with bars, watching(bars):
        run_step("nightly", "ingest", ingest)
        with pytest.raises(StepFailed):
            run_step("nightly", "features", lambda: 1 / 0)
    drawn = out.getvalue()
    assert "ingest" in drawn and "4/4" in drawn and "features failed" in drawn
    assert [name for name, _ in bars.finished] == ["ingest"]


def test_a_step_cancelled_by_a_timeout_is_found_behind_the_timeout_error():
    class Cancelled(BaseException):  # as Prefect's cancellation of a timed-out run
        pass

    def cancelled() -> None:
        raise Cancelled()

    with pytest.raises(TimeoutError) as caught:
        try:
            run_step("nightly", "score", cancelled)
        except Cancelled:
            raise TimeoutError("Scope timed out after 1.0 second(s).")  # noqa: B904 - as Prefect raises it
    assert runsteps.failed_step(caught.value) == ("nightly", "score")
    with pytest.raises(StepFailed) as failed:
        run_step("retrain", "fit", lambda: 1 / 0)
    assert runsteps.failed_step(RuntimeError("wrapper")) is None
    assert runsteps.failed_step(failed.value) == ("retrain", "fit")
