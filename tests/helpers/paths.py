"""Where the tests find the repository, their helper scripts and the optional shared data."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HELPERS = Path(__file__).resolve().parent  # scripts the tests run as processes
LUMEN_SAMPLE = REPO.parent / "shared" / "data" / "lumen-sample"
SAMPLE_WEIGHTS = REPO / "weights" / "efficientnet_lite0.pth"  # what `make sample-weights` writes
