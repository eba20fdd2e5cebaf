"""`fairaug validate` on every kind of bad input the issue lists: exit 2, one line naming where."""

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from fairaug.cli import app

METADATA = "HAM10000_metadata.csv"


def validate(root: Path, fmt: str = "ham10000", *extra: str):
    return CliRunner().invoke(app, ["validate", str(root), "--format", fmt, *extra])


def metadata(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / METADATA, dtype=str, keep_default_na=False)


def write_metadata(root: Path, frame: pd.DataFrame, encoding: str = "utf-8", newline: str = "\n") -> None:
    (root / METADATA).write_bytes(frame.to_csv(index=False, lineterminator=newline).encode(encoding))


def image_file(root: Path, image_id: str) -> Path:
    return next(root.glob(f"HAM10000_images_part_*/{image_id}.jpg"))


def assert_user_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    message = result.output.strip()
    assert message.startswith("error: ") and "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_fixtures_validate(fixture_data):
    result = validate(fixture_data / "ham10000")
    assert result.exit_code == 0, result.output
    assert "valid" in result.output
    result = validate(fixture_data / "wound", "csv", "--labels", "I,P,R")
    assert result.exit_code == 0, result.output


def test_missing_column(derm_copy):
    write_metadata(derm_copy, metadata(derm_copy).drop(columns="dx"))
    assert_user_error(validate(derm_copy), METADATA, "missing column 'dx'")


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("dx", "melanoma", "unknown label 'melanoma'"),
        ("fitzpatrick", "7", "invalid Fitzpatrick skin type '7'"),
        ("fitzpatrick", "VI", "invalid Fitzpatrick skin type 'VI'"),
    ],
)
def test_bad_value_names_row_and_column(derm_copy, column, value, expected):
    frame = metadata(derm_copy)
    frame.loc[7, column] = value
    write_metadata(derm_copy, frame)
    # pandas row 7 is line 9 of the file: line 1 is the header
    assert_user_error(validate(derm_copy), METADATA, "row 9", f"column '{column}'", expected)


def test_duplicate_image_id(derm_copy):
    frame = metadata(derm_copy)
    frame.loc[12, "image_id"] = frame.loc[3, "image_id"]
    write_metadata(derm_copy, frame)
    assert_user_error(validate(derm_copy), "column 'image_id'", "duplicate image", frame.loc[3, "image_id"])


def test_many_bad_rows_are_named_and_duplicates_counted(derm_copy):
    """The error names the other offending rows, not "(and 3 more rows)"; a duplicate error says
    how many distinct images are involved."""
    frame = metadata(derm_copy)
    frame.loc[[7, 8, 20], "dx"] = "melanoma"
    frame.loc[[30, 40], "dx"] = "naevus"
    write_metadata(derm_copy, frame)
    assert_user_error(validate(derm_copy), "row 9", "(and 4 more: row 10, row 22, row 32, row 42)")

    frame.loc[[7, 8, 20, 30, 40], "dx"] = "nv"
    frame.loc[12, "image_id"] = frame.loc[3, "image_id"]
    frame.loc[[13, 14], "image_id"] = frame.loc[4, "image_id"]
    write_metadata(derm_copy, frame)
    assert_user_error(validate(derm_copy), "2 distinct images listed more than once, 5 times in all",
                      "(and 4 more: row 6, row 14, row 15, row 16)")


def test_valid_summary_and_warnings_are_plain_text(derm_copy):
    """No dict or numpy reprs ({'nv': np.int64(12)}) in what a person reads; identical files are
    counted by distinct image."""
    frame = metadata(derm_copy)
    for copy_of, copy in ((0, 1), (0, 2), (3, 4)):
        shutil.copyfile(image_file(derm_copy, frame.loc[copy_of, "image_id"]),
                        image_file(derm_copy, frame.loc[copy, "image_id"]))  # fmt: skip
    result = validate(derm_copy)
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())  # rich wraps lines at the test terminal's width
    counts = frame["dx"].value_counts().sort_index()
    assert "labels: " + ", ".join(f"{label} {n}" for label, n in counts.items()) in output
    assert "np." not in output and "{" not in output
    assert "identical bytes listed more than once" in output and "5 image files hold 2 distinct images" in output


def test_missing_image(derm_copy):
    image_id = metadata(derm_copy).loc[20, "image_id"]
    image_file(derm_copy, image_id).unlink()
    assert_user_error(validate(derm_copy), "row 22", "column 'image_id'", "image file not found", image_id)


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_image(derm_copy, damage):
    image_id = metadata(derm_copy).loc[5, "image_id"]
    path = image_file(derm_copy, image_id)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"not a jpeg at all" * 10)
    assert_user_error(validate(derm_copy), "row 7", "image cannot be decoded", image_id)


def test_too_small_image(derm_copy):
    image_id = metadata(derm_copy).loc[2, "image_id"]
    path = image_file(derm_copy, image_id)
    Image.open(path).resize((16, 16)).save(path)
    assert_user_error(validate(derm_copy), "row 4", "16x16 px, smaller than 32 px")


def test_empty_csv(derm_copy):
    (derm_copy / METADATA).write_bytes(b"")
    assert_user_error(validate(derm_copy), METADATA, "empty file")


def test_header_only_csv(derm_copy):
    write_metadata(derm_copy, metadata(derm_copy).iloc[:0])
    assert_user_error(validate(derm_copy), METADATA, "no data rows")


def test_missing_metadata_file(derm_copy):
    (derm_copy / METADATA).unlink()
    assert_user_error(validate(derm_copy), METADATA, "file not found")


def test_path_escaping_the_root(derm_copy):
    frame = metadata(derm_copy)
    frame.loc[4, "image_id"] = "../../../etc/passwd"
    write_metadata(derm_copy, frame)
    assert_user_error(validate(derm_copy), "row 6", "path escapes the data set root")


def test_symlink_out_of_the_root_is_refused(derm_copy, tmp_path):
    image_id = metadata(derm_copy).loc[8, "image_id"]
    path = image_file(derm_copy, image_id)
    outside = tmp_path / "outside.jpg"
    shutil.copy2(path, outside)
    path.unlink()
    path.symlink_to(outside)  # a valid image, but not inside the data set
    assert_user_error(validate(derm_copy), "row 10", "path escapes the data set root (through a symbolic link)")


def test_decompression_bomb_is_one_line(derm_copy, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # every 64x64 fixture image is over twice this
    first = metadata(derm_copy).loc[0, "image_id"]
    assert_user_error(validate(derm_copy), "row 2", first, "image cannot be decoded", "decompression bomb")


@pytest.mark.parametrize(("encoding", "newline"), [("utf-8-sig", "\n"), ("utf-8", "\r\n"), ("utf-8-sig", "\r\n")])
def test_bom_and_crlf_are_accepted(derm_copy, encoding, newline):
    write_metadata(derm_copy, metadata(derm_copy), encoding=encoding, newline=newline)
    raw = (derm_copy / METADATA).read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") == (encoding == "utf-8-sig") and (b"\r\n" in raw) == (newline == "\r\n")
    result = validate(derm_copy)
    assert result.exit_code == 0, result.output


def test_generic_csv_label_set_and_escape(fixture_data, tmp_path):
    root = Path(shutil.copytree(fixture_data / "wound", tmp_path / "wound"))
    labels = pd.read_csv(root / "labels.csv", dtype=str, keep_default_na=False)
    broken = labels.copy()
    broken.loc[3, "label"] = "X"
    broken.to_csv(root / "labels.csv", index=False)
    assert_user_error(validate(root, "csv", "--labels", "I,P,R"), "labels.csv", "row 5", "column 'label'",
                      "unknown label 'X' (allowed: I, P, R)")
    broken = labels.copy()
    broken.loc[0, "image"] = "/etc/hostname"
    broken.to_csv(root / "labels.csv", index=False)
    assert_user_error(validate(root, "csv"), "row 2", "column 'image'", "path escapes the data set root")


def test_imagefolder_layout(fixture_data, tmp_path):
    root = tmp_path / "folder"
    labels = pd.read_csv(fixture_data / "wound" / "labels.csv")
    for row in labels.itertuples():
        (root / row.label).mkdir(parents=True, exist_ok=True)
        shutil.copy(fixture_data / "wound" / row.image, root / row.label / Path(row.image).name)
    result = validate(root, "imagefolder")
    assert result.exit_code == 0, result.output
    assert f"{len(labels)} images" in result.output
    (root / "I" / "broken.jpg").write_bytes(b"\xff\xd8\xff")
    assert_user_error(validate(root, "imagefolder"), "I/broken.jpg", "image cannot be decoded")


def test_cli_process_exit_code_and_no_traceback(derm_copy):
    """The real console script, not an in-process runner: exit 2, one line on stderr."""
    frame = metadata(derm_copy)
    frame.loc[0, "dx"] = "xx"
    write_metadata(derm_copy, frame)
    fairaug = Path(sys.executable).parent / "fairaug"
    result = subprocess.run([str(fairaug), "validate", str(derm_copy), "--format", "ham10000"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: {derm_copy / METADATA}, row 2, column 'dx': unknown label 'xx' "
        "(allowed: akiec, bcc, bkl, df, mel, nv, vasc)"
    ]
