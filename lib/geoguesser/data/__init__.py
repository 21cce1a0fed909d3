"""Data: the LUMEN layout, the synthetic default, collecting Street View, feeding views
(the Datasets, the DataModule, its samplers, the normalization statistics).

Imports the core and geo; never the model, training or anything above.
"""
