"""Cross-entropy on the cells' coarser levels (`train.hierarchy`), as OSV-5M adds on ancestors.

A coarser level's probability of a group is the sum of the finest level's softmax
probabilities over the group's cells, so the head stays one layer over the finest cells and
decoding is unchanged: the extra terms only teach it that a miss inside the right parent
square (or quadtree ancestor, or county) is better than one far away. The sum is taken in
log space, a logsumexp per group (each group's own maximum taken out first), so that a group
whose every cell is unlikely keeps a finite log-probability instead of log(0). The targets
are the truth's group, or with `tau_km` the soft targets summed over each group the same
way. The levels' terms are averaged, so `hierarchy_weight` weighs them together against the
finest level's cross-entropy whatever their number.
"""

from __future__ import annotations

import torch

from geoguesser.errors import UserError


def check_levels(levels: list, n_classes: int, wanted: int) -> None:
    """Refuse `train.hierarchy` over cells without a coarser level, or levels of other cells."""
    if wanted and not levels:
        raise UserError(
            f"train.hierarchy is {wanted} but the {n_classes} cells have no coarser level with"
            " more than one group: use smaller cells, cells with parent_1 columns, or"
            " train.hierarchy 0"
        )
    if wanted and any(len(level) != n_classes for level in levels):
        raise UserError(f"the coarser levels do not cover the {n_classes} cells one to one")


def group_log_probs(log_probs: torch.Tensor, groups: torch.Tensor, n_groups: int) -> torch.Tensor:
    """(B, G) log of the summed probabilities of each group, from (B, K) log-probabilities.

    `groups` (K,) maps each class to its group 0..G-1; every group holds a class.
    """
    index = groups.expand_as(log_probs)
    peak = torch.full(
        (len(log_probs), n_groups), -torch.inf, dtype=log_probs.dtype, device=log_probs.device
    )
    peak = peak.scatter_reduce(1, index, log_probs.detach(), reduce="amax").detach()
    summed = torch.zeros_like(peak).scatter_add(1, index, torch.exp(log_probs - peak[:, groups]))
    return torch.log(summed) + peak


def level_targets(target: torch.Tensor, groups: torch.Tensor, n_groups: int) -> torch.Tensor:
    """The truth at a coarser level: labels (B,) -> group ids, soft (B, K) -> summed (B, G)."""
    if target.ndim == 1:
        return groups[target]
    summed = torch.zeros(len(target), n_groups, dtype=target.dtype, device=target.device)
    return summed.scatter_add(1, groups.expand_as(target), target)


def hierarchy_loss(
    logits: torch.Tensor, target: torch.Tensor, levels: list[torch.Tensor]
) -> torch.Tensor:
    """Mean over `levels` of the cross-entropy of each level's probabilities against its truth.

    `logits` (B, K) are the finest cells'; `target` their labels (B,) or soft targets (B, K);
    each level (K,) maps a class to its group id (geo.hierarchy.levels).
    """
    log_probs = torch.log_softmax(logits.float(), dim=1)
    terms = []
    for groups in levels:
        n_groups = int(groups.max()) + 1  # on the CPU, where Geography keeps the levels
        groups = groups.to(log_probs.device)
        coarse = group_log_probs(log_probs, groups, n_groups)
        truth = level_targets(target, groups, n_groups)
        if truth.ndim == 1:
            terms.append(torch.nn.functional.nll_loss(coarse, truth))
        else:
            terms.append(-(truth.float() * coarse).sum(dim=1).mean())
    return torch.stack(terms).mean()
