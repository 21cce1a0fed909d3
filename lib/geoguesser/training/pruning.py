"""Pruning a tuning trial from inside the fit: report each epoch's score, stop when told to.

`geoguesser tune` runs each trial as an ordinary run, whose step 04 starts the fit as a
process of its own (`geoguesser train`, or its ranks under torchrun and srun). That process
finds its trial in the environment (`TRIAL_ENV`: storage URL, study name, trial id and the
metric), not in the run's settings: the settings stay exactly those a plain run of the same
values has (the fit's fingerprint and a rerun of the best trial agree with it), a database
URL with a password never lands in `config.yaml`, and every rank inherits the environment.

After each validation, rank 0 alone opens the study, reports the epoch's score and asks the
pruner; its answer is broadcast so every rank stops after the same epoch. A pruned fit is
not an error: Lightning ends it after that epoch, the fit tests and predicts as usual, and
the run finishes; the trial records the epoch (`PRUNED_AT`), which tune reads to mark it.
optuna-integration's callback is not used: it subclasses `lightning.pytorch`'s Callback,
which `pytorch_lightning`'s Trainer refuses, and unless under DDP it raises TrialPruned
inside the fit, which would make a pruned trial a failed run.
"""

from __future__ import annotations

import json
import os

from pytorch_lightning.callbacks import Callback

TRIAL_ENV = "GEOGUESSER_TRIAL"
PRUNED_AT = "pruned_after_epoch"  # the trial's user attribute: the last epoch it ran (from 1)


def make_pruner(spec: dict):
    """Optuna's pruner for a space file's `pruner` section (as a plain dict, `kind` first)."""
    import optuna

    options = {key: value for key, value in spec.items() if key != "kind"}
    kind = spec["kind"]
    if kind == "median":
        return optuna.pruners.MedianPruner(**options)
    if kind == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(**options)
    return optuna.pruners.NopPruner()


def trial_environment(
    storage: str, study: str, trial_id: int, metric: str, pruner: dict
) -> dict[str, str]:
    """What tune puts in the environment of a trial's run (read back by `from_environment`)."""
    described = {"storage": storage, "study": study, "trial_id": trial_id, "metric": metric}
    return {TRIAL_ENV: json.dumps({**described, "pruner": pruner})}


class TrialPruning(Callback):
    """Reports `val/<metric>` to the trial after each validation; stops the fit when pruned."""

    def __init__(self, storage: str, study: str, trial_id: int, metric: str, pruner: dict):
        self.storage, self.study_name, self.trial_id = storage, study, trial_id
        self.monitor, self.pruner = f"val/{metric}", pruner
        self._trial = None

    def trial(self):
        """The trial, opened on first use (on rank 0 only: the others never touch the study)."""
        if self._trial is None:
            import optuna

            optuna.logging.set_verbosity(optuna.logging.WARNING)
            study = optuna.load_study(
                study_name=self.study_name, storage=self.storage, pruner=make_pruner(self.pruner)
            )
            self._trial = optuna.trial.Trial(study, self.trial_id)
        return self._trial

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        prune = False
        if trainer.is_global_zero:
            score = trainer.callback_metrics.get(self.monitor)
            if score is not None:
                epoch = trainer.current_epoch + 1
                trial = self.trial()
                trial.report(float(score), step=epoch)
                prune = trial.should_prune()
                if prune:
                    trial.set_user_attr(PRUNED_AT, epoch)
                    print(
                        f"pruned by the study after epoch {epoch}: {self.monitor} "
                        f"{float(score):.2f} lags the other trials",
                        flush=True,
                    )
        prune = bool(trainer.strategy.broadcast(prune, src=0))
        trainer.should_stop = trainer.should_stop or prune


def from_environment() -> list[Callback]:
    """The pruning callback when this fit is a tuning trial's, else nothing."""
    described = os.environ.get(TRIAL_ENV)
    if not described:
        return []
    return [TrialPruning(**json.loads(described))]
