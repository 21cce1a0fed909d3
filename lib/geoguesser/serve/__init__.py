"""Serving: trained checkpoints behind a small local HTTP server, with its page as package data.

Imports the core, geo, data, model, analysis and inference; never the workflow or the CLI.
"""
