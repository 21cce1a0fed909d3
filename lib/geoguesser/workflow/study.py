"""A tuning study in its database: opening it, what its trials came to, and its best trial.

The study lives in `runs/<study>/study.db` (SQLite) unless `--storage` names another
SQLAlchemy URL (PostgreSQL for workers on several nodes). It is opened through Optuna's RDB
storage with a heartbeat: each running trial's worker beats every `heartbeat.interval_s`,
a trial silent for `heartbeat.grace_s` (its worker died) is marked failed by the next worker
that looks, and `RetryHeartbeatStaleTrialCallback` re-enqueues it with its parameters and its
reported epochs; its retry continues the same run folder. SQLite waits up to
`SQLITE_TIMEOUT_S` for another worker's write instead of failing at once.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import yaml

from geoguesser.atomic import write_text
from geoguesser.errors import UserError
from geoguesser.training.pruning import PRUNED_AT, make_pruner
from geoguesser.workflow.runs import recorded_settings
from geoguesser.workflow.space import Space

DB_NAME = "study.db"
BEST_NAME = "best.yaml"
SQLITE_TIMEOUT_S = 60
RUN_ATTR = "run"  # a trial's user attribute: its run folder's name
EPOCHS_ATTR = "max_epochs"
IMPORTANCE_TRIALS = 3  # fewer complete trials explain nothing (and PED-ANOVA needs some)


def default_storage(study_dir: Path) -> str:
    return f"sqlite:///{Path(study_dir).absolute() / DB_NAME}"


def retry_callback(max_retry: int | None):
    """Optuna's re-enqueueing of a failed trial, with its parameters and reported epochs."""
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    with warnings.catch_warnings():  # experimental in Optuna 5
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RetryHeartbeatStaleTrialCallback(max_retry, inherit_intermediate_values=True)


def storage_of(url: str, space: Space | None = None):
    """Optuna's RDB storage at `url`, with the space's heartbeat and retry of dead trials."""
    import optuna
    from optuna.storages import RDBStorage

    engine = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}} if url.startswith("sqlite") else {}
    beat = {}
    if space is not None:
        heartbeat = space.heartbeat
        retry = retry_callback(heartbeat.max_retry)
        beat = dict(
            heartbeat_interval=heartbeat.interval_s,
            grace_period=heartbeat.grace_s,
            heartbeat_stale_trial_callback=retry,
        )
    try:
        return RDBStorage(url, engine_kwargs=engine, **beat)
    except (ImportError, ValueError, optuna.exceptions.StorageInternalError) as error:
        raise UserError(f"--storage {url}: {str(error).splitlines()[0]}") from None


def sampler_of(space: Space, worker: int):
    """The space's sampler; worker W draws with seed + W, so workers start at other points."""
    import optuna

    spec = space.sampler
    if spec.kind == "random":
        return optuna.samplers.RandomSampler(seed=spec.seed + worker)
    return optuna.samplers.TPESampler(
        seed=spec.seed + worker, n_startup_trials=spec.n_startup_trials
    )


def space_record(space: Space) -> dict:
    """The space as the study remembers it: a resumed study must search the same space."""
    params = {
        key: value if isinstance(value, list) else value.model_dump()
        for key, value in sorted(space.params.items())
    }
    return json.loads(json.dumps({"params": params, **space.model_dump(mode="json")}))


def open_study(name: str, url: str, space: Space, worker: int = 0):
    """The study `name` at `url`, created when new; a study of another space is refused."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=name,
        storage=storage_of(url, space),
        sampler=sampler_of(space, worker),
        pruner=make_pruner(space.pruner.model_dump()),
        direction=space.objective.goal,
        load_if_exists=True,
    )
    record = space_record(space)
    known = study.user_attrs.get("space")
    if known is None:
        study.set_user_attr("space", record)
    elif known != record:
        raise UserError(
            f"study {name} ({url}) searches another space than this space file; "
            "give it its own --study name"
        )
    return study


def load_study(name: str, url: str):
    """An existing study, to look at (notebook 07); one line when there is none."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.load_study(study_name=name, storage=storage_of(url))
    except KeyError:
        raise UserError(f"no study {name} in {url}") from None


def pruned_after(trial) -> int | None:
    return trial.user_attrs.get(PRUNED_AT)


def epochs_run(trial) -> int | None:
    """The epochs a finished trial's fit ran: all of them, or up to its pruning."""
    from optuna.trial import TrialState

    if trial.state == TrialState.PRUNED:
        return pruned_after(trial) or trial.last_step
    if trial.state == TrialState.COMPLETE:
        return trial.user_attrs.get(EPOCHS_ATTR)
    return None


def pruning_statistics(study) -> dict:
    """Trials by state, and the epochs pruning saved of those the finished trials asked for."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    counts = {state.name.lower(): 0 for state in TrialState}
    for trial in trials:
        counts[trial.state.name.lower()] += 1
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    asked = sum(t.user_attrs.get(EPOCHS_ATTR) or 0 for t in finished)
    ran = sum(epochs_run(t) or 0 for t in finished)
    return {**counts, "epochs_asked": asked, "epochs_run": ran, "epochs_saved": asked - ran}


def objective_metric(study) -> str:
    """The metric the study optimizes, as its space file named it."""
    return study.user_attrs.get("space", {}).get("objective", {}).get("metric", "mean_km")


def best_table(study, top: int = 10) -> str:
    """The best finished trials, best first, their parameters, then every trial counted."""
    from optuna.trial import TrialState

    metric = objective_metric(study)
    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    maximize = study.direction.name == "MAXIMIZE"
    done.sort(key=lambda t: t.value, reverse=maximize)
    keys = sorted({key for t in done for key in t.params})
    header = [f"{'#':>4}", f"{'val ' + metric:>12}", f"{'epochs':>6}", *keys]
    lines = ["  ".join(header)]
    for trial in done[:top]:
        shown = [_value(trial.params.get(key)).rjust(len(key)) for key in keys]
        row = [f"{trial.number:>4}", f"{trial.value:>12.2f}", f"{epochs_run(trial) or '-':>6}"]
        lines.append("  ".join(row + shown))
    stats = pruning_statistics(study)
    lines.append(
        f"{len(study.trials)} trials: {stats['complete']} complete, {stats['pruned']} pruned "
        f"(saving {stats['epochs_saved']} of {stats['epochs_asked']} epochs), "
        f"{stats['fail']} failed, {stats['running']} running, {stats['waiting']} waiting"
    )
    return "\n".join(lines)


def _value(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def best_trial(study):
    """The best complete trial, or None while there is none."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return study.best_trial
        except ValueError:
            return None


def write_best_config(study, study_dir: Path) -> Path | None:
    """The best trial's settings as a config of a plain run `<study>-best`, in the study folder."""
    best = best_trial(study)
    if best is None or RUN_ATTR not in best.user_attrs:  # none yet, or one added by hand
        return None
    settings = recorded_settings(Path(study_dir) / best.user_attrs[RUN_ATTR])
    if settings is None:
        return None
    settings["name"] = f"{Path(study_dir).name}-best"
    header = f"# study {study.study_name}: its best trial, {best.number}, scored {best.value:.2f}\n"
    text = header + yaml.safe_dump(settings, sort_keys=False)
    return write_text(Path(study_dir) / BEST_NAME, text)


def study_figures(study) -> dict:
    """Optuna's matplotlib figures of the study: history, each trial's epochs, importances."""
    import optuna
    from optuna.importance import PedAnovaImportanceEvaluator
    from optuna.trial import TrialState
    from optuna.visualization import matplotlib as plots

    target_name = f"val {objective_metric(study)}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        figures = {
            "history": plots.plot_optimization_history(study, target_name=target_name).figure,
            "epochs": plots.plot_intermediate_values(study).figure,
        }
        complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if len(complete) >= IMPORTANCE_TRIALS:
            figures["importances"] = plots.plot_param_importances(
                study, evaluator=PedAnovaImportanceEvaluator(), target_name=target_name
            ).figure
        else:
            print(f"parameter importances need {IMPORTANCE_TRIALS} complete trials "
                  f"({len(complete)} so far)")  # fmt: skip
    return figures
