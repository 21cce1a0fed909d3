"""What a run asks of this machine, checked before it starts: weights that load, an
accelerator that can train, free disk for checkpoints and the image cache, host memory for
the feature store.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import pandas as pd
import torch

from geoguesser.config import Settings
from geoguesser.errors import UserError
from geoguesser.workflow.dryrun_data import Prepared
from geoguesser.workflow.dryrun_table import Row, gb

BEST_KEPT = 1  # train.EpochCheckpoint keeps the best checkpoint (save_top_k 1) ...
CHECKPOINT_FILES = BEST_KEPT + 2  # ... and last.ckpt, and one being written beside its name
ADAM_MOMENTS = 2  # Adam and AdamW keep two float32 moments a parameter in the checkpoint


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
    mirrored = s.tta == "mirror"  # validation's mirrored scenes are cached too
    locations = prepared.count("train") + prepared.count("val") * (2 if mirrored else 1)
    processes = processes_per_node(settings)
    dim = model.net.fusion.dim
    store = dim * len(VIEWS) * 4 * locations * processes
    available = available_memory()
    which = "train+val (val twice: tta mirror)" if mirrored else "train+val"
    detail = (
        f"feature store {gb(store)} (D={dim} x {len(VIEWS)} views x float32 x {locations}"
        f" {which} locations x {processes} process(es)), {gb(available)} available"
    )
    row = Row("host memory", detail)
    if store > available:
        row.blocker = f"host memory: the feature store needs {gb(store)}, {gb(available)} available"
    return row
