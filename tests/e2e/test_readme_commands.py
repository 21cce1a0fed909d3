"""Every `geoguesser ...` command the README (and any page under docs/) shows is accepted.

Commands are read from fenced and 4-space indented code blocks and from inline code that
starts with the command (`.venv/bin/geoguesser`, `python -m geoguesser.cli` and torchrun's
`-m geoguesser.cli` too). Each must parse with the CLI's own argparse parser (nothing is run);
a `geoguesser run` must also pass the settings check that runs before anything else (the
dry run's settings stage, `cli.run_members`: every sweep member for a sweep). Optional parts
written `[--from 04]` are included; placeholders get a stand-in (STAND_INS), and the user's
data folders and weights files, which no checkout has, are stood in for by a test dataset
and a file, given before the command's own `--set`s so that those still win.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import shlex
from pathlib import Path

import pytest
import yaml

from geoguesser.cli import build_parser, run_members, split_lab_args
from geoguesser.errors import UserError
from helpers.paths import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
FENCE = re.compile(r"^(```|~~~)")
# `geoguesser` or `.venv/bin/geoguesser` starting the line, or `-m geoguesser.cli` anywhere.
COMMAND = re.compile(r"^(?:\S*/)?geoguesser\s+(?P<a>.*)$|(?:^|\s)-m\s+geoguesser\.cli\s+(?P<b>.*)$")
# The SLURM scripts pass a config and the rest of their arguments to `geoguesser run`.
SBATCH = re.compile(
    r"^sbatch\s+(?:\S+\s+)*?scripts/slurm-(?P<kind>run|sweep)\.sbatch\s+(?P<rest>.*)$"
)
# Placeholder words (as whole words) and example paths, with what stands in for them.
STAND_INS = {
    r"\bRUN\b": "runs/demo",
    r"NNN\b": "007",
    r"\bNN\b": "04",
    r"\$NODE_RANK\b": "0",
    r"^runs/lumen/config\.yaml$": "configs/lumen.yaml",  # the run's own copy of the config
    r"^runs/demo/config\.yaml$": "configs/demo.yaml",  # RUN/config.yaml, likewise
    r"^runs/STUDY/best\.yaml$": "configs/demo.yaml",  # the settings a study's best trial ran
}


def code_lines(markdown: str) -> list[str]:
    """The lines of fenced and indented code blocks, then the inline code spans, of a page.

    An indented block starts after a blank line; a backslash at a line's end continues it.
    """
    code, prose, fenced, previous_blank, indented = [], [], False, True, False
    for line in markdown.splitlines():
        if FENCE.match(line.strip()):
            fenced, indented = not fenced, False
            continue
        indented = line.startswith("    ") and (previous_blank or indented)
        (code if fenced or indented else prose).append(line.strip())
        previous_blank = not line.strip()
    joined = "\n".join(code).replace("\\\n", " ")
    spans = [" ".join(m.group(1).split()) for m in re.finditer(r"`([^`]+)`", "\n".join(prose))]
    return joined.splitlines() + spans


def expand(tokens: list[str]) -> list[str]:
    """Optional parts `[--to 03]`, `[DIR...]` written out; a bare `...` dropped, or in
    `--set ...` given a value to stand for."""
    out = []
    for token in tokens:
        if token.startswith("[") and token != "[":
            token = token[1:]
        if token.endswith("]") and "=[" not in token and not token.startswith("["):
            token = token[:-1]
        if token == "..." and out and out[-1] == "--set":
            token = "train.max_epochs=1"
        token = token.removesuffix("...")
        if token:
            out.append(token)
    return out


def command_tokens(line: str) -> list[str]:
    """The words after `geoguesser` (or what a SLURM script gives it), none for no command."""
    sbatch = SBATCH.match(line)
    if sbatch:
        config, *rest = shlex.split(sbatch.group("rest"), comments=True)
        index = ["--sweep-index", "0"] if sbatch.group("kind") == "sweep" else []
        return ["run", "--config", config, *index, *rest]
    match = COMMAND.search(line)
    if not match:
        return []
    return shlex.split(match.group("a") or match.group("b"), comments=True)


def argv_of(line: str) -> list[str] | None:
    """The arguments after `geoguesser` on a line of code, or None for no command.

    `geoguesser run: ...` is the program's output, and a lone `geoguesser synth` names a
    command rather than showing one: neither is checked.
    """
    tokens = command_tokens(line)
    if not tokens or tokens[0].endswith(":") or len(tokens) < 2:
        return None
    argv = []
    for token in expand(tokens):
        for pattern, stand_in in STAND_INS.items():
            token = re.sub(pattern, stand_in, token)
        argv.append(token)
    return argv


def parse_error(argv: list[str]) -> str | None:
    """argparse's own complaint about `argv`, or None when the parser accepts it."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            build_parser().parse_args(split_lab_args(argv)[0])
    except SystemExit as exit:
        if exit.code == 0:  # --help: printed and accepted
            return None
        return (stderr.getvalue().strip().splitlines() or [f"exit {exit.code}"])[-1]
    return None


def stand_in_settings(config: Path, data_dir: Path, weights: Path) -> list[str]:
    """Overrides standing in for what only the user has: data folders, a missing weights file."""
    overrides = [f"data.dataset_dirs=[{data_dir}]"]
    try:
        named = (yaml.safe_load(config.read_text()) or {}).get("train", {}).get("weights")
    except (OSError, yaml.YAMLError, AttributeError):
        named = None
    if named not in (None, "imagenet") and not Path(named).is_file():
        overrides.append(f"train.weights={weights}")
    return overrides


def problem_of(argv: list[str], data_dir: Path, weights: Path) -> str | None:
    """Why the CLI would refuse `argv` before doing anything, or None."""
    argv = [re.sub(r"\bDIR\b", str(data_dir), arg) for arg in argv]
    error = parse_error(argv)
    if error is not None or {"-h", "--help"} & set(argv):
        return error
    args = build_parser().parse_args(split_lab_args(argv)[0])
    if args.command != "run":
        return None
    args.set = [*stand_in_settings(args.config, data_dir, weights), *args.set]
    try:
        run_members(args)
    except UserError as refusal:
        return str(refusal).splitlines()[0]
    return None


def shown_commands() -> list[tuple[str, list[str]]]:
    found = []
    for page in PAGES:
        for line in code_lines(page.read_text()):
            argv = argv_of(line)
            if argv is not None:
                found.append((f"{page.name}: {line}", argv))
    return found


COMMANDS = shown_commands()


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "stand-in.pth"
    path.write_bytes(b"")  # the settings check asks only that the file is there
    return path


def test_the_readme_shows_commands_of_every_kind():
    shown = {argv[0] for _, argv in COMMANDS}
    assert len(COMMANDS) >= 20
    assert {"run", "validate", "predict", "serve", "compare", "train", "download"} <= shown


@pytest.mark.parametrize("where, argv", COMMANDS, ids=[where[:90] for where, _ in COMMANDS])
def test_every_command_shown_is_accepted(where, argv, synthetic_dir, weights_file, monkeypatch):
    monkeypatch.chdir(REPO)  # the README's paths are relative to the checkout
    problem = problem_of(argv, synthetic_dir, weights_file)
    if problem and "needs timm" in problem and importlib.util.find_spec("timm") is None:
        pytest.skip("needs timm (make sample-weights installs it)")
    assert problem is None, f"{where}\n  {problem}"


BAD_PAGE = """
Some prose with `geoguesser run --config configs/demo.yaml --set train.max_epoch=3` inline.

    .venv/bin/geoguesser run --config configs/demo.yaml --epochs 3
    geoguesser run: this line is output, not a command

```bash
geoguesser predct data/test --out preds.csv
python -m geoguesser.cli validate DIR [DIR...]   # fine
```
"""


def test_the_checker_names_each_wrong_command(synthetic_dir, weights_file, monkeypatch):
    monkeypatch.chdir(REPO)
    lines = [line for line in code_lines(BAD_PAGE) if argv_of(line) is not None]
    problems = [problem_of(argv_of(line), synthetic_dir, weights_file) for line in lines]
    assert len(lines) == 4  # the output line is not a command
    by_line = dict(zip(lines, problems, strict=True))
    assert "unrecognized arguments: --epochs 3" in by_line[lines[0]]
    assert "invalid choice: 'predct'" in by_line[lines[1]]
    assert by_line[lines[2]] is None
    inline = next(line for line in lines if "max_epoch=" in line)
    assert by_line[inline] == "train.max_epoch: unknown setting; did you mean train.max_epochs?"
