"""The colours of every map and figure, defined once: the palette, the land, the error colour map.

Categories take Okabe-Ito, distinguishable under every common colour-vision deficiency;
errors take plasma, perceptually uniform and colour-blind safe, with its pale yellow end cut
off so that every line stays legible on the light land colour.
"""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import to_hex

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
