"""The `geoguesser` command: thin wrappers over the library, one subcommand per task.

A UserError (bad data, bad arguments) becomes one line per problem on stderr and exit
status 2, with no traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from geoguesser.errors import UserError, printable


def _validate(args: argparse.Namespace) -> int:
    from geoguesser.data.validate import validate
    from geoguesser.geo.borders import load_border

    if args.max_image_px < 1:
        raise UserError(f"--max-image-px {args.max_image_px}: must be at least 1")
    border = load_border(args.border, args.country)
    report = validate(
        args.dirs,
        border=border,
        check_images=not args.skip_images,
        max_px=args.max_image_px,
        deep=args.deep,
        progress=args.deep and sys.stderr.isatty(),
    )
    for problem in report.problems:
        print(problem, file=sys.stderr)
    for warning in report.warnings[: args.max_warnings]:
        print(f"warning: {warning}", file=sys.stderr)
    if len(report.warnings) > args.max_warnings:
        print(f"warning: ... and {len(report.warnings) - args.max_warnings} more", file=sys.stderr)
    if not report.ok:
        print(f"{len(report.problems)} problem(s) found", file=sys.stderr)
        return 2
    print(f"ok: {report.summary()}")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from geoguesser.data.synthetic import generate

    out = generate(args.out_dir, args.locations, args.image_size, args.seed)
    print(f"wrote SYNTHETIC dataset: {out} ({args.locations} locations, {args.image_size} px)")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from geoguesser.inference.predict import predict_dirs, predict_photos

    if bool(args.dirs) == (args.photos is not None):
        raise UserError("predict: give dataset folders (DIR ...) or --photos DIR, one of the two")
    if args.max_image_px < 1:
        raise UserError(f"--max-image-px {args.max_image_px}: must be at least 1")
    checks = dict(overwrite=args.overwrite, max_px=args.max_image_px)
    if args.photos is not None:
        result = predict_photos(
            args.checkpoint,
            args.photos,
            args.out,
            batch_size=args.batch_size,
            device=args.device,
            **checks,
        )
        print(f"wrote {len(result)} predictions (one photo each) to {printable(args.out)}")
        return 0
    result = predict_dirs(
        args.checkpoint,
        args.dirs,
        args.out,
        batch_size=args.batch_size,
        device=args.device,
        progress=True,
        with_confidence=args.with_confidence,
        **checks,
    )
    print(f"wrote {len(result)} predictions to {printable(args.out)}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from geoguesser.serve.command import serve

    serve(
        args.checkpoint,
        args.checkpoint_dir,
        args.host,
        args.port,
        top_k=args.top_cells,
        wait_ms=args.batch_wait_ms,
        max_batch=args.max_batch,
        max_upload_mb=args.max_upload_mb,
        allow_hosts=tuple(args.allow_host),
        allow_origins=tuple(args.allow_origin),
    )
    return 0


def _run(args: argparse.Namespace) -> int:
    from geoguesser.config import load_settings
    from geoguesser.workflow.pipeline import Interrupted, StepFailed, run
    from geoguesser.workflow.runs import is_finished, result_line

    if args.sweep_index is not None and not args.sweep:
        raise UserError("--sweep-index needs the --sweep settings it indexes")
    if args.dry_run:
        return _dry_run(args)
    if args.sweep:
        return _sweep(args)
    settings = load_settings(args.config, args.set)
    try:
        run_dir = run(
            settings,
            runs_root=args.runs,
            overwrite=args.overwrite,
            start_from=args.start_from,
            notebook_dir=args.notebooks,
            config_file=args.config,
            overrides=args.set,
            stop_after=args.stop_after,
        )
    except StepFailed as failure:
        print(f"geoguesser run: {failure}", file=sys.stderr)
        return 1
    except Interrupted as interrupted:
        print(f"geoguesser run: {interrupted}", file=sys.stderr)
        return 130
    if args.stop_after is not None and not is_finished(run_dir):
        print(f"run stopped after step {args.stop_after}: {run_dir}")
        return 0
    print(f"run finished: {run_dir}")
    print(result_line(run_dir))
    for name, hint in [
        ("executed notebooks", f"{run_dir}/0*.ipynb"),
        ("error map", f"{run_dir}/maps/errors.html"),
        ("in JupyterLab", f"geoguesser open {run_dir.name} --runs {run_dir.parent}"),
        ("training curves", f"tensorboard --logdir {run_dir}/tb"),
    ]:
        print(f"  {name:<18} {hint}")
    return 0


def run_members(args: argparse.Namespace) -> list[tuple[str, object]]:
    """The settings `geoguesser run` would run, checked as it checks them: one run's, or every
    sweep member's (labelled by name), before anything else happens."""
    from geoguesser.config import load_settings
    from geoguesser.workflow.sweeps import plan, select

    if not args.sweep:
        return [(str(args.config), load_settings(args.config, args.set))]
    members = select(plan(args.config, args.set, args.sweep)[1], args.sweep_index)
    return [(f"sweep member {m.index} ({m.name})", m.settings) for m in members]


def _dry_run(args: argparse.Namespace) -> int:
    from geoguesser.workflow.dryrun import dry_run

    return dry_run(run_members(args), args.runs, args.config)


def _open(args: argparse.Namespace) -> int:
    from geoguesser.config import load_settings
    from geoguesser.workflow.lab import open_run, start
    from geoguesser.workflow.pipeline import notebooks_of
    from geoguesser.workflow.runs import find_checkout, prepare, record_invocation, run_folder

    notebooks = notebooks_of(args.notebooks)
    run_dir = run_folder(args.runs, args.name)
    if args.config is not None and not run_dir.exists():
        settings = load_settings(args.config, args.set)
        if settings.name != args.name:
            settings = settings.model_copy(update={"name": args.name})
        with prepare(run_dir, 0, overwrite=False):
            record_invocation(
                run_dir, settings, [], args.config, args.set, find_checkout(notebooks)
            )
    elif args.set:
        raise UserError(f"--set: {run_dir} exists; change its settings in a notebook's overrides")
    command, made = open_run(run_dir, args.step, notebooks, args.lab_args)
    made_text = f" (copied {len(made)} from {notebooks})" if made else ""
    print(f"JupyterLab on the run's own notebooks: {run_dir}/0*.ipynb{made_text}", flush=True)
    print("the tracked notebooks stay as committed; outputs and edits stay in the run", flush=True)
    start(command)
    return 0  # not reached: this process is JupyterLab now


def _train(args: argparse.Namespace) -> int:
    from geoguesser.config import load_settings
    from geoguesser.workflow.fit_step import check_inputs, fit_run
    from geoguesser.workflow.launch import die_with_parent
    from geoguesser.workflow.runs import CONFIG_NAME

    die_with_parent()
    run_dir = args.run_dir.absolute()
    check_inputs(run_dir)
    settings = load_settings(run_dir / CONFIG_NAME)  # the run's settings, as recorded
    summary = fit_run(settings, run_dir)
    if summary is not None:
        print(f"wrote checkpoints, predictions.csv and training.json to {run_dir}", flush=True)
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from geoguesser.workflow.pipeline import Interrupted
    from geoguesser.workflow.sweeps import run_sweep, table

    if args.start_from:
        raise UserError("--from does not apply to sweeps: re-running one continues it")
    try:
        outcomes = run_sweep(
            args.config,
            args.set,
            args.sweep,
            args.runs,
            overwrite=args.overwrite,
            index=args.sweep_index,
            notebook_dir=args.notebooks,
        )
    except Interrupted:
        print("geoguesser run: interrupted; run the same command again to continue the sweep")
        return 130
    print(table(outcomes))
    return 1 if any(outcome.status == "failed" for outcome in outcomes) else 0


def _config(args: argparse.Namespace) -> int:
    from geoguesser.config import load_settings, schema_markdown

    if args.schema:
        print(schema_markdown(), end="")
        return 0
    if args.config is None:
        raise UserError("give a config file to check, or --schema")
    settings = load_settings(args.config, args.set)
    print(yaml.safe_dump(settings.to_yaml_dict(), sort_keys=False), end="")
    return 0


def _sample_coords(args: argparse.Namespace) -> int:
    from geoguesser.atomic import write_csv
    from geoguesser.geo.borders import load_border
    from geoguesser.geo.sampling import sample_fill_cells, sample_uniform

    border = load_border(args.border, args.country)
    if args.fill_cells is None:
        if args.n is None:
            raise UserError("give --n (how many points), or --fill-cells TARGET")
        points = sample_uniform(border, args.n, seed=args.seed)
    else:
        from geoguesser.data.validate import load_locations
        from geoguesser.geo.grid import make_cells

        if not args.dataset:
            raise UserError("--fill-cells needs the existing data: --dataset DIR [DIR...]")
        existing, _ = load_locations(args.dataset, border=border, check_images=False)
        cells = make_cells(
            border, existing.latitude, existing.longitude, cell_km=args.cell_km, min_train=0
        )
        points = sample_fill_cells(
            cells, existing.latitude, existing.longitude, args.fill_cells, args.n, args.seed
        )
    write_csv(points, args.out)
    print(f"wrote {len(points)} points to {args.out}")
    return 0


def _download(args: argparse.Namespace) -> int:
    from geoguesser.data.streetview import Settings, download, read_key

    settings = Settings(
        base_url=args.base_url, radius_m=args.radius, concurrency=args.concurrency,
        rate_per_s=None if args.no_rate_limit else args.rate, retries=args.retries,
        timeout_s=args.timeout,
    )  # fmt: skip
    key = read_key(args.key_file)
    summary = download(args.coords, args.out, key, settings)
    print(
        f"{summary.downloaded} locations downloaded, {summary.no_panorama} points without a "
        f"panorama, {summary.duplicates} duplicate panoramas; "
        f"{summary.total_locations} locations in {args.out / 'data.csv'}"
    )
    if summary.stopped:
        print(
            f"geoguesser download: stopped: {summary.stopped}; everything finished is kept",
            file=sys.stderr,
        )
        return 2
    return 0


def _compare(args: argparse.Namespace) -> int:
    from geoguesser.workflow.compare import comparison_table, format_table, load_runs

    runs = load_runs(args.runs, say=lambda line: print(line, file=sys.stderr))
    if not runs:
        raise UserError("no finished run to compare (a run is finished when metrics.json exists)")
    table = comparison_table(runs)
    print(format_table(table))
    if args.out is not None:
        from geoguesser.analysis.plots import (
            cumulative_runs_figure,
            runs_against_baseline_figure,
            save,
        )
        from geoguesser.atomic import write_csv

        errors = {
            row: run.errors[args.split]
            for row, run in zip(table.index, runs, strict=True)
            if args.split in run.errors
        }
        write_csv(table.reset_index(), args.out / "compare.csv")
        save(cumulative_runs_figure(errors, args.split), args.out / "cumulative.png")
        save(runs_against_baseline_figure(table, args.split), args.out / "mean_km.png")
        print(f"wrote compare.csv, cumulative.png and mean_km.png to {args.out}")
    return 0


def _add_border_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--border", type=Path, help="polygon file (default: the shipped Croatia)")
    parser.add_argument("--country", help="country name or ISO code inside --border")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="geoguesser", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    from geoguesser.data.layout import MAX_IMAGE_PX

    validate = commands.add_parser("validate", help="check datasets in the competition layout")
    validate.add_argument("dirs", nargs="+", type=Path, metavar="DIR")
    validate.add_argument("--skip-images", action="store_true", help="do not open the JPEGs")
    validate.add_argument(
        "--deep",
        action="store_true",
        help="decode every image on every core (minutes), catching forged headers",
    )
    validate.add_argument(
        "--max-image-px",
        type=int,
        default=MAX_IMAGE_PX,
        metavar="PX",
        help=f"largest image side accepted (default {MAX_IMAGE_PX}; Street View serves 640)",
    )
    validate.add_argument("--max-warnings", type=int, default=20)
    _add_border_options(validate)
    validate.set_defaults(run=_validate)

    synth = commands.add_parser("synth", help="write the SYNTHETIC default dataset (Croatia)")
    synth.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    synth.add_argument("--locations", type=int, default=2000)
    synth.add_argument("--image-size", type=int, default=128, metavar="PX")
    synth.add_argument("--seed", type=int, default=0)
    synth.set_defaults(run=_synth)

    predict = commands.add_parser("predict", help="predict coordinates into the competition's CSV")
    predict.add_argument("dirs", nargs="*", type=Path, metavar="DIR", help="dataset folders")
    predict.add_argument(
        "--photos",
        type=Path,
        metavar="DIR",
        help="instead of dataset folders: every image file of DIR is a location of one view"
        " (models with fusion mean or attention)",
    )
    predict.add_argument("--checkpoint", type=Path, required=True, metavar="CKPT")
    predict.add_argument(
        "--out",
        type=Path,
        required=True,
        help="CSV to write: uuid, latitude, longitude (a new file, or a CSV predict wrote)",
    )
    predict.add_argument(
        "--overwrite",
        action="store_true",
        help="replace --out even if predict did not write it (never an input, folder or link)",
    )
    predict.add_argument("--batch-size", type=int, default=64)
    predict.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: the best available)")
    predict.add_argument(
        "--max-image-px",
        type=int,
        default=MAX_IMAGE_PX,
        metavar="PX",
        help=f"refuse images declaring more pixels a side (default {MAX_IMAGE_PX})",
    )
    predict.add_argument(
        "--with-confidence",
        action="store_true",
        help="add expected_error_km, the model's own expected error (empty for regression)",
    )
    predict.set_defaults(run=_predict)

    from geoguesser.config import TOP_CELLS
    from geoguesser.serve import limits as served  # its defaults and limits, defined there once

    serve = commands.add_parser(
        "serve", help="a local server (page, /predict, /models) for trained checkpoints"
    )
    serve.add_argument("--checkpoint", type=Path, metavar="CKPT", help="the default model")
    serve.add_argument(
        "--checkpoint-dir", type=Path, metavar="DIR", help="also serve every *.ckpt under DIR"
    )
    serve.add_argument(
        "--host", default=served.HOST, help="address to listen on (default %(default)s: local)"
    )
    serve.add_argument("--port", type=int, default=served.PORT, help="(default %(default)s)")
    serve.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME[:PORT]",
        help="also answer requests addressed to this name (repeatable; the bound address "
        "and localhost always are)",
    )
    serve.add_argument(
        "--allow-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="also accept POSTs from pages of this origin, e.g. http://example.lan:3000 "
        "(repeatable; the server's own page always is)",
    )
    serve.add_argument(
        "--top-cells",
        type=int,
        default=TOP_CELLS,
        metavar="K",
        help="likeliest cells per answer (default %(default)s)",
    )
    serve.add_argument(
        "--batch-wait-ms",
        type=float,
        default=served.BATCH_WAIT_MS,
        metavar="MS",
        help="how long to gather concurrent requests into one forward pass (default %(default)s)",
    )
    serve.add_argument(
        "--max-batch",
        type=int,
        default=served.MAX_BATCH,
        help="requests in one forward pass at most (default %(default)s)",
    )
    serve.add_argument(
        "--max-upload-mb",
        type=float,
        default=served.MAX_UPLOAD_MB,
        metavar="MB",
        help="largest request accepted (default %(default)s)",
    )
    serve.set_defaults(run=_serve)

    run = commands.add_parser("run", help="execute the notebooks in order with papermill")
    run.add_argument("--config", type=Path, required=True)
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting; the value is YAML (e.g. data.dataset_dirs=[a, b])",
    )
    run.add_argument(
        "--runs", type=Path, default=Path("runs"), help="where run folders go (default: runs)"
    )
    run.add_argument(
        "--overwrite", action="store_true", help="replace an existing run folder made by geoguesser"
    )
    run.add_argument(
        "--from", dest="start_from", metavar="NN", help="start at step NN, reusing earlier outputs"
    )
    run.add_argument(
        "--to",
        dest="stop_after",
        metavar="NN",
        help="stop after step NN (e.g. --to 03, then the fit on a cluster, then --from 05)",
    )
    run.add_argument(
        "--notebooks", type=Path, metavar="DIR", help="notebooks to run (default: this checkout's)"
    )
    run.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="run every combination of these values as sibling runs under RUNS/<name>/",
    )
    run.add_argument(
        "--sweep-index", type=int, metavar="I", help="run only sweep member I (from 0)"
    )
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="check everything that can be known before the first epoch (data, weights, disk,"
        " memory, accelerator, one timed step) and print it; writes nothing",
    )
    run.set_defaults(run=_run)

    lab = commands.add_parser(
        "open",
        help="JupyterLab on a run's own copies of the notebooks (never the tracked ones)",
        epilog="options after -- go to jupyter lab, e.g. geoguesser open dev 02 -- --no-browser",
    )
    lab.add_argument("name", metavar="RUN", help="run name under --runs (e.g. dev)")
    lab.add_argument(
        "step", nargs="?", metavar="STEP", help="the step to open, e.g. 02 (default 01)"
    )
    lab.add_argument(
        "--config", type=Path, help="start the run from this config when it does not exist yet"
    )
    lab.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    lab.add_argument("--runs", type=Path, default=Path("runs"), help="the runs root (default runs)")
    lab.add_argument("--notebooks", type=Path, metavar="DIR", help="the notebooks to copy")
    lab.set_defaults(run=_open, lab_args=[])

    fit = commands.add_parser(
        "train", help="step 04 alone: fit, test and predict a run (what torchrun and srun start)"
    )
    fit.add_argument(
        "--run-dir", type=Path, required=True, metavar="RUN_DIR", help="a run with steps 01-03 done"
    )
    fit.set_defaults(run=_train)

    config = commands.add_parser("config", help="check a config and print its resolved settings")
    config.add_argument("config", type=Path, nargs="?", metavar="CONFIG")
    config.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    config.add_argument(
        "--schema", action="store_true", help="print every setting as Markdown tables"
    )
    config.set_defaults(run=_config)

    compare = commands.add_parser(
        "compare", help="finished runs side by side: differing settings and their metrics"
    )
    compare.add_argument(
        "runs", nargs="+", metavar="RUN_DIR", help="run folders or globs, e.g. 'runs/sweep/*'"
    )
    compare.add_argument(
        "--out", type=Path, metavar="DIR", help="also write compare.csv and the two figures here"
    )
    compare.add_argument(
        "--split", choices=["val", "test"], default="test", help="split of the figures"
    )
    compare.set_defaults(run=_compare)

    sample = commands.add_parser(
        "sample-coords", help="draw points inside the border to collect data at"
    )
    sample.add_argument(
        "--n", type=int, help="how many points (with --fill-cells: at most this many)"
    )
    sample.add_argument("--out", type=Path, required=True)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument(
        "--fill-cells", type=int, metavar="TARGET", help="fill grid cells up to TARGET locations"
    )
    sample.add_argument(
        "--dataset", type=Path, nargs="+", metavar="DIR", help="existing data, for --fill-cells"
    )
    sample.add_argument("--cell-km", type=float, default=50.0)
    _add_border_options(sample)
    sample.set_defaults(run=_sample_coords)

    fetch = commands.add_parser("download", help="download Street View views for sampled points")
    fetch.add_argument("coords", type=Path, metavar="COORDS_CSV")
    fetch.add_argument("--out", type=Path, required=True, metavar="DIR")
    fetch.add_argument(
        "--key-file", type=Path, help="file holding the API key (default: $GOOGLE_MAPS_API_KEY)"
    )
    fetch.add_argument("--base-url", default="https://maps.googleapis.com/maps/api")
    fetch.add_argument("--radius", type=int, default=50, help="panorama search radius in metres")
    fetch.add_argument("--concurrency", type=int, default=8)
    fetch.add_argument("--rate", type=float, default=20.0, help="requests per second at most")
    fetch.add_argument(
        "--no-rate-limit",
        action="store_true",
        help="no limit (--rate 0 is refused)",
    )
    fetch.add_argument("--retries", type=int, default=5, help="tries after the first (default 5)")
    fetch.add_argument(
        "--timeout", type=float, default=30.0, metavar="SECONDS", help="per request (default 30)"
    )
    fetch.set_defaults(run=_download)
    return parser


def split_lab_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """`geoguesser open RUN -- OPTIONS`: our arguments, and the options that are jupyter lab's."""
    if "--" in argv and "open" in argv[: argv.index("--")]:
        return argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    return argv, []


def main(argv: list[str] | None = None) -> int:
    argv, lab_args = split_lab_args(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(argv)
    if args.command == "open":
        args.lab_args = lab_args
    try:
        return args.run(args)
    except UserError as error:
        for line in printable(error).splitlines() or ["error"]:
            print(f"geoguesser {args.command}: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"geoguesser {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
