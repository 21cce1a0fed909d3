"""The search space of `geoguesser tune`: a YAML file, its own schema, checked before anything runs.

Top-level keys with a dot are settings (`train.lr`, `grid.cell_km`), each with a range:
`{low, high}` (optionally `log`, `step`) of floats or of ints (the YAML numbers decide:
`{low: 1, high: 4}` draws ints, `{low: 1.0, high: 4.0}` floats), or a list of choices.
The other keys (`objective`, `pruner`, `sampler`, `heartbeat`) say what is measured and
how trials are drawn and stopped. Each setting is checked against the settings schema
with both ends of its range and every choice, through `load_settings` like any config:
a misspelt name gets the closest known one, a value the schema refuses one line.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from geoguesser.config import load_settings
from geoguesser.errors import UserError
from geoguesser.geo.metrics import THRESHOLDS_KM

# The keys of metrics.json's `val` section an objective may name; the fit logs them as val/KEY.
METRICS = ("mean_km", "median_km", *(f"acc_{t}km" for t in THRESHOLDS_KM), "geoscore")
HIGHER_IS_BETTER = tuple(m for m in METRICS if not m.endswith("_km") or m.startswith("acc_"))
# What trials must not vary: the split decides which locations the objective measures.
NOT_TUNABLE = ("name", "split.")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FloatRange(_Strict):
    """A float setting drawn from [low, high]."""

    low: float = Field(description="lowest value drawn")
    high: float = Field(description="highest value drawn")
    log: bool = Field(False, description="draw uniformly in log space (low above 0)")
    step: float | None = Field(None, gt=0, description="draw only low + k * step (not with log)")

    @model_validator(mode="after")
    def _sound(self):
        _check_range(self.low, self.high, self.log, self.step)
        return self

    def ends(self) -> list:
        return [self.low, self.high]


class IntRange(_Strict):
    """An int setting drawn from [low, high] (both given as YAML ints)."""

    low: int = Field(description="lowest value drawn")
    high: int = Field(description="highest value drawn")
    log: bool = Field(False, description="draw uniformly in log space (low above 0)")
    step: int = Field(1, gt=0, description="draw only low + k * step (1 with log)")

    @model_validator(mode="after")
    def _sound(self):
        _check_range(self.low, self.high, self.log, None if self.step == 1 else self.step)
        return self

    def ends(self) -> list:
        return [self.low, self.high]


def _check_range(low, high, log: bool, step) -> None:
    if low > high:
        raise ValueError(f"low {low} is above high {high}")
    if log and low <= 0:
        raise ValueError(f"a log range needs low above 0 (got {low})")
    if log and step is not None:
        raise ValueError("log and step do not go together")


def _choices(values: list) -> list:
    if not values:
        raise ValueError("a list of choices needs at least one value")
    if any(isinstance(v, list | dict) for v in values):
        raise ValueError("choices are single values (numbers, strings, true/false, null)")
    if len({yaml.safe_dump(v) for v in values}) != len(values):
        raise ValueError("a choice is listed twice")
    return values


class Objective(_Strict):
    metric: Literal[METRICS] = Field(
        "mean_km", description="the validation metric (metrics.json's val section) to optimize"
    )
    direction: Literal["minimize", "maximize"] | None = Field(
        None, description="null: minimize a distance, maximize a share within a distance"
    )

    @property
    def goal(self) -> str:
        if self.direction is not None:
            return self.direction
        return "maximize" if self.metric in HIGHER_IS_BETTER else "minimize"


class MedianPruner(_Strict):
    """Stop a trial whose value after an epoch is worse than the median of earlier trials'."""

    kind: Literal["median"] = "median"
    n_startup_trials: int = Field(2, ge=0, description="trials that finish before any is pruned")
    n_warmup_steps: int = Field(
        2,
        ge=0,
        description="epochs are counted from 1: a trial is never pruned after an epoch below"
        " this (2: not after its first, whose score says little of its last)",
    )
    interval_steps: int = Field(1, ge=1, description="epochs between pruning checks")


class HalvingPruner(_Strict):
    """Successive halving: at each rung keep the best 1/reduction_factor of the trials."""

    kind: Literal["halving"] = "halving"
    min_resource: int | Literal["auto"] = Field(
        1, description="epochs before the first rung (auto: Optuna's guess)"
    )
    reduction_factor: int = Field(3, ge=2, description="keep 1 in this many at each rung")
    min_early_stopping_rate: int = Field(0, ge=0, description="rungs skipped at the start")


class NoPruner(_Strict):
    """Every trial runs all its epochs."""

    kind: Literal["none"] = "none"


class Sampler(_Strict):
    kind: Literal["tpe", "random"] = Field(
        "tpe", description="tpe (learns from finished trials) or random"
    )
    seed: int = Field(0, description="the sampler's seed; worker W of a study uses seed + W")
    n_startup_trials: int = Field(
        5, ge=0, description="tpe: random trials before it models the finished ones"
    )


class Heartbeat(_Strict):
    """How a dead worker's trial is noticed (Optuna's heartbeat, RDB storages)."""

    interval_s: int = Field(30, ge=1, description="seconds between a running trial's heartbeats")
    grace_s: int = Field(
        120, ge=2, description="a running trial silent this long is failed and re-enqueued"
    )
    max_retry: int = Field(2, ge=0, description="re-enqueues of one trial at most")

    @model_validator(mode="after")
    def _longer(self):
        if self.grace_s <= self.interval_s:
            raise ValueError("grace_s must be longer than interval_s")
        return self


Pruner = Annotated[MedianPruner | HalvingPruner | NoPruner, Field(discriminator="kind")]


class Space(_Strict):
    """A space file: `section.setting` keys with ranges, and the study's options."""

    objective: Objective = Field(default_factory=Objective, description="what a trial scores")
    pruner: Pruner = Field(default_factory=MedianPruner, description="which trials stop early")
    sampler: Sampler = Field(default_factory=Sampler, description="how trials are drawn")
    heartbeat: Heartbeat = Field(default_factory=Heartbeat, description="dead workers' trials")
    # The `section.setting` keys, each parsed by `_parse_range`; not a key of the file.
    params: dict[str, Any] = Field(default_factory=dict, exclude=True)


def _parse_range(key: str, value) -> FloatRange | IntRange | list:
    if isinstance(value, list):
        return _choices(value)
    if not isinstance(value, dict):
        raise ValueError("expected {low, high} (with log, step) or a list of choices")
    ints = all(type(value.get(k)) is int for k in ("low", "high")) and not isinstance(
        value.get("step"), float
    )
    return (IntRange if ints else FloatRange).model_validate(value)


def _problem(where: str, error: Exception, joined: str = ".") -> str:
    """One line for `error` at `where`; `joined` goes between `where` and the error's key."""
    if isinstance(error, ValidationError):
        errors = error.errors()  # a misspelt key first: it explains the missing one
        first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        loc = ".".join(str(p) for p in first["loc"] if not isinstance(p, int))
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "unknown key (low, high, log, step)"
        return f"{where}{joined + loc if loc else ''}: {message}"
    return f"{where}: {error}"


def parse_space(path: Path) -> Space:
    """The space file read and checked in itself (not yet against the settings)."""
    try:
        loaded = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: space file not found") from None
    except (IsADirectoryError, UnicodeDecodeError):
        raise UserError(f"{path}: not a YAML space file") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(loaded, dict) or not loaded:
        raise UserError(f"{path}: a space file maps settings to ranges, e.g. train.lr: {{low: "
                        "1.0e-4, high: 1.0e-2, log: true}")  # fmt: skip
    options = set(Space.model_fields) - {"params"}
    problems, params = [], {}
    for key, value in loaded.items():
        key = str(key)
        if key in options:
            continue
        if "." not in key or key.startswith(NOT_TUNABLE):
            if key.startswith(NOT_TUNABLE):
                problems.append(f"{path}: {key}: not tunable (the split decides what is measured)")
                continue
            close = difflib.get_close_matches(key, sorted(options), n=1)
            hint = f"; did you mean {close[0]}?" if close else " (a setting is section.name)"
            problems.append(f"{path}: {key}: unknown key{hint}")
            continue
        try:
            params[key] = _parse_range(key, value)
        except (ValueError, ValidationError) as error:
            problems.append(_problem(f"{path}: {key}", error))
    if not params and not problems:
        problems.append(f"{path}: no setting to tune (keys like train.lr)")
    try:
        space = Space.model_validate({k: v for k, v in loaded.items() if k in options})
    except ValidationError as error:
        problems.append(_problem(str(path), error, joined=": "))
    if problems:
        raise UserError("\n".join(problems))
    return space.model_copy(update={"params": params})


def values_to_try(value: FloatRange | IntRange | list) -> list:
    """The values checked against the schema: both ends of a range, or every choice."""
    return list(value) if isinstance(value, list) else value.ends()


def override(key: str, value) -> str:
    """`key=value` as --set takes it, the value written so that YAML reads it back the same."""
    text = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
    if isinstance(value, float) and "e" in text and "." not in text.split("e")[0]:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}.0e{exponent}"  # YAML 1.1 reads 1e-05 as a string, 1.0e-05 as a float
    return f"{key}={text}"


def load_space(path: Path, config: Path, overrides: list[str]) -> Space:
    """The space file, every range end and choice checked as a --set on the study's config."""
    space = parse_space(path)
    problems = []
    for key, value in space.params.items():
        for tried in values_to_try(value):
            try:
                load_settings(config, [*overrides, override(key, tried)])
            except UserError as error:
                problems.append(_schema_problem(path, key, tried, str(error).splitlines()[0]))
                break
    if problems:
        raise UserError("\n".join(problems))
    return space


def _schema_problem(path: Path, key: str, tried, line: str) -> str:
    """The schema's line about `key` set to `tried`, said of the space file."""
    said = line.removeprefix(f"{key}: ")
    if said.startswith("unknown setting"):
        return f"{path}: {key}: {said}"
    return f"{path}: {key} = {tried!r}: {said}"


def space_markdown() -> str:
    """The space file's format as Markdown tables, from these models: the docs' Tuning page."""
    lines = []
    for title, model in [
        ("a float range (`low` and `high` not both YAML ints)", FloatRange),
        ("an int range (`low` and `high` YAML ints)", IntRange),
        ("`objective`", Objective),
        ("`pruner: {kind: median, ...}`", MedianPruner),
        ("`pruner: {kind: halving, ...}`", HalvingPruner),
        ("`pruner: {kind: none}`", NoPruner),
        ("`sampler`", Sampler),
        ("`heartbeat`", Heartbeat),
    ]:
        lines += [f"**{title}**: {model.__doc__ or ''}".rstrip(": "), ""]
        lines += ["| key | default | meaning |", "|---|---|---|"]
        for name, field in model.model_fields.items():
            default = "required" if field.is_required() else f"`{_shown(field.default)}`"
            lines.append(f"| `{name}` | {default} | {field.description or ''} |")
        lines.append("")
    metrics = ", ".join(f"`{m}`" for m in METRICS)
    lines.append(f"Metrics an objective may name: {metrics}.")
    return "\n".join(lines).rstrip() + "\n"


def _shown(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
