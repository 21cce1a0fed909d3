"""Run folders: where they may be, what marks them as ours, and what they record.

A run folder is `RUNS_ROOT/<name>`, with a name that is one plain folder name, so it can
never resolve outside the runs root. The folder carries a marker file written when it was
created; `--overwrite` replaces only a folder holding that marker, so no path a user types
can make this program delete something it did not create. `config.yaml` holds the resolved
settings of the latest invocation at its top level and a `history` of every invocation;
`metrics.json` is written last by the last step, so a run is finished when it exists.

The marker also records, for each step that ran, the settings its outputs were made with
(`made_with`: the sections that step and the steps before it read). A step refuses inputs
made with other settings, in one line, as the fit refuses a checkpoint of another
fingerprint; and starting a step, headless (`--from`) or in JupyterLab, invalidates it and
every later step the same way (`restart_at`): they are no longer completed, their records
are dropped and `metrics.json` is removed until step 05 writes it again.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import yaml

from geoguesser import __version__
from geoguesser.atomic import locked, write_text
from geoguesser.config import Settings, check_run_name, load_settings
from geoguesser.errors import UserError

STEPS = ["01-eda", "02-grid", "03-crs-enrichment", "04-training", "05-error-maps"]
MARKER = ".geoguesser-run"
LOCK_NAME = ".geoguesser-lock"  # created beside the marker, never removed (that would race)
IN_USE = "another geoguesser run is using this folder; wait for it to end, or choose another name"
CONFIG_NAME = "config.yaml"
FINISHED_NAME = "metrics.json"
# The settings sections each step's outputs depend on, besides those of the steps before it.
STEP_SECTIONS = {
    "01-eda": ("data", "split"),
    "02-grid": ("grid",),
    "03-crs-enrichment": (),
    "04-training": ("train",),
    "05-error-maps": ("maps",),
}


def find_checkout(start: str | Path) -> Path | None:
    """The geoguesser checkout holding `start` (its folder or a parent with the notebooks)."""
    start = Path(start).absolute()
    for folder in [start, *start.parents]:
        if all((folder / "notebooks" / f"{step}.ipynb").is_file() for step in STEPS):
            return folder
    return None


def code_version(checkout: Path | None) -> dict:
    """The package version, where the library was imported from, and the checkout's commit."""
    import geoguesser

    version = {
        "geoguesser": __version__,
        "python": sys.version.split()[0],
        "library": str(Path(geoguesser.__file__).parent),
        "checkout": str(checkout) if checkout else None,
        "commit": None,
    }
    if checkout is None:
        return version
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=checkout, capture_output=True, text=True, check=True
        )
        status = subprocess.run(
            ["git", "status", "--porcelain"],
            cwd=checkout,
            capture_output=True,
            text=True,
            check=True,
        )
        version.update(commit=commit.stdout.strip(), dirty=bool(status.stdout.strip()))
    except (OSError, subprocess.CalledProcessError):
        pass
    return version


def run_folder(runs_root: str | Path, name: str) -> Path:
    """`runs_root/name`, refusing any name that is not a single plain folder name."""
    try:
        check_run_name(name)
    except ValueError as exc:
        raise UserError(f"run name {exc}") from None
    root = Path(runs_root).absolute()
    run_dir = root / name
    if run_dir.is_symlink():
        raise UserError(f"{run_dir}: is a symbolic link; a run folder must be a real folder")
    return run_dir


def is_run(folder: Path) -> bool:
    return (folder / MARKER).is_file() and not folder.is_symlink()


def _state(run_dir: Path) -> dict:
    try:
        state = json.loads((run_dir / MARKER).read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _write_state(run_dir: Path, state: dict) -> None:
    write_text(run_dir / MARKER, json.dumps(state))


def completed_steps(run_dir: Path) -> list[str]:
    return [step for step in _state(run_dir).get("completed", []) if step in STEPS]


def mark_completed(run_dir: Path, steps: list[str]) -> None:
    _write_state(run_dir, {**_state(run_dir), "completed": steps})


def made_with(settings: Settings, step: str) -> dict:
    """The settings `step`'s outputs depend on, as flat `section.key: value` pairs."""
    values = settings.to_yaml_dict()
    sections = [name for s in STEPS[: STEPS.index(step) + 1] for name in STEP_SECTIONS[s]]
    return {f"{name}.{key}": value for name in sections for key, value in values[name].items()}


def restart_at(run_dir: Path, first: int) -> None:
    """Step `first` and every later one are to be (re)made: what depends on them is stale.

    The one place both `geoguesser run --from` and a step opened in JupyterLab invalidate
    later work: only the steps before `first` stay completed, the later steps' records of
    their settings go, and the run is unfinished (no `metrics.json`) until step 05 ends.
    """
    state = _state(run_dir)
    kept = {k: v for k, v in state.get("made_with", {}).items() if k in STEPS[:first]}
    _write_state(run_dir, {**state, "completed": STEPS[:first], "made_with": kept})
    (run_dir / FINISHED_NAME).unlink(missing_ok=True)


def check_inputs(run_dir: Path, step: str, settings: Settings) -> None:
    """Refuse, in one line, inputs that earlier steps made with other settings (or never made)."""
    state = _state(run_dir)
    records, completed = state.get("made_with", {}), state.get("completed", [])
    for earlier in STEPS[: STEPS.index(step)]:
        record = records.get(earlier)
        if record is None:
            if earlier in completed:  # a run from before these records: nothing to compare
                continue
            raise UserError(f"{run_dir}: step {earlier} has not run; run it before {step}")
        now = made_with(settings, earlier)
        for key, value in record.items():
            if now.get(key) != value:
                raise UserError(
                    f"{run_dir}: {earlier} made its outputs with {key}={value!r}, the run's"
                    f" settings now say {now.get(key)!r}; re-run {earlier} first"
                )


def record_made_with(run_dir: Path, step: str, settings: Settings) -> None:
    state = _state(run_dir)
    records = {**state.get("made_with", {}), step: made_with(settings, step)}
    _write_state(run_dir, {**state, "made_with": records})


def first_unfinished(run_dir: Path) -> str | None:
    done = completed_steps(run_dir)
    return next((step for step in STEPS if step not in done), None)


def is_finished(run_dir: Path) -> bool:
    return (run_dir / FINISHED_NAME).is_file()


def step_index(start_from: str | None, option: str = "--from") -> int:
    if start_from is None:
        return 0
    matches = [i for i, step in enumerate(STEPS) if step.startswith(start_from)]
    if len(matches) != 1:
        raise UserError(f"{option} {start_from!r}: choose one of {', '.join(s[:2] for s in STEPS)}")
    return matches[0]


@contextlib.contextmanager
def prepare(run_dir: Path, first: int, overwrite: bool) -> Iterator[None]:
    """Create, replace or reopen the run folder, held for this run alone until the block ends.

    Call only once the settings passed their checks. Starting at step 1 needs a new folder,
    or `overwrite` and a folder this program made; starting later needs an existing run.
    Either way the run is unfinished from here on. Two runs of one folder at once (the same
    command in two terminals, an array job resubmitted while its tasks still run) would
    write into each other's steps: the second stops in one line before it touches anything.
    """
    with contextlib.ExitStack() as held:
        if is_run(run_dir):
            _hold(held, run_dir)
        if first == 0 and run_dir.exists():
            if not overwrite:
                hint = first_unfinished(run_dir) if is_run(run_dir) else None
                if hint == STEPS[0]:  # --from 01 is this very refusal
                    hint = None
                more = f", or continue it with --from {hint[:2]}" if hint else ""
                raise UserError(f"{run_dir}: exists; pass --overwrite to replace it{more}")
            if not is_run(run_dir):
                raise UserError(
                    f"{run_dir}: not a geoguesser run folder (no {MARKER}); refusing to replace it"
                )
            shutil.rmtree(run_dir)
        if first > 0:
            if not is_run(run_dir):
                raise UserError(f"{run_dir}: no run to continue from step {STEPS[first]}")
            missing = [step for step in STEPS[:first] if step not in completed_steps(run_dir)]
            if missing:
                raise UserError(
                    f"{run_dir}: step {missing[0]} has not completed; continue with --from "
                    f"{missing[0][:2]}"
                )
        else:
            try:  # only one of several runs started together on one name makes the folder
                run_dir.mkdir(parents=True)
            except FileExistsError:
                raise UserError(f"{run_dir}: {IN_USE}") from None
            _hold(held, run_dir)
        restart_at(run_dir, first)
        yield


def _hold(held: contextlib.ExitStack, run_dir: Path) -> None:
    """Take the run's lock into `held`, or stop in one line when another process holds it."""
    try:
        held.enter_context(locked(run_dir / LOCK_NAME, wait=False))
    except BlockingIOError:
        raise UserError(f"{run_dir}: {IN_USE}") from None


def recorded_settings(run_dir: Path) -> dict | None:
    """The settings the run's latest invocation resolved (without the history)."""
    try:
        recorded = yaml.safe_load((run_dir / CONFIG_NAME).read_text())
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(recorded, dict):
        return None
    recorded.pop("history", None)
    return recorded


def record_invocation(
    run_dir: Path,
    settings: Settings,
    steps: list[str],
    config_file: str | Path | None,
    overrides: list[str],
    checkout: Path | None,
) -> None:
    """Write the resolved settings at the top of config.yaml and append this invocation."""
    path = run_dir / CONFIG_NAME
    history = []
    if path.is_file():
        try:
            history = (yaml.safe_load(path.read_text()) or {}).get("history", []) or []
        except yaml.YAMLError:
            history = []
    history.append(
        {
            "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "steps": steps,
            "config_file": str(Path(config_file).absolute()) if config_file else None,
            "overrides": list(overrides),
            "code_version": code_version(checkout),
        }
    )
    document = {**settings.to_yaml_dict(), "history": history}
    write_text(path, yaml.safe_dump(document, sort_keys=False))


def move_to_checkout() -> Path | None:
    """Make the checkout holding the current folder the current folder (a notebook in Lab
    starts in notebooks/), so relative paths mean what they mean on the command line there."""
    import os

    checkout = find_checkout(Path.cwd())
    if checkout is not None:
        os.chdir(checkout)
    return checkout


def _started_from(run_dir: Path) -> Path | None:
    """The config file the run's invocations named last (not its own config.yaml)."""
    try:
        history = (yaml.safe_load((run_dir / CONFIG_NAME).read_text()) or {}).get("history")
    except (OSError, yaml.YAMLError, AttributeError):
        return None
    named = [entry.get("config_file") for entry in history or [] if isinstance(entry, dict)]
    named = [Path(p) for p in named if p and Path(p) != run_dir / CONFIG_NAME]
    return named[-1] if named else None


def interactive_settings(
    run_dir: Path, config: str | Path | None, overrides: list[str]
) -> Settings:
    """A step's settings in JupyterLab: the run's own config.yaml with the notebook's overrides.

    A run has one set of settings: what one step changed, the next ones use. `config` only
    starts a new run; naming another config file for an existing run is refused.
    """
    own = run_dir / CONFIG_NAME
    if not (is_run(run_dir) and own.is_file()):
        return load_settings(config, overrides)
    started = _started_from(run_dir)
    if config is not None and Path(config).absolute() not in (own, started):
        raise UserError(
            f"config {config}: {run_dir} was made from {started}; its settings are in {own}"
            " (change them with overrides), or choose another run_dir for this config"
        )
    return load_settings(own, overrides)


def open_step(
    step: str, run_dir: str | Path, config: str | Path | None, overrides: list[str]
) -> tuple[Settings, Path]:
    """What a notebook's first cell calls: settings resolved through the schema, and its run.

    Run interactively, the kernel starts in the notebook's folder: the notebook moves to its
    checkout's root, so the relative paths of configs/*.yaml mean what they mean on the
    command line there. Its settings are the run's (`interactive_settings`); it refuses
    inputs made with other settings, invalidates itself and the later steps (`restart_at`,
    as `--from` does), and records its invocation and settings in the run's config.yaml.
    Under `geoguesser run` the run is already prepared and recorded: the step only checks
    its inputs and records what it makes its outputs with.
    """
    from geoguesser.progress import headless

    checkout = move_to_checkout()
    run_dir = Path(run_dir).absolute()
    if headless() and config is not None and Path(config).absolute() == run_dir / CONFIG_NAME:
        settings = load_settings(config, overrides)
        check_inputs(run_dir, step, settings)
        record_made_with(run_dir, step, settings)
        return settings, run_dir
    if run_dir.exists() and not is_run(run_dir):
        raise UserError(f"{run_dir}: exists and is not a geoguesser run folder; choose another")
    settings = interactive_settings(run_dir, config, overrides)
    if is_run(run_dir):
        check_inputs(run_dir, step, settings)
    elif step != STEPS[0]:
        raise UserError(f"{run_dir}: no run yet; start it with {STEPS[0]}")
    run_dir.mkdir(parents=True, exist_ok=True)
    restart_at(run_dir, STEPS.index(step))
    record_made_with(run_dir, step, settings)
    record_invocation(run_dir, settings, [step], config, overrides, checkout)
    return settings, run_dir


def result_line(run_dir: Path) -> str:
    """The finished run's headline: test mean and median km against the train-mean baseline.

    A run without a test split (a 0 test share) reports its validation split, and says so.
    """
    try:
        metrics = json.loads((run_dir / FINISHED_NAME).read_text())
        split = "test" if "test" in metrics else "val"
        numbers = metrics[split]
        note = "" if split == "test" else " (no test split)"
        return (
            f"result: {split} mean {numbers['mean_km']:.1f} km, median "
            f"{numbers['median_km']:.1f} km (n={numbers['n']}); always answering the training "
            f"mean: {numbers['baseline_mean_km']:.1f} km{note}"
        )
    except (OSError, ValueError, KeyError, TypeError):
        return f"result: {run_dir / FINISHED_NAME} has no validation or test metrics"
