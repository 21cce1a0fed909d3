"""The model: backbones, view fusion, objectives, the LightningModule and its checkpoint.

Imports the core, geo and data; never training, analysis or the workflow.
"""
