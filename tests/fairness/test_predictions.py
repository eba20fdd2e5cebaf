import numpy as np
import pandas as pd
import pytest

from fairaug.errors import DataError
from fairaug.fairness.predictions import read_predictions, write_predictions
from prediction_tables import hand_frame


# --------------------------------------------------------------------------------------------------
# Prediction files


def test_read_predictions_round_trip(tmp_path):
    frame = hand_frame().assign(path=[f"img{i}.jpg" for i in range(12)])
    write_predictions(frame, tmp_path / "predictions.parquet")
    frame.to_csv(tmp_path / "predictions.csv", index=False)
    for name in ("predictions.parquet", "predictions.csv"):
        read = read_predictions(tmp_path / name)
        pd.testing.assert_frame_equal(read, frame, check_dtype=False)
        assert read["fst"].dtype == np.int64


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda f: f.drop(columns="fst"), r"predictions.csv, column 'fst': missing column"),
        (lambda f: f.drop(columns="label"), r"predictions.csv, column 'label': missing column"),
        (lambda f: f.drop(columns=["score_b", "score_c"]), r"predictions.csv: needs a score_<label> column"),
        (lambda f: f.drop(columns="score_c"), r"row 6, column 'label': label must be one of a, b, got 'c'"),
        (lambda f: f.assign(fst=f["fst"].where(f.index != 3, 7)), r"row 5, column 'fst': FST .* got 7"),
        (lambda f: f.assign(fst=f["fst"].astype(str).where(f.index != 0, "V")), r"row 2, column 'fst': .* got 'V'"),
        (lambda f: f.assign(fst=f["fst"].where(f.index != 1, 2.5)), r"row 3, column 'fst': .* got 2.5"),
        (lambda f: f.assign(score_b=f["score_b"].where(f.index != 2)), r"row 4, column 'score_b': .* finite"),
    ],
)
def test_read_predictions_errors_name_file_row_and_column(tmp_path, edit, message):
    path = tmp_path / "predictions.csv"
    edit(hand_frame()).to_csv(path, index=False)
    with pytest.raises(DataError, match=message):
        read_predictions(path)


def test_read_predictions_parquet_rows_count_from_one(tmp_path):
    frame = hand_frame()
    frame.loc[0, "fst"] = -1
    frame.to_parquet(tmp_path / "p.parquet")
    with pytest.raises(DataError, match=r"p.parquet, row 1, column 'fst'"):
        read_predictions(tmp_path / "p.parquet")


def test_read_predictions_file_errors(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_predictions(tmp_path / "missing.parquet")
    (tmp_path / "p.json").write_text("{}")
    with pytest.raises(DataError, match=r"\.parquet or \.csv"):
        read_predictions(tmp_path / "p.json")
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="not a readable parquet file"):
        read_predictions(tmp_path / "broken.parquet")
