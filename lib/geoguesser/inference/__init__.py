"""Inference: from photographs to coordinates with a model or a checkpoint file, in batches.

Imports the core, geo, data and model; never training, serving or the workflow.
"""
