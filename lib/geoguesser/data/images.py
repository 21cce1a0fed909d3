"""The image formats geoguesser reads, declared once for every reader.

Pillow opens whatever any of its plugins recognizes, and a few plugins (EPS, for one) hand the
bytes to an external program. Street View views and phone photographs are JPEG, PNG or WEBP,
so every reader (validation, the image cache, data loading, the maps, predict and the server)
opens files through `open_image`, which asks Pillow for these formats alone: any other file,
whatever its name, is unreadable here, and nothing is ever passed to an external decoder.
"""

from __future__ import annotations

from typing import IO

from PIL import Image

IMAGE_FORMATS = ("JPEG", "PNG", "WEBP")


def open_image(source: str | IO[bytes]) -> Image.Image:
    """Pillow's `Image.open` restricted to IMAGE_FORMATS (anything else: UnidentifiedImageError)."""
    return Image.open(source, formats=IMAGE_FORMATS)
