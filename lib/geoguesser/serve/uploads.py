"""Uploads read and decoded in memory, never past the server's limits on bytes and pixels.

The body is capped as it streams and parsed in memory (never spooled to disk); each image's
size is checked from its header before any pixel is decoded.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from geoguesser.data.images import IMAGE_FORMATS, open_image
from geoguesser.serve.bad_request import BadRequest, printable
from geoguesser.serve.limits import MAX_DECODED_PIXELS, MAX_PIXELS, MAX_VIEWS


def too_large(name: str, image: Image.Image, limit: int, what: str) -> BadRequest | None:
    """A 413 if `image` (as it stands: declared, or after draft) has more than `limit` pixels."""
    if image.width * image.height <= limit:
        return None
    return BadRequest(
        f"{name}: {image.width} x {image.height} pixels is too large {what}"
        f" (at most {limit:,} pixels)",
        413,
    )


def decode_upload(data: bytes, name: str, size: int) -> np.ndarray:
    """One uploaded file as a (size, size, 3) uint8 view, decoded in memory; BadRequest if not.

    Only IMAGE_FORMATS are opened. Sizes are checked from the header before any pixel is
    decoded: the declared size against MAX_PIXELS, then the size it will decode at (JPEG's
    draft mode shrinks by up to 8 a side toward `size`; PNG and WEBP decode whole) against
    MAX_DECODED_PIXELS, so no upload decodes into more than that.
    """
    name = printable(name)
    try:
        with open_image(io.BytesIO(data)) as image:
            problem = too_large(name, image, MAX_PIXELS, "for this server")
            if problem is None:
                image.draft("RGB", (size, size))  # JPEG: decode at a reduced scale
                problem = too_large(name, image, MAX_DECODED_PIXELS, "to decode in this format")
            if problem is not None:
                raise problem
            image = image.convert("RGB")
            if image.size != (size, size):
                image = image.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(image)
    except BadRequest:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise BadRequest(f"{name}: too many pixels (at most {MAX_PIXELS:,})", 413) from None
    except Exception:  # noqa: BLE001 -- Pillow's decoders raise many kinds for damaged data
        formats = ", ".join(IMAGE_FORMATS)
        raise BadRequest(f"{name}: not an image this server can read ({formats})") from None


async def read_form(request, max_bytes: int):
    """The multipart form of `request`, held in memory; BadRequest if too large or malformed."""
    from starlette.formparsers import MultiPartException, MultiPartParser

    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise BadRequest(f"the request is larger than {max_bytes / 2**20:.3g} MB", 413)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise BadRequest(
            "send one to four photographs as a multipart form, in the field images", 415
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise BadRequest(f"the request is larger than {max_bytes / 2**20:.3g} MB", 413)

    class InMemory(MultiPartParser):
        spool_max_size = max_bytes + 1  # the whole capped body fits: files never roll to disk

    async def stream():
        yield bytes(body)

    try:
        return await InMemory(request.headers, stream(), max_files=MAX_VIEWS).parse()
    except MultiPartException as error:
        if "files" in str(error).lower():
            raise BadRequest(f"at most {MAX_VIEWS} images per request (N, E, S, W)") from None
        raise BadRequest(f"the request is not a valid multipart form ({error})") from None
    except (ValueError, LookupError):  # a header the parser cannot read (a bad charset...)
        raise BadRequest("the request is not a valid multipart form") from None
