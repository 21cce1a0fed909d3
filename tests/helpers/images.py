"""Image bytes the tests write: real JPEGs, and JPEGs whose header lies about their size."""

import io
import struct

import numpy as np
from PIL import Image


def jpeg_bytes(size: int, seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def declare_size(data: bytes, width: int, height: int) -> bytes:
    """The same JPEG with its frame header (SOF) claiming another size: a forged header."""
    data, i = bytearray(data), 2
    while data[i + 1] not in (0xC0, 0xC1, 0xC2):
        i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
    data[i + 5 : i + 9] = struct.pack(">HH", height, width)
    return bytes(data)
