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

The checks are in `dryrun_data` (steps 01-03 in memory), `dryrun_machine` (weights,
accelerator, disk, memory) and `dryrun_step` (the timed steps); this module runs them in order.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from geoguesser.config import Settings
from geoguesser.errors import UserError
from geoguesser.workflow.dryrun_data import build_model, prepare_tables
from geoguesser.workflow.dryrun_machine import accelerator_row, disk_rows, memory_row, weights_row
from geoguesser.workflow.dryrun_step import measure_steps, probe_table, step_rows
from geoguesser.workflow.dryrun_table import Row, blockers, format_table


def settings_row(settings: Settings, config_file: Path | None) -> Row:
    """The settings passed their checks before the dry run began (load_settings, as a run)."""
    source = f" ({config_file})" if config_file else ""
    return Row("settings", f"checked{source}: run {settings.name}")


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
