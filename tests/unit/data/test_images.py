"""One set of image formats (images.IMAGE_FORMATS) for every reader outside the server.

A view or a photo named `.jpg` whose bytes are another format (EPS, which Pillow hands to
Ghostscript; TIFF or GIF, which it would decode itself) is unreadable to validate, the image
cache, data loading, the maps' view sheets and predict alike, and never reaches an external
program.
"""

from __future__ import annotations

import io

import pytest
from PIL import EpsImagePlugin, Image, UnidentifiedImageError

from geoguesser.analysis.view_sheets import decoded_views, write_view_sheets
from geoguesser.cli import main
from geoguesser.data.image_cache import ImageCache, decode_view
from geoguesser.data.images import IMAGE_FORMATS
from geoguesser.data.layout import check_image
from geoguesser.data.validate import load_locations
from geoguesser.data.views import LocationDataset
from geoguesser.errors import UserError
from geoguesser.inference.predict import photo_files
from helpers.datasets import make_dataset

OTHER_FORMATS = ["EPS", "TIFF", "GIF"]


def image_bytes(fmt: str, size: int = 16) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (200, 30, 30)).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture(autouse=True)
def no_external_decoder(monkeypatch):
    """Fail any test that would hand a file to Ghostscript (Pillow's EPS decoder)."""

    def refuse(*args, **kwargs):
        raise AssertionError("a file was handed to Ghostscript")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", refuse)


@pytest.fixture(params=OTHER_FORMATS)
def disguised(request, tmp_path):
    """A labelled dataset whose first view is another format under its .jpg name."""
    ds = make_dataset(tmp_path / "ds")
    view = ds / "images/loc-0000/0.jpg"
    view.write_bytes(image_bytes(request.param))
    assert Image.open(view).format == request.param  # what Pillow alone would open
    return ds, view


def test_the_formats_are_jpeg_png_and_webp_and_those_read(tmp_path):
    assert IMAGE_FORMATS == ("JPEG", "PNG", "WEBP")
    for fmt in IMAGE_FORMATS:
        path = tmp_path / f"view.{fmt.lower()}"
        path.write_bytes(image_bytes(fmt))
        assert check_image(path, deep=True) is None
        assert decode_view(path, 8).shape == (8, 8, 3)


def test_validate_refuses_another_format_named_jpg(disguised, capsys):
    ds, view = disguised
    assert check_image(view) == "unreadable (not a JPEG, PNG or WEBP image)"
    assert main(["validate", str(ds)]) == 2
    err = capsys.readouterr().err
    assert f"{view}: unreadable (not a JPEG, PNG or WEBP image)" in err.splitlines()


def test_the_image_cache_and_data_loading_cannot_decode_it(disguised, tmp_path):
    ds, view = disguised
    with pytest.raises(UnidentifiedImageError, match="0.jpg"):
        decode_view(view, 8)
    table, _ = load_locations([ds], check_images=False)
    with pytest.raises(UnidentifiedImageError):
        LocationDataset(table, 8)[0]
    with pytest.raises(UnidentifiedImageError):
        ImageCache.open(tmp_path / "cache", ds, table.uuid.tolist(), 8)


def test_the_view_sheets_of_the_maps_cannot_decode_it(disguised, tmp_path):
    ds, view = disguised
    table, _ = load_locations([ds], check_images=False)
    views = decoded_views(dict(zip(table.uuid, table.dataset_dir, strict=True)))
    assert views("loc-0001").shape[0] == 4
    with pytest.raises(UnidentifiedImageError):
        write_view_sheets(["loc-0000"], views, tmp_path / "views")


def test_predict_refuses_a_photo_of_another_format(disguised, tmp_path):
    _, view = disguised
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "pier.jpg").write_bytes(view.read_bytes())
    (photos / "quay.png").write_bytes(image_bytes("PNG"))
    with pytest.raises(UserError) as refused:
        photo_files(photos)
    said = "unreadable (not a JPEG, PNG or WEBP image)"
    assert str(refused.value) == f"{photos / 'pier.jpg'}: {said}"
    (photos / "pier.jpg").unlink()
    assert [p.name for p in photo_files(photos)] == ["quay.png"]


def test_photo_names_are_those_of_the_formats(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name, fmt in (("a.jpg", "JPEG"), ("b.JPEG", "JPEG"), ("c.png", "PNG"), ("d.webp", "WEBP")):
        (photos / name).write_bytes(image_bytes(fmt))
    (photos / "e.tif").write_bytes(image_bytes("TIFF"))
    (photos / "f.bmp").write_bytes(image_bytes("BMP"))
    assert [p.name for p in photo_files(photos)] == ["a.jpg", "b.JPEG", "c.png", "d.webp"]
