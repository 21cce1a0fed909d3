"""`geoguesser predict`: a checkpoint's coordinates for dataset folders or loose photographs."""

from __future__ import annotations

import argparse
from pathlib import Path

from geoguesser.cli.options import add_max_image_px, check_max_image_px
from geoguesser.config.choices import TTAS
from geoguesser.errors import UserError, printable

# predict_dirs' own default; not read from its signature, since importing the predictor
# imports torch (seconds) and the parser is built for every command, --help included.
BATCH_SIZE = 64


def _predict(args: argparse.Namespace) -> int:
    from geoguesser.inference.predict import predict_dirs, predict_photos

    if bool(args.dirs) == (args.photos is not None):
        raise UserError("predict: give dataset folders (DIR ...) or --photos DIR, one of the two")
    check_max_image_px(args)
    checks = dict(overwrite=args.overwrite, max_px=args.max_image_px, tta=args.tta)
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


def add_predict(commands) -> None:
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
    predict.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    predict.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: the best available)")
    add_max_image_px(
        predict, help="refuse images declaring more pixels a side (default %(default)s)"
    )
    predict.add_argument(
        "--with-confidence",
        action="store_true",
        help="add expected_error_km, the model's own expected error (empty for regression)",
    )
    predict.add_argument(
        "--tta",
        choices=TTAS,
        help="test-time augmentation: none, or mirror (each location also seen mirrored, the"
        " answers averaged); default: the checkpoint's train.tta",
    )
    predict.set_defaults(run=_predict)
