"""`geoguesser run --dry-run`: everything that can be known before the first epoch, one table.

A GPU run can fail hours in: the image cache fills the disk, the feature store of every
process outgrows host memory, the batch does not fit the GPU, the weights file belongs to
another network. Each of these is checked here in about a minute, through the code a run
uses (settings, the validation and split of step 01, the cells of 02, the table of 03, the
model, the optimizer and Lightning's precision), and one real training step of each phase
(frozen, unfrozen) is timed on real batches at the configured batch and image size.

Nothing is written into the runs root and no run folder is made: the table of steps 01-03
is kept in memory, the image cache is not built (the step decodes its batches directly),
and Lightning's scratch goes to a temporary folder that is removed. Whatever would stop the
run is a blocker: one line each, and `geoguesser run` exits with status 2.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from pytorch_lightning.callbacks import Callback

from geoguesser.config import Settings
from geoguesser.errors import UserError
from geoguesser.training.estimate import estimate_line, fit_seconds, minutes, steps_per_epoch

GB = 1e9
MEASURED_STEPS = 2  # per phase: the first warms up (allocations, cuDNN), the last is timed
BEST_KEPT = 1  # train.EpochCheckpoint keeps the best checkpoint (save_top_k 1) ...
CHECKPOINT_FILES = BEST_KEPT + 2  # ... and last.ckpt, and one being written beside its name
ADAM_MOMENTS = 2  # Adam and AdamW keep two float32 moments a parameter in the checkpoint
MAX_DATA_PROBLEMS = 10


@dataclass
class Row:
    check: str
    result: str
    blocker: str | None = None  # one line, when this stops the run


@dataclass
class Prepared:
    """What steps 01-03 would write, held in memory: the enriched table and the geography."""

    table: pd.DataFrame
    geography: object

    def count(self, split: str) -> int:
        return int((self.table.split == split).sum())


@dataclass
class Probe:
    """The figures measured by one short fit: seconds of a step and peak memory, per phase."""

    seconds: dict = field(default_factory=dict)
    peak_bytes: dict = field(default_factory=dict)
    memory_kind: str = ""


def gb(n_bytes: float) -> str:
    return f"{n_bytes / GB:.2f} GB"


def settings_row(settings: Settings, config_file: Path | None) -> Row:
    """The settings passed their checks before the dry run began (load_settings, as a run)."""
    source = f" ({config_file})" if config_file else ""
    return Row("settings", f"checked{source}: run {settings.name}")


def prepare_tables(settings: Settings) -> tuple[list[Row], Prepared | None]:
    """Steps 01-03 without writing: validation as step 01 does it, split, cells, enrichment."""
    from geoguesser.data.enrich import enrich
    from geoguesser.data.layout import validate
    from geoguesser.geo.borders import load_border
    from geoguesser.geo.grid import kept_cells, make_cells
    from geoguesser.geo.splits import split_locations
    from geoguesser.model.geography import Geography

    data, split, grid = settings.data, settings.split, settings.grid
    border = load_border(data.border, data.country)
    report = validate(data.dataset_dirs, border=border, labelled=True)
    if not report.ok:
        lines = [str(problem) for problem in report.problems[:MAX_DATA_PROBLEMS]]
        if len(report.problems) > MAX_DATA_PROBLEMS:
            lines.append(f"... and {len(report.problems) - MAX_DATA_PROBLEMS} more problems")
        return [Row("datasets", f"{len(report.problems)} problem(s)", line) for line in lines], None
    rows = [Row("datasets", f"valid: {report.summary()}")]
    try:
        locations = split_locations(
            report.locations,
            split.fractions,
            seed=split.seed,
            dataset_frac=split.dataset_frac,
            block_km=split.block_km,
            crs=data.crs,
        )
        train = locations[locations.split == "train"]
        cells = make_cells(
            border,
            train.latitude,
            train.longitude,
            cell_km=None if grid.cell_deg else grid.cell_km,
            cell_deg=grid.cell_deg,
            crs=data.crs,
            min_train=grid.min_train,
        )
        table, scaler = enrich(locations, cells)
    except UserError as error:
        return rows + [Row("split", "failed", str(error).splitlines()[0])], None
    prepared = Prepared(table, Geography.of(cells, scaler, border))
    counts = ", ".join(f"{s} {prepared.count(s)}" for s in ("train", "val", "test"))
    rows.append(Row("split", f"{counts}; {len(kept_cells(cells))} classes"))
    for name in ("train", "val"):
        if prepared.count(name) == 0:
            blocker = f"the {name} split is empty: use more locations or other split fractions"
            rows.append(Row(f"{name} split", "empty", blocker))
    return rows, (prepared if all(r.blocker is None for r in rows) else None)


def weights_row(settings: Settings) -> Row:
    """The weights load strictly into the backbone (every key, every shape), as a fit loads them."""
    from geoguesser.model.backbones import build_backbone

    s = settings.train
    if s.weights is None:
        return Row("weights", f"none: {s.backbone} starts from random initialization")
    try:
        backbone = build_backbone(s.backbone, s.weights)
    except UserError as error:
        return Row("weights", "do not load", str(error).splitlines()[0])
    tensors = len(backbone.state_dict())
    return Row("weights", f"{s.weights} loads into {s.backbone}: {tensors} tensors, every shape")


def processes_per_node(settings: Settings) -> int:
    """Training processes on each machine: `devices`, or for auto what Lightning would pick."""
    s = settings.train
    if isinstance(s.devices, int):
        return s.devices
    gpu = s.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return max(1, torch.cuda.device_count()) if gpu else 1


def accelerator_row(settings: Settings) -> Row:
    """The device the fit would train on, and whether it can (GPU present, bf16 supported)."""
    s = settings.train
    wants_gpu = s.accelerator in ("gpu", "cuda")
    if s.accelerator == "mps":
        ok = torch.backends.mps.is_available()
        return Row(
            "accelerator",
            "mps" if ok else "no MPS device",
            None if ok else "train.accelerator mps: no MPS device here",
        )
    if not torch.cuda.is_available():
        if wants_gpu:
            return Row(
                "accelerator",
                "no GPU",
                f"train.accelerator {s.accelerator}: no GPU here "
                "(torch.cuda.is_available() is false); use train.accelerator=cpu, or run "
                "on the GPU box",
            )
        bf16 = "; bf16 runs as CPU autocast" if s.precision.startswith("bf16") else ""
        return Row("accelerator", f"CPU ({os.cpu_count()} cores), no GPU{bf16}")
    if s.accelerator == "cpu":
        return Row("accelerator", f"CPU ({os.cpu_count()} cores); a GPU is here but not used")
    name = torch.cuda.get_device_name(0)
    total = torch.cuda.get_device_properties(0).total_memory
    bf16 = torch.cuda.is_bf16_supported()
    row = Row(
        "accelerator",
        f"{torch.cuda.device_count()} x {name}, {gb(total)}; bf16 "
        f"{'supported' if bf16 else 'not supported'}",
    )
    if s.precision.startswith("bf16") and not bf16:
        row.blocker = f"train.precision {s.precision}: {name} does not support bf16; use 16-mixed"
    if isinstance(s.devices, int) and s.devices > torch.cuda.device_count():
        row.blocker = (
            f"train.devices {s.devices}: this machine has {torch.cuda.device_count()} GPU(s)"
        )
    return row


def build_model(settings: Settings, prepared: Prepared, table: pd.DataFrame):
    """The fit's data module and model over `table`, without caches (building them is the
    run's long work, and writes). The weights are checked on their own: random ones cost the
    same to train."""
    from geoguesser.data.datamodule import GeoDataModule
    from geoguesser.model.locator import GeoLocator

    train = settings.train.model_copy(
        update={"weights": None, "image_cache_dir": None, "feature_cache": False}
    )
    datamodule = GeoDataModule(table, train)
    datamodule.setup("fit")
    return datamodule, GeoLocator(prepared.geography, train, datamodule.mean, datamodule.std)


def existing_parent(path: Path) -> Path:
    path = Path(path).absolute()
    while not path.exists():
        path = path.parent
    return path


def cache_needs(settings: Settings, table: pd.DataFrame) -> int:
    """Bytes the image cache will add: every dataset folder not yet cached at this size."""
    from geoguesser.data.image_cache import array_bytes, cache_stem

    s = settings.train
    if s.image_cache_dir is None:
        return 0
    needed = 0
    for directory, group in table.groupby("dataset_dir"):
        array = cache_stem(s.image_cache_dir, directory, s.image_size).with_suffix(".npy")
        size = array_bytes(len(group), s.image_size)
        if not (array.is_file() and array.stat().st_size >= size):
            needed += size
    return needed


def checkpoint_bytes(model) -> int:
    """The checkpoints on disk at once: weights plus the optimizer's moments, in each file."""
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    moments = ADAM_MOMENTS * sum(p.numel() * 4 for p in model.parameters())
    return CHECKPOINT_FILES * (weights + moments)


def disk_rows(settings: Settings, table: pd.DataFrame, model, runs_root: Path) -> list[Row]:
    """Free disk (shutil.disk_usage) against the image cache and checkpoints, per file system."""
    needs = [("checkpoints", existing_parent(runs_root), checkpoint_bytes(model))]
    if settings.train.image_cache_dir is not None:
        cache = existing_parent(settings.train.image_cache_dir)
        needs.append(("image cache", cache, cache_needs(settings, table)))
    by_device: dict[int, list] = {}
    for what, where, n_bytes in needs:
        by_device.setdefault(where.stat().st_dev, []).append((what, where, n_bytes))
    rows = []
    for group in by_device.values():
        where = group[0][1]
        free = shutil.disk_usage(where).free
        total = sum(n for _, _, n in group)
        parts = ", ".join(f"{what} {gb(n)} in {path}" for what, path, n in group)
        row = Row("disk", f"{gb(total)} needed ({parts}), {gb(free)} free there")
        if total > free:
            row.blocker = f"disk: {where} has {gb(free)} free, the run needs {gb(total)} ({parts})"
        rows.append(row)
    return rows


def available_memory() -> int:
    """Host memory available to new allocations: MemAvailable, else free pages (os.sysconf)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def memory_row(settings: Settings, prepared: Prepared, model) -> Row:
    """Host memory against the feature store every process keeps while the backbone is frozen."""
    from geoguesser.data.layout import VIEWS

    s = settings.train
    if not (s.feature_cache and s.freeze_epochs > 0):
        return Row("host memory", "no feature store (no frozen epochs, or feature_cache off)")
    locations = prepared.count("train") + prepared.count("val")
    processes = processes_per_node(settings)
    dim = model.net.fusion.dim
    store = dim * len(VIEWS) * 4 * locations * processes
    available = available_memory()
    detail = (
        f"feature store {gb(store)} (D={dim} x {len(VIEWS)} views x float32 x {locations}"
        f" train+val locations x {processes} process(es)), {gb(available)} available"
    )
    row = Row("host memory", detail)
    if store > available:
        row.blocker = f"host memory: the feature store needs {gb(store)}, {gb(available)} available"
    return row


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


def check(settings: Settings, runs_root: Path, config_file: Path | None = None) -> list[Row]:
    """Every row of the dry run, in order; later checks run only where earlier ones allow."""
    rows = [settings_row(settings, config_file)]
    data_rows, prepared = prepare_tables(settings)
    rows += data_rows
    rows.append(weights_row(settings))
    accelerator = accelerator_row(settings)
    rows.append(accelerator)
    if prepared is None:
        return rows + [Row("disk, memory, step", "not checked: the datasets come first")]
    try:
        if accelerator.blocker is None:
            probe, model = measure_steps(settings, prepared)
        else:
            probe, model = None, build_model(settings, prepared, probe_table(prepared, 1))[1]
    except UserError as error:
        return rows + [Row("model", "cannot be built", str(error).splitlines()[0])]
    except torch.cuda.OutOfMemoryError:  # what a dry run is for: found now, not in hours
        s = settings.train
        blocker = (
            f"train.batch_size {s.batch_size} at {s.image_size} px does not fit the GPU's"
            " memory: use a smaller batch or image size"
        )
        return rows + [Row("step", "out of memory", blocker)]
    rows += disk_rows(settings, prepared.table, model, runs_root)
    rows.append(memory_row(settings, prepared, model))
    if probe is None:
        return rows + [Row("step", "not measured: no accelerator to train on")]
    return rows + step_rows(settings, prepared, probe)


def format_table(rows: list[Row]) -> str:
    width = max(len(row.check) for row in rows)
    lines = []
    for row in rows:
        mark = "BLOCKED  " if row.blocker else ""
        lines.append(f"  {row.check:<{width}}  {mark}{row.result}")
    return "\n".join(lines)


def blockers(rows: list[Row], prefix: str = "") -> list[str]:
    return [f"{prefix}{row.blocker}" for row in rows if row.blocker]


def dry_run(members: list[tuple[str, Settings]], runs_root: Path, config_file: Path | None) -> int:
    """Print each member's table (one for a plain run); raise the blockers, one line each."""
    found = []
    for label, settings in members:
        print(f"dry run of {label}: nothing is written", flush=True)
        rows = check(settings, runs_root, config_file)
        print(format_table(rows), flush=True)
        found += blockers(rows, f"{label}: " if len(members) > 1 else "")
    if found:
        raise UserError("\n".join(found))
    print("no blockers: the run can start", file=sys.stdout)
    return 0
