import pytest

from fairaug.fairness import training


@pytest.fixture
def training_sets(monkeypatch) -> list:
    """The data sets the classifier trains on, in the order fairness.training makes their shuffled loaders."""
    sets = []
    make_loader = training.make_loader

    def spy(dataset, config, shuffle=False):
        if shuffle:
            sets.append(dataset)
        return make_loader(dataset, config, shuffle)

    monkeypatch.setattr(training, "make_loader", spy)
    return sets
