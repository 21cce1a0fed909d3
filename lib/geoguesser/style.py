"""The house style of every map and figure, defined once: the palette, the error colours, titles.

Categories take Okabe-Ito, distinguishable under every common colour-vision deficiency;
errors take plasma, perceptually uniform and colour-blind safe, with its pale yellow end cut
off so that every line stays legible on the light land colour.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import to_hex

from geoguesser.atomic import atomic_path

# Okabe-Ito, the usual colour-blind-safe qualitative palette.
OKABE_ITO = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000"]
SPLIT_COLOURS = {"train": OKABE_ITO[0], "val": OKABE_ITO[1], "test": OKABE_ITO[2]}
TRUTH, GUESS = OKABE_ITO[0], OKABE_ITO[3]
INK = "#333333"  # the border's line, and a split without a colour of its own
LAND = "#f2efe9"
OUTLINE = "#555"  # thin lines over the land: cell outlines on maps, the border in figures
GREY = "#999999"  # what is not the subject: dropped cells, single locations under the means

ERROR_SCALE_KM = 150.0  # errors at or beyond this are the last colour
ERROR_CMAP = "plasma"
ERROR_CMAP_RANGE = (0.0, 0.85)


def error_colour(error_km: float) -> str:
    """The hex colour of an error of `error_km` on the maps' scale."""
    low, high = ERROR_CMAP_RANGE
    share = min(max(float(error_km), 0.0) / ERROR_SCALE_KM, 1.0)
    return to_hex(colormaps[ERROR_CMAP](low + share * (high - low)))


def error_colourbar(fig, ax, label: str = "error (km)"):
    """A colour bar for the error colours the maps use."""
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LinearSegmentedColormap, Normalize

    low, high = ERROR_CMAP_RANGE
    cmap = LinearSegmentedColormap.from_list(
        "errors", plt.get_cmap(ERROR_CMAP)(np.linspace(low, high, 64))
    )
    mappable = ScalarMappable(norm=Normalize(0, ERROR_SCALE_KM), cmap=cmap)
    return fig.colorbar(mappable, ax=ax, label=label, extend="max")


def save(fig, path: str | Path) -> None:
    """Write the figure atomically; the notebook shows it once, at the end of the cell.

    It returns nothing, so a cell that ends by saving prints no stray path.
    """
    with atomic_path(path) as tmp:
        fig.savefig(
            tmp, format=Path(path).suffix.lstrip(".") or "png", dpi=110, bbox_inches="tight"
        )


def title(text: str, split: str | None = None, errors=None, synthetic: bool = False) -> str:
    """`text (SYNTHETIC) · test, n=200, mean 42.4 km`: what, which data, how many, how good."""
    parts = [text + (" (SYNTHETIC data)" if synthetic else "")]
    details = [split] if split else []
    if errors is not None:
        errors = np.asarray(errors, dtype=float)
        details.append(f"n={errors.size}")
        if errors.size:
            details.append(f"mean {errors.mean():.1f} km")
    if details:
        parts.append(", ".join(details))
    return " · ".join(parts)
