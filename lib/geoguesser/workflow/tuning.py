"""`geoguesser tune`: an Optuna study whose trials are ordinary runs under `runs/<study>/`.

Each trial draws its settings from the space file, and runs as a sweep member does
(`sweeps.run_member`): checked settings, a safe folder `trial-NNN`, the five steps, resume
of an unfinished folder, `metrics.json` last. Its score is the validation metric the space
names, read from `metrics.json` (the test split is never read). The fit finds its trial in
the environment (training/pruning.py) and may be pruned after an epoch; the run still
finishes, and the trial is told it was pruned.

`--trials N` is the study's budget, shared by every worker: a worker starts another trial
while fewer than N are complete, pruned, failed for good or running, or when a retry is
waiting. A trial whose worker died is failed by the heartbeat and retried (study.py); its
retry keeps the folder of the trial it retries, so it resumes that run. A tune stopped with
Ctrl-C re-enqueues its trial in the same way: the next tune on the study continues it.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from geoguesser.atomic import locked, write_text
from geoguesser.config import load_settings
from geoguesser.errors import UserError
from geoguesser.training.pruning import trial_environment
from geoguesser.workflow.pipeline import Interrupted
from geoguesser.workflow.runs import is_run, run_folder
from geoguesser.workflow.space import IntRange, Space, load_space, override
from geoguesser.workflow.study import (
    EPOCHS_ATTR,
    RUN_ATTR,
    best_table,
    default_storage,
    open_study,
    pruned_after,
    retry_callback,
)
from geoguesser.workflow.sweeps import Member, run_member

STUDY_MARKER = ".geoguesser-study"
SUMMARY_NAME = "summary.txt"


class TrialFailed(Exception):
    """The trial's run failed (a step raised, or its folder cannot be continued)."""


@dataclass
class Tuning:
    """What every trial of this worker shares: the study's config, space and places."""

    config: Path
    overrides: list[str]
    space: Space
    study_dir: Path
    storage: str
    notebooks: Path | None = None

    @property
    def name(self) -> str:
        return self.study_dir.name


def plan(
    config: Path,
    overrides: list[str],
    space_file: Path,
    runs_root: Path,
    study: str | None,
    storage: str | None,
) -> Tuning:
    """Everything checked before the study is touched: settings, space, the study's folder."""
    base = load_settings(config, overrides)
    space = load_space(space_file, config, overrides)
    study_dir = run_folder(runs_root, study or base.name)
    if is_run(study_dir):
        raise UserError(f"{study_dir}: is a single run, not a study; choose another --study")
    return Tuning(config, list(overrides), space, study_dir, storage or default_storage(study_dir))


def retried(frozen) -> list[int]:
    """The numbers of the trials a (frozen) trial retries, the first first."""
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RetryHeartbeatStaleTrialCallback.retry_history(frozen)


def folder_number(trial) -> int:
    """The number of the trial whose folder this one uses: the first it retries, or its own."""
    history = retried(trial.study.get_trials(deepcopy=False)[trial.number])
    return history[0] if history else trial.number


def suggest(trial, key: str, value):
    if isinstance(value, list):
        return trial.suggest_categorical(key, value)
    if isinstance(value, IntRange):
        return trial.suggest_int(key, value.low, value.high, step=value.step, log=value.log)
    return trial.suggest_float(key, value.low, value.high, step=value.step, log=value.log)


def trial_member(tuning: Tuning, trial) -> Member:
    """The trial as a sweep member: its drawn values as overrides on the study's config."""
    params = tuning.space.params.items()
    drawn = [override(key, suggest(trial, key, value)) for key, value in params]
    name = f"trial-{folder_number(trial):03d}"
    overrides = [*tuning.overrides, *drawn]
    try:  # each value passed alone; together they may still clash (view_dropout with concat)
        settings = load_settings(tuning.config, [*overrides, f"name={name}"])
    except UserError as error:
        raise TrialFailed(f"trial {trial.number}: {str(error).splitlines()[0]}") from None
    return Member(folder_number(trial), name, overrides, settings)


@contextlib.contextmanager
def environment(values: dict[str, str]):
    """`values` in os.environ while the block runs (the kernels and the fit inherit them)."""
    before = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def objective(tuning: Tuning, current: dict):
    """The function Optuna calls per trial: run it, return its score or raise TrialPruned."""
    import optuna

    metric = tuning.space.objective.metric

    def run_trial(trial) -> float:
        current["trial"] = trial
        member = trial_member(tuning, trial)
        trial.set_user_attr(RUN_ATTR, member.name)
        trial.set_user_attr(EPOCHS_ATTR, member.settings.train.max_epochs)
        drawn = " ".join(member.overrides[len(tuning.overrides) :])
        print(f"== trial {trial.number}: {member.name} {drawn}", flush=True)
        env = trial_environment(
            tuning.storage, tuning.name, trial._trial_id, metric, tuning.space.pruner.model_dump()
        )
        with environment(env):
            outcome = run_member(
                member, tuning.study_dir, False, config_file=tuning.config,
                notebook_dir=tuning.notebooks,
            )  # fmt: skip
        if outcome.status == "failed":
            raise TrialFailed(f"trial {trial.number} ({member.name}): {outcome.detail}")
        epoch = pruned_after(trial.study.trials[trial.number])
        if epoch is not None:
            raise optuna.TrialPruned(f"pruned after epoch {epoch}")
        try:
            return float(outcome.metrics["val"][metric])
        except (TypeError, KeyError):
            raise TrialFailed(f"{member.name}: metrics.json has no val {metric}") from None

    return run_trial


def budget_spent(study, trials: int) -> bool:
    """Whether the study has its `trials` (complete, pruned, failed for good or running) and
    no retry waiting: then no worker starts another."""
    from optuna.trial import TrialState

    every = study.get_trials(deepcopy=False)
    again = {n for t in every for n in retried(t)}
    if any(t.state == TrialState.WAITING for t in every):
        return False
    counted = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    used = [t for t in every if t.state in counted or t.state == TrialState.FAIL]
    return len([t for t in used if t.number not in again]) >= trials


def write_summary(tuning: Tuning, study) -> Path:
    with locked(tuning.study_dir / STUDY_MARKER):
        table = best_table(study)
        return write_text(tuning.study_dir / SUMMARY_NAME, table + "\n")


def tune(tuning: Tuning, trials: int, worker: int = 0):
    """Run trials of the study until its budget is spent; returns the study."""
    import optuna
    from optuna.storages import fail_stale_trials

    tuning.study_dir.mkdir(parents=True, exist_ok=True)
    (tuning.study_dir / STUDY_MARKER).touch()
    with locked(tuning.study_dir / STUDY_MARKER):  # workers starting together create it once
        study = open_study(tuning.name, tuning.storage, tuning.space, worker)
    with warnings.catch_warnings():  # experimental in Optuna 5
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        fail_stale_trials(study)  # trials of dead workers: failed, and their retries enqueued

    def after_each(study, trial) -> None:
        if trial.state == optuna.trial.TrialState.FAIL and trial.user_attrs.get(RUN_ATTR):
            print(f"trial {trial.number} failed", flush=True)
        write_summary(tuning, study)
        if budget_spent(study, trials):
            study.stop()

    current: dict = {}
    if not budget_spent(study, trials):
        try:
            study.optimize(
                objective(tuning, current), callbacks=[after_each], catch=(TrialFailed,),
                gc_after_trial=True,
            )  # fmt: skip
        except (Interrupted, KeyboardInterrupt):
            trial = current.get("trial")
            if trial is not None:  # failed by Optuna: enqueue its retry, as for a dead worker
                frozen = study.trials[trial.number]
                retry_callback(None)(study, frozen)
            raise
    write_summary(tuning, study)
    return study
