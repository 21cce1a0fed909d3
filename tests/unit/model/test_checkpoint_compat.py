"""Checkpoints written before the model package was split still load, and predict the same.

The network's attribute names are the state_dict's keys: STATE_KEYS is what the code at
a0070d2 wrote for a tinycnn hybrid with attention fusion over 6 cells. Checkpoint files
written by that code (make them with the code of that commit; see the paths below) are
loaded when present and must give the same locations as they gave then.
"""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from geoguesser.model.checkpoint import load_checkpoint, write_checkpoint
from geoguesser.model.locator import GeoLocator
from helpers.configs import tiny_config

STATE_KEYS = [
    ("net.mean", [1, 1, 3, 1, 1]),
    ("net.std", [1, 1, 3, 1, 1]),
    ("net.backbone.features.0.weight", [32, 3, 3, 3]),
    ("net.backbone.features.1.weight", [32]),
    ("net.backbone.features.1.bias", [32]),
    ("net.backbone.features.1.running_mean", [32]),
    ("net.backbone.features.1.running_var", [32]),
    ("net.backbone.features.1.num_batches_tracked", []),
    ("net.backbone.features.3.weight", [64, 32, 3, 3]),
    ("net.backbone.features.4.weight", [64]),
    ("net.backbone.features.4.bias", [64]),
    ("net.backbone.features.4.running_mean", [64]),
    ("net.backbone.features.4.running_var", [64]),
    ("net.backbone.features.4.num_batches_tracked", []),
    ("net.backbone.features.6.weight", [128, 64, 3, 3]),
    ("net.backbone.features.7.weight", [128]),
    ("net.backbone.features.7.bias", [128]),
    ("net.backbone.features.7.running_mean", [128]),
    ("net.backbone.features.7.running_var", [128]),
    ("net.backbone.features.7.num_batches_tracked", []),
    ("net.backbone.features.9.weight", [128, 128, 3, 3]),
    ("net.backbone.features.10.weight", [128]),
    ("net.backbone.features.10.bias", [128]),
    ("net.backbone.features.10.running_mean", [128]),
    ("net.backbone.features.10.running_var", [128]),
    ("net.backbone.features.10.num_batches_tracked", []),
    ("net.fusion.score.weight", [1, 128]),
    ("net.fusion.score.bias", [1]),
    ("net.head.1.weight", [18, 128]),
    ("net.head.1.bias", [18]),
]

OLD = Path(os.environ.get("GEOGUESSER_OLD_CHECKPOINTS", "/tmp"))
OLD_CHECKPOINTS = {  # checkpoint: its locations of `images` then, in an .npz beside
    "hybrid-attention": (
        OLD / "format4-hybrid-attention.ckpt",
        OLD / "format4-hybrid-attention.npz",
    ),
    "hybrid-attention-demo-cells": (OLD / "house-ckpt-before.ckpt", OLD / "house-ckpt-before.npz"),
    "demo": (OLD / "demo-before/checkpoints/last.ckpt", OLD / "house-demo-before.npz"),
}


def hybrid_attention(geography: dict) -> GeoLocator:
    settings = tiny_config(objective="hybrid", fusion="attention")
    return GeoLocator(geography, settings, [0.5, 0.4, 0.3], [0.2, 0.25, 0.3])


def test_the_state_dict_keys_and_shapes_are_those_of_before(small_model, tmp_path):
    geography = dict(small_model[1])  # the fixture's own dict is shared: a copy, changed
    geography["cells"] = {k: (v * 2)[:6] for k, v in geography["cells"].items()}
    model = hybrid_attention(geography)
    assert [(k, list(v.shape)) for k, v in model.state_dict().items()] == STATE_KEYS
    state = torch.load(write_checkpoint(model, tmp_path / "m.ckpt"), weights_only=True)
    assert list(state["state_dict"]) == [key for key, _ in STATE_KEYS]


@pytest.mark.parametrize("name", OLD_CHECKPOINTS)
def test_a_checkpoint_written_before_loads_and_predicts_the_same(name):
    checkpoint, expected = OLD_CHECKPOINTS[name]
    if not (checkpoint.is_file() and expected.is_file()):
        pytest.skip(f"no checkpoint of the code before the split at {checkpoint}")
    before = dict(np.load(expected))
    images = torch.from_numpy(before.pop("images"))
    located = load_checkpoint(checkpoint).locate(images)
    assert sorted(located) == sorted(before)
    for key, value in before.items():
        np.testing.assert_allclose(located[key], value, rtol=1e-6, err_msg=key)
