"""Image backbones by name, with their classifier removed and their feature size measured.

Any torchvision classification model (the original work used `resnext101_32x8d`),
any timm model when timm is installed (`timm/<name>`), and `tinycnn`, a few conv layers for
CPU demos and tests. Pretrained weights come from torchvision when online, or from a local
state-dict file on machines that cannot download.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from geoguesser.config import backbone_problem
from geoguesser.errors import UserError


class TinyCNN(nn.Module):
    """Four strided conv blocks and global pooling: trains on a laptop CPU in minutes."""

    def __init__(self, width: int = 32):
        super().__init__()
        layers, channels = [], 3
        for i in range(4):
            out = width * 2 ** min(i, 2)
            layers += [
                nn.Conv2d(channels, out, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(),
            ]
            channels = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)


def _strip_classifier(model: nn.Module) -> nn.Module:
    """Replace the last Linear layer (the ImageNet classifier) with Identity."""
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name
    if last is None:
        raise UserError(f"{model.__class__.__name__}: no linear classifier found to remove")
    parent_name, _, child = last.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, nn.Identity())
    return model


def _load_state_dict(model: nn.Module, path: Path, name: str) -> None:
    if not path.exists():
        raise UserError(f"{path}: weights file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle and zip errors come in many types
        raise UserError(f"{path}: not a loadable state dict ({exc.__class__.__name__})") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise UserError(f"{path}: expected a state dict of tensors")
    problem = state_dict_mismatch(model, state)
    if problem:
        raise UserError(f"{path}: does not fit {name} ({problem})")
    model.load_state_dict(state)


def state_dict_mismatch(model: nn.Module, state: dict) -> str | None:
    """What keeps `state` from loading strictly into `model`: keys missing or left over, and
    tensors of another shape (which load_state_dict would raise on mid-load), or None."""
    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    shapes = [
        f"{key} {tuple(state[key].shape)} in the file, {tuple(tensor.shape)} in the backbone"
        for key, tensor in expected.items()
        if key in state and getattr(state[key], "shape", None) != tensor.shape
    ]
    parts = [
        f"{len(found)} {what}, e.g. {found[0]}"
        for what, found in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("tensors of another shape", shapes),
        )
        if found
    ]
    return "; ".join(parts) or None


def _pretrained_torchvision(model: nn.Module, name: str) -> None:
    import torchvision

    weights = torchvision.models.get_model_weights(name).DEFAULT
    try:
        state = weights.get_state_dict(progress=False)
    except Exception as exc:  # URLError, HTTPError, SSL errors...
        raise UserError(
            f"could not download ImageNet weights for {name} ({exc.__class__.__name__}); "
            f"on an offline machine download {weights.url} elsewhere and pass its path as weights"
        ) from None
    model.load_state_dict(state)


def build_backbone(name: str, weights: str | Path | None = None) -> nn.Module:
    """A feature extractor: images (N, 3, H, W) to features (N, D).

    weights: None (random init), "imagenet" (torchvision's default weights, downloaded), or
    the path of a state-dict file saved from the full classification model.
    """
    problem = backbone_problem(name)
    if problem:
        raise UserError(problem)
    if name == "tinycnn":
        if weights == "imagenet":
            raise UserError("tinycnn has no pretrained weights")
        model: nn.Module = TinyCNN()
        if weights is not None:
            _load_state_dict(model, Path(weights), name)
        return model
    if name.startswith("timm/"):
        import timm

        model_name = name.removeprefix("timm/")
        if weights == "imagenet":
            try:
                return timm.create_model(model_name, pretrained=True, num_classes=0)
            except Exception as exc:
                raise UserError(
                    f"could not download weights for {name} ({exc.__class__.__name__}); "
                    "pass a local state-dict file as weights"
                ) from None
        model = timm.create_model(model_name, pretrained=False)
        if weights is not None:
            _load_state_dict(model, Path(weights), name)
        model.reset_classifier(0)
        return model
    import torchvision

    model = torchvision.models.get_model(name, weights=None)
    if weights == "imagenet":
        _pretrained_torchvision(model, name)
    elif weights is not None:
        _load_state_dict(model, Path(weights), name)
    return _strip_classifier(model)


@torch.no_grad()
def feature_size(
    backbone: nn.Module, image_size: int, name: str = "backbone", height: int | None = None
) -> int:
    """Measure D with one dummy image; a size the backbone cannot take is a UserError.

    `height`: the rows the backbone sees of an `image_size` view (train.view_rows), if fewer.
    """
    was_training = backbone.training
    backbone.eval()
    height = image_size if height is None else height
    try:
        out = backbone(torch.zeros(1, 3, height, image_size))
    except (RuntimeError, AssertionError, ValueError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        shape = f"{image_size} px" if height == image_size else f"{image_size} x {height} px"
        raise UserError(f"backbone {name} cannot take {shape} images: {message}") from None
    finally:
        backbone.train(was_training)
    if out.ndim != 2:
        raise UserError(
            f"backbone {name} gives features of shape {tuple(out.shape)}, expected (N, D)"
        )
    return int(out.shape[1])


def backbone_blocks(backbone: nn.Module) -> list[nn.Module]:
    """The backbone's stages in order, for unfreezing 'the last N blocks'.

    Models that keep their stages in a `features` Sequential (EfficientNet, ConvNeXt,
    tinycnn) use its children; others (ResNet/ResNeXt: conv1 ... layer4) their top level.
    """
    container = getattr(backbone, "features", None)
    children = (
        list(container.children())
        if isinstance(container, nn.Sequential)
        else list(backbone.children())
    )
    return [child for child in children if any(True for _ in child.parameters())]
