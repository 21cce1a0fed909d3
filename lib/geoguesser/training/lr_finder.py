"""Lightning's learning-rate finder before a fit: its curve, its suggestion, and whether to use it.

`train.lr_find` is `off`, `show` or `use`. `show` runs the finder and records it (the
figure `figures/lr_find.png`, the record `lr_find.json`) but trains with `train.lr`: the
curve informs the next run without silently changing this one, which stays comparable with
runs that never ran the finder. `use` trains with the suggestion instead.

The finder works on a throw-away copy of the model, with its own Trainer and temporary
folder, and inside `isolate_rng`, so the fit afterwards starts from exactly the weights and
random state it would have had without it: a `show` fit equals an `off` fit. The range test
raises every parameter group's learning rate together, so while the backbone is frozen
first (`freeze_epochs` > 0) it measures the head's rate, `train.lr`, which is what the
suggestion replaces. A resumed fit never runs the finder again: it takes the learning rate
from the checkpoint it continues, so resuming ends where an uninterrupted fit does.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BaseFinetuning
from pytorch_lightning.tuner import Tuner
from pytorch_lightning.utilities.seed import isolate_rng

from geoguesser import style
from geoguesser.atomic import write_text
from geoguesser.config import TrainSettings

MIN_LR, MAX_LR = 1e-6, 1.0  # the range tested, exponentially
RECORD = "lr_find.json"
FIGURE = Path("figures") / "lr_find.png"


def settle_lr(
    settings: TrainSettings, datamodule, geography, run_dir: Path, resume_from: str | None
) -> TrainSettings:
    """The settings the fit trains with: `train.lr` replaced by the suggestion under `use`."""
    if settings.lr_find == "off":
        return settings
    if resume_from is not None:
        checkpoint = torch.load(resume_from, map_location="cpu", weights_only=True, mmap=True)
        lr = float(checkpoint["hyper_parameters"]["settings"]["lr"])
        print(f"learning-rate finder not run again: resuming with lr {lr:.3g}", flush=True)
        return settings.model_copy(update={"lr": lr})
    lrs, losses, suggestion = find_lr(settings, datamodule, geography)
    use = settings.lr_find == "use" and suggestion is not None
    record = {
        "mode": settings.lr_find,
        "suggestion": suggestion,
        "used": use,
        "lr": suggestion if use else settings.lr,
        "configured_lr": settings.lr,
        "steps": len(lrs),
        "min_lr": MIN_LR,
        "max_lr": MAX_LR,
    }
    style.save(lr_find_figure(lrs, losses, suggestion, use), Path(run_dir) / FIGURE)
    write_text(Path(run_dir) / RECORD, json.dumps(record, indent=2))
    shown = "none (the curve was too short or flat)" if suggestion is None else f"{suggestion:.3g}"
    action = f"training with lr {record['lr']:.3g}"
    print(f"learning-rate finder: suggestion {shown}; {action}", flush=True)
    return settings.model_copy(update={"lr": record["lr"]})


def find_lr(settings: TrainSettings, datamodule, geography) -> tuple[list, list, float | None]:
    """Lightning's range test on a fresh copy of the model: (lrs, smoothed losses, suggestion)."""
    from geoguesser.model.locator import GeoLocator

    with isolate_rng(), tempfile.TemporaryDirectory(prefix="lr-find-") as scratch:
        model = GeoLocator(geography, settings, datamodule.mean, datamodule.std)
        if settings.freeze_epochs > 0:
            BaseFinetuning.freeze(model.net.backbone, train_bn=False)
        trainer = pl.Trainer(
            max_steps=settings.lr_find_steps,
            max_epochs=-1,
            accelerator=settings.accelerator,
            devices=1,
            precision=settings.precision,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=scratch,
        )
        finder = Tuner(trainer).lr_find(
            model,
            train_dataloaders=datamodule.train_dataloader(),
            min_lr=MIN_LR,
            max_lr=MAX_LR,
            num_training=settings.lr_find_steps,
            update_attr=False,
        )
    lrs, losses = finder.results.get("lr", []), finder.results.get("loss", [])
    suggestion = finder.suggestion() if len(losses) > 2 else None
    if suggestion is not None and not np.isfinite(suggestion):
        suggestion = None
    return [float(x) for x in lrs], [float(x) for x in losses], suggestion


def lr_find_figure(lrs, losses, suggestion: float | None, used: bool, synthetic: bool = False):
    """Lightning's learning-rate finder: loss against learning rate, the suggestion marked."""
    import matplotlib.pyplot as plt  # here: the fit imports this module, most fits draw nothing

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(lrs, losses, color=style.OKABE_ITO[0], label="training loss (smoothed)")
    if suggestion is not None:
        what = "suggestion, used" if used else "suggestion, not used (train.lr_find: show)"
        ax.axvline(suggestion, color=style.OKABE_ITO[3], ls="--", label=f"{what}: {suggestion:.2e}")
    ax.set(
        xscale="log",
        xlabel="learning rate",
        ylabel="loss",
        title=style.title("Learning-rate finder", synthetic=synthetic),
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
