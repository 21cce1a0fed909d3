"""Sweeps: every combination of a few settings, run as sibling runs under `runs/<name>/`.

`--sweep train.tau_km=null,25,65 --sweep grid.cell_km=30,50` makes six members, the first
`--sweep` varying slowest. Each member is an ordinary run named by its assignments
(`train.tau_km=25,grid.cell_km=30`), so everything that reads runs reads members too.
Every member's settings are checked before the first one starts. Running the same command
again skips finished members and continues an interrupted one; a failing member does not
stop the others; `--sweep-index I` runs member I alone (one cluster array task each).
After each member, `summary.txt` in the sweep folder lists every member as its folder
says, so array tasks that finish in any order leave one complete table.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from geoguesser.atomic import locked, write_text
from geoguesser.config import Settings, load_settings
from geoguesser.errors import UserError
from geoguesser.workflow.pipeline import StepFailed, run
from geoguesser.workflow.runs import (
    FINISHED_NAME,
    first_unfinished,
    is_finished,
    is_run,
    recorded_settings,
)

SWEEP_MARKER = ".geoguesser-sweep"
SUMMARY_NAME = "summary.txt"
MAX_NAME = 200


@dataclass
class Member:
    index: int
    name: str
    overrides: list[str]  # the sweep's own overrides, then this member's assignments
    settings: Settings


@dataclass
class Outcome:
    member: Member
    status: str  # finished, skipped (finished before), failed; on disk: unfinished, pending
    detail: str = ""
    metrics: dict | None = None


def split_values(text: str) -> list[str]:
    """Split `a,[b, c],'d,e'` at top-level commas: brackets, braces and quotes keep theirs."""
    values, depth, quote, current = [], 0, None, []
    for char in text:
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        elif char == "," and depth == 0:
            values.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    values.append("".join(current).strip())
    if quote or depth != 0 or any(not value for value in values):
        raise UserError(f"--sweep {text!r}: unbalanced brackets or quotes, or an empty value")
    return values


def parse_sweep(item: str) -> tuple[str, list[str]]:
    key, sep, values = item.partition("=")
    if not sep or not key.strip():
        raise UserError(f"--sweep {item!r}: expected key=value1,value2, e.g. grid.cell_km=30,50")
    for value in split_values(values):
        try:
            yaml.safe_load(value)
        except yaml.YAMLError:
            raise UserError(f"--sweep {item!r}: {value!r} is not a YAML value") from None
    return key.strip(), split_values(values)


def member_name(assignments: list[str]) -> str:
    """The assignments made safe for one folder name; very long ones end in a short hash."""
    name = ",".join(re.sub(r"[^A-Za-z0-9_.=,-]+", "_", a) for a in assignments)
    name = name.strip(".") or "member"
    if len(name) > MAX_NAME:
        digest = hashlib.sha1(name.encode()).hexdigest()[:10]
        name = f"{name[: MAX_NAME - 11]}-{digest}"
    return name


def plan(config_file: Path, overrides: list[str], sweeps: list[str]) -> tuple[str, list[Member]]:
    """The sweep's name and its members, every member's settings checked."""
    base = load_settings(config_file, overrides)
    axes = [parse_sweep(item) for item in sweeps]
    members, problems = [], []
    combinations = itertools.product(*[[f"{key}={v}" for v in values] for key, values in axes])
    for index, assignments in enumerate(combinations):
        assignments = list(assignments)
        name = member_name(assignments)
        member_overrides = [*overrides, *assignments]
        try:
            settings = load_settings(config_file, [*member_overrides, f"name={name}"])
        except UserError as error:
            problems += [f"sweep member {name}: {line}" for line in str(error).splitlines()]
            continue
        members.append(Member(index, name, member_overrides, settings))
    if problems:
        raise UserError("\n".join(dict.fromkeys(problems)))
    names = [member.name for member in members]
    if len(set(names)) != len(names):
        raise UserError("two sweep members would share a folder name; make the values distinct")
    return base.name, members


def select(members: list[Member], index: int | None) -> list[Member]:
    """Every member, or member `index` alone (--sweep-index)."""
    if index is None:
        return members
    if not 0 <= index < len(members):
        raise UserError(f"--sweep-index {index}: the sweep has members 0..{len(members) - 1}")
    return [members[index]]


def _metrics(run_dir: Path) -> dict | None:
    try:
        return json.loads((run_dir / FINISHED_NAME).read_text())
    except (OSError, ValueError):
        return None


def run_member(member: Member, sweep_dir: Path, overwrite: bool, **run_options) -> Outcome:
    run_dir = sweep_dir / member.name
    start_from = None
    if run_dir.exists() and not overwrite:
        if is_finished(run_dir):
            return Outcome(member, "skipped", "finished before", _metrics(run_dir))
        if not is_run(run_dir):
            return Outcome(member, "failed", f"{run_dir}: exists and is not a run")
        if recorded_settings(run_dir) != member.settings.to_yaml_dict():
            return Outcome(
                member, "failed", "its settings changed since it ran; --overwrite redoes it"
            )
        start_from = first_unfinished(run_dir) or "05"
        print(f"continuing {member.name} from {start_from}", flush=True)
    try:
        run(
            member.settings,
            runs_root=sweep_dir,
            overwrite=overwrite,
            start_from=start_from[:2] if start_from else None,
            overrides=member.overrides,
            **run_options,
        )
    except (StepFailed, UserError) as failure:
        return Outcome(member, "failed", str(failure).splitlines()[0])
    return Outcome(member, "finished", "", _metrics(run_dir))


def run_sweep(
    config_file: Path,
    overrides: list[str],
    sweeps: list[str],
    runs_root: Path,
    overwrite: bool = False,
    index: int | None = None,
    **run_options,
) -> list[Outcome]:
    name, planned = plan(config_file, overrides, sweeps)
    members = select(planned, index)
    sweep_dir = Path(runs_root).absolute() / name
    if is_run(sweep_dir):
        raise UserError(f"{sweep_dir}: is a single run, not a sweep; choose another name")
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / SWEEP_MARKER).touch()
    outcomes = []
    for member in members:
        print(f"== sweep member {member.index}: {member.name}", flush=True)
        outcomes.append(
            run_member(member, sweep_dir, overwrite, config_file=config_file, **run_options)
        )
        write_summary(sweep_dir, planned, outcomes)
    return outcomes


def write_summary(sweep_dir: Path, members: list[Member], outcomes: list[Outcome]) -> Path:
    """`SUMMARY_NAME`: every member of the sweep as its folder says now, one row each.

    Array tasks finish in any order, each knowing only its own member, so the table is
    made from the run folders, under the sweep's lock: whoever writes last has seen every
    member finished before it. A member that failed here says why; one run elsewhere that
    has not finished is `unfinished` (running, failed or stopped), one not begun `pending`.
    """
    failed = {o.member.index: o for o in outcomes if o.status == "failed"}
    with locked(sweep_dir / SWEEP_MARKER):
        rows = [failed.get(member.index) or _on_disk(member, sweep_dir) for member in members]
        return write_text(sweep_dir / SUMMARY_NAME, table(rows) + "\n")


def _on_disk(member: Member, sweep_dir: Path) -> Outcome:
    run_dir = sweep_dir / member.name
    if is_finished(run_dir):
        return Outcome(member, "finished", "", _metrics(run_dir))
    if is_run(run_dir):
        return Outcome(member, "unfinished", f"next step {first_unfinished(run_dir)}")
    return Outcome(member, "pending")


def table(outcomes: list[Outcome]) -> str:
    """Members, their status and val/test mean km, one row each."""
    width = max([len("member")] + [len(o.member.name) for o in outcomes])
    lines = [f"{'#':>3}  {'member':<{width}}  {'status':<8}  {'val km':>8}  {'test km':>8}"]
    for o in outcomes:
        val = test = "-"
        if o.metrics:
            val = f"{o.metrics.get('val', {}).get('mean_km', float('nan')):.1f}"
            test = f"{o.metrics.get('test', {}).get('mean_km', float('nan')):.1f}"
        row = f"{o.member.index:>3}  {o.member.name:<{width}}  {o.status:<8}  {val:>8}  {test:>8}"
        lines.append(row + (f"  {o.detail}" if o.status in ("failed", "unfinished") else ""))
    return "\n".join(lines)
