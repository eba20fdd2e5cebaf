"""Fairness: one pipeline run's per-FST metrics with intervals, the gaps across FST groups, ROC curves
per FST, and how each moved from the real-only to the augmented classifier."""

import altair as alt
import streamlit as st

from fairaug.fairness.files import ROC_PLOT
from fairaug.tracking import tables
from views.common import artifact_table, fst_chart, fst_values_table, pick_dataset, pick_pipelines, store_uri

METRICS = ("auroc", "sensitivity", "specificity", "accuracy")

st.title("Fairness per skin type")
dataset, experiment_id = pick_dataset()
uri = store_uri()
[pipeline] = pick_pipelines(uri, experiment_id, multiple=False, stage=tables.FAIRNESS_STAGE)

frames = {name: tables.compare_fst([pipeline], name, "fairness") for name in METRICS}
if all(frame.empty for frame in frames.values()):
    st.info("This pipeline run has no per-FST fairness metrics (no train_classifier or evaluate_fairness "
            "run, or only NaN values).")  # fmt: skip
else:
    for tab, (name, frame) in zip(st.tabs(list(METRICS)), frames.items()):
        with tab:
            if frame.empty:
                st.info(f"{name} was not logged (or is NaN) for every FST group.")
                continue
            by_variant = frame.assign(series=frame["variant"])
            st.altair_chart(fst_chart(by_variant, name), width="stretch")
            moved = frame.pivot_table(index="fst", columns="variant", values="value", dropna=False)
            if {"real", "augmented"} <= set(moved.columns):
                st.caption("Augmented minus real-only per FST: " + ", ".join(
                    f"FST {k}: {delta:+.3f}" for k, delta in (moved["augmented"] - moved["real"]).items() if delta == delta))
            st.dataframe(fst_values_table(by_variant), hide_index=True, width="stretch")

st.subheader("Gaps across FST groups")
gaps = tables.gap_table(pipeline)
if gaps[["real", "augmented"]].isna().all().all():
    st.info("No gaps logged: fewer than two FST groups had enough test images, or no evaluation ran.")
else:
    st.dataframe(gaps, hide_index=True, width="stretch",
                 column_config={c: st.column_config.NumberColumn(format="%.3f") for c in gaps.columns if c != "gap"})
    st.caption("Gaps leave out small groups. AUROC gap: max - min; EOD, DPD: fairlearn; PQD, DPM, EOM: min/max "
               "ratios (1 is equal). delta = augmented - real-only.")

st.subheader("ROC curves per FST")
evaluation = pipeline.run(tables.FAIRNESS_STAGE)
roc = artifact_table(uri, evaluation.info.run_id, f"fairness/{ROC_PLOT}") if evaluation is not None else None
if roc is None:
    st.info("No ROC curves: this pipeline run has no evaluate_fairness run with its ROC artifact.")
else:
    long = roc.melt(id_vars="fpr", var_name="curve", value_name="tpr").dropna()
    long["classifier"] = long["curve"].map(lambda c: c.split("_")[0] if "_" in c else "real")
    long["fst"] = long["curve"].str.extract(r"fst(\d)")[0].map(lambda k: f"FST {k}")
    st.altair_chart(alt.Chart(long).mark_line(interpolate="step-after").encode(
        x=alt.X("fpr:Q", title="false positive rate"), y=alt.Y("tpr:Q", title="true positive rate"),
        color="fst:N", strokeDash="classifier:N", tooltip=["fst", "classifier", "fpr", "tpr"],
    ).properties(height=360), width="stretch")
