"""scripts/compare_outputs.py: same results despite run ids and checkpoints; any changed value found."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import save_file

SCRIPT = Path(__file__).parents[1] / "scripts" / "compare_outputs.py"


def tree(root: Path, weight: float = 1.0, label: str = "mel", run_id: str = "a") -> Path:
    (root / "d" / "lora" / "checkpoints" / "checkpoint-1").mkdir(parents=True)
    save_file({"w": torch.full((2, 2), weight)}, str(root / "d" / "lora" / "weights.safetensors"))
    (root / "d" / "lora" / "checkpoints" / "checkpoint-1" / "state.json").write_text(json.dumps({"run_id": run_id}))
    pd.DataFrame({"path": ["a.png"], "label": [label]}).to_parquet(root / "d" / "manifest.parquet")
    (root / "d" / "quality.json").write_text(json.dumps({"quality/ssim": 0.5, "run_id": run_id}))
    return root


def compare(a: Path, b: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(a), str(b)], capture_output=True, text=True)


def test_run_ids_and_checkpoints_aside_the_trees_are_the_same(tmp_path):
    result = compare(tree(tmp_path / "a"), tree(tmp_path / "b", run_id="b"))
    assert result.returncode == 0 and "same results: 3 files compared" in result.stdout


def test_a_changed_weight_or_row_is_named(tmp_path):
    before = tree(tmp_path / "a")
    result = compare(before, tree(tmp_path / "b", weight=1.0 + 1e-7, label="nv"))
    assert result.returncode == 1
    assert result.stdout.split("\n")[:2] == ["differs: d/lora/weights.safetensors", "differs: d/manifest.parquet"]
