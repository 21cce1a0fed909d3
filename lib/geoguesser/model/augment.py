"""Training augmentation of batched views on the accelerator, keeping each view's heading.

It runs in the model (GeoLocator.fused), on float views already on the device, where it is
cheap; the data module hands over uint8 views untouched.
"""

from __future__ import annotations

import torch

EAST_WEST_SWAPPED = [0, 3, 2, 1]  # mirrored, the view that looked east now looks west


def mirror_scene(images: torch.Tensor) -> torch.Tensor:
    """The whole scene mirrored left-right: each view flipped, and east and west exchanged.

    A plain horizontal flip of every view would show a westward scene labelled east.
    """
    return images[:, EAST_WEST_SWAPPED].flip(-1)


def augment(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Training augmentation that keeps each view's heading meaningful.

    images: float (B, 4, 3, H, W) in [0, 1]. Half the locations are mirrored (see
    `mirror_scene`); brightness and contrast change per location, since the four views
    were taken at the same moment.
    """
    b = images.shape[0]
    device = images.device
    flip = torch.rand(b, generator=generator).to(device) < 0.5
    images = torch.where(flip[:, None, None, None, None], mirror_scene(images), images)
    brightness = (0.8 + 0.4 * torch.rand(b, generator=generator)).to(device, images.dtype)
    contrast = (0.8 + 0.4 * torch.rand(b, generator=generator)).to(device, images.dtype)
    mean = images.mean(dim=(1, 2, 3, 4), keepdim=True)
    images = (images - mean) * contrast[:, None, None, None, None] + mean
    return (images * brightness[:, None, None, None, None]).clamp(0, 1)
