"""Steps 01-03 of a dry run in memory (validation, split, cells, enrichment) and the fit's
model over them, built as a run builds them but with nothing written.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from geoguesser.config import Settings
from geoguesser.errors import UserError
from geoguesser.workflow.dryrun_table import Row

MAX_DATA_PROBLEMS = 10


@dataclass
class Prepared:
    """What steps 01-03 would write, held in memory: the enriched table and the geography."""

    table: pd.DataFrame
    geography: object

    def count(self, split: str) -> int:
        return int((self.table.split == split).sum())


def prepare_tables(settings: Settings) -> tuple[list[Row], Prepared | None]:
    """Steps 01-03 without writing: validation as step 01 does it, split, cells, enrichment."""
    from geoguesser.data.enrich import enrich
    from geoguesser.data.validate import validate
    from geoguesser.geo.borders import load_border
    from geoguesser.geo.grid import build_cells, kept_cells
    from geoguesser.geo.splits import split_locations
    from geoguesser.model.geography import Geography

    data, split, grid = settings.data, settings.split, settings.grid
    border = load_border(data.border, data.country)
    report = validate(data.dataset_dirs, border=border, labelled=True)
    if not report.ok:
        lines = [str(problem) for problem in report.problems[:MAX_DATA_PROBLEMS]]
        if len(report.problems) > MAX_DATA_PROBLEMS:
            lines.append(f"... and {len(report.problems) - MAX_DATA_PROBLEMS} more problems")
        return [Row("datasets", f"{len(report.problems)} problem(s)", line) for line in lines], None
    rows = [Row("datasets", f"valid: {report.summary()}")]
    try:
        locations = split_locations(
            report.locations,
            split.fractions,
            seed=split.seed,
            dataset_frac=split.dataset_frac,
            block_km=split.block_km,
            crs=data.crs,
        )
        train = locations[locations.split == "train"]
        cells = build_cells(border, train.latitude, train.longitude, grid, data.crs)
        table, scaler = enrich(locations, cells)
    except UserError as error:
        return rows + [Row("split", "failed", str(error).splitlines()[0])], None
    prepared = Prepared(table, Geography.of(cells, scaler, border))
    counts = ", ".join(f"{s} {prepared.count(s)}" for s in ("train", "val", "test"))
    rows.append(Row("split", f"{counts}; {len(kept_cells(cells))} classes"))
    for name in ("train", "val"):
        if prepared.count(name) == 0:
            blocker = f"the {name} split is empty: use more locations or other split fractions"
            rows.append(Row(f"{name} split", "empty", blocker))
    return rows, (prepared if all(r.blocker is None for r in rows) else None)


def build_model(settings: Settings, prepared: Prepared, table: pd.DataFrame):
    """The fit's data module and model over `table`, without caches (building them is the
    run's long work, and writes). The weights are checked on their own: random ones cost the
    same to train."""
    from geoguesser.data.datamodule import GeoDataModule
    from geoguesser.model.gallery import prepare
    from geoguesser.model.locator import GeoLocator

    train = settings.train.model_copy(
        update={"weights": None, "image_cache_dir": None, "feature_cache": False}
    )
    datamodule = GeoDataModule(table, train)
    datamodule.setup("fit")
    model = GeoLocator(prepared.geography, train, datamodule.mean, datamodule.std)
    prepare(model, datamodule)  # a contrastive model's gallery, as the fit draws it
    return datamodule, model
