"""train.hierarchy: the coarser levels' cross-entropy, its settings, its fit and its checkpoint."""

import math

import numpy as np
import pytest
import torch

from geoguesser.config import load_settings
from geoguesser.errors import UserError
from geoguesser.inference.predict import predict_table
from geoguesser.model.checkpoint import load_checkpoint
from geoguesser.model.geography import Geography
from geoguesser.model.hierarchy_loss import group_log_probs, hierarchy_loss, level_targets
from geoguesser.model.locator import GeoLocator
from geoguesser.model.loss import objective_loss
from geoguesser.training.fit import train
from helpers.configs import tiny_config

LEVELS = [torch.tensor([0, 0, 1, 1]), torch.tensor([0, 0, 0, 1])]  # two coarser levels of 4


def test_the_loss_is_the_mean_of_each_levels_cross_entropy_by_hand():
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0], [2.0, -1.0, 0.5, 0.0]])
    labels = torch.tensor([2, 0])
    p = [[math.exp(v) / sum(math.exp(w) for w in row) for v in row] for row in logits.tolist()]
    # location 0 is in cell 2: group 1 of level 1 (cells 2, 3), group 0 of level 2 (0, 1, 2)
    level_1 = (-math.log(p[0][2] + p[0][3]) - math.log(p[1][0] + p[1][1])) / 2
    level_2 = (-math.log(p[0][0] + p[0][1] + p[0][2]) - math.log(p[1][0] + p[1][1] + p[1][2])) / 2
    got = hierarchy_loss(logits, labels, LEVELS)
    assert got.item() == pytest.approx((level_1 + level_2) / 2, rel=1e-6)


def test_soft_targets_are_summed_over_each_group():
    soft = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    assert level_targets(soft, LEVELS[0], 2)[0].tolist() == pytest.approx([0.3, 0.7])
    assert level_targets(soft, LEVELS[1], 2)[0].tolist() == pytest.approx([0.6, 0.4])
    assert level_targets(torch.tensor([3, 1]), LEVELS[0], 2).tolist() == [1, 0]
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    p = torch.softmax(logits, dim=1)[0].tolist()
    level_1 = -(0.3 * math.log(p[0] + p[1]) + 0.7 * math.log(p[2] + p[3]))
    level_2 = -(0.6 * math.log(p[0] + p[1] + p[2]) + 0.4 * math.log(p[3]))
    got = hierarchy_loss(logits, soft, LEVELS)
    assert got.item() == pytest.approx((level_1 + level_2) / 2, rel=1e-6)


def test_unlikely_groups_keep_finite_log_probabilities_and_gradients():
    # Cells 2 and 3 at -1000 against 0: their probabilities underflow to zero in float32,
    # a plain log of the sum would give -inf (and a NaN gradient).
    logits = torch.tensor([[0.0, 0.0, -1000.0, -1001.0]], requires_grad=True)
    coarse = group_log_probs(torch.log_softmax(logits, dim=1), LEVELS[0], 2)
    assert torch.isfinite(coarse).all()
    assert coarse[0, 1].item() == pytest.approx(-1000.0 + math.log(1 + math.exp(-1)) - math.log(2))
    loss = hierarchy_loss(logits, torch.tensor([3]), LEVELS)
    loss.backward()
    assert math.isfinite(loss.item()) and torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0


def test_the_objective_adds_the_levels_weighted(enriched):
    table, cells, scaler, border = enriched
    geography = Geography.of(cells, scaler, border)
    k = geography.n_classes
    torch.manual_seed(0)
    outputs = torch.randn(5, k)
    batch = {"label": torch.randint(0, k, (5,)), "latlon": torch.tensor([[45.5, 16.0]] * 5)}
    centroids = geography.centroids("weighted", "latlon")
    for tau in (None, 80.0):
        plain, on, heavy = (
            objective_loss(outputs, batch, tiny_config(**kw, tau_km=tau), geography, centroids)
            for kw in ({}, {"hierarchy": 9}, {"hierarchy": 9, "hierarchy_weight": 3.0})
        )
        assert on > plain and (heavy - plain).item() == pytest.approx(3 * (on - plain).item())


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            ["train.hierarchy=2", "train.objective=regression"],
            "hierarchy needs cells: objective classification or hybrid",
        ),
        (["train.hierarchy=true"], "expected a number of coarser levels (e.g. 3; 0: off)"),
    ],
)
def test_hierarchy_is_refused_in_one_line_without_cells_or_a_number(
    synthetic_dir, override, expected
):
    with pytest.raises(UserError) as error:
        load_settings(None, [f"data.dataset_dirs=[{synthetic_dir}]", *override])
    assert expected in str(error.value) and "\n" not in str(error.value)


def test_hierarchy_over_cells_without_a_coarser_level_is_refused(small_model):
    geography = dict(small_model[1], levels=[])
    with pytest.raises(UserError, match="no coarser level"):
        GeoLocator(geography, tiny_config(hierarchy=1), [0.5] * 3, [0.2] * 3)
    GeoLocator(geography, tiny_config(), [0.5] * 3, [0.2] * 3)  # off: nothing to refuse


def test_a_geography_without_levels_loads_with_none(small_model):
    old = {key: value for key, value in small_model[1].items() if key != "levels"}
    assert Geography.from_dict(old).levels == []


@pytest.fixture(scope="module")
def hierarchy_fit(enriched, tmp_path_factory):
    table, cells, scaler, border = enriched
    settings = tiny_config(objective="hybrid", hierarchy=2, tau_km=100)
    return train(settings, table, cells, scaler, tmp_path_factory.mktemp("hier"), border)


def test_a_fit_with_hierarchy_round_trips_through_its_checkpoint(enriched, hierarchy_fit):
    table, cells, scaler, border = enriched
    assert math.isfinite(hierarchy_fit.test["test/mean_km"])
    stored = torch.load(hierarchy_fit.best_checkpoint, weights_only=True)
    levels = stored["hyper_parameters"]["geography"]["levels"]
    assert levels == Geography.of(cells, scaler, border).levels and len(levels) >= 1
    reloaded = load_checkpoint(hierarchy_fit.best_checkpoint)
    assert reloaded.settings.hierarchy == 2 and reloaded.geography.levels == levels
    rows = table[table.split == "test"]
    in_memory = predict_table(hierarchy_fit.model, rows, progress=False)
    from_file = predict_table(reloaded, rows, progress=False)
    assert np.allclose(in_memory.pred_lat, from_file.pred_lat, atol=1e-9)
    assert np.allclose(in_memory.pred_lon, from_file.pred_lon, atol=1e-9)
