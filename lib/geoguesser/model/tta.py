"""Test-time augmentation (`train.tta: mirror`): each location also seen mirrored.

The mirrored scene is training's augmentation (augment.mirror_scene: every view flipped,
east and west exchanged); training keeps a mirrored scene's label, so both passes answer
for the same place and their answers are averaged where averaging means something:

- classification and hybrid: the cell probabilities (returned as their log, so that every
  later softmax gives back the average);
- hybrid offsets: the plain mean of the two passes' offsets. No sign is flipped: the
  mirrored scene was trained to give the true location's offset, not a mirrored one;
- regression: the normalized x/y (coordinate space);
- contrastive: the unit image embeddings, averaged then renormalized (embedding space).

The fused embeddings (what retrieval searches with) are averaged as unit vectors too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from geoguesser.model.augment import EAST_WEST_SWAPPED, mirror_scene
from geoguesser.model.objectives import split_hybrid

MIRRORED_FEATURES = "mirrored_features"  # a feature batch's cached mirrored views


def mirror_views(images: torch.Tensor) -> torch.Tensor:
    """(B, V, 3, H, W) -> the scene mirrored: four views as mirror_scene; fewer, each flipped.

    One to three views come without headings to exchange (a single photograph, a partial
    upload), so each is only flipped.
    """
    if images.shape[1] == len(EAST_WEST_SWAPPED):
        return mirror_scene(images)
    return images.flip(-1)


def mirrored_batch(batch: dict) -> dict:
    """The batch's mirrored views, or its cached mirrored features (with the mask permuted)."""
    present = batch.get("present")
    if "features" in batch:
        if MIRRORED_FEATURES not in batch:
            raise ValueError("test-time mirroring of cached features needs their mirrored ones")
        mirrored = {"features": batch[MIRRORED_FEATURES]}
        if present is not None:
            mirrored["present"] = present[:, EAST_WEST_SWAPPED]
        return mirrored
    images = batch["images"]
    mirrored = {"images": mirror_views(images)}
    if present is not None:
        swapped = present[:, EAST_WEST_SWAPPED] if images.shape[1] == 4 else present
        mirrored["present"] = swapped
    return mirrored


def averaged_outputs(
    first: torch.Tensor, second: torch.Tensor, objective: str, n_classes: int
) -> torch.Tensor:
    """The two passes' head outputs combined as the module docstring says."""
    if objective == "regression":
        return (first + second) / 2
    if objective == "contrastive":
        return F.normalize(F.normalize(first, dim=1) + F.normalize(second, dim=1), dim=1)
    if objective == "hybrid":
        (logits_a, offsets_a), (logits_b, offsets_b) = (
            split_hybrid(first, n_classes),
            split_hybrid(second, n_classes),
        )
        logits = averaged_logits(logits_a, logits_b)
        offsets = ((offsets_a + offsets_b) / 2).flatten(1)
        return torch.cat([logits, offsets], dim=1)
    return averaged_logits(first, second)


def averaged_logits(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Logits whose softmax is the mean of the two logits' softmaxes."""
    probs = (torch.softmax(first.float(), dim=1) + torch.softmax(second.float(), dim=1)) / 2
    return probs.clamp_min(torch.finfo(probs.dtype).tiny).log().to(first.dtype)


def averaged_fused(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    return F.normalize(F.normalize(first, dim=1) + F.normalize(second, dim=1), dim=1)
