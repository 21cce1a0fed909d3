"""The model: backbones, view fusion, the network, objectives and losses, the LightningModule
(locator), its decoding, optimizer and checkpoint files, augmentation and cached features.

Imports the core, geo and data; never training, analysis or the workflow.
"""
