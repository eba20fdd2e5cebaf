"""Samples: a generate run's kept synthetic images per FST x label next to real ones of the same
cell, with their filter scores (rejected ones on request), and the LoRA's validation grids by step."""

import pandas as pd
import streamlit as st

from fairaug.data import storage
from fairaug.data.files import MANIFEST
from fairaug.generation.stage import KEPT_GRID
from fairaug.tracking.artifacts import validation_grids, workspace_out_dir
from fairaug.tracking.search import RunFilter, upstream_ids
from views.common import artifact_file, artifact_table, client, pick_dataset, project_root, runs_page, store_uri

PER_ROW = 6

st.title("Samples")
dataset, experiment_id = pick_dataset()
uri = store_uri()

generate_runs = runs_page(uri, experiment_id, RunFilter(stage="generate"), 100, None).runs
if not generate_runs:
    st.info("No generate run in this data set's experiment: there are no synthetic images to show yet.")
else:
    names = {f"{run.info.run_name} · {run.info.run_id[:8]} · {run.info.status}": run for run in generate_runs}
    run = names[st.selectbox("Generate run", list(names))]
    manifest = artifact_table(uri, run.info.run_id, f"synthetic/{MANIFEST}")
    if manifest is None or manifest.empty:
        st.info("This generate run logged no synthetic manifest (it may have failed before filtering).")
    else:
        cells = manifest.groupby(["fst", "label"]).agg(
            sampled=("id", "size"), kept=("kept", "sum"), mean_confidence=("confidence", "mean"),
            mean_ssim_to_real=("ssim_to_real", "mean")).reset_index()
        st.dataframe(cells, hide_index=True, width="stretch")
        left, middle, right = st.columns(3)
        fst = left.selectbox("FST", sorted(manifest["fst"].unique()))
        label = middle.selectbox("Label", sorted(manifest["label"].unique()))
        rejected = right.toggle("Show rejected images too")
        cell = manifest[(manifest["fst"] == fst) & (manifest["label"] == label)]
        shown = cell if rejected else cell[cell["kept"]]
        out_dir = workspace_out_dir(project_root(), run.data.tags)
        if out_dir is None:
            st.info("This run's images are not in the workspace (DVC keeps the latest synthetic set there; "
                    "`dvc exp apply` or `git checkout` + `dvc checkout` bring back another). Its kept grid:")  # fmt: skip
            grid = artifact_file(uri, run.info.run_id, KEPT_GRID)
            if grid is not None:
                st.image(str(grid))
            st.dataframe(shown.drop(columns=["prompt"], errors="ignore"), hide_index=True)
        elif shown.empty:
            st.info(f"No {'sampled' if rejected else 'kept'} images for FST {fst}, {label}.")
        else:
            st.markdown(f"**Synthetic**, FST {fst}, {label}: {int(cell['kept'].sum())} kept of {len(cell)}")
            rows = shown.head(PER_ROW * 2)
            images = {image_id: image for part, decoded in storage.read_synthetic(out_dir, rows)
                      for image_id, image in zip(part["id"], decoded)}  # fmt: skip
            st.image([images[i] for i in rows["id"]], width=128, caption=[
                f"{'kept' if kept else 'rejected: ' + reason} · conf {conf:.2f} · ssim {ssim:.2f}"
                for kept, reason, conf, ssim in zip(rows["kept"], rows["reason"], rows["confidence"], rows["ssim_to_real"])])
        prepare_id = upstream_ids(run).get("prepare")
        real = artifact_table(uri, prepare_id, f"prepared/{MANIFEST}") if prepare_id else None
        root = client(uri).get_run(prepare_id).data.params.get("dataset.root") if real is not None else None
        if real is not None and root and (project_root() / root).is_dir():
            examples = real[(real["fst"] == fst) & (real["label"] == label) & (real["split"] == "train")].head(PER_ROW)
            st.markdown(f"**Real** (train split), FST {fst}, {label}: {len(examples)} shown")
            if examples.empty:
                st.info("No real training image in this cell: the synthetic images are all it has.")
            else:
                st.image([str(project_root() / root / path) for path in examples["path"]], width=128,
                         caption=list(examples["path"]))  # fmt: skip
        else:
            st.caption("Real examples need the prepare run's manifest and its data set in the workspace.")

st.subheader("LoRA validation grids by step")
lora_runs = runs_page(uri, experiment_id, RunFilter(stage="train_lora"), 100, None).runs
if not lora_runs:
    st.info("No train_lora run in this data set's experiment.")
    st.stop()
by_name = {f"{run.info.run_name} · {run.info.run_id[:8]} · {pd.Timestamp(run.info.start_time, unit='ms'):%Y-%m-%d %H:%M}": run
           for run in lora_runs}  # fmt: skip
compared = st.multiselect("train_lora runs (side by side)", list(by_name), default=list(by_name)[:1])
grids = {name: validation_grids(client(uri), by_name[name].info.run_id) for name in compared}
steps = sorted({step for found in grids.values() for step in found})
if not steps:
    st.info("These runs logged no validation grids (samples/step_<n>.png).")
    st.stop()
step = st.select_slider("Step", steps, value=steps[-1]) if len(steps) > 1 else steps[0]
for column, (name, found) in zip(st.columns(max(len(grids), 1)), grids.items()):
    earlier = [s for s in found if s <= step]
    with column:
        if not earlier:
            st.info(f"{name}: no grid at or before step {step}.")
            continue
        path = artifact_file(uri, by_name[name].info.run_id, found[earlier[-1]])
        st.image(str(path), caption=f"{name}: step {earlier[-1]} (rows: FST I-VI)")
