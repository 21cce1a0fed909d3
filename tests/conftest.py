"""Fixtures: every dataset a test uses is made here, small and seeded; no real photographs."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from geoguesser.data.layout import VIEWS

pytest_plugins = ["helpers.frames"]  # fixtures shared by modules in several folders

REPO = Path(__file__).resolve().parents[1]
HELPERS = Path(__file__).resolve().parent / "helpers"  # scripts the tests run as processes
LUMEN_SAMPLE = REPO.parent / "shared" / "data" / "lumen-sample"
SAMPLE_WEIGHTS = REPO / "weights" / "efficientnet_lite0.pth"  # what `make sample-weights` writes

# Points inside the 1:10m border: Zagreb, Split, Osijek, Rijeka, Zadar, Karlovac.
CROATIAN_POINTS = [
    (45.8150, 15.9819),
    (43.5200, 16.4700),
    (45.5550, 18.6955),
    (45.3271, 14.4422),
    (44.1200, 15.2500),
    (45.4870, 15.5478),
]


def write_jpeg(path: Path, seed: int, size: int = 16) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


def make_dataset(
    root: Path, points=CROATIAN_POINTS, prefix: str = "loc", with_csv: bool = True
) -> Path:
    """A labelled dataset in the competition layout, index column included like the real files."""
    rows = []
    for i, (lat, lon) in enumerate(points):
        uuid = f"{prefix}-{i:04d}"
        for view, heading in enumerate(VIEWS):
            write_jpeg(root / "images" / uuid / f"{heading}.jpg", seed=i * 4 + view)
        rows.append({"uuid": uuid, "latitude": lat, "longitude": lon})
    if with_csv:
        pd.DataFrame(rows).to_csv(root / "data.csv", index=True)
    return root


def tree_snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under root with its size and modification time, to prove nothing changed."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
    }


def tree_bytes(root: Path, skip: tuple[str, ...] = ()) -> dict[str, str | None]:
    """Every path under root with a hash of its bytes (None for a folder): byte-identical or not.

    Paths with a part in `skip` (such as the downloader's private `.download`) are left out.
    """
    return {
        str(p.relative_to(root)): _sha256(p) if p.is_file() else None
        for p in sorted(root.rglob("*"))
        if not set(p.relative_to(root).parts) & set(skip)
    }


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:  # not Path.read_bytes, which a test may make refuse
        return hashlib.sha256(handle.read()).hexdigest()


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
    from geoguesser.data.layout import load_locations
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


def tiny_config(**overrides):
    """A training configuration that runs in seconds on a CPU."""
    from geoguesser.config import TrainSettings

    settings = dict(
        backbone="tinycnn", image_size=32, batch_size=16, num_workers=0, max_epochs=2,
        freeze_epochs=1, lr=3e-3, backbone_lr=3e-3, progress_bar=False, log_every_n_steps=1,
        accelerator="cpu", devices=1,
    )  # fmt: skip
    settings.update(overrides)
    return TrainSettings(**settings)


# --- a second checkout and tiny data for the pipeline and sweep tests ---------------------

CLONE_MARK = "This copy of the notebooks belongs to the second checkout."


def tiny_overrides(dataset_dir: Path, cache_dir: Path, **train) -> list[str]:
    settings = {
        "image_size": 32, "batch_size": 16, "max_epochs": 2, "freeze_epochs": 1,
        "image_cache_dir": str(cache_dir), **train,
    }  # fmt: skip
    overrides = [f"data.dataset_dirs=[{dataset_dir}]", "grid.cell_km=100", "grid.compare_km=[200]"]
    return overrides + [f"train.{key}={value}" for key, value in settings.items()]


def set_args(overrides: list[str]) -> list[str]:
    return [arg for item in overrides for arg in ("--set", item)]


def make_checkout(root: Path) -> Path:
    """A second geoguesser checkout: this one's notebooks and configs in a git repository."""
    for folder in ("notebooks", "configs"):
        shutil.copytree(REPO / folder, root / folder)
    first = root / "notebooks" / "01-eda.ipynb"
    book = nbformat.read(first, as_version=4)
    book.cells.insert(1, nbformat.v4.new_markdown_cell(CLONE_MARK))
    nbformat.write(book, first)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(root)]
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "clone"], check=True)
    return root


def geoguesser(*args, cwd: Path, timeout=1800) -> subprocess.CompletedProcess:
    # `timeout` bounds a hang: a shipped config's run takes minutes on a loaded machine
    return subprocess.run(
        [sys.executable, "-m", "geoguesser.cli", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def fit_processes(run_dir: Path) -> list[int]:
    """Processes still running a fit of `run_dir` (there must be none once a run is over)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"train" in command and str(run_dir).encode() in command:
                found.append(int(entry.name))
    return found


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

# What a config's run in the suite may override: where the data, the cache and the weights
# are, and how big it is (image size, epochs, locations per batch, cells); never what it is.
SHRINKING = {
    "name", "data.dataset_dirs", "grid.cell_km", "grid.compare_km", "train.image_size",
    "train.batch_size", "train.max_epochs", "train.freeze_epochs", "train.num_workers",
    "train.image_cache_dir", "train.weights", "train.accelerator",
}  # fmt: skip


def shrunk(config: str, data: Path, few: Path, cache: Path) -> list[str]:
    """The overrides of `configs/<config>`'s run in the suite, on tiny synthetic data.

    demo.yaml runs as the pipeline tests' run, on `data`; sample.yaml on the shared sample
    and its weights where present (frozen all along, as shipped); lumen.yaml keeps
    ResNeXt-101, bf16-mixed, channels-last, a frozen then an unfrozen epoch, the image and
    feature caches and decoding workers, at 32 px on the CPU with random weights (imagenet
    needs a network), on the `few` locations that keep its fit to a minute or two.
    """
    if config == "demo.yaml":
        return [*tiny_overrides(data, cache), "name=tiny"]
    if config == "sample.yaml":
        weights = SAMPLE_WEIGHTS if SAMPLE_WEIGHTS.is_file() else "null"
        real = LUMEN_SAMPLE if LUMEN_SAMPLE.is_dir() else data
        return [
            f"data.dataset_dirs=[{real}]", "train.image_size=64", "train.max_epochs=3",
            "train.freeze_epochs=3", f"train.weights={weights}",
            f"train.image_cache_dir={cache}",
        ]  # fmt: skip
    if config == "lumen.yaml":
        return [
            f"data.dataset_dirs=[{few}]", "train.image_size=32", "train.max_epochs=2",
            "train.freeze_epochs=1", "train.num_workers=2", "train.weights=null",
            "train.accelerator=cpu", f"train.image_cache_dir={cache}",
        ]  # fmt: skip
    raise KeyError(config)


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

PAIR_SWEEP = ["--sweep", "grid.cell_km=80,120"]


def pair_arguments(dataset_dir: Path, cache_dir: Path, runs: Path) -> list[str]:
    """`geoguesser run --config configs/demo.yaml` arguments of the two-member sweep `pair`
    (one epoch each), without the config, which the SLURM scripts take first."""
    overrides = [*tiny_overrides(dataset_dir, cache_dir, max_epochs=1, freeze_epochs=0)]
    overrides += ["name=pair", "train.accelerator=cpu", "maps.worst=1"]
    return ["--runs", str(runs), *set_args(overrides), *PAIR_SWEEP]


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


def pair_metrics(sweep_dir: Path) -> dict[str, dict]:
    return {
        run.name: json.loads((run / "metrics.json").read_text())
        for run in sorted(sweep_dir.iterdir())
        if (run / "metrics.json").is_file()
    }
