"""Alerts for the on-call: one message when a nightly or retraining run fails or crashes.

Sent with apprise (installed with Prefect) to ``notify_url`` (settings): any apprise URL
(``json://host:port/path``, ``mailtos://...``, ``slack://...``), or a plain ``http(s)://`` webhook,
which receives apprise's JSON body (``{"version", "title", "message", "type"}``). The message
names the run, its day, the failing step and the one-line error: no shipment data, no names.
"""

from __future__ import annotations

from dataclasses import dataclass

from riskpipe.errors import RiskpipeError

#: a notification may be slow, never endless (seconds; apprise's own default is none)
SEND_TIMEOUT_S = 10


@dataclass(frozen=True)
class Failure:
    """What an alert says about a failed run."""

    flow: str  # "nightly", "retrain"
    run_name: str  # "nightly-2026-02-01"
    day: str | None  # the arrival date (nightly) or the last training day (retrain)
    step: str | None  # the failing step, when known
    error: str  # one line
    state: str = "Failed"  # Prefect's state name: Failed, Crashed, TimedOut

    def title(self) -> str:
        return f"riskpipe {self.flow} {self.state.lower()}: {self.run_name}"

    def body(self) -> str:
        return (
            f"riskpipe run {self.run_name} ({self.flow}, day {self.day or 'unknown'}) ended {self.state} "
            f"at step '{self.step or 'unknown'}': {self.error}"
        )


def apprise_url(url: str) -> str:
    """``url`` as apprise reads it: a plain http(s) webhook becomes apprise's JSON poster."""
    for plain, scheme in (("http://", "json://"), ("https://", "jsons://")):
        if url.startswith(plain):
            return scheme + url[len(plain) :]
    return url


def send(url: str, failure: Failure) -> None:
    """Post one alert about ``failure`` to ``url``; raises RiskpipeError when it could not be sent
    (the caller logs it: an alert that fails must not hide the failure it reports)."""
    import apprise
    from apprise import NotifyType

    target = apprise.Apprise()
    if not target.add(apprise_url(url)):
        raise RiskpipeError("notify_url: not a URL apprise can send to (see the apprise URL formats)")
    if not target.notify(
        body=failure.body(), title=failure.title(), notify_type=NotifyType.FAILURE, timeout=SEND_TIMEOUT_S
    ):
        raise RiskpipeError("notify_url: the alert could not be delivered")
