"""The dry run's timed steps: a short fit of each phase on real batches, and what it makes
of an epoch and of the whole fit.
"""

from __future__ import annotations

import contextlib
import logging
import resource
import tempfile
import time
import warnings
from dataclasses import dataclass, field

import pandas as pd
import torch
from pytorch_lightning.callbacks import Callback

from geoguesser.config import Settings
from geoguesser.training.estimate import estimate_line, fit_seconds, minutes, steps_per_epoch
from geoguesser.workflow.dryrun_data import Prepared, build_model
from geoguesser.workflow.dryrun_machine import processes_per_node
from geoguesser.workflow.dryrun_table import Row, gb

MEASURED_STEPS = 2  # per phase: the first warms up (allocations, cuDNN), the last is timed


@dataclass
class Probe:
    """The figures measured by one short fit: seconds of a step and peak memory, per phase."""

    seconds: dict = field(default_factory=dict)
    peak_bytes: dict = field(default_factory=dict)
    memory_kind: str = ""


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


class StepTimer(Callback):
    """The time of each phase's last step, and the peak memory so far, as the fit goes."""

    def __init__(self, freeze_epochs: int):
        self.cuda, self.freeze_epochs = torch.cuda.is_available(), freeze_epochs
        self.probe = Probe(memory_kind="GPU memory allocated" if self.cuda else "RSS growth")

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def phase(self, trainer) -> str:
        return "frozen" if trainer.current_epoch < self.freeze_epochs else "unfrozen"

    def on_fit_start(self, trainer, pl_module) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        self.rss_before = peak_rss()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._sync()
        self.started = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._sync()
        phase = self.phase(trainer)
        self.probe.seconds[phase] = time.perf_counter() - self.started
        used = torch.cuda.max_memory_allocated() if self.cuda else peak_rss() - self.rss_before
        self.probe.peak_bytes[phase] = used


@contextlib.contextmanager
def quiet_lightning():
    """Lightning's banners and hints (GPU available, srun, tips) are not the dry run's table."""
    loggers = [logging.getLogger(name) for name in ("pytorch_lightning", "lightning_fabric")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def probe_table(prepared: Prepared, batch_size: int) -> pd.DataFrame:
    """Training rows filling MEASURED_STEPS full batches (rows repeat when there are fewer)."""
    train = prepared.table[prepared.table.split == "train"]
    needed = MEASURED_STEPS * batch_size
    repeats = -(-needed // len(train))
    return pd.concat([train] * repeats, ignore_index=True).head(needed)


def measure_steps(settings: Settings, prepared: Prepared) -> tuple[Probe, object]:
    """A short fit, one process: MEASURED_STEPS steps of each phase the config has.

    The fit's model, optimizer, freezing and precision; no validation, checkpoints or logs,
    no caches (their contents would be built or written), a temporary root folder.
    """
    import pytorch_lightning as pl

    from geoguesser.training.callbacks import BatchSeed
    from geoguesser.training.finetuning import FreezeThenUnfreeze

    s = settings.train
    phases = ["frozen"] * (s.freeze_epochs > 0) + ["unfrozen"] * (s.max_epochs > s.freeze_epochs)
    freeze = 1 if phases[0] == "frozen" else 0
    probe_train = s.model_copy(
        update={
            "freeze_epochs": freeze,
            "max_epochs": len(phases),
            "scheduler": "none",
            "lr_find": "off",
        }
    )
    probe_settings = settings.model_copy(update={"train": probe_train})
    datamodule, model = build_model(probe_settings, prepared, probe_table(prepared, s.batch_size))
    timer = StepTimer(freeze)
    with quiet_lightning(), tempfile.TemporaryDirectory(prefix="geoguesser-dry-run-") as scratch:
        trainer = pl.Trainer(
            **{
                **s.extra,
                "accelerator": s.accelerator,
                "devices": 1,
                "num_nodes": 1,
                "precision": s.precision,
                "max_epochs": len(phases),
                "limit_train_batches": MEASURED_STEPS,
                "limit_val_batches": 0,
                "num_sanity_val_steps": 0,
                "logger": False,
                "enable_checkpointing": False,
                "enable_progress_bar": False,
                "enable_model_summary": False,
                "default_root_dir": scratch,
                "reload_dataloaders_every_n_epochs": 1,
                "callbacks": [
                    BatchSeed(s.seed),
                    FreezeThenUnfreeze(freeze, s.unfreeze_blocks),
                    timer,
                ],
            }
        )
        trainer.fit(model, datamodule=datamodule)
    return timer.probe, model


def step_rows(settings: Settings, prepared: Prepared, probe: Probe) -> list[Row]:
    """Each phase's step, and what it makes of an epoch and of the whole fit."""
    s = settings.train
    processes = processes_per_node(settings) * s.num_nodes
    steps = steps_per_epoch(prepared.count("train"), s.batch_size, processes, s.limit_train_batches)
    rows = []
    for phase, seconds in probe.seconds.items():
        memory = f"peak {probe.memory_kind} {gb(probe.peak_bytes[phase])}"
        rows.append(
            Row(
                f"{phase} step",
                f"{seconds:.3f} s at batch {s.batch_size} x 4 views, "
                f"{s.image_size} px, {s.precision}; {memory}",
            )
        )
    frozen_epochs = min(s.freeze_epochs, s.max_epochs)
    epoch_s = {phase: steps * seconds for phase, seconds in probe.seconds.items()}
    total = fit_seconds(
        frozen_epochs,
        s.max_epochs - frozen_epochs,
        epoch_s.get("frozen", 0.0),
        epoch_s.get("unfrozen", 0.0),
    )
    per_epoch = ", ".join(f"~{v:.1f} s {k}" for k, v in epoch_s.items())
    note = ""
    if s.feature_cache and frozen_epochs:
        note = " (frozen: an upper bound, since after the first they read cached features)"
    rows.append(Row("epoch", f"{steps} steps/epoch x {processes} process(es): {per_epoch}{note}"))
    rows.append(
        Row(
            "fit",
            f"{minutes(total)}: {frozen_epochs} frozen + "
            f"{s.max_epochs - frozen_epochs} unfrozen epochs, training steps only",
        )
    )
    last = epoch_s.get("unfrozen", epoch_s.get("frozen", 0.0))
    rows.append(Row("estimate", estimate_line(steps, last, total)))
    return rows
