"""Training: the Lightning Trainer, its callbacks, the freeze-then-unfreeze schedule, the LR finder.

Imports the core, geo, data and model; never analysis, serving or the workflow.
"""
