"""The settings of a run: the schema, its checks, and loading a config file with overrides.

`choices` (the options some settings offer), `checks` (what a type cannot say), `sections`
(the pydantic schema: data, split, grid, maps and the whole; `train_section` the train
section, `base` what every section shares), `loading` (YAML and overrides into checked
settings), `schema_doc` (the schema as Markdown).

Core: imported by every stage, it imports no other part of geoguesser but `errors`.
"""

from geoguesser.config.checks import backbone_problem, check_run_name, polygons_file
from geoguesser.config.choices import (
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
)
from geoguesser.config.loading import known_setting_problems, load_settings
from geoguesser.config.schema_doc import schema_markdown
from geoguesser.config.sections import (
    DataSettings,
    GridSettings,
    MapsSettings,
    Section,
    Settings,
    SplitSettings,
)
from geoguesser.config.train_section import TrainSettings

__all__ = [
    "polygons_file",
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
