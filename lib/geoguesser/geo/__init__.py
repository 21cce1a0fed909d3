"""Geography: the country's border, coordinates and their projection, grid cells, splits, sampling.

The first stage: imports only the core (config, errors, atomic, progress, style). The border
ships as package data (assets/), found through the package whether installed or in a checkout.
"""
