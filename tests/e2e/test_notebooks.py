"""The notebooks as committed: no outputs, one plain `parameters` cell first, steps in order."""

import ast

import nbformat
import pytest

from geoguesser.workflow.runs import STEPS
from helpers.paths import REPO

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
ON_DEMAND = ["06-compare-runs", "07-study"]  # run by hand or papermill, never by `geoguesser run`


def test_the_notebooks_are_the_pipeline_steps_then_the_on_demand_ones():
    assert [p.stem for p in NOTEBOOKS] == STEPS + ON_DEMAND
    assert not set(ON_DEMAND) & set(STEPS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name} has outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_first_code_cell_is_parameters_with_plain_values(path):
    book = nbformat.read(path, as_version=4)
    first = next(cell for cell in book.cells if cell.cell_type == "code")
    assert "parameters" in first.metadata.get("tags", [])
    for statement in ast.parse(first.source).body:
        assert isinstance(statement, ast.Assign), f"{path.name}: only assignments in parameters"
        ast.literal_eval(statement.value)  # plain values only: nothing derived
    assert book.cells[0].cell_type == "markdown"  # each notebook opens by explaining its step
