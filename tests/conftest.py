"""Fixtures: every dataset a test uses is made here, small and seeded; no real photographs.

The helper functions the tests and these fixtures share live in `tests/helpers/`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.checkout import make_checkout
from helpers.configs import set_args, shrunk, tiny_config
from helpers.datasets import make_dataset
from helpers.paths import REPO
from helpers.processes import geoguesser
from helpers.sweeps import pair_arguments, pair_metrics

pytest_plugins = ["helpers.frames"]  # fixtures shared by modules in several folders


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "ds")


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> Path:
    """A small synthetic dataset shared by the tests that only read it."""
    from geoguesser.data.synthetic import generate

    return generate(
        tmp_path_factory.mktemp("synthetic") / "ds",
        locations=60,
        image_size=32,
        seed=7,
        progress=False,
    )


@pytest.fixture(scope="session")
def enriched(synthetic_dir):
    """(table, cells, scaler, border) for the small synthetic dataset, 100 km cells."""
    from geoguesser.data.enrich import prepare
    from geoguesser.data.validate import load_locations
    from geoguesser.geo.borders import load_border
    from geoguesser.geo.splits import split_locations

    border = load_border()
    locations, _ = load_locations([synthetic_dir], border=border)
    locations = split_locations(locations, fractions=(0.7, 0.15, 0.15), seed=0)
    table, cells, scaler = prepare(locations, border, cell_km=100)
    return table, cells, scaler, border


@pytest.fixture(scope="session")
def small_model(enriched):
    """An untrained tinycnn GeoLocator over the first three cells, with its geography."""
    from geoguesser.data.normalization import IMAGENET_MEAN, IMAGENET_STD
    from geoguesser.model.geography import Geography
    from geoguesser.model.locator import GeoLocator

    table, cells, scaler, border = enriched
    geography = Geography.of(cells, scaler, border).to_dict()
    geography["cells"] = {k: v[:3] for k, v in geography["cells"].items()}
    settings = tiny_config(image_size=32)
    return GeoLocator(geography, settings, IMAGENET_MEAN, IMAGENET_STD).eval(), geography


# --- a second checkout and tiny data for the pipeline and sweep tests ---------------------


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    from geoguesser.data.synthetic import generate

    root = tmp_path_factory.mktemp("pipeline")
    data = generate(root / "data", locations=80, image_size=32, seed=1, progress=False)
    return data, root / "cache"


@pytest.fixture(scope="session")
def checkout(tmp_path_factory):
    return make_checkout(tmp_path_factory.mktemp("clone") / "geoguesser")


# --- every shipped config through `geoguesser run`, shrunk --------------------------------


@pytest.fixture(scope="session")
def few_locations(tmp_path_factory) -> Path:
    """20 synthetic locations at 32 px: enough for every split, few for ResNeXt-101 on a CPU."""
    from geoguesser.data.synthetic import generate

    root = tmp_path_factory.mktemp("few")
    return generate(root / "data", locations=20, image_size=32, seed=2, progress=False)


@pytest.fixture(scope="session")
def shipped_run(tiny_data, few_locations, checkout):
    """`geoguesser run --config configs/<name>` in the checkout, shrunk; each once a session.

    Returns (run folder, the finished process, the overrides). The checkpoints go at the
    end of the session: ResNeXt-101's are a gigabyte each, with the optimizer's state.
    """
    runs = {}

    def run(config: str):
        if config not in runs:
            data, cache = tiny_data
            overrides = shrunk(config, data, few_locations, cache)
            result = geoguesser(
                "run", "--config", f"configs/{config}", *set_args(overrides), cwd=checkout
            )
            name = next(
                (o.split("=", 1)[1] for o in overrides if o.startswith("name=")),
                Path(config).stem,
            )
            runs[config] = checkout / "runs" / name, result, overrides
        return runs[config]

    yield run
    for run_dir, _, _ in runs.values():
        for checkpoint in (run_dir / "checkpoints").glob("*.ckpt"):
            checkpoint.unlink()


# --- one small sweep, run alone: what concurrent and SLURM runs of it must reproduce ------


@pytest.fixture(scope="session")
def pair_alone(tiny_data, tmp_path_factory) -> dict[str, dict]:
    """Each member's metrics.json, the members run one after another in one process."""
    data, _ = tiny_data
    root = tmp_path_factory.mktemp("pair-alone")
    arguments = pair_arguments(data, root / "cache", root / "runs")
    result = geoguesser("run", "--config", "configs/demo.yaml", *arguments, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    metrics = pair_metrics(root / "runs" / "pair")
    assert len(metrics) == 2
    return metrics
