"""Analysis of a finished model: metrics against baselines, figures and the folium error maps.

Imports the core, geo, data and model; never serving, the workflow or the CLI.
"""
