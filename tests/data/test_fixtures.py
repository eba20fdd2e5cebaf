import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from skimage.color import rgb2lab

from fairaug.data.fixtures import write_derm_fixture, write_wound_fixture
from fairaug.errors import FairaugError
from fairaug.labels import HAM10000_DX, WOUND_PHASES
from fairaug.skin.ita import estimate_fst, skin_mask
from fairaug.skin.types import FST_VALUES

HAM_COLUMNS = ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization", "fitzpatrick"]
N = 300


@pytest.fixture(scope="module")
def derm(tmp_path_factory) -> Path:
    return write_derm_fixture(tmp_path_factory.mktemp("derm") / "ham10000", n=N, seed=0)


@pytest.fixture(scope="module")
def wound(tmp_path_factory) -> Path:
    return write_wound_fixture(tmp_path_factory.mktemp("wound") / "wound", n=N, seed=0, layout="csv")


def files(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def load_rgb(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def derm_image_paths(root: Path, metadata: pd.DataFrame) -> list[Path]:
    first_part_size = math.ceil(len(metadata) / 2)
    parts = [1 if int(image_id.removeprefix("ISIC_")) < first_part_size else 2 for image_id in metadata.image_id]
    return [root / f"HAM10000_images_part_{part}" / f"{name}.jpg"
            for part, name in zip(parts, metadata.image_id, strict=True)]


def test_derm_layout(derm):
    metadata = pd.read_csv(derm / "HAM10000_metadata.csv")
    assert list(metadata.columns) == HAM_COLUMNS
    assert len(metadata) == N and metadata.image_id.is_unique
    assert metadata.image_id.str.fullmatch(r"ISIC_\d{7}").all()
    assert metadata.lesion_id.str.fullmatch(r"HAM_\d{7}").all()
    # The first half of the image ids is in part 1, the rest in part 2, and nothing else is there.
    expected = {str(path.relative_to(derm)) for path in derm_image_paths(derm, metadata)}
    assert set(files(derm)) == expected | {"HAM10000_metadata.csv"}
    assert len(list((derm / "HAM10000_images_part_1").iterdir())) == N // 2
    with Image.open(derm / "HAM10000_images_part_1" / "ISIC_0000000.jpg") as image:
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (64, 64))
    assert b"\r\n" not in (derm / "HAM10000_metadata.csv").read_bytes()


def test_derm_labels_and_lesions(derm):
    metadata = pd.read_csv(derm / "HAM10000_metadata.csv")
    assert set(metadata.dx) == set(HAM10000_DX)
    assert set(metadata.fitzpatrick) == set(FST_VALUES)
    assert metadata.dx.value_counts().idxmax() == "nv"
    fst_counts = metadata.fitzpatrick.value_counts()
    assert fst_counts[[5, 6]].sum() < fst_counts[[1, 2]].sum()
    images_per_lesion = metadata.groupby("lesion_id").size()
    assert images_per_lesion.max() <= 4 and (images_per_lesion > 1).sum() >= 20
    # A lesion is one patient's lesion: its attributes do not change between its images.
    per_lesion = metadata.groupby("lesion_id")[["dx", "dx_type", "age", "sex", "localization", "fitzpatrick"]]
    assert (per_lesion.nunique() == 1).all().all()


def test_images_of_a_lesion_look_alike(derm):
    metadata = pd.read_csv(derm / "HAM10000_metadata.csv")
    metadata["path"] = derm_image_paths(derm, metadata)
    lesions = metadata.groupby("lesion_id").filter(lambda group: len(group) > 1).groupby("lesion_id")
    mean_lab = {path: rgb2lab(load_rgb(path)).reshape(-1, 3).mean(axis=0) for path in metadata.path}
    same, other = [], []
    for (_, group), (_, next_group) in zip(list(lesions)[:-1], list(lesions)[1:], strict=True):
        first, second = group.path.iloc[:2]
        same.append(np.linalg.norm(mean_lab[first] - mean_lab[second]))
        other.append(np.linalg.norm(mean_lab[first] - mean_lab[next_group.path.iloc[0]]))
    assert np.median(same) < 0.5 * np.median(other)


def test_derm_is_deterministic(tmp_path):
    first = files(write_derm_fixture(tmp_path / "a", n=40, seed=3))
    second = files(write_derm_fixture(tmp_path / "b", n=40, seed=3))
    assert first == second
    other_seed = files(write_derm_fixture(tmp_path / "c", n=40, seed=4))
    assert other_seed != first
    images = [name for name in first if name.endswith(".jpg")]
    assert all(first[name] != other_seed.get(name) for name in images)


def test_ita_agreement_derm(derm):
    metadata = pd.read_csv(derm / "HAM10000_metadata.csv")
    estimated = [estimate_fst(load_rgb(path))[0] for path in derm_image_paths(derm, metadata)]
    assert None not in estimated  # the usual view always shows skin around the lesion
    agreement = np.mean(np.array(estimated) == metadata.fitzpatrick.to_numpy())
    assert agreement >= 0.85, f"ITA agreement {agreement:.3f}"


def test_lesions_are_less_contrasted_on_darker_skin(derm):
    metadata = pd.read_csv(derm / "HAM10000_metadata.csv")
    contrast = []
    for path in derm_image_paths(derm, metadata):
        rgb = load_rgb(path)
        lab = rgb2lab(rgb)
        skin = np.median(lab[skin_mask(rgb)], axis=0)
        centre = np.median(lab[28:36, 28:36].reshape(-1, 3), axis=0)
        contrast.append(np.linalg.norm(centre - skin))
    by_fst = pd.Series(contrast).groupby(metadata.fitzpatrick.to_numpy()).median()
    assert by_fst[[1, 2]].mean() > 1.3 * by_fst[[5, 6]].mean()


def test_darker_skin_is_more_uneven_and_noisier(derm):
    # what hides lesions on dark skin besides contrast: mottled pigmentation and noisier photos
    metadata = pd.read_csv(derm / "HAM10000_metadata.csv")
    spread = []
    for path in derm_image_paths(derm, metadata):
        rgb = load_rgb(path)
        spread.append(rgb2lab(rgb)[skin_mask(rgb)][:, 0].std())
    by_fst = pd.Series(spread).groupby(metadata.fitzpatrick.to_numpy()).median()
    assert by_fst[[5, 6]].mean() > 1.8 * by_fst[[1, 2]].mean()  # 2.4 on this fixture, 1.0 without


def test_wound_csv_layout(wound):
    labels = pd.read_csv(wound / "labels.csv")
    assert list(labels.columns) == ["image", "label", "fst", "group_id"]
    assert len(labels) == N and labels.image.is_unique
    assert labels.image.str.fullmatch(r"images/[\w]+\.jpg").all()
    assert set(files(wound)) == set(labels.image) | {"labels.csv"}
    assert set(labels.label) == set(WOUND_PHASES)
    assert set(labels.fst) == set(FST_VALUES)
    assert labels.group_id.str.fullmatch(r"P\d{4}").all()
    visits = labels.groupby("group_id")
    assert visits.size().max() > 1 and (visits.label.nunique() > 1).any()
    assert (visits.fst.nunique() == 1).all()
    # A patient's visits follow the healing order.
    order = labels.label.map(list(WOUND_PHASES).index)
    assert order.groupby(labels.group_id).apply(lambda phases: phases.is_monotonic_increasing).all()


def test_wound_imagefolder_layout_matches_csv_layout(wound, tmp_path):
    folder = write_wound_fixture(tmp_path / "folder", n=N, seed=0, layout="imagefolder")
    truth = pd.read_csv(folder / "ground_truth.csv")
    assert list(truth.columns) == ["image", "fst", "group_id"]
    assert set(files(folder)) == set(truth.image) | {"ground_truth.csv"}
    labels = pd.read_csv(wound / "labels.csv")
    # Same images, same labels (the folder), same FST and patients as the CSV layout.
    assert [Path(image).parent.name for image in truth.image] == list(labels.label)
    assert [Path(image).name for image in truth.image] == [Path(image).name for image in labels.image]
    assert (truth[["fst", "group_id"]] == labels[["fst", "group_id"]]).all().all()
    assert (folder / truth.image[0]).read_bytes() == (wound / labels.image[0]).read_bytes()


@pytest.mark.parametrize("layout", ["csv", "imagefolder"])
def test_wound_is_deterministic(tmp_path, layout):
    first = files(write_wound_fixture(tmp_path / "a", n=30, seed=5, layout=layout))
    assert first == files(write_wound_fixture(tmp_path / "b", n=30, seed=5, layout=layout))
    assert first != files(write_wound_fixture(tmp_path / "c", n=30, seed=6, layout=layout))


def test_ita_agreement_wound(wound):
    labels = pd.read_csv(wound / "labels.csv")
    estimated = [estimate_fst(load_rgb(wound / image))[0] for image in labels.image]
    agreement = np.mean(np.array(estimated) == labels.fst.to_numpy())
    assert agreement >= 0.85, f"ITA agreement {agreement:.3f}"


def test_rewriting_replaces_an_earlier_fixture_only(tmp_path):
    out = write_derm_fixture(tmp_path / "derm", n=30, seed=0)
    write_derm_fixture(out, n=10, seed=0)
    assert len(list(out.rglob("*.jpg"))) == 10  # no stale images of the larger set
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    with pytest.raises(FairaugError, match="not a fixture"):
        write_derm_fixture(tmp_path / "notes", n=10, seed=0)
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"


def test_bad_arguments(tmp_path):
    with pytest.raises(FairaugError, match="at least 1"):
        write_derm_fixture(tmp_path / "derm", n=0, seed=0)
    with pytest.raises(FairaugError, match="seed"):
        write_derm_fixture(tmp_path / "derm", n=5, seed=-1)
    with pytest.raises(FairaugError, match="layout"):
        write_wound_fixture(tmp_path / "wound", n=5, seed=0, layout="folders")  # type: ignore[arg-type]
