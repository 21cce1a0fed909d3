"""Tuning benchmark: the best validation km of TPE with pruning, random search and a grid,
each given the same budget of training epochs on the synthetic set.

The search is over `train.lr` (log range) and `train.tau_km`; the grid is what `--sweep`
would run over three learning rates and two `tau_km`, every member for all its epochs. The
random search and TPE draw from the ranges; TPE's trials report each epoch's validation
mean km to a median pruner (the callback `geoguesser tune`'s fits use), so a lagging trial
stops early and its unspent epochs go to more trials. A strategy starts another trial only
while a whole one still fits in its budget. Fits run in this process, on one prepared
split, without the pipeline's notebooks: what differs is only how trials are chosen and
stopped. One seed: the ratios are one measurement, not an average.
Usage: python benchmarks/bench_tune.py [--locations 600] [--epochs 5] [--budget 30]
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import optuna
from pytorch_lightning.callbacks import Callback

from geoguesser.config import TrainSettings
from geoguesser.data.enrich import prepare
from geoguesser.data.synthetic import generate
from geoguesser.data.validate import load_locations
from geoguesser.geo.borders import load_border
from geoguesser.geo.splits import split_locations
from geoguesser.training.fit import train
from geoguesser.training.pruning import PRUNED_AT, TrialPruning, make_pruner

GRID = {"lr": [3e-4, 3e-3, 3e-2], "tau_km": [25.0, 100.0]}
RANGES = {"lr": (1e-4, 5e-2), "tau_km": (10.0, 200.0)}


class BestVal(Callback):
    """The lowest validation mean km of the fit's epochs (what its best checkpoint scored)."""

    def __init__(self):
        self.best = float("inf")

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking and "val/mean_km" in trainer.callback_metrics:
            self.best = min(self.best, float(trainer.callback_metrics["val/mean_km"]))


class Bench:
    """The prepared data and the settings every fit shares."""

    def __init__(self, tmp: Path, locations: int, image_size: int, epochs: int):
        root = generate(tmp / "ds", locations, image_size=image_size, seed=0, progress=False)
        border = load_border()
        found, _ = load_locations([root], border=border)
        found = split_locations(found, fractions=(0.8, 0.2, 0.0), seed=0)  # no test: never read
        self.table, self.cells, self.scaler = prepare(found, border, cell_km=50)
        self.border, self.tmp, self.epochs, self.fits = border, tmp, epochs, 0
        self.base = dict(
            backbone="tinycnn", image_size=image_size, batch_size=32, num_workers=0,
            max_epochs=epochs, freeze_epochs=0, image_cache_dir=str(tmp / "cache"),
            progress_bar=False, accelerator="cpu", devices=1, scheduler="none",
        )  # fmt: skip

    def fit(self, lr: float, tau_km: float, callbacks=()) -> float:
        """The fit's best validation mean km."""
        self.fits += 1
        settings = TrainSettings(**self.base, lr=lr, backbone_lr=lr, tau_km=tau_km)
        best = BestVal()
        train(
            settings, self.table, self.cells, self.scaler, self.tmp / f"fit-{self.fits}",
            self.border, [best, *callbacks],
        )  # fmt: skip
        return best.best


def grid(bench: Bench, budget: int) -> tuple[float, int, int]:
    """The sweep's members in order while whole ones fit the budget: (best km, epochs, fits)."""
    best, used, fits = float("inf"), 0, 0
    for lr, tau in itertools.product(GRID["lr"], GRID["tau_km"]):
        if used + bench.epochs > budget:
            break
        best, used, fits = min(best, bench.fit(lr, tau)), used + bench.epochs, fits + 1
    return best, used, fits


def search(bench: Bench, budget: int, sampler, pruner, storage: str) -> tuple[float, int, int]:
    """Optuna trials while a whole one fits the budget; pruned trials spend only their epochs."""
    study = optuna.create_study(
        study_name="bench", storage=storage, sampler=sampler, pruner=make_pruner(pruner)
    )
    used = 0
    while used + bench.epochs <= budget:
        trial = study.ask()
        lr = trial.suggest_float("lr", *RANGES["lr"], log=True)
        tau = trial.suggest_float("tau_km", *RANGES["tau_km"])
        pruning = TrialPruning(storage, "bench", trial._trial_id, "mean_km", pruner)
        value = bench.fit(lr, tau, [pruning])
        epoch = study.trials[trial.number].user_attrs.get(PRUNED_AT)
        if epoch is None:
            study.tell(trial, value)
            used += bench.epochs
        else:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            used += epoch
    complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    return min(t.value for t in complete), used, len(study.trials)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--locations", type=int, default=600)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=5, help="epochs of a whole trial")
    parser.add_argument("--budget", type=int, default=30, help="epochs each strategy may spend")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        bench = Bench(tmp, args.locations, args.image_size, args.epochs)
        started = time.perf_counter()
        results = {"grid (--sweep)": grid(bench, args.budget)}
        random = optuna.samplers.RandomSampler(seed=0)
        results["random"] = search(
            bench, args.budget, random, {"kind": "none"}, f"sqlite:///{tmp / 'random.db'}"
        )
        tpe = optuna.samplers.TPESampler(seed=0, n_startup_trials=3)
        median = {"kind": "median", "n_startup_trials": 2, "n_warmup_steps": 1}
        results["TPE + median pruning"] = search(
            bench, args.budget, tpe, median, f"sqlite:///{tmp / 'tpe.db'}"
        )
        seconds = time.perf_counter() - started

    n = int((bench.table.split == "train").sum())
    print(f"tinycnn at {args.image_size} px, {n} training locations, {args.epochs} epochs a "
          f"trial, {args.budget} epochs per strategy ({seconds:.0f} s in all)")  # fmt: skip
    for name, (best, used, fits) in results.items():
        print(f"  {name:<22} best val mean {best:7.1f} km  ({fits} trials, {used} epochs)")
    tpe_best = results["TPE + median pruning"][0]
    print(f"TPE with pruning / grid:   {tpe_best / results['grid (--sweep)'][0]:.3f}")
    print(f"TPE with pruning / random: {tpe_best / results['random'][0]:.3f}")


if __name__ == "__main__":
    main()
