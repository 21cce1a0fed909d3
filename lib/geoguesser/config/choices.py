"""The choices some settings offer, and the constants the schema and its users share.

The modules that implement a choice (fusions, decodings, strategies ...) import its names
from here, so a choice is spelled once.
"""

import re

# The choices some settings offer; the modules that implement them import them from here.
OBJECTIVES = ("classification", "regression", "hybrid", "contrastive")
TTAS = ("none", "mirror")  # test-time augmentation: none, or each scene also seen mirrored
FUSIONS = ("concat", "mean", "attention")
DECODINGS = ("mean", "argmax")  # probability-weighted mean of centroids, or the likeliest cell
CENTROID_KINDS = ("centroid", "clipped", "weighted")
GRID_KINDS = ("square", "quadtree", "voronoi", "regions")
# The kind-specific grid settings, the kinds that read each, and their defaults (a null
# setting means this default, so a saved config of one kind never names another's keys).
KIND_KEYS = {
    "max_train": ("quadtree", "regions"),
    "min_cell_km": ("quadtree",),
    "split_at": ("quadtree",),
    "cells": ("voronoi",),
    "regions": ("regions",),
    "region_parent": ("regions",),
    "min_region_train": ("regions",),
}
GRID_DEFAULTS = {
    "max_train": 200,
    "min_cell_km": 5.0,
    "split_at": "middle",
    "cells": 64,
    "regions": "counties",
    "region_parent": None,
    "min_region_train": 10,
}
TOP_CELLS = 3  # the likeliest cells a prediction lists (maps.top_cells)

RUN_NAME = re.compile(r"[A-Za-z0-9_.=,-]+")
PRECISIONS = ("32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true")
NO_TRAIN_SHAPE = {
    # Settings that change how fast or how loudly a fit runs, never what it computes.
    "num_workers",
    "image_cache_dir",
    "progress_bar",
    "log_every_n_steps",
    "resume",
}
# Not in NO_TRAIN_SHAPE: devices, num_nodes and strategy change the batches each process
# sees (and so the result), so a fit resumes only with the same number of processes.  # fmt: skip

# Strategies a fit can use, and why the others cannot: the fit runs as a script process
# (geoguesser train), its checkpoints are whole state dicts, and the feature cache and the
# frozen phase assume every process holds the whole model.
STRATEGIES = ("auto", "ddp")
STRATEGY_PROBLEMS = {
    "ddp_notebook": "fork-based, for notebook kernels; the fit runs as its own process: use ddp",
    "ddp_fork": "fork-based, breaks once CUDA is touched before the fork: use ddp",
    "ddp_spawn": "re-imports everything in each process and cannot span nodes: use ddp",
    "ddp_find_unused_parameters_true": "use ddp (the frozen phase sets this itself)",
    "fsdp": "shards the model, which the feature cache and the checkpoints do not expect",
    "deepspeed": "shards the model, which the feature cache and the checkpoints do not expect",
}
