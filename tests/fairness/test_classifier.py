import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import safetensors.torch
import torch
import torchvision
from pydantic import ValidationError
from sklearn.metrics import balanced_accuracy_score, roc_auc_score
from sklearn.utils.class_weight import compute_class_weight
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from fairaug.config import DatasetConfig, PrepareConfig
from fairaug.config.models import SplitConfig
from fairaug.config.fairness import ClassifierConfig
from fairaug.data.fixtures import write_derm_fixture, write_wound_fixture
from fairaug.data.prepare import prepare_dataset
from fairaug.errors import DataError
from fairaug.labels import HAM10000_DX, MALIGNANT_DX, WOUND_PHASES
from fairaug.fairness.data import IMAGENET_MEAN, IMAGENET_STD, ManifestDataset, flip_and_rotate, make_loader, split_datasets
from fairaug.fairness.model import build_classifier, load_classifier, save_classifier
from fairaug.fairness.predictions import read_predictions, write_predictions
from fairaug.fairness.report import fairness_report
from fairaug.fairness.training import inverse_frequency_weights, predict, train_classifier
from fairaug.skin.types import FST_VALUES

CLASSES = list(HAM10000_DX)
# 12 epochs at 32 px: a few seconds on 2 cores for the 160-image fixture
FAST = ClassifierConfig(epochs=12, patience=12, image_size=32, batch_size=32)


@pytest.fixture(scope="module")
def derm(fixture_data):
    root = fixture_data / "ham10000"
    manifest, _ = prepare_dataset(
        "ham10000", DatasetConfig(format="ham10000", root=str(root), domain="derm"), PrepareConfig()
    )
    return root, manifest


@pytest.fixture(scope="module")
def datasets(derm):
    root, manifest = derm
    return split_datasets(root, manifest, CLASSES, FAST)


@pytest.fixture(scope="module")
def trained(datasets):
    return train_classifier(datasets["train"], datasets["val"], FAST)


def state_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    left, right = a.state_dict(), b.state_dict()
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


def test_small_cnn_is_small():
    model = build_classifier("small_cnn", CLASSES, 32)
    n_parameters = sum(p.numel() for p in model.parameters())
    assert 80_000 < n_parameters < 120_000
    for size in (32, 64):
        assert model(torch.zeros(2, 3, size, size)).shape == (2, len(CLASSES))


def test_trained_classifier_beats_chance_on_the_test_split(trained, datasets):
    model, history = trained
    predictions = predict(model, make_loader(datasets["test"], FAST))
    scores = predictions[[f"score_{c}" for c in CLASSES]].to_numpy()
    truth = predictions["label"].map(CLASSES.index).to_numpy()
    present = np.unique(truth)
    macro_auroc = np.mean([roc_auc_score(truth == c, scores[:, c]) for c in present])
    accuracy = np.mean(scores.argmax(axis=1) == truth)
    majority = predictions["label"].value_counts(normalize=True).max()
    assert macro_auroc > 0.8
    assert accuracy > majority + 0.1  # the fixture hides lesions on dark skin: little room above chance there
    assert history.val_loss[history.best_epoch - 1] == min(history.val_loss)
    assert history.train_loss[-1] < history.train_loss[0]


def test_predictions_columns_and_rows(trained, datasets):
    model, _ = trained
    test_set = datasets["test"]
    predictions = predict(model, make_loader(test_set, FAST))
    assert list(predictions.columns) == ["path", "label", "fst", "group_id", *(f"score_{c}" for c in CLASSES)]
    pd.testing.assert_frame_equal(predictions[["path", "label", "fst", "group_id"]],
                                  test_set.rows[["path", "label", "fst", "group_id"]])  # fmt: skip
    scores = predictions.filter(like="score_").to_numpy()
    assert np.allclose(scores.sum(axis=1), 1.0)
    # a shuffled loader gives the same table: rows are placed by their dataset index
    shuffled = predict(model, make_loader(test_set, FAST.model_copy(update={"batch_size": 5}), shuffle=True))
    pd.testing.assert_frame_equal(shuffled, predictions, atol=1e-6)


def test_predictions_file_round_trip(trained, datasets, tmp_path):
    model, _ = trained
    predictions = predict(model, make_loader(datasets["test"], FAST))
    write_predictions(predictions, tmp_path / "predictions.parquet")
    pd.testing.assert_frame_equal(read_predictions(tmp_path / "predictions.parquet"), predictions, check_dtype=False)


def test_safetensors_round_trip(trained, datasets, tmp_path):
    model, _ = trained
    path = save_classifier(model, tmp_path / "classifier" / "weights.safetensors")
    assert not list(path.parent.glob(".*.tmp"))  # written via a temp file, renamed into place
    loaded = load_classifier(path)
    assert (loaded.arch, loaded.classes, loaded.image_size) == ("small_cnn", CLASSES, 32)
    assert state_equal(loaded, model)
    loader = make_loader(datasets["test"], FAST)
    pd.testing.assert_frame_equal(predict(loaded, loader), predict(model, loader))


def test_same_seed_same_weights(datasets):
    config = FAST.model_copy(update={"epochs": 1})
    first, first_history = train_classifier(datasets["train"], datasets["val"], config)
    second, second_history = train_classifier(datasets["train"], datasets["val"], config)
    assert state_equal(first, second)
    assert first_history == second_history
    other, _ = train_classifier(datasets["train"], datasets["val"], config.model_copy(update={"seed": 1}))
    assert not state_equal(first, other)


def test_pretraining_phase_sees_only_its_set_then_the_train_split(datasets, training_sets):
    # the test split stands in for the synthetic images: any set apart from train
    config = FAST.model_copy(update={"epochs": 1})
    first, history = train_classifier(datasets["train"], datasets["val"], config, datasets["test"], pretrain_epochs=2)
    assert training_sets == [datasets["test"], datasets["train"]]
    assert len(history.pretrain_loss) == 2 and len(history.train_loss) == 1
    second, second_history = train_classifier(datasets["train"], datasets["val"], config, datasets["test"], 2)
    assert state_equal(first, second) and history == second_history  # same seed, same weights
    plain, plain_history = train_classifier(datasets["train"], datasets["val"], config)
    assert not state_equal(first, plain) and plain_history.pretrain_loss == []


def test_early_stopping_keeps_the_best_epoch(datasets):
    config = FAST.model_copy(update={"epochs": 40, "patience": 1, "lr": 0.05})  # too high a rate: noisy losses
    _, history = train_classifier(datasets["train"], datasets["val"], config)
    assert len(history.val_loss) < 40
    assert len(history.val_loss) == history.best_epoch + 1
    assert history.val_loss[history.best_epoch - 1] == min(history.val_loss)


def test_inverse_frequency_weights_match_sklearn_balanced():
    targets = np.array([0, 0, 0, 0, 1, 1, 2, 0, 1, 2, 2, 2, 2, 2])
    expected = compute_class_weight("balanced", classes=np.arange(3), y=targets)
    assert inverse_frequency_weights(targets, 3).numpy() == pytest.approx(expected)


def test_augmentation_only_for_training(derm):
    root, manifest = derm
    rows = manifest.head(3)
    config = FAST.model_copy(update={"batch_size": 3})
    plain = ManifestDataset(root, rows, CLASSES, 32)
    assert torch.equal(next(iter(make_loader(plain, config)))[0], torch.stack([plain[i][0] for i in range(3)]))
    augmented = ManifestDataset(root, rows, CLASSES, 32, augment=True)
    torch.manual_seed(0)
    draws = [next(iter(make_loader(augmented, config)))[0] for _ in range(4)]
    assert any(not torch.equal(draws[0], d) for d in draws[1:])
    assert draws[0].shape == (3, 3, 32, 32)


class DecodeLog(ManifestDataset):
    """Appends the index of every image it decodes to ``log``, from whichever process decodes it."""

    def __init__(self, *args, log: Path, **kwargs):
        super().__init__(*args, **kwargs)
        self.log = log

    def load_image(self, index: int):
        with open(self.log, "a") as log:  # one short append per line: whole lines from any process
            log.write(f"{index}\n")
        return super().load_image(index)


def test_loader_workers_decode_each_image_once_over_epochs(derm, tmp_path):
    root, manifest = derm
    rows = manifest.head(40)
    dataset = DecodeLog(root, rows, CLASSES, 32, log=tmp_path / "decoded.txt")
    loader = make_loader(dataset, FAST.model_copy(update={"num_workers": 2, "batch_size": 16}), shuffle=True)
    epochs = [list(loader) for _ in range(3)]
    decoded = [int(line) for line in (tmp_path / "decoded.txt").read_text().split()]
    assert sorted(decoded) == list(range(len(rows)))
    reference = ManifestDataset(root, rows, CLASSES, 32)  # decodes in this process
    for batches in epochs:
        assert sorted(torch.cat([indices for _, _, indices in batches]).tolist()) == list(range(len(rows)))
        for images, _, indices in batches:
            assert torch.equal(images, torch.stack([reference[i][0] for i in indices.tolist()]))


@pytest.mark.parametrize(("degrees", "hflip", "vflip"), [(0.0, True, False), (90.0, False, True), (-12.5, True, True), (7.0, False, False)])
def test_batch_flips_and_rotations_match_torchvision_per_image(degrees, hflip, vflip):
    torch.manual_seed(0)
    images = torch.randn(4, 3, 32, 32)
    n = len(images)
    batch = flip_and_rotate(images, torch.full((n,), degrees), torch.full((n,), hflip), torch.full((n,), vflip))
    black = ((-torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)).view(3, 1, 1)
    expected = []
    for image in images - black:  # torchvision fills the corners with 0: black before normalisation
        image = TF.horizontal_flip(image) if hflip else image
        image = TF.vertical_flip(image) if vflip else image
        expected.append(TF.rotate(image, degrees, interpolation=InterpolationMode.NEAREST) + black)
    torch.testing.assert_close(batch, torch.stack(expected))


def test_saved_classifier_bytes_do_not_depend_on_the_run(tmp_path):
    """safetensors writes metadata keys in a random order (safetensors#584): the same weights must
    still give the same file, so that DVC sees an unchanged out."""
    model = build_classifier("small_cnn", ["I", "P", "R"], 32)
    saved = {save_classifier(model, tmp_path / f"{i}.safetensors").read_bytes() for i in range(6)}
    assert len(saved) == 1
    assert torch.equal(load_classifier(tmp_path / "0.safetensors").head.weight, model.head.weight)


def test_unknown_label_and_empty_split_are_data_errors(derm, datasets):
    root, manifest = derm
    with pytest.raises(DataError, match="labels nv are not among the classes akiec, bcc, bkl, df, mel, vasc"):
        ManifestDataset(root, manifest, sorted(set(CLASSES) - {"nv"}), 32)
    empty = ManifestDataset(root, manifest.head(0), CLASSES, 32)
    with pytest.raises(DataError, match="the val split has no images"):
        train_classifier(datasets["train"], empty, FAST)


@pytest.mark.parametrize("arch", ["resnet50", "efficientnet_b0"])
def test_torchvision_backbones_without_downloads(arch):
    model = build_classifier(arch, ["I", "P", "R"], 32)
    model.eval()
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 3)


def test_backbone_weights_from_a_local_safetensors_file(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.efficientnet_b0(weights=None)
    weights = tmp_path / "efficientnet_b0.safetensors"
    safetensors.torch.save_file(reference.state_dict(), weights)
    model = build_classifier("efficientnet_b0", ["I", "P", "R"], 32, weights_path=weights)
    assert torch.equal(model.backbone.features[0][0].weight, reference.features[0][0].weight)

    safetensors.torch.save_file({"conv.weight": torch.zeros(1)}, tmp_path / "other.safetensors")
    with pytest.raises(DataError, match=r"other.safetensors: does not hold efficientnet_b0 weights"):
        build_classifier("efficientnet_b0", ["I", "P", "R"], 32, weights_path=tmp_path / "other.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(DataError, match="not a safetensors file"):
        build_classifier("efficientnet_b0", ["I", "P", "R"], 32, weights_path=tmp_path / "bad.safetensors")
    with pytest.raises(DataError, match="file not found"):
        load_classifier(tmp_path / "missing.safetensors")


def test_config_rejects_weights_for_the_small_cnn():
    with pytest.raises(ValidationError, match="not small_cnn"):
        ClassifierConfig(arch="small_cnn", pretrained=True)
    with pytest.raises(ValidationError, match="not both"):
        ClassifierConfig(arch="resnet50", pretrained=True, weights_path="w.safetensors")
    with pytest.raises(ValidationError, match="extra"):
        ClassifierConfig(epoch=3)


def test_fst_confusion_branch_changes_training_only_when_on(datasets):
    one_epoch = ClassifierConfig(epochs=1, image_size=32, batch_size=32)
    off, off_history = train_classifier(datasets["train"], datasets["val"], one_epoch)
    # the branch's own settings are ignored while it is off
    off_again, _ = train_classifier(datasets["train"], datasets["val"],
                                    one_epoch.model_copy(update={"fst_branch_lr": 0.1}))  # fmt: skip
    on, on_history = train_classifier(datasets["train"], datasets["val"],
                                      one_epoch.model_copy(update={"fst_confusion_weight": 1.0}))  # fmt: skip
    assert state_equal(off, off_again)
    assert not state_equal(off, on)
    assert off_history.fst_branch_loss == [] and len(on_history.fst_branch_loss) == 1
    # chance level for six skin types is log(6) ~ 1.79: the branch's loss is a cross-entropy over them
    assert 0 < on_history.fst_branch_loss[0] < 5
    # training-only: the classifier itself has the same parameters either way
    assert on.state_dict().keys() == off.state_dict().keys()


DARK_SKIN_FIXTURES = {  # domain: how make demo writes its 1500 images, how prepare reads them, the classes
    "derm": (lambda root: write_derm_fixture(root, n=1500, seed=0),
             DatasetConfig(format="ham10000", root="", domain="derm"), CLASSES),
    "wound": (lambda root: write_wound_fixture(root, n=1500, seed=1, layout="csv"),
              DatasetConfig(format="csv", root="", domain="wound", labels=list(WOUND_PHASES)), list(WOUND_PHASES)),
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("domain", DARK_SKIN_FIXTURES)
def test_real_only_classifier_is_worse_on_dark_skin_with_intervals(tmp_path, domain):
    """The problem augmentation must fix, measured as `make demo` measures it: on the tiny profile's
    1500-image fixtures (FST V-VI 17% of images, lesions and wound tissue less contrasted on them) with
    at least 30 test images per FST, the real-only classifier's balanced accuracy is lower on V-VI than
    on I-II and the paired bootstrap interval of the deficit excludes zero; every per-FST value has its
    interval and n. Measured (12 epochs): dermoscopy I-II 0.84, V-VI 0.42, deficit 0.43 [0.25, 0.57];
    wounds deficit 0.14-0.21 over two training seeds (30 epochs), 0.08 [-0.06, 0.22] before wound
    tissue faded on dark skin. The 600-image derm fixture with the shares-only split cannot show it
    (10 V-VI test images: -0.02 [-0.18, 0.28])."""
    write, dataset_config, classes = DARK_SKIN_FIXTURES[domain]
    root = write(tmp_path / domain)
    manifest, _ = prepare_dataset(domain, dataset_config.model_copy(update={"root": str(root)}),
                                  PrepareConfig(split=SplitConfig(min_test_per_fst=30)))  # fmt: skip
    config = ClassifierConfig(epochs=12, patience=12)
    splits = split_datasets(root, manifest, classes, config)
    model, _ = train_classifier(splits["train"], splits["val"], config)
    predictions = predict(model, make_loader(splits["test"], config))
    report = fairness_report(predictions, classes, malignant_classes=[c for c in classes if c in MALIGNANT_DX],
                             n_bootstrap=100)  # fmt: skip
    y = predictions["label"].map(classes.index).to_numpy()
    predicted = predictions[[f"score_{c}" for c in classes]].to_numpy().argmax(axis=1)
    fst = predictions["fst"].to_numpy()
    for k in FST_VALUES:
        key, rows = f"fairness/balanced_accuracy.fst{k}", fst == k
        assert report[f"{key}.n"] == rows.sum() >= 30
        assert report[f"{key}.ci_low"] <= report[key] <= report[f"{key}.ci_high"]
        assert report[key] == pytest.approx(balanced_accuracy_score(y[rows], predicted[rows]))

    light, dark = np.isin(fst, (1, 2)), np.isin(fst, (5, 6))
    def deficit(rows):
        lit, drk = rows[light[rows]], rows[dark[rows]]
        return balanced_accuracy_score(y[lit], predicted[lit]) - balanced_accuracy_score(y[drk], predicted[drk])
    rng = np.random.default_rng(0)
    with warnings.catch_warnings():  # a resample may lack a class: scikit-learn warns, the value stands
        warnings.simplefilter("ignore")
        resampled = [deficit(rng.integers(0, len(y), len(y))) for _ in range(200)]
    print(f"{domain}: deficit {deficit(np.arange(len(y))):.3f}, 95% interval {np.percentile(resampled, [2.5, 97.5])}")
    assert deficit(np.arange(len(y))) > 0.1 and np.percentile(resampled, 2.5) > 0


def test_evaluator_label_confidence_is_high_for_the_true_label_and_low_for_another(trained, datasets, tmp_path):
    """quality/label_confidence reads the evaluator's probability of the label an image was asked
    for: real test images asked for their own label score well above chance, the same images asked for
    another label score several times lower (checked against a softmax by hand). On the 160-image
    fixture, 12 epochs: own 0.37, another 0.03."""
    from fairaug.metrics.extractors import evaluator_extractor
    from fairaug.metrics.functional import label_scores

    model, _ = trained
    extractor = evaluator_extractor(save_classifier(model, tmp_path / "model.safetensors"))
    test = datasets["test"]
    rows = test.rows.reset_index(drop=True)
    images = [np.asarray(test.load_image(i)) for i in range(len(rows))]
    logits = extractor.extract(images).logits
    own, correct = label_scores(logits, extractor.classes, list(rows["label"]))
    other_labels = [CLASSES[(CLASSES.index(label) + 3) % len(CLASSES)] for label in rows["label"]]
    other, _ = label_scores(logits, extractor.classes, other_labels)
    assert own.mean() > 2 / len(CLASSES) and other.mean() < 0.1 and own.mean() > 5 * other.mean()
    by_hand = np.exp(logits[0]) / np.exp(logits[0]).sum()
    assert own[0] == pytest.approx(by_hand[CLASSES.index(rows["label"][0])])
    assert correct.mean() == pytest.approx(np.mean(logits.argmax(axis=1) == rows["label"].map(CLASSES.index)))
