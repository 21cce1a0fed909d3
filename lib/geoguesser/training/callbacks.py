"""The Trainer's own callbacks: atomic and per-epoch checkpoints, batch seeds, epoch lines.

Each one serves the promise of fit.py that a fit killed at any moment and resumed ends where
an uninterrupted one does, or says what a headless run is doing: checkpoints are written
atomically and after every epoch, each batch draws its random numbers from (seed, epoch,
batch), and each checkpoint carries the fingerprint of what the fit computes from.
"""

from __future__ import annotations

import time

import numpy as np
from lightning_fabric.utilities.seed import seed_everything
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.plugins.io import TorchCheckpointIO

from geoguesser.atomic import atomic_path
from geoguesser.training.estimate import estimate_line, time_left

FINGERPRINT_KEY = "geoguesser_fit"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written beside their name and renamed: a killed save leaves no half file."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        with atomic_path(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)


class EpochCheckpoint(ModelCheckpoint):
    """The best checkpoint as ModelCheckpoint keeps it, and last.ckpt after every epoch.

    Since Lightning 2.6, `save_last=True` writes last.ckpt only in a step that also wrote a
    top-k checkpoint, so after an epoch whose validation did not improve, last.ckpt kept an
    earlier epoch: a fit killed then redid finished epochs, and a finished fit looked
    unfinished. By the end of the training epoch validation and the per-epoch schedulers
    have run, so this is the epoch's whole state; ModelCheckpoint runs after the other
    callbacks' hooks, and an epoch that it already saved is not written twice.
    """

    @property
    def state_key(self) -> str:
        # ModelCheckpoint's own key: a checkpoint written before this class existed resumes
        # with its best so far, and readers of the checkpoint find the state where they did.
        return super().state_key.replace(type(self).__qualname__, ModelCheckpoint.__qualname__, 1)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


class BatchSeed(Callback):
    """Reseed before every training batch from (seed, epoch, batch).

    Augmentation and dropout then draw the same numbers in a resumed fit as in the original,
    whatever else consumed random numbers before (Lightning makes an extra data-loader
    iterator when it resumes, and each iterator draws from the global generator).
    """

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        entropy = [self.seed, trainer.current_epoch, batch_idx]
        seed = int(np.random.SeedSequence(entropy).generate_state(1)[0])
        seed_everything(seed, workers=True, verbose=False)


class FitFingerprint(Callback):
    """Stamps each checkpoint with what the fit computes from, so resume can check it."""

    def __init__(self, fingerprint: str):
        self.fingerprint = fingerprint

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        checkpoint[FINGERPRINT_KEY] = {"fingerprint": self.fingerprint}


class EpochLines(Callback):
    """One plain line per epoch (loss, validation error, learning rate, time, time left), for
    terminals and notebooks alike; it is what a long headless run shows.

    Each phase (frozen, unfrozen) starts with the estimate the dry run prints, from the time
    of its second step (the first warms up); the time left is the remaining epochs at the
    pace of the latest epoch, up to the unfreeze while frozen.
    """

    def __init__(self, freeze_epochs: int = 0):
        self.freeze_epochs = freeze_epochs
        self.estimated: set[bool] = set()

    def frozen(self, trainer) -> bool:
        return trainer.current_epoch < self.freeze_epochs

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.started = time.perf_counter()
        self.lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else None
        self.loss_sum, self.count = 0.0, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.batch_started = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        n = len(batch["label"])
        self.loss_sum += float(loss) * n
        self.count += n
        steps = trainer.num_training_batches
        timed = batch_idx == min(1, steps - 1)
        if timed and self.frozen(trainer) not in self.estimated and trainer.global_rank == 0:
            self.estimated.add(self.frozen(trainer))
            epoch_s = steps * (time.perf_counter() - self.batch_started)
            fit_s = epoch_s * self.epochs_left(trainer, including_this=True)
            print(estimate_line(steps, epoch_s, fit_s) + self.until(trainer), flush=True)

    def epochs_left(self, trainer, including_this: bool = False) -> int:
        """Epochs after this one (and this one too), up to the unfreeze while frozen."""
        end = self.phase_end(trainer)
        return end - trainer.current_epoch - (0 if including_this else 1)

    def phase_end(self, trainer) -> int:
        frozen_end = min(self.freeze_epochs, trainer.max_epochs)
        return frozen_end if trainer.current_epoch < frozen_end else trainer.max_epochs

    def until(self, trainer) -> str:
        """What a time counted to the phase's end leaves out: the unfrozen epochs."""
        return " to the unfreeze" if self.phase_end(trainer) < trainer.max_epochs else ""

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.global_rank != 0:
            return
        metrics = trainer.callback_metrics
        parts = [f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"]
        if self.count:
            parts.append(f"train loss {self.loss_sum / self.count:.4f}")
        if "val/mean_km" in metrics:
            parts.append(
                f"val mean {float(metrics['val/mean_km']):.1f} km"
                f" median {float(metrics['val/median_km']):.1f} km"
            )
        if self.lr is not None:
            parts.append(f"lr {self.lr:.2e}")
        seconds = time.perf_counter() - self.started
        parts.append(f"{seconds:.1f} s")
        left = self.epochs_left(trainer)
        if left > 0:
            parts.append(time_left(seconds * left) + self.until(trainer))
        print("  ".join(parts), flush=True)
