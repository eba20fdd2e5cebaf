import base64
import hashlib
import io
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from fairaug.config import DatasetConfig, PrepareConfig
from fairaug.data.fixtures import write_derm_fixture
from fairaug.data.prepare import MANIFEST_COLUMNS, prepare_dataset, summary_metrics
from fairaug.data.report import render_validation_html
from fairaug.errors import DataError
from fairaug.skin.types import FST_ROMAN, FST_UNKNOWN

DESIGN_COLUMNS = ["path", "sha256", "label", "fst", "fst_source", "group_id", "split"]


def derm_config(root: Path) -> DatasetConfig:
    return DatasetConfig(format="ham10000", root=str(root), domain="derm")


def test_derm_manifest(fixture_data):
    root = fixture_data / "ham10000"
    manifest, report = prepare_dataset("ham10000", derm_config(root), PrepareConfig())
    truth = pd.read_csv(root / "HAM10000_metadata.csv").set_index("image_id")
    assert list(manifest.columns[: len(DESIGN_COLUMNS)]) == DESIGN_COLUMNS
    assert list(manifest.columns) == MANIFEST_COLUMNS
    assert len(manifest) == len(truth)
    # group-disjoint: no lesion in two splits, checked independently of the GX check
    assert manifest.groupby("group_id")["split"].nunique().max() == 1
    assert set(manifest["split"]) == {"train", "val", "test"}
    # stratified on label x FST: every label x FST stratum with a lesion per fold (1 / 0.15 -> 7 folds)
    # reaches the test split (an FST whose lesions are spread thinly over labels may not: a per-FST
    # minimum needs a split that guarantees one)
    stratum = manifest["label"] + "|" + manifest["fst"].astype(str)
    groups_per_stratum = stratum.groupby(manifest["group_id"]).first().value_counts()
    tested = set(stratum[manifest["split"] == "test"])
    assert set(groups_per_stratum[groups_per_stratum >= 7].index) <= tested
    image_ids = manifest["path"].map(lambda p: Path(p).stem)
    assert (manifest["label"].to_numpy() == truth.loc[image_ids, "dx"].to_numpy()).all()
    assert (manifest["fst"].to_numpy() == truth.loc[image_ids, "fitzpatrick"].to_numpy()).all()
    assert (manifest["fst_source"] == "label").all()
    for row in manifest.head(5).itertuples():
        assert row.sha256 == hashlib.sha256((root / row.path).read_bytes()).hexdigest()
        assert not Path(row.path).is_absolute()
    agreement = report["ita_agreement"]
    assert agreement["n"] == len(manifest)
    assert agreement["agreement"] >= 0.8
    assert sum(map(sum, agreement["confusion_matrix"])) == len(manifest)
    assert all(check["success"] for check in report["checks"] if check["severity"] == "error")


def test_fst_source_ita_uses_the_estimate(fixture_data):
    manifest, _ = prepare_dataset(
        "ham10000", derm_config(fixture_data / "ham10000"), PrepareConfig(fst_source="ita")
    )
    assert (manifest["fst"] == manifest["fst_ita"]).all()
    assert (manifest["fst_source"] == "ita").all()
    assert manifest["fst_label"].notna().all()  # the label is kept beside the estimate


def test_fst_source_label_requires_labels(derm_copy):
    frame = pd.read_csv(derm_copy / "HAM10000_metadata.csv", dtype=str, keep_default_na=False)
    frame.loc[6, "fitzpatrick"] = ""
    frame.to_csv(derm_copy / "HAM10000_metadata.csv", index=False)
    with pytest.raises(DataError, match=r"row 8: prepare.fst_source is 'label' but 1 images have no FST label"):
        prepare_dataset("ham10000", derm_config(derm_copy), PrepareConfig(fst_source="label"))
    manifest, _ = prepare_dataset("ham10000", derm_config(derm_copy), PrepareConfig())
    assert manifest["fst_source"].value_counts().to_dict() == {"label": len(frame) - 1, "ita": 1}


def test_max_images_subsamples(fixture_data):
    manifest, report = prepare_dataset(
        "ham10000", derm_config(fixture_data / "ham10000"), PrepareConfig(max_images=60)
    )
    assert abs(len(manifest) - 60) <= 7  # at least one per label, rounded per label
    assert report["n_images"] == len(manifest)


def test_min_test_per_fst_reaches_the_manifest_and_report(fixture_data):
    config = derm_config(fixture_data / "ham10000")
    plain, plain_report = prepare_dataset("ham10000", config, PrepareConfig())
    short = min(v for k, v in plain_report["fst_counts"]["test"].items() if k != "unknown")
    manifest, report = prepare_dataset("ham10000", config, PrepareConfig(split={"min_test_per_fst": short + 2}))
    test = manifest[manifest["split"] == "test"]
    assert test["fst"].value_counts()[list(FST_ROMAN)].min() >= short + 2
    assert manifest.groupby("group_id")["split"].nunique().max() == 1
    assert report["min_test_per_fst"] == short + 2 and plain_report["min_test_per_fst"] is None
    metrics = summary_metrics(report)
    for k in FST_ROMAN:
        assert metrics[f"data/test_images.fst{k}"] == (test["fst"] == k).sum()
    assert "min_test_per_fst): " + str(short + 2) in render_validation_html(report, manifest)


@pytest.fixture
def derm_images(fixture_data) -> pd.DataFrame:
    root = fixture_data / "ham10000"
    frame = pd.read_csv(root / "HAM10000_metadata.csv")
    frame["file"] = [next(root.glob(f"HAM10000_images_part_*/{i}.jpg")) for i in frame["image_id"]]
    return frame


def test_fitzpatrick17k_unknown_fst_is_estimated(derm_images, tmp_path):
    root = tmp_path / "f17k"
    (root / "images").mkdir(parents=True)
    rows = []
    for i, row in enumerate(derm_images.head(40).itertuples()):
        md5 = hashlib.md5(row.image_id.encode()).hexdigest()
        shutil.copy(row.file, root / "images" / f"{md5}.jpg")
        rows.append({"md5hash": md5, "fitzpatrick_scale": -1 if i % 4 == 0 else row.fitzpatrick,
                     "label": row.dx, "three_partition_label": "benign"})
    pd.DataFrame(rows).to_csv(root / "fitzpatrick17k.csv", index=False)
    manifest, _ = prepare_dataset("f17k", DatasetConfig(format="fitzpatrick17k", root=str(root), domain="derm"),
                                  PrepareConfig())
    unknown = manifest["path"].map(lambda p: Path(p).stem).isin([r["md5hash"] for r in rows[::4]])
    assert (manifest.loc[unknown, "fst_source"] == "ita").all()
    assert (manifest.loc[~unknown, "fst_source"] == "label").all()
    assert unknown.sum() == 10


def test_ddi_coarse_skin_tone_bounds_the_estimate(derm_images, tmp_path):
    root = tmp_path / "ddi"
    root.mkdir()
    rows = []
    for i, row in enumerate(derm_images.head(36).itertuples()):
        name = f"{i:06d}.png"
        shutil.copy(row.file, root / name)  # a JPEG named .png still decodes: PIL sniffs the format
        rows.append({"DDI_ID": i, "DDI_file": name, "skin_tone": [12, 34, 56][i % 3],
                     "malignant": ["True", "False"][i % 2], "disease": "x"})
    pd.DataFrame(rows).to_csv(root / "ddi_metadata.csv", index=False)
    manifest, _ = prepare_dataset("ddi", DatasetConfig(format="ddi", root=str(root), domain="derm"), PrepareConfig())
    tone = manifest["path"].map({r["DDI_file"]: r["skin_tone"] for r in rows})
    bounds = {12: (1, 2), 34: (3, 4), 56: (5, 6)}
    assert all(bounds[t][0] <= f <= bounds[t][1] for t, f in zip(tone, manifest["fst"], strict=True))
    assert set(manifest["label"]) == {"benign", "malignant"}


def _add_copy(root: Path, source_row: int, new_id: str, lesion: str, dx: str | None = None) -> tuple[str, str]:
    """A byte-identical copy of one image under a new image id and lesion; returns (source id, new id)."""
    frame = pd.read_csv(root / "HAM10000_metadata.csv", dtype=str, keep_default_na=False)
    row = frame.iloc[source_row].copy()
    source = next(root.glob(f"HAM10000_images_part_*/{row['image_id']}.jpg"))
    shutil.copy2(source, source.with_name(f"{new_id}.jpg"))
    row["image_id"], row["lesion_id"] = new_id, lesion
    if dx is not None:
        row["dx"] = dx
    pd.concat([frame, row.to_frame().T]).to_csv(root / "HAM10000_metadata.csv", index=False)
    return frame.iloc[source_row]["image_id"], new_id


def test_identical_images_of_different_lesions_are_never_split_apart(derm_copy):
    original, copy = _add_copy(derm_copy, 3, "ISIC_9999999", "HAM_9999999")
    manifest, report = prepare_dataset("ham10000", derm_config(derm_copy), PrepareConfig())
    rows = manifest[manifest["path"].map(lambda p: Path(p).stem).isin([original, copy])]
    assert rows["group_id"].nunique() == 2 and rows["split_group"].nunique() == 1 and rows["split"].nunique() == 1
    assert report["split_groups"]["merged_pairs"]["identical"] == 1
    assert report["split_groups"]["groups_after"] == report["split_groups"]["groups_before"] - 1
    assert report["near_duplicates"]["count"] == 0  # nothing left to leak


def test_identical_images_with_different_labels_are_a_label_conflict(derm_copy):
    frame = pd.read_csv(derm_copy / "HAM10000_metadata.csv", dtype=str)
    other = "nv" if frame.loc[3, "dx"] != "nv" else "mel"
    original, copy = _add_copy(derm_copy, 3, "ISIC_9999998", "HAM_9999998", dx=other)
    with pytest.raises(DataError, match=rf"identical images with different labels .*{original}\.jpg.*{copy}\.jpg"):
        prepare_dataset("ham10000", derm_config(derm_copy), PrepareConfig())
    manifest, report = prepare_dataset("ham10000", derm_config(derm_copy), PrepareConfig(allow_label_conflicts=True))
    assert report["label_conflicts"]["count"] == 1
    assert sorted(report["label_conflicts"]["sets"][0]["labels"]) == sorted({frame.loc[3, "dx"], other})
    rows = manifest[manifest["path"].map(lambda p: Path(p).stem).isin([original, copy])]
    assert rows["split"].nunique() == 1


@pytest.fixture(scope="module")
def closeups(tmp_path_factory) -> Path:
    """Dermoscopy close-ups that the lesion fills, leaving little or no skin around it."""
    return write_derm_fixture(tmp_path_factory.mktemp("closeups") / "ham10000", n=90, seed=0, closeup_share=1.0)


def test_a_set_of_lesion_crops_gets_no_fst_estimate(closeups):
    # most close-ups show too little skin; in the rest, what looks like skin is mostly lesion (a light
    # patient's lesion that fills the frame reads as FST V-VI), so the whole set abstains
    manifest, report = prepare_dataset("ham10000", derm_config(closeups), PrepareConfig(fst_source="ita"))
    assert (manifest["fst"] == FST_UNKNOWN).all() and (manifest["fst_source"] == "unknown").all()
    assert "lesion crops" in report["ita_void"]["reason"]
    assert report["ita_agreement"] == {"n": 0, "abstained": len(manifest)}
    assert "No ITA estimate for this data set" in render_validation_html(report, manifest)
    # FST labels still count, and a usual view keeps its estimates
    labelled, _ = prepare_dataset("ham10000", derm_config(closeups), PrepareConfig())
    assert (labelled["fst_source"] == "label").all()


def test_closeups_without_enough_skin_get_an_unknown_fst(closeups):
    # per image, with the set-level rule off
    manifest, report = prepare_dataset("ham10000", derm_config(closeups),
                                       PrepareConfig(fst_source="ita", max_abstention_share=1.0))
    assert report["ita_void"]["reason"] is None
    unknown = manifest["fst_source"] == "unknown"
    assert (manifest.loc[unknown, "fst"] == FST_UNKNOWN).all() and (manifest.loc[~unknown, "fst"] >= 1).all()
    assert unknown.mean() >= 0.25
    # what per-image abstention cannot do: a light patient's lesion that fills the frame reads as FST V-VI
    # (13 of 63 here, abstaining or not); colour cannot tell it from dark skin, so the set-level rule of
    # the test above voids such a set as a whole
    assert manifest["skin_fraction"].between(0, 1).all()
    assert report["fst_source"]["unknown"] == unknown.sum()
    assert sum(counts.get("unknown", 0) for counts in report["fst_counts"].values()) == unknown.sum()
    assert report["ita_agreement"]["abstained"] == unknown.sum()
    assert report["ita_agreement"]["n"] == (~unknown).sum()
    # every image still gets a split: the classifiers train and test on it
    assert manifest["split"].isin(["train", "val", "test"]).all()

    # a stricter bar abstains on more
    strict, _ = prepare_dataset("ham10000", derm_config(closeups),
                                PrepareConfig(fst_source="ita", min_skin_fraction=0.6, max_abstention_share=1.0))
    assert (strict["fst_source"] == "unknown").sum() > unknown.sum()


def test_the_usual_view_of_the_fixture_needs_no_abstention(fixture_data):
    manifest, report = prepare_dataset("ham10000", derm_config(fixture_data / "ham10000"), PrepareConfig(fst_source="ita"))
    assert (manifest["fst_source"] == "ita").all()
    assert report["ita_agreement"]["abstained"] == 0 and report["ita_void"]["reason"] is None


def test_validation_html_shows_what_the_estimate_saw_per_fst(closeups):
    manifest, report = prepare_dataset("ham10000", derm_config(closeups),
                                       PrepareConfig(fst_source="ita", max_abstention_share=1.0))
    page = render_validation_html(report, manifest)
    sections = re.findall(r"<h3>([^<]+)</h3><div class=examples>(.*?)</div>", page)
    shown = {title: body.count("<figure>") for title, body in sections}
    expected = {("unknown (the estimate abstained)" if k == FST_UNKNOWN else f"FST {FST_ROMAN[k]}"): min(4, n)
                for k, n in manifest["fst"].value_counts().items()}  # fmt: skip
    assert shown == expected
    first_unknown = manifest[manifest["fst"] == FST_UNKNOWN].sort_values("path").iloc[0]["path"]
    assert f'alt="{first_unknown}"' in page
    image = base64.b64decode(re.search(r'src="data:image/png;base64,([^"]+)"', page).group(1))
    with Image.open(io.BytesIO(image)) as pair:
        assert pair.size == (192, 96)  # the image beside its skin mask
