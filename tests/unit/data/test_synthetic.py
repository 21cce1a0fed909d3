import tracemalloc

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from geoguesser.data.landscape import Landscape
from geoguesser.data.painter import render_view
from geoguesser.data.synthetic import generate
from geoguesser.data.validate import validate
from geoguesser.errors import UserError
from geoguesser.geo.borders import inside, load_border, load_coast


def test_synthetic_data_is_the_competition_layout_and_labelled(synthetic_dir):
    report = validate([synthetic_dir], border=load_border())
    assert report.ok, report.problems[:3]
    assert report.synthetic and "SYNTHETIC" in report.summary()
    assert (synthetic_dir / "data.csv").read_text().startswith(",uuid,latitude,longitude")
    first = report.locations.uuid.iloc[0]
    with Image.open(synthetic_dir / "images" / first / "90.jpg") as image:
        assert image.size == (32, 32)
        assert b"SYNTHETIC" in image.info["comment"]


def test_same_seed_same_bytes_other_seed_other_data(tmp_path, synthetic_dir):
    again = generate(tmp_path / "again", locations=60, image_size=32, seed=7, progress=False)
    assert (again / "data.csv").read_bytes() == (synthetic_dir / "data.csv").read_bytes()
    uuid = pd.read_csv(again / "data.csv").uuid.iloc[5]
    assert (again / f"images/{uuid}/180.jpg").read_bytes() == (
        synthetic_dir / f"images/{uuid}/180.jpg"
    ).read_bytes()
    other = generate(tmp_path / "other", locations=60, image_size=32, seed=8, progress=False)
    assert (other / "data.csv").read_bytes() != (again / "data.csv").read_bytes()


def test_locations_are_inside_the_border_and_denser_in_towns_than_mountains():
    landscape = Landscape(load_border(), load_coast())
    lat, lon = landscape.sample(4000, np.random.default_rng(0))
    assert inside(load_border(), lat, lon).all()
    near_zagreb = (np.abs(lat - 45.81) < 0.15) & (np.abs(lon - 15.98) < 0.2)
    in_lika_velebit = (np.abs(lat - 44.7) < 0.15) & (np.abs(lon - 15.3) < 0.2)
    assert near_zagreb.sum() > 5 * max(in_lika_velebit.sum(), 1)


def blueness(image: np.ndarray) -> float:
    r, g, b = image[..., 0].astype(float), image[..., 1].astype(float), image[..., 2].astype(float)
    lower = slice(image.shape[0] // 2, None)  # the ground half, not the sky
    return float(((b - r > 40) & (b > g))[lower].mean())


def test_the_sea_is_seen_looking_toward_the_coast():
    landscape = Landscape(load_border(), load_coast())
    # On the Istrian west coast near Rovinj the sea is west (270), land is east (90).
    (scene,) = landscape.scenes(np.array([45.08]), np.array([13.66]))
    rng = np.random.default_rng(0)
    west = np.mean([blueness(render_view(scene, 3, 64, rng)) for _ in range(10)])
    east = np.mean([blueness(render_view(scene, 1, 64, rng)) for _ in range(10)])
    assert west > 0.05 and east < 0.01


def test_scenes_follow_geography():
    landscape = Landscape(load_border(), load_coast())
    # Slavonian plain (Vinkovci), Gorski kotar (Delnice), Dalmatian coast (Trogir).
    plain, mountain, coast = landscape.scenes(
        np.array([45.29, 45.40, 43.52]), np.array([18.80, 14.80, 16.25])
    )
    assert plain.field.mean() > mountain.field.mean() and plain.slavonia > 0.8
    assert mountain.forest.mean() > plain.forest.mean() and mountain.ridge.max() > plain.ridge.max()
    assert coast.karst.mean() > plain.karst.mean() and coast.coastal > 0.8 > plain.coastal


def test_refuses_to_overwrite_and_leaves_no_partial_folder(tmp_path):
    target = tmp_path / "exists"
    target.mkdir()
    with pytest.raises(UserError, match="already exists"):
        generate(target, locations=2, image_size=16, progress=False)
    assert list(target.iterdir()) == []
    assert [p.name for p in tmp_path.iterdir()] == ["exists"]


def test_scenes_hold_memory_linear_in_the_number_of_locations():
    """A scene must not keep alive arrays of the whole call: that made synth memory quadratic."""
    geography = Landscape(load_border(), load_coast())
    lat, lon = geography.sample(800, np.random.default_rng(0))
    geography.scenes(lat[:10], lon[:10])  # one-off caches (projections) before measuring

    def held_bytes(n: int) -> int:
        tracemalloc.start()
        scenes = geography.scenes(lat[:n], lon[:n])
        held, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert len(scenes) == n
        return held

    assert held_bytes(800) < 6 * held_bytes(200)  # linear is 4x; the quadratic way was 16x


def test_scenes_do_not_depend_on_how_locations_are_chunked():
    geography = Landscape(load_border(), load_coast())
    lat, lon = geography.sample(50, np.random.default_rng(1))
    whole = geography.scenes(lat, lon)
    chunked = list(geography.iter_scenes(lat, lon, chunk=7))
    assert all(
        np.array_equal(getattr(a, name), getattr(b, name))
        for a, b in zip(whole, chunked, strict=True)
        for name in ("ridge", "sea", "forest", "field", "karst", "urban", "coastal", "slavonia")
    )
