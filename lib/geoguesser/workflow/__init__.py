"""The workflow: run folders, the papermill pipeline, sweeps, the fit process, dry runs, Lab.

Imports every stage below it (core to serve); only the CLI imports it.
"""
