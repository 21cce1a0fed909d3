"""The settings schema: every bad config is one line naming the key, before anything runs."""
# ruff: noqa: E501  (the corpus below reads best as a table, one case a line)

import importlib.util
import re

import pytest
import yaml

from geoguesser.cli import main
from geoguesser.config import Settings, load_settings, schema_markdown
from geoguesser.errors import UserError
from helpers.datasets import make_dataset
from helpers.paths import REPO


@pytest.fixture
def labelled(tmp_path):
    return make_dataset(tmp_path / "ds")


def write_config(tmp_path, document: dict | str):
    path = tmp_path / "config.yaml"
    path.write_text(document if isinstance(document, str) else yaml.safe_dump(document))
    return path


# (a section of the config file, or --set overrides), the message it must give
BAD = [
    # a typo in every section, with the closest known name
    ({"trian": {"max_epochs": 3}}, "trian: unknown setting; did you mean train?"),
    ({"data": {"dataset_dir": ["x"]}}, "data.dataset_dir: unknown setting; did you mean data.dataset_dirs?"),
    ({"split": {"fraction": [1, 0, 0]}}, "split.fraction: unknown setting; did you mean split.fractions?"),
    ({"grid": {"cellkm": 25}}, "grid.cellkm: unknown setting; did you mean grid.cell_km?"),
    ({"train": {"max_epoch": 3}}, "train.max_epoch: unknown setting; did you mean train.max_epochs?"),
    ({"maps": {"ofline": False}}, "maps.ofline: unknown setting; did you mean maps.offline?"),
    (["grid.cellkm=25"], "grid.cellkm: unknown setting; did you mean grid.cell_km?"),
    (["train.zzz=1"], "train.zzz: unknown setting"),
    # wrong types
    (["train.max_epochs=ten"], "train.max_epochs: Input should be a valid integer"),
    ({"grid": {"cell_km": "big"}}, "grid.cell_km: Input should be a valid number"),
    (["train.augment=maybe"], "train.augment: Input should be a valid boolean"),
    ({"grid": "50"}, "grid: Input should be a valid dictionary"),
    (["train.devices=0"], "train.devices: expected a positive number of devices or auto"),
    (["train.extra=3"], "train.extra: Input should be a valid dictionary"),
    # impossible values
    (["grid.cell_km=-50"], "grid.cell_km: Input should be greater than 0"),
    (["split.fractions=[0.5, 0.1, 0.1]"], "split.fractions: [0.5, 0.1, 0.1] sum to 0.7, not 1"),
    (["split.fractions=[0.8, 0.2]"], "split.fractions: expected three shares, train, val and test (got [0.8, 0.2])"),
    (["split.fractions=[0.9, 0.0, 0.1]"], "split.fractions: the val share must be above 0: validation picks the best checkpoint (a 0 test share is allowed)"),
    (["split.dataset_frac=0"], "split.dataset_frac: Input should be greater than 0"),
    (["train.batch_size=0"], "train.batch_size: Input should be greater than 0"),
    (["train.image_size=-1"], "train.image_size: Input should be greater than 0"),
    (["train.lr=0"], "train.lr: Input should be greater than 0"),
    (["train.plateau_factor=1.5"], "train.plateau_factor: Input should be less than 1"),
    (["train.limit_train_batches=0"], "train.limit_train_batches: expected a number of batches >= 1"),
    (["train.objective=ranking"], "train.objective: Input should be 'classification', 'regression', 'hybrid' or 'contrastive'"),
    (["train.fusion=max"], "train.fusion: Input should be 'concat', 'mean' or 'attention'"),
    (["train.precision=bf17"], "train.precision: Input should be"),
    (["train.backbone=resnet9000"], "train.backbone: unknown backbone 'resnet9000'"),
    (["train.weights=/no/such/weights.pth"], "train.weights: /no/such/weights.pth: weights file"),
    (["data.crs=EPSG:4326"], "data.crs: 'EPSG:4326' is not projected"),
    (["data.crs=EPSG:0"], "data.crs: 'EPSG:0' is not a CRS pyproj knows"),
    (["data.dataset_dirs=[/no/such/dir]"], "data.dataset_dirs: /no/such/dir: no such dataset"),
    (["data.border=/no/border.geojson"], "data.border: /no/border.geojson: border file not found"),
    # unsafe run names
    (["name=.."], "name: '..' is not a plain folder name"),
    (["name=../../victim"], "name: '../../victim' is not a plain folder name"),
    (["name=a/b"], "name: 'a/b' is not a plain folder name"),
    (["name=."], "name: '.' is not a plain folder name"),
    (["name=''"], "name: '' is not a plain folder name"),
]  # fmt: skip


@pytest.mark.parametrize("bad, message", BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_bad_config_exits_2_with_one_line_before_a_run_folder_exists(
    tmp_path, labelled, capsys, bad, message
):
    document = {"data": {"dataset_dirs": [str(labelled)]}, "train": {"backbone": "tinycnn"}}
    overrides = []
    if isinstance(bad, dict):
        for section, values in bad.items():
            if isinstance(values, dict) and isinstance(document.get(section), dict):
                document[section] = {**document[section], **values}
            else:
                document[section] = values
    else:
        overrides = [arg for item in bad for arg in ("--set", item)]
    config = write_config(tmp_path, document)
    runs = tmp_path / "runs"
    code = main(["run", "--config", str(config), "--runs", str(runs), *overrides])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("geoguesser run: ") and message in lines[0], err
    assert "Traceback" not in err
    assert not runs.exists()


def test_a_directory_without_data_csv_is_refused_for_training(tmp_path, capsys):
    unlabelled = make_dataset(tmp_path / "unlabelled", with_csv=False)
    code = main(["run", "--config", str(write_config(tmp_path, {}))] + [
        "--set", f"data.dataset_dirs=[{unlabelled}]", "--runs", str(tmp_path / "runs"),
    ])  # fmt: skip
    assert code == 2
    assert "no data.csv; unlabelled folders are for predict only" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_every_problem_is_reported_at_once(labelled):
    with pytest.raises(UserError) as error:
        load_settings(None, [f"data.dataset_dirs=[{labelled}]", "grid.cellkm=1", "train.lr=-1"])
    assert str(error.value).splitlines() == [
        "grid.cellkm: unknown setting; did you mean grid.cell_km?",
        "train.lr: Input should be greater than 0 (got -1)",
    ]


def test_overrides_are_yaml_and_relative_paths_resolve_against_the_cwd(
    tmp_path, labelled, monkeypatch
):
    other = make_dataset(tmp_path / "other", prefix="o")
    monkeypatch.chdir(tmp_path)
    settings = load_settings(
        None,
        [
            "data.dataset_dirs=[ds, other]",
            "train.tau_km=null",
            "grid.cell_km=25.5",
            "train.image_cache_dir=cache",
            "train.extra.accumulate_grad_batches=2",
        ],
    )
    assert settings.data.dataset_dirs == [labelled, other]
    assert settings.train.tau_km is None and settings.grid.cell_km == 25.5
    assert settings.train.image_cache_dir == tmp_path / "cache"
    assert settings.train.extra == {"accumulate_grad_batches": 2}
    assert settings.name == "dev"  # no config file to name it after


def test_the_name_defaults_to_the_config_files_name_and_configs_hold_only_changes(
    tmp_path, labelled
):
    config = write_config(tmp_path, {"data": {"dataset_dirs": [str(labelled)]}})
    assert load_settings(config).name == "config"
    demo = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    for section, values in demo.items():
        schema = Settings.model_fields[section].annotation
        for key, value in values.items():
            default = schema.model_fields[key].default
            assert value != default, f"demo.yaml restates the default {section}.{key}"


def test_a_runs_config_yaml_loads_back_to_the_same_settings(tmp_path, labelled):
    settings = load_settings(None, [f"data.dataset_dirs=[{labelled}]", "name=x"])
    saved = write_config(tmp_path, {**settings.to_yaml_dict(), "history": [{"steps": []}]})
    assert load_settings(saved) == settings


def test_the_settings_page_is_generated_from_the_schema():
    """docs/settings.md holds a marker, not a copy: the site's hook puts the schema's tables there."""
    spec = importlib.util.spec_from_file_location("docs_hooks", REPO / "docs" / "hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    page = (REPO / "docs" / "settings.md").read_text()
    assert page.count(hooks.SETTINGS_MARKER) == 1, "docs/settings.md lacks the settings marker"
    assert "| setting | default | meaning |" not in page, "a copy of the tables would go stale"
    built = hooks.with_schema(page)
    assert schema_markdown().strip() in built and hooks.SETTINGS_MARKER not in built


def test_config_command_prints_resolved_settings(labelled, tmp_path, capsys):
    config = write_config(tmp_path, {"data": {"dataset_dirs": [str(labelled)]}})
    assert main(["config", str(config), "--set", "train.max_epochs=3"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["train"]["max_epochs"] == 3 and printed["name"] == "config"
    assert printed["data"]["dataset_dirs"] == [str(labelled)]


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.strategy=ddp_notebook", "train.strategy: 'ddp_notebook': fork-based"),
        ("train.strategy=deepspeed_stage_2", "train.strategy: 'deepspeed_stage_2': shards"),
        ("train.strategy=horovod", "train.strategy: 'horovod': not one geoguesser fits with"),
        ("train.extra.num_nodes=2", "train.extra: num_nodes is a setting of its own"),
    ],
)
def test_a_fit_that_cannot_work_is_one_line_before_the_run(labelled, override, message):
    with pytest.raises(UserError, match=f"^{re.escape(message)}"):
        load_settings(None, [f"data.dataset_dirs=[{labelled}]", override])
