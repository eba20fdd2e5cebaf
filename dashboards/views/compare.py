"""Compare: two or more pipeline runs side by side: metrics with deltas, the params that differ,
per-FST fairness (real-only vs augmented) and quality with intervals and group sizes."""

import streamlit as st

from fairaug.names import FAIRNESS_NAMESPACE, QUALITY_NAMESPACE, bare_name
from fairaug.tracking import tables
from fairaug.tracking.search import STAGES
from views.common import fst_chart, fst_values_table, pick_dataset, pick_pipelines, store_uri

st.title("Compare pipeline runs")
dataset, experiment_id = pick_dataset()
uri = store_uri()
chosen = pick_pipelines(uri, experiment_id, multiple=True)

st.subheader("Pipeline runs")
st.dataframe(
    [{"pipeline run": p.label, "head": p.head.info.run_name, "status": p.head.info.status,
      "stages": ", ".join(sorted(p.runs)), "missing": ", ".join(s for s in STAGES[:-1] if not any(
          r == s or r.startswith(f"{s}.") for r in p.runs))} for p in chosen],
    hide_index=True, width="stretch",
)  # fmt: skip

st.subheader("Metrics")
roles = sorted({run_role for p in chosen for run_role in p.runs})
default_roles = [r for r in (tables.FAIRNESS_STAGE, tables.QUALITY_STAGE) if r in roles] or roles[-1:]
shown_roles = st.multiselect("Stages", roles, default=default_roles)
metrics = tables.metrics_frame(chosen, shown_roles)
left, right = st.columns([1, 2])
if left.toggle("Headline numbers only", value=True) and not metrics.empty:
    metrics = tables.headline(metrics)
pattern = right.text_input("Metric name contains", placeholder="auroc")
if pattern and not metrics.empty:
    metrics = metrics[metrics.index.get_level_values("metric").str.contains(pattern, regex=False)]
if metrics.empty:
    st.info("These pipeline runs have no metrics from the chosen stages.")
else:
    st.dataframe(tables.with_deltas(metrics), width="stretch")

st.subheader("Params")
params = tables.params_frame(chosen)
if st.toggle("Differences only", value=True):
    params = tables.differences_only(params)
if params.empty:
    st.info("No params differ between these pipeline runs." if len(chosen) > 1 else "No params logged.")
else:
    st.dataframe(params, width="stretch")

st.subheader("Fairness per skin type")
fairness_names = sorted({bare_name(name) for p in chosen for variant in tables.VARIANTS
                         for name in tables.per_fst_names(tables.fairness_source(p, variant)[0], FAIRNESS_NAMESPACE)
                         if "." not in bare_name(name)})  # fmt: skip
if not fairness_names:
    st.info("No per-FST fairness metrics: these pipeline runs have no train_classifier or evaluate_fairness run.")
else:
    name = st.selectbox("Fairness metric", fairness_names,
                        index=fairness_names.index("auroc") if "auroc" in fairness_names else 0)  # fmt: skip
    frame = tables.compare_fst(chosen, name, "fairness")
    if frame.empty:
        st.info(f"{name} was not logged (or is NaN) for every FST group of these pipeline runs.")
    else:
        st.altair_chart(fst_chart(frame, name), width="stretch")
        st.caption("Bars: value; black lines: bootstrap confidence interval; n: test images of the group; "
                   "faint bars: small groups (fewer than min_group_size), read with care.")
        st.dataframe(fst_values_table(frame), hide_index=True, width="stretch")

st.subheader("Synthetic image quality per skin type")
quality_names = sorted({name for p in chosen if (run := p.run(tables.QUALITY_STAGE)) is not None
                        for name in tables.per_fst_names(run.data.metrics, QUALITY_NAMESPACE)})  # fmt: skip
if not quality_names:
    st.info("No per-FST quality metrics: these pipeline runs have no evaluate_quality run.")
else:
    default = next((i for i, n in enumerate(quality_names) if n.startswith(f"{QUALITY_NAMESPACE}kid.")), 0)
    name = st.selectbox("Quality metric", quality_names, index=default)
    frame = tables.compare_fst(chosen, name, "quality")
    if frame.empty:
        st.info(f"{name} was not logged (or is NaN) for every FST group of these pipeline runs.")
    else:
        st.altair_chart(fst_chart(frame, name), width="stretch")
        st.caption("n: synthetic images of the group; faint bars: fewer real or synthetic images than min_group_size.")
        st.dataframe(fst_values_table(frame), hide_index=True, width="stretch")
