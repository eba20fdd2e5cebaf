"""Dashboard render time on a store with 500 pipeline runs (4000 stage runs): the Runs and Compare
pages cold (empty st.cache_data) and warm, each also as a ratio over the bare `search_runs` calls the
page made (recorded during its cold render, then replayed alone). Goal: Compare under 2 s cold.
Each page is rerun in an app that has already run, as a server's pages are: the first run of an
AppTest also scans the installed packages for components."""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

import streamlit as st  # noqa: E402
from mlflow import MlflowClient  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from pipeline_store import Seeder, classifier_reports  # noqa: E402
from _report import report  # noqa: E402
from _smoke import sizes  # noqa: E402

N_PIPELINES, REPEATS = sizes((500, 3), (3, 1))
TARGET_SECONDS = 2.0


def seed(root: Path, uri: str) -> None:
    seeder = Seeder(MlflowClient(uri), root)
    experiment_id = seeder.experiment("ham10000")
    reports = classifier_reports(0, n_bootstrap=20)  # one report for all: the bench times reading, not values
    for i in range(N_PIPELINES):
        seeder.pipeline(experiment_id, "ham10000", reports=reports, commit=f"{i:040x}", per_cell=i)


def page_app(page: str) -> AppTest:
    """The app showing ``page``, run once: an AppTest scans every installed package for Streamlit
    components (over a second here) in its first run, which a server does once when it starts."""
    at = AppTest.from_file(str(REPO / "dashboards" / "app.py"), default_timeout=120)
    at.run()
    if page != "views/runs.py":
        at.switch_page(page)
        at.run()
    return at


def render(at: AppTest) -> float:
    """Seconds of one rerun of the app's page."""
    start = time.perf_counter()
    at.run()
    elapsed = time.perf_counter() - start
    assert not at.exception, [e.value for e in at.exception]
    return elapsed


def recorded_calls(at: AppTest) -> list[tuple]:
    """The search_runs calls a cold render of the app's page makes."""
    calls, original = [], MlflowClient.search_runs

    def recording(self, *args, **kwargs):
        calls.append((args, kwargs))
        return original(self, *args, **kwargs)

    MlflowClient.search_runs = recording
    try:
        st.cache_data.clear()
        render(at)
    finally:
        MlflowClient.search_runs = original
    return calls


def measure(page: str, client: MlflowClient) -> dict:
    at = page_app(page)
    calls = recorded_calls(at)
    bare, cold, warm = [], [], []
    for _ in range(REPEATS):
        start = time.perf_counter()
        for args, kwargs in calls:
            client.search_runs(*args, **kwargs)
        bare.append(time.perf_counter() - start)
        st.cache_data.clear()
        cold.append(render(at))
        warm.append(render(at))
    return {"calls": len(calls), "bare": min(bare), "cold": min(cold), "warm": min(warm)}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        uri = f"sqlite:///{root / 'mlflow.db'}"
        start = time.perf_counter()
        seed(root, uri)
        print(f"seeded {N_PIPELINES} pipeline runs ({N_PIPELINES * 8} stage runs) in {time.perf_counter() - start:.0f} s")
        os.chdir(root)
        os.environ["MLFLOW_TRACKING_URI"] = uri
        client = MlflowClient(uri)
        results = {page: measure(page, client) for page in ("views/runs.py", "views/compare.py")}
    for page, r in results.items():
        print(f"{page}: {r['calls']} search_runs calls {r['bare']:.3f} s; render cold {r['cold']:.3f} s "
              f"({r['cold'] / r['bare']:.1f}x), warm {r['warm']:.3f} s ({r['warm'] / r['bare']:.1f}x)")
    compare = results["views/compare.py"]["cold"]
    report("dashboard", compare, "s, Compare cold with 500 pipeline runs", f"<= {TARGET_SECONDS}")


if __name__ == "__main__":
    main()
