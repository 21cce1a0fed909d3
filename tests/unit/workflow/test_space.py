"""The space file of `geoguesser tune`: parsed by its own schema, checked against the settings."""

from pathlib import Path

import pytest

from geoguesser.cli import main
from geoguesser.config import load_settings
from geoguesser.errors import UserError
from geoguesser.workflow.space import (
    FloatRange,
    IntRange,
    load_space,
    override,
    parse_space,
    space_markdown,
)
from helpers.paths import REPO

DEMO = REPO / "configs" / "demo.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


def test_ranges_take_their_kind_from_the_yaml_numbers_and_options_their_defaults(tmp_path):
    space = parse_space(write(tmp_path, """
train.lr: {low: 1.0e-4, high: 1.0e-2, log: true}
train.freeze_epochs: {low: 0, high: 2}
train.tau_km: {low: 10, high: 150, step: 2.5}
grid.cell_km: [30, 50, 100]
train.decode: [mean, argmax]
objective: {metric: acc_25km}
pruner: {kind: halving, reduction_factor: 2}
"""))  # fmt: skip
    params = space.params
    assert params["train.lr"] == FloatRange(low=1e-4, high=1e-2, log=True)
    assert params["train.freeze_epochs"] == IntRange(low=0, high=2)
    assert isinstance(params["train.tau_km"], FloatRange)  # a float step makes floats
    assert params["grid.cell_km"] == [30, 50, 100]
    assert space.objective.goal == "maximize"  # a share within 25 km: higher is better
    assert space.pruner.kind == "halving" and space.pruner.reduction_factor == 2
    assert space.sampler.kind == "tpe" and space.sampler.seed == 0
    assert parse_space(write(tmp_path, "train.lr: [0.1]")).objective.goal == "minimize"


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("train.lr: {low: 0.1, high: 0.01}", "train.lr: low 0.1 is above high 0.01"),
        ("train.lr: {low: 0.0, high: 0.1, log: true}", "a log range needs low above 0"),
        ("train.lr: {low: 0.1, high: 1.0, log: true, step: 0.1}", "log and step do not go"),
        ("train.lr: {low: 0.1, hi: 1.0}", "train.lr.hi: unknown key (low, high, log, step)"),
        ("train.lr: 0.1", "train.lr: expected {low, high} (with log, step) or a list"),
        ("train.lr: []", "train.lr: a list of choices needs at least one value"),
        ("train.view_rows: [[0.1, 0.9]]", "choices are single values"),
        ("train.lr: [0.1, 0.1]", "a choice is listed twice"),
        ("pruners: {kind: median}", "pruners: unknown key; did you mean pruner?"),
        ("split.seed: [0, 1]", "split.seed: not tunable (the split decides what is measured)"),
        ("train.lr: [0.1]\npruner: {kind: best}", "pruner: Input tag 'best' found"),
        ("train.lr: [0.1]\nobjective: {metric: mean}", "objective.metric: Input should be"),
        ("objective: {metric: mean_km}", "no setting to tune (keys like train.lr)"),
        ("[1, 2]", "a space file maps settings to ranges"),
        ("train.lr: [", "not valid YAML"),
    ],
)
def test_a_bad_space_file_is_one_line_naming_the_key(tmp_path, text, line):
    path = write(tmp_path, text)
    with pytest.raises(UserError) as error:
        parse_space(path)
    assert str(error.value).startswith(f"{path}: ")
    assert line in str(error.value) and len(str(error.value).splitlines()) == 1


def test_each_setting_is_checked_by_the_schema_with_both_ends_and_every_choice(
    tmp_path, synthetic_dir
):
    overrides = [f"data.dataset_dirs=[{synthetic_dir}]"]
    space = write(tmp_path, "train.lr: {low: 1.0e-5, high: 0.1}\ngrid.cell_km: [30, 50]")
    assert set(load_space(space, DEMO, overrides).params) == {"train.lr", "grid.cell_km"}
    for text, line in [
        ("train.lrr: [0.1]", "space.yaml: train.lrr: unknown setting; did you mean train.lr?"),
        ("train.lr: {low: -1.0, high: 0.1}", "train.lr = -1.0: Input should be greater than 0"),
        ("grid.cell_km: [30, -5]", "space.yaml: grid.cell_km = -5: Input should be greater"),
        ("train.freeze_epochs: {low: 0.5, high: 2.0}", "Input should be a valid integer"),
    ]:
        with pytest.raises(UserError, match=line.replace("?", r"\?")):
            load_space(write(tmp_path, text), DEMO, overrides)


def test_drawn_values_pass_through_overrides_unchanged(synthetic_dir):
    base = [f"data.dataset_dirs=[{synthetic_dir}]"]
    for key, value in [("train.lr", 1e-05), ("train.lr", 0.003), ("train.tau_km", None),
                       ("train.decode", "argmax"), ("train.augment", False),
                       ("train.freeze_epochs", 2)]:  # fmt: skip
        settings = load_settings(DEMO, [*base, override(key, value)]).to_yaml_dict()
        section, name = key.split(".")
        assert settings[section][name] == value and type(settings[section][name]) is type(value)


def test_a_bad_space_file_stops_tune_before_anything_is_written(tmp_path, synthetic_dir, capsys):
    space = write(tmp_path, "train.lrr: {low: 1.0e-4, high: 1.0e-2, log: true}")
    code = main(["tune", "--config", str(DEMO), "--space", str(space), "--trials", "2",
                 "--runs", str(tmp_path / "runs"), "--set",
                 f"data.dataset_dirs=[{synthetic_dir}]"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.strip() == (
        f"geoguesser tune: {space}: train.lrr: unknown setting; did you mean train.lr?"
    )
    assert not (tmp_path / "runs").exists()


def test_the_docs_tables_list_what_the_models_accept():
    markdown = space_markdown()
    for key in ["| `low` | required |", "| `log` | `false` |", "| `n_startup_trials` | `2` |",
                "| `reduction_factor` | `3` |", "| `grace_s` | `120` |", "`acc_25km`"]:  # fmt: skip
        assert key in markdown
