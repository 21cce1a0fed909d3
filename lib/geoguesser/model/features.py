"""Per-view backbone features of a whole dataset, computed once with a frozen network.

While the backbone is frozen it is a fixed function of the image, so its features can be
cached: the data module serves them (data.datamodule.GeoDataModule.serve_features_of) in
place of images, computed by this function with the network train() hands it. Test-time
mirroring (tta.py) needs the mirrored scenes' features too: `mirrored=True` computes those.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from geoguesser.data.views import LocationDataset
from geoguesser.model.augment import mirror_scene

MIRRORED = "mirrored"  # the store's key marker of a mirrored scene's features


@torch.no_grad()
def backbone_features(
    net,
    dataset: LocationDataset,
    batch_size: int,
    workers: int,
    store: dict | None = None,
    mirrored: bool = False,
) -> torch.Tensor:
    """(N, 4, D) features of every location by `net`'s backbone in eval mode (frozen).

    `store` maps (dataset folder, uuid) to a location's features: those it has are reused,
    the others computed and added. Its owner keeps it to one frozen backbone. With
    `mirrored`, the features are those of each scene mirrored (augment.mirror_scene), kept
    in the store under (folder, uuid, MIRRORED).
    """
    store = {} if store is None else store
    keys = list(zip(dataset.dirs, dataset.uuids, strict=True))
    if mirrored:
        keys = [(*key, MIRRORED) for key in keys]
    missing = [i for i, key in enumerate(keys) if key not in store]
    if missing:
        device = next(net.parameters()).device
        was_training = net.training
        net.eval()
        subset = torch.utils.data.Subset(dataset, missing)
        loader = DataLoader(subset, batch_size=batch_size, num_workers=workers)
        done = 0
        for batch in loader:
            images = batch["images"].to(device).float() / 255.0
            if mirrored:
                images = mirror_scene(images)
            for features in net.embed(net.backbone_input(images)).float().cpu():
                store[keys[missing[done]]] = features
                done += 1
        net.train(was_training)
    return torch.stack([store[key] for key in keys])
