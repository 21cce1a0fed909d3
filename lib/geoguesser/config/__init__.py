"""The settings of a run: the schema, its checks, and loading a config file with overrides.

Core: imported by every stage, it imports no other part of geoguesser but `errors`.
"""

from geoguesser.config.settings import (
    CENTROID_KINDS,
    DECODINGS,
    FUSIONS,
    NO_TRAIN_SHAPE,
    OBJECTIVES,
    PRECISIONS,
    RUN_NAME,
    STRATEGIES,
    STRATEGY_PROBLEMS,
    TOP_CELLS,
    DataSettings,
    GridSettings,
    MapsSettings,
    Section,
    Settings,
    SplitSettings,
    TrainSettings,
    backbone_problem,
    check_run_name,
    known_setting_problems,
    load_settings,
    schema_markdown,
)

__all__ = [
    "CENTROID_KINDS",
    "DECODINGS",
    "FUSIONS",
    "NO_TRAIN_SHAPE",
    "OBJECTIVES",
    "PRECISIONS",
    "RUN_NAME",
    "STRATEGIES",
    "STRATEGY_PROBLEMS",
    "TOP_CELLS",
    "DataSettings",
    "GridSettings",
    "MapsSettings",
    "Section",
    "Settings",
    "SplitSettings",
    "TrainSettings",
    "backbone_problem",
    "check_run_name",
    "known_setting_problems",
    "load_settings",
    "schema_markdown",
]
