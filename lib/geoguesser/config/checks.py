"""The checks a type cannot say: whether a backbone can be built here, whether a name is a
plain run-folder name.
"""

from __future__ import annotations

import importlib.util

from geoguesser.config.choices import RUN_NAME


def backbone_problem(name: str) -> str | None:
    """Why backbone `name` cannot be built here, or None.

    Here rather than in backbones.py so that checking a config imports torch only when the
    name must be looked up in torchvision or timm: steps 01 to 03 never need torch.
    """
    if name == "tinycnn":
        return None
    if name.startswith("timm/"):
        if importlib.util.find_spec("timm") is None:
            return f"backbone {name} needs timm: pip install timm"
        import timm

        model_name = name.removeprefix("timm/")
        return None if model_name in timm.list_models() else f"unknown timm backbone {model_name!r}"
    import torchvision

    if name not in torchvision.models.list_models(module=torchvision.models):
        return (
            f"unknown backbone {name!r}: use a torchvision classification model (e.g. resnet18, "
            "resnext101_32x8d, efficientnet_b0, convnext_tiny), timm/<name>, or tinycnn"
        )
    return None


def check_run_name(name: str) -> str:
    """A run name is one plain folder name: it can never point outside the runs root."""
    if not RUN_NAME.fullmatch(name) or name in (".", ".."):
        raise ValueError(
            f"{name!r} is not a plain folder name (letters, digits and -_.=, only; not . or ..)"
        )
    return name
