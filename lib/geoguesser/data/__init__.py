"""Data: the LUMEN layout, the synthetic default, collecting Street View, feeding views.

Imports the core and geo; never the model, training or anything above.
"""
