"""`geoguesser validate`, `synth`, `sample-coords` and `download`: the commands that make or
check datasets.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from geoguesser.cli.options import (
    add_border_options,
    add_max_image_px,
    check_max_image_px,
    default_of,
    field_default,
)
from geoguesser.errors import UserError


def _validate(args: argparse.Namespace) -> int:
    from geoguesser.data.validate import validate
    from geoguesser.geo.borders import load_border

    check_max_image_px(args)
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


def add_validate(commands) -> None:
    from geoguesser.data.streetview import Settings

    validate = commands.add_parser("validate", help="check datasets in the competition layout")
    validate.add_argument("dirs", nargs="+", type=Path, metavar="DIR")
    validate.add_argument("--skip-images", action="store_true", help="do not open the JPEGs")
    validate.add_argument(
        "--deep",
        action="store_true",
        help="decode every image on every core (minutes), catching forged headers",
    )
    add_max_image_px(
        validate,
        help="largest image side accepted (default %(default)s; Street View serves "
        f"{field_default(Settings, 'size')})",
    )
    validate.add_argument("--max-warnings", type=int, default=20)
    add_border_options(validate)
    validate.set_defaults(run=_validate)


def _synth(args: argparse.Namespace) -> int:
    from geoguesser.data.synthetic import generate

    out = generate(args.out_dir, args.locations, args.image_size, args.seed)
    print(f"wrote SYNTHETIC dataset: {out} ({args.locations} locations, {args.image_size} px)")
    return 0


def add_synth(commands) -> None:
    from geoguesser.data.synthetic import generate

    synth = commands.add_parser("synth", help="write the SYNTHETIC default dataset (Croatia)")
    synth.add_argument("out_dir", type=Path, metavar="OUT_DIR")
    synth.add_argument("--locations", type=int, default=default_of(generate, "locations"))
    synth.add_argument(
        "--image-size", type=int, default=default_of(generate, "image_size"), metavar="PX"
    )
    synth.add_argument("--seed", type=int, default=default_of(generate, "seed"))
    synth.set_defaults(run=_synth)


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


def add_sample_coords(commands) -> None:
    from geoguesser.geo.grid import make_cells
    from geoguesser.geo.sampling import sample_uniform

    sample = commands.add_parser(
        "sample-coords", help="draw points inside the border to collect data at"
    )
    sample.add_argument(
        "--n", type=int, help="how many points (with --fill-cells: at most this many)"
    )
    sample.add_argument("--out", type=Path, required=True)
    sample.add_argument("--seed", type=int, default=default_of(sample_uniform, "seed"))
    sample.add_argument(
        "--fill-cells", type=int, metavar="TARGET", help="fill grid cells up to TARGET locations"
    )
    sample.add_argument(
        "--dataset", type=Path, nargs="+", metavar="DIR", help="existing data, for --fill-cells"
    )
    sample.add_argument("--cell-km", type=float, default=default_of(make_cells, "cell_km"))
    add_border_options(sample)
    sample.set_defaults(run=_sample_coords)


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


def add_download(commands) -> None:
    from geoguesser.data.streetview import Settings  # its defaults, defined there once

    def default(field: str):
        return field_default(Settings, field)

    fetch = commands.add_parser("download", help="download Street View views for sampled points")
    fetch.add_argument("coords", type=Path, metavar="COORDS_CSV")
    fetch.add_argument("--out", type=Path, required=True, metavar="DIR")
    fetch.add_argument(
        "--key-file", type=Path, help="file holding the API key (default: $GOOGLE_MAPS_API_KEY)"
    )
    fetch.add_argument("--base-url", default=default("base_url"))
    fetch.add_argument(
        "--radius", type=int, default=default("radius_m"), help="panorama search radius in metres"
    )
    fetch.add_argument("--concurrency", type=int, default=default("concurrency"))
    fetch.add_argument(
        "--rate", type=float, default=default("rate_per_s"), help="requests per second at most"
    )
    fetch.add_argument(
        "--no-rate-limit",
        action="store_true",
        help="no limit (--rate 0 is refused)",
    )
    fetch.add_argument(
        "--retries",
        type=int,
        default=default("retries"),
        help="tries after the first (default %(default)s)",
    )
    fetch.add_argument(
        "--timeout",
        type=float,
        default=default("timeout_s"),
        metavar="SECONDS",
        help="per request (default %(default)s)",
    )
    fetch.set_defaults(run=_download)
