"""Checkpoint files: writing one without a Trainer, and the one checked loader of them.

A checkpoint holds GeoLocator's hyper-parameters (geography, settings, normalization), its
state_dict, the geoguesser format marker (checkpoint_contents.CHECKPOINT_FORMAT) and,
optionally, the retrieval index. It is read as data only (weights_only=True), and
everything wrong with a file is a UserError naming it, one line a problem.
"""

from __future__ import annotations

from pathlib import Path

import torch

from geoguesser.atomic import atomic_path
from geoguesser.config import TrainSettings
from geoguesser.errors import UserError
from geoguesser.model.checkpoint_contents import CHECKPOINT_FORMAT
from geoguesser.model.locator import GeoLocator

HPARAMS = ("geography", "settings", "mean", "std")  # GeoLocator's arguments, as saved
MAX_WEIGHT_LINES = 20  # a checkpoint of another network would name every one of its tensors


def write_checkpoint(model: GeoLocator, path: str | Path) -> Path:
    """`model` as a checkpoint `load_checkpoint` reads, without a Trainer.

    For a model that never trained (benchmarks, tests of prediction and serving): the
    format marker and the retrieval index come from `on_save_checkpoint`, as in a fit.
    """
    checkpoint = {"hyper_parameters": dict(model.hparams), "state_dict": model.state_dict()}
    model.on_save_checkpoint(checkpoint)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> GeoLocator:
    """A trained GeoLocator from a checkpoint file, loaded as data only (weights_only=True).

    The one loader of checkpoints (predict, the server, testing after a fit). The file is
    checked whole, and whatever is wrong with it is a UserError naming the file, one line a
    problem: not a checkpoint, no geoguesser marker, another format, no hyper-parameters,
    settings that no longer validate, weights that do not fit the network (a missing or
    unexpected tensor, another shape). The backbone is rebuilt without pretrained weights:
    the checkpoint has its trained ones.
    """
    path = Path(path)
    checkpoint = _read_checkpoint(path, map_location)
    model = _rebuilt(path, checkpoint.get("hyper_parameters"))
    state = checkpoint.get("state_dict")
    if not isinstance(state, dict):
        raise UserError(f"{path}: no state_dict (the trained weights)")
    problems = weight_mismatches(model.state_dict(), state)
    if len(problems) > MAX_WEIGHT_LINES:
        more = len(problems) - MAX_WEIGHT_LINES
        problems = [*problems[:MAX_WEIGHT_LINES], f"... and {more} more weight mismatches"]
    if problems:
        raise UserError("\n".join(f"{path}: {problem}" for problem in problems))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # after the checks above, a tensor that cannot be copied in
        raise UserError(f"{path}: weights: {str(exc).splitlines()[-1].strip()[:200]}") from None
    try:
        model.on_load_checkpoint(checkpoint)
    except (KeyError, TypeError, AttributeError) as exc:
        # A contrastive model carries a gallery, never a retrieval index (the settings refuse it).
        what = "gallery" if model.contrastive is not None else "retrieval index"
        raise UserError(f"{path}: its {what} is damaged ({exc!r})") from None
    gallery_problem = _gallery_problem(model)
    if gallery_problem:
        raise UserError(f"{path}: {gallery_problem}")
    if model.retrieval is not None and not _index_fits(model):
        index = model.retrieval
        raise UserError(
            f"{path}: its retrieval index does not fit the network (embeddings"
            f" {tuple(index.embeddings.shape)}, xy {tuple(index.xy.shape)}, labels"
            f" {tuple(index.labels.shape)}, for {model.net.fusion.out_dim} features"
            f" and {model.geography.n_classes} cells)"
        )
    return model.eval()


def _gallery_problem(model: GeoLocator) -> str | None:
    """Why a contrastive model cannot rank its gallery (none, or one of other sizes), or None."""
    if model.contrastive is None:
        return None
    gallery, dim = model.gallery, model.settings.embedding_dim
    if gallery is None:
        return "a contrastive model without its gallery (the places it ranks): retrain"
    if not gallery.fits(dim, model.geography.n_classes):
        return (
            f"its gallery does not fit the network (xy {tuple(gallery.xy.shape)}, embeddings"
            f" {None if gallery.embeddings is None else tuple(gallery.embeddings.shape)}, for"
            f" {dim} dimensions and {model.geography.n_classes} cells)"
        )
    return None


def _index_fits(model: GeoLocator) -> bool:
    """Whether the retrieval index holds N embeddings of the fused size, N points, N cells."""
    index = model.retrieval
    n = len(index.labels) if index.labels.ndim == 1 else -1
    return (
        tuple(index.embeddings.shape) == (n, model.net.fusion.out_dim)
        and tuple(index.xy.shape) == (n, 2)
        and bool(((index.labels >= 0) & (index.labels < model.geography.n_classes)).all())
    )


def _read_checkpoint(path: Path, map_location: str | torch.device) -> dict:
    """The checkpoint's dict, read as data only, if it is a geoguesser one of today's format."""
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # unpickling refusals, zip errors, truncated files
        # Our words, never torch's: for some files its text suggests weights_only=False.
        reason = (
            "the file ends early"
            if isinstance(exc, EOFError)
            else "damaged, another format, or holding objects other than tensors and plain"
            " data, which are refused unread"
        )
        raise UserError(f"{path}: not a loadable checkpoint ({reason})") from None
    marker = checkpoint.get("geoguesser") if isinstance(checkpoint, dict) else None
    if not isinstance(marker, dict):
        raise UserError(f"{path}: not a geoguesser checkpoint")
    if marker.get("format") != CHECKPOINT_FORMAT:
        raise UserError(
            f"{path}: made by geoguesser {marker.get('version')} in checkpoint format "
            f"{marker.get('format')}; this version reads format {CHECKPOINT_FORMAT}: "
            "predict with the version that trained it, or retrain"
        )
    return checkpoint


def _rebuilt(path: Path, hparams) -> GeoLocator:
    """The untrained network a checkpoint's hyper-parameters describe, or why there is none.

    The settings are validated against today's schema (config.TrainSettings), each problem
    a line; the geography and the normalization are file content too, so anything that
    fails while building from them is the file's fault, said in one line.
    """
    from geoguesser.config import known_setting_problems

    if not isinstance(hparams, dict):
        raise UserError(
            f"{path}: no hyper_parameters (the settings, geography and normalization"
            " the network is rebuilt from)"
        )
    missing = [name for name in HPARAMS if name not in hparams]
    if missing:
        raise UserError(f"{path}: hyper_parameters lack {', '.join(missing)}")
    if not isinstance(hparams["settings"], dict):
        raise UserError(f"{path}: hyper_parameters settings is not a mapping of settings")
    # The trained weights are in the state dict; the pretrained file need not exist here.
    settings = {**hparams["settings"], "weights": None, "compile": False}
    problems = known_setting_problems(TrainSettings, settings)
    if problems:
        raise UserError(
            "\n".join(f"{path}: setting {p} (no longer valid: retrain)" for p in problems)
        )
    try:
        return GeoLocator(hparams["geography"], settings, hparams["mean"], hparams["std"])
    except UserError as exc:
        raise UserError(f"{path}: {exc}") from None
    except Exception as exc:  # built from the file's content: a bad value is the file's fault
        text = str(exc).splitlines()[0] if str(exc) else ""
        raise UserError(
            f"{path}: its geography or normalization does not build a network"
            f" ({exc.__class__.__name__}{': ' + text[:200] if text else ''})"
        ) from None


def weight_mismatches(expected: dict, given: dict) -> list[str]:
    """One line for each tensor of `given` that a strict load_state_dict into `expected` refuses."""
    problems = [f"weights: {key} is missing" for key in expected if key not in given]
    unknown = [key for key in given if key not in expected]
    problems += [f"weights: {key} is not part of this network" for key in unknown]
    for key in (key for key in expected if key in given):
        value = given[key]
        if not isinstance(value, torch.Tensor):
            problems.append(f"weights: {key} is not a tensor")
        elif value.shape != expected[key].shape:
            problems.append(
                f"weights: {key} has shape {tuple(value.shape)}; the network's is"
                f" {tuple(expected[key].shape)}"
            )
    return problems
