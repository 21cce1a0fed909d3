"""How long a fit will take, in the words both the dry run and a real fit print.

`geoguesser run --dry-run` times one real training step of each phase (frozen, unfrozen);
a real fit times its own steps and epochs as they come (train.EpochLines). Both turn the
figures into the same line, `estimate: N steps/epoch, ~X s/epoch, ~Y min for the fit`, and
the epoch lines into the time left, here, so that the two cannot drift apart.
"""

from __future__ import annotations

import math


def steps_per_epoch(
    n_train: int, batch_size: int, processes: int = 1, limit: int | float | None = None
) -> int:
    """Training steps a process takes per epoch, as data.samplers.EpochShuffle and Lightning count
    them: each process gets ceil(n / processes) locations, the last batch may be short, and
    `train.limit_train_batches` caps the count (a number of batches, or a share)."""
    steps = math.ceil(math.ceil(n_train / processes) / batch_size)
    if limit is None:
        return steps
    if isinstance(limit, float):
        return max(1, int(steps * limit)) if steps else 0
    return min(steps, limit)


def fit_seconds(
    frozen_epochs: int, unfrozen_epochs: int, frozen_epoch_s: float, unfrozen_epoch_s: float
) -> float:
    return frozen_epochs * frozen_epoch_s + unfrozen_epochs * unfrozen_epoch_s


def minutes(seconds: float) -> str:
    return f"~{seconds / 60:.0f} min" if seconds >= 60 else f"~{seconds:.0f} s"


def estimate_line(steps: int, epoch_s: float, fit_s: float) -> str:
    epoch = f"{epoch_s:.1f}" if epoch_s < 10 else f"{epoch_s:.0f}"
    return f"estimate: {steps} steps/epoch, ~{epoch} s/epoch, {minutes(fit_s)} for the fit"


def time_left(seconds: float) -> str:
    return f"{minutes(seconds)} left"
