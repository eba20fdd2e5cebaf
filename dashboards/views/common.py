"""What every page shares: the store, cached reads (st.cache_data with a TTL: new runs show up within
a minute) and the per-FST bar chart. Reading and table logic live in `fairaug.tracking`."""

from __future__ import annotations

import os
from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st
from mlflow import MlflowClient
from mlflow.entities import Run

from fairaug.config import Params, load_params
from fairaug.config.loader import PARAMS_FILE
from fairaug.tracking import artifacts, pipelines, search
from fairaug.tracking.runs import tracking_uri

TTL_SECONDS = 60
MLFLOW_UI = os.environ.get("FAIRAUG_MLFLOW_UI", "http://127.0.0.1:5000")


def project_root() -> Path:
    """The project the dashboard reads (mlflow.db, outputs/, params.yaml): the working directory, as
    for the pipeline stages themselves."""
    return Path.cwd()


def project_params() -> Params:
    """The project's params.yaml (the defaults where there is none): model names, the promotion switch."""
    path = project_root() / PARAMS_FILE
    return load_params(path) if path.exists() else Params()


def store_uri() -> str:
    return tracking_uri(project_root())


def cache_dir(run_id: str) -> Path:
    return project_root() / ".fairaug" / "cache" / "dashboard" / run_id


@st.cache_resource
def client(uri: str) -> MlflowClient:
    return MlflowClient(uri)


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def experiments(uri: str) -> dict[str, str]:
    return search.fairaug_experiments(client(uri))


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def runs_page(uri: str, experiment_id: str, run_filter: search.RunFilter, max_results: int,
              page_token: str | None) -> search.RunPage:  # fmt: skip
    return search.search_page(client(uri), [experiment_id], run_filter, max_results, page_token)


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def newest_head_stage(uri: str, experiment_id: str) -> str | None:
    """The most downstream stage that has a run: the default end of a pipeline run."""
    return search.first_stage_present(client(uri), experiment_id, pipelines.HEAD_STAGES)


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def heads(uri: str, experiment_id: str, head_stage: str, commit: str | None, max_results: int = 50) -> list[Run]:
    # each head comes with all its metrics: the newest 50 keep the picker fast, older ones by commit
    found = pipelines.pipeline_heads(client(uri), experiment_id, head_stage, search.RunFilter(commit=commit),
                                     max_results=max_results)  # fmt: skip
    return found.runs


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def assembled(uri: str, experiment_id: str, head_ids: tuple[str, ...]) -> list[pipelines.Pipeline]:
    found = search.runs_by_id(client(uri), head_ids, [experiment_id])
    return pipelines.assemble(client(uri), [found[run_id] for run_id in head_ids if run_id in found])


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def artifact_table(uri: str, run_id: str, artifact_path: str) -> pd.DataFrame | None:
    return artifacts.read_table(client(uri), run_id, artifact_path, cache_dir(run_id))


@st.cache_data(ttl=TTL_SECONDS, show_spinner=False)
def artifact_file(uri: str, run_id: str, artifact_path: str) -> Path | None:
    return artifacts.download(client(uri), run_id, artifact_path, cache_dir(run_id))


def pick_dataset() -> tuple[str, str]:
    """The data set chosen in the sidebar and its experiment id; stops the page with a plain message
    when the store has no fairaug experiment."""
    known = experiments(store_uri())
    if not known:
        st.info(f"No fairaug experiments in {store_uri()} yet: run `make demo` (or `dvc repro`), "
                "or point MLFLOW_TRACKING_URI at the store that has them.")  # fmt: skip
        st.stop()
    dataset = st.sidebar.selectbox("Data set", list(known), key="dataset")
    return dataset, known[dataset]


def pick_pipelines(uri: str, experiment_id: str, *, multiple: bool, stage: str | None = None) -> list[pipelines.Pipeline]:
    """Pipeline runs chosen in the page (newest first by default); stops with a message when the
    experiment has no run to head one."""
    newest = newest_head_stage(uri, experiment_id)  # one query where the pipeline ran to its end
    if newest is None:
        st.info("This data set's experiment has no stage runs yet.")
        st.stop()
    head_stage = stage or st.sidebar.selectbox(
        "Pipeline runs end at", pipelines.HEAD_STAGES, index=pipelines.HEAD_STAGES.index(newest),
        help="the pipeline's most downstream stage run; its upstream runs are found through the lineage tags")  # fmt: skip
    commit = st.sidebar.text_input("Git commit of the pipeline runs", placeholder="prefix; default: the newest 50")
    commit = commit.strip() or None
    runs = heads(uri, experiment_id, head_stage, commit)
    if not runs and stage is not None and commit is None:
        st.warning(f"No {stage} run in this data set's experiment: pipeline runs end at {newest}.")
        head_stage, runs = newest, heads(uri, experiment_id, newest, None)
    if not runs:
        where = f" with a git commit starting {commit!r}" if commit else " in this data set's experiment"
        st.info(f"No {head_stage} run{where}.")
        st.stop()
    labels = {pipelines.head_label(run): run.info.run_id for run in runs}
    if multiple:
        chosen = st.multiselect("Pipeline runs (the first is the baseline of the deltas)", list(labels),
                                default=list(labels)[:2], key=f"pipelines-{experiment_id}")  # fmt: skip
    else:
        chosen = [st.selectbox("Pipeline run", list(labels), key=f"pipeline-{experiment_id}")]
    if not chosen:
        st.info("Pick at least one pipeline run.")
        st.stop()
    return assembled(uri, experiment_id, tuple(labels[label] for label in chosen))


def fst_chart(frame: pd.DataFrame, title: str) -> alt.LayerChart:
    """Bars per FST group and series with their confidence interval and each group's n; small
    groups drawn faint and labelled "small"."""
    data = frame.assign(label=[f"n={n:.0f}" + (" small" if small else "") if n == n else "n=?"
                               for n, small in zip(frame["n"], frame["small_group"])],
                        group=frame["small_group"].map({True: "small group", False: "enough images"}),
                        fst=frame["fst"].map(lambda k: f"FST {'I II III IV V VI'.split()[k - 1]}"))  # fmt: skip
    base = alt.Chart(data).encode(
        x=alt.X("fst:N", title=None, sort=None, axis=alt.Axis(labelAngle=0)), xOffset=alt.XOffset("series:N"),
        color=alt.Color("series:N", title=None, legend=alt.Legend(orient="bottom", columns=2, labelLimit=500)),
    )
    bars = base.mark_bar().encode(
        y=alt.Y("value:Q", title=title),
        opacity=alt.Opacity("group:N", scale=alt.Scale(domain=["enough images", "small group"], range=[0.9, 0.35]),
                            legend=alt.Legend(title=None, orient="top")),
        tooltip=["series", "fst", alt.Tooltip("value:Q", format=".3f"), alt.Tooltip("ci_low:Q", format=".3f"),
                 alt.Tooltip("ci_high:Q", format=".3f"), "n", "group_size", "small_group"],
    )
    errors = base.mark_rule(color="black").encode(y="ci_low:Q", y2="ci_high:Q")
    labels = base.mark_text(dy=-6, fontSize=10, color="#333").encode(y=alt.Y("value_top:Q"), text="label:N")
    labels = labels.transform_calculate(value_top="isValid(datum.ci_high) ? datum.ci_high : datum.value")
    return alt.layer(bars, errors, labels).properties(height=360)


def fst_values_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The chart's numbers as text a person reads: value [ci_low, ci_high], n, small."""
    def interval(row: pd.Series) -> str:
        if row["value"] != row["value"]:
            return "not logged / NaN"
        bounds = f" [{row['ci_low']:.3f}, {row['ci_high']:.3f}]" if row["ci_low"] == row["ci_low"] else " [no interval]"
        return f"{row['value']:.3f}{bounds}"

    shown = frame.assign(value_ci=frame.apply(interval, axis=1))
    return shown[["series", "fst", "value_ci", "n", "group_size", "small_group"]].rename(columns={"value_ci": "value [CI]"})
