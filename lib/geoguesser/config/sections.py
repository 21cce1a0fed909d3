"""The settings schema's sections (data, split, grid, maps) and `Settings`, the whole of them.

The train section is in train_section.py, the path rule in base.py, loading in loading.py.

A config file holds only what differs from these defaults. `load_settings` merges the file
with `--set key=value` overrides (OmegaConf, values parsed as YAML) and checks the result
against the schema (pydantic) before anything runs, so a typo, a wrong type or an
impossible value is one line naming the key, never a run that silently used a default.
The same `Settings` object then travels to the notebooks, the data module and the model,
under the same names.

Relative paths resolve against the current directory, as for any command-line tool, and
are stored absolute, so a run's `config.yaml` means the same thing from anywhere.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from geoguesser.config.base import (
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Section,
    absolute_path,
)
from geoguesser.config.checks import check_run_name, regions_overlap_problem, regions_problem
from geoguesser.config.choices import GRID_DEFAULTS, GRID_KINDS, KIND_KEYS, TOP_CELLS
from geoguesser.config.train_section import TrainSettings


class DataSettings(Section):
    dataset_dirs: list[Path] = Field(
        default=[Path("data/synthetic")],
        min_length=1,
        description="dataset folders (data.csv + images/), merged; each needs a data.csv",
    )
    border: Path | None = Field(None, description="polygon file; null: the shipped Croatia")
    country: str | None = Field(None, description="country name or ISO code inside `border`")
    crs: str = Field("EPSG:3766", description="projected CRS for cells and regression targets")

    @field_validator("dataset_dirs")
    @classmethod
    def _labelled_dirs(cls, dirs: list[Path]) -> list[Path]:
        resolved = [absolute_path(d) for d in dirs]
        for directory in resolved:
            if not directory.is_dir():
                raise ValueError(f"{directory}: no such dataset directory")
            if not (directory / "data.csv").is_file():
                raise ValueError(
                    f"{directory}: no data.csv; unlabelled folders are for predict only"
                )
        return resolved

    @field_validator("border")
    @classmethod
    def _border_exists(cls, border: Path | None) -> Path | None:
        border = absolute_path(border)
        if border is not None and not border.is_file():
            raise ValueError(f"{border}: border file not found")
        return border

    @field_validator("crs")
    @classmethod
    def _projected_crs(cls, crs: str) -> str:
        from pyproj import CRS
        from pyproj.exceptions import CRSError

        try:
            parsed = CRS.from_user_input(crs)
        except CRSError:
            raise ValueError(f"{crs!r} is not a CRS pyproj knows") from None
        if not parsed.is_projected:
            raise ValueError(f"{crs!r} is not projected: cells and distances need metres")
        return crs


class SplitSettings(Section):
    fractions: list[Annotated[float, Field(ge=0)]] = Field(
        [0.8, 0.1, 0.1],
        description="train, val, test shares; they sum to 1; val above 0, test may be 0",
    )
    seed: int = Field(0, description="seed of the split (and of `dataset_frac`'s sample)")
    dataset_frac: float = Field(
        1.0, gt=0, le=1, description="use this share of the locations (quick experiments)"
    )
    block_km: PositiveFloat | None = Field(
        None, description="split whole square blocks of this size (km); null: random split"
    )

    @field_validator("fractions")
    @classmethod
    def _sum_to_one(cls, fractions: list[float]):
        if len(fractions) != 3:
            raise ValueError(f"expected three shares, train, val and test (got {fractions})")
        if not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
            raise ValueError(f"{list(fractions)} sum to {sum(fractions):g}, not 1")
        if fractions[0] == 0:
            raise ValueError("the train share must be above 0")
        if fractions[1] == 0:
            # Nothing else could pick the best checkpoint or drive the plateau schedule.
            raise ValueError(
                "the val share must be above 0: validation picks the best checkpoint"
                " (a 0 test share is allowed)"
            )
        return fractions


class GridSettings(Section):
    """Which cells are the classes. The kind-specific keys are null unless their kind reads them.

    A null kind-specific key means the kind's default (`GRID_DEFAULTS`); `kind_settings` gives
    the values in force, which the cells file and the checkpoint record.
    """

    kind: Literal[GRID_KINDS] = Field(
        "square",
        description="square cells; quadtree (split while crowded); voronoi (k-means of the"
        " training locations); regions (administrative units, merged and split)",
    )
    cell_km: PositiveFloat = Field(
        50.0, description="side of the square cells, km (quadtree: of the squares it starts from)"
    )
    cell_deg: PositiveFloat | None = Field(
        None, description="cells of this many degrees instead of `cell_km` (the original work)"
    )
    min_train: PositiveInt = Field(1, description="training locations a cell needs to be a class")
    max_train: PositiveInt | None = Field(
        None,
        description="quadtree, regions: a cell holding more training locations is split;"
        f" null: {GRID_DEFAULTS['max_train']}",
    )
    min_cell_km: PositiveFloat | None = Field(
        None,
        description="quadtree: smallest side a split may leave, km;"
        f" null: {GRID_DEFAULTS['min_cell_km']}",
    )
    split_at: Literal["middle", "median"] | None = Field(
        None,
        description="quadtree: split at the cell's middle or at its training locations' medians;"
        f" null: {GRID_DEFAULTS['split_at']}",
    )
    cells: PositiveInt | None = Field(
        None, description=f"voronoi: about this many cells; null: {GRID_DEFAULTS['cells']}"
    )
    regions: str | None = Field(
        None,
        description="regions: a polygon file of administrative units, or `counties` (Croatia's"
        f" 21, shipped); null: {GRID_DEFAULTS['regions']}",
    )
    region_parent: str | None = Field(
        None,
        description="regions: the file's column naming each unit's parent unit (merges stay"
        " inside it; parent_2 of the cells); null: none",
    )
    min_region_train: PositiveInt | None = Field(
        None,
        description="regions: a region with fewer training locations joins a neighbour;"
        f" null: {GRID_DEFAULTS['min_region_train']}",
    )
    seed: int = Field(0, description="seed of the k-means of voronoi and regions cells")
    compare_km: list[PositiveFloat] = Field(
        [150.0, 100.0, 50.0], description="cell sizes drawn side by side in 02-grid"
    )

    @field_validator("regions")
    @classmethod
    def _readable_regions(cls, regions: str | None) -> str | None:
        if regions is None or regions == "counties":
            return regions
        path = absolute_path(Path(regions))
        problem = regions_problem(path)
        if problem:
            raise ValueError(problem)
        return str(path)

    @model_validator(mode="after")
    def _keys_of_the_kind(self) -> GridSettings:
        for key, kinds in KIND_KEYS.items():
            if getattr(self, key) is not None and self.kind not in kinds:
                raise ValueError(
                    f"{key} applies to kind {' or '.join(kinds)}, not {self.kind}: remove it"
                    " or choose that kind"
                )
        if self.cell_deg is not None and self.kind != "square":
            raise ValueError(f"cell_deg applies to kind square, not {self.kind}")
        return self

    def kind_settings(self) -> dict:
        """The settings the kind reads, defaults filled in: what the cells file records."""
        values = {"kind": self.kind}
        for key, kinds in KIND_KEYS.items():
            if self.kind in kinds:
                given = getattr(self, key)
                values[key] = GRID_DEFAULTS.get(key) if given is None else given
        if self.kind in ("voronoi", "regions"):
            values["seed"] = self.seed
        return values


class MapsSettings(Section):
    offline: bool = Field(True, description="inline Leaflet: maps open with no network")
    worst: NonNegativeInt = Field(6, description="worst predictions shown with their views")
    top_cells: PositiveInt = Field(
        TOP_CELLS,
        description="likeliest cells (with probabilities) in predictions.csv and the popups",
    )


class Settings(Section):
    name: str | None = Field(
        None, description="run folder under the runs root; null: the config file's name"
    )
    # Factories, so that a default section is checked (paths included) when a config is loaded.
    data: DataSettings = Field(default_factory=DataSettings)
    split: SplitSettings = Field(default_factory=SplitSettings)
    grid: GridSettings = Field(default_factory=GridSettings)
    train: TrainSettings = Field(default_factory=TrainSettings)
    maps: MapsSettings = Field(default_factory=MapsSettings)

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str | None) -> str | None:
        return None if name is None else check_run_name(name)

    @model_validator(mode="after")
    def _regions_on_the_border(self) -> Settings:
        if self.grid.kind == "regions":
            problem = regions_overlap_problem(
                self.grid.kind_settings()["regions"], self.data.border, self.data.country
            )
            if problem:
                raise ValueError(f"grid.regions: {problem}")
        return self

    def to_yaml_dict(self) -> dict:
        return self.model_dump(mode="json")
