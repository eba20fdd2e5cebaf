"""Runs: every stage run of a data set, filtered and paged by the tracking server."""

from datetime import datetime, time

import streamlit as st

from fairaug.tracking.search import STAGES, RunFilter, runs_table
from views.common import MLFLOW_UI, pick_dataset, runs_page, store_uri

KEY_METRICS = ("fairness/auroc", "fairness/auroc_gap", "fairness/delta.auroc", "fairness/delta.auroc_gap",
               "quality/kid.evaluator", "quality/fst_fidelity", "generate/acceptance", "train/loss", "data/n_images")  # fmt: skip

st.title("Runs")
dataset, experiment_id = pick_dataset()
uri = store_uri()

columns = st.columns(6)
stage = columns[0].selectbox("Stage", ["(all)", *STAGES], key="stage")
profile = columns[1].text_input("Profile", placeholder="tiny", key="profile")
commit = columns[2].text_input("Git commit", placeholder="prefix, e.g. 5b1bc2b", key="commit")
experiment = columns[3].text_input("DVC experiment", placeholder="name in dvc exp show", key="experiment")
after = columns[4].date_input("Started from", value=None)
before = columns[5].date_input("Started until", value=None)
run_filter = RunFilter(
    stage=None if stage == "(all)" else stage, profile=profile.strip() or None, commit=commit.strip() or None,
    experiment=experiment.strip() or None,
    started_after=datetime.combine(after, time.min) if after else None,
    started_before=datetime.combine(before, time.max) if before else None,
)
page_size = st.sidebar.selectbox("Runs per page", [10, 25, 50, 100, 200], index=2, key="page_size")

# page tokens of the pages seen so far: a new filter starts again at the first page
position = (experiment_id, run_filter, page_size)
if st.session_state.get("runs_position") != position:
    st.session_state.runs_position, st.session_state.runs_tokens = position, [None]
tokens = st.session_state.runs_tokens
page = runs_page(uri, experiment_id, run_filter, page_size, tokens[-1])

if not page.runs:
    st.info("No runs match these filters." if run_filter.filter_string() or len(tokens) > 1
            else f"The experiment of {dataset} has no runs yet.")  # fmt: skip
    st.stop()

present_metrics = sorted({key for run in page.runs for key in run.data.metrics})
present_params = sorted({key for run in page.runs for key in run.data.params})
with st.expander("Columns"):
    metrics = st.multiselect("Metrics", present_metrics, default=[m for m in KEY_METRICS if m in present_metrics])
    params = st.multiselect("Params", present_params)
table = runs_table(page.runs, metrics, params)
table.insert(0, "MLflow", [f"{MLFLOW_UI}/#/experiments/{e}/runs/{r}" for e, r in zip(table["experiment_id"], table["run_id"])])
st.caption(f"Page {len(tokens)}: {len(table)} runs, newest first (filter: `{run_filter.filter_string() or 'none'}`)")
st.dataframe(table.drop(columns=["experiment_id"]), hide_index=True, width="stretch",
             column_config={"MLflow": st.column_config.LinkColumn("MLflow", display_text="open"),
                            "started": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss"),
                            "seconds": st.column_config.NumberColumn(format="%.0f")})  # fmt: skip

previous, following = st.columns(2)
if previous.button("Previous page", disabled=len(tokens) == 1, key="previous"):
    tokens.pop()
    st.rerun()
if following.button("Next page", disabled=page.next_page_token is None, key="next"):
    tokens.append(page.next_page_token)
    st.rerun()
