"""Flow: the whole story on a fresh home: generate -> ingest -> outcomes -> train -> one night."""

from __future__ import annotations

from datetime import date, timedelta

from prefect import flow

from flows.generate import generate_flow
from flows.ingest import ingest_flow
from flows.nightly import nightly_flow
from flows.retrain import retrain_flow

#: the demo's random compliance exams, a share of each day's parcels. Real programmes sample a few
#: per cent (the generator's default is 1 %); at 3 positives in 1,000 a 1 % share leaves the
#: demo's 10 out-of-time days about 2 random-exam positives, too few to judge the model on the
#: unbiased view, so the demo examines more parcels at random (and says so when it runs).
DEMO_RANDOM_EXAM_SHARE = 0.10


@flow(name="demo", flow_run_name="demo-{start}-{days}d", timeout_seconds=6 * 3600)
def demo_flow(
    home: str,
    start: str,
    days: int,
    per_day: int,
    seed: int = 7,
    show_progress: bool = True,
    random_exam_share: float = DEMO_RANDOM_EXAM_SHARE,
) -> dict:
    """Generate ``days`` days, learn from the outcomes of all but the last, target the last."""
    generated = generate_flow(
        home, start, days, per_day, seed, show_progress=show_progress, random_exam_share=random_exam_share
    )
    ingested = ingest_flow(home, show_progress=show_progress)
    last = date.fromisoformat(start) + timedelta(days=days - 1)
    decision = retrain_flow(home, until=(last - timedelta(days=1)).isoformat(), with_truth=True)
    night = nightly_flow(home, last.isoformat(), ingest=False, show_progress=show_progress)
    return {"generated": generated, "ingested": ingested, "decision": decision, "night": night, "day": last.isoformat()}
