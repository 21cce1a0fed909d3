import numpy as np
import pandas as pd
from PIL import Image

from geoguesser.data.image_cache import ImageCache, decode_location, decode_view
from helpers.datasets import write_jpeg
from helpers.snapshots import tree_snapshot


def test_cache_gives_the_same_arrays_as_direct_decoding(synthetic_dir, tmp_path):
    uuids = pd.read_csv(synthetic_dir / "data.csv").uuid.tolist()
    before = tree_snapshot(synthetic_dir)
    cache = ImageCache.open(tmp_path / "cache", synthetic_dir, uuids, 24, progress=False)
    for uuid in uuids[:10]:
        assert np.array_equal(cache[uuid], decode_location(synthetic_dir, uuid, 24))
    assert cache[uuids[0]].shape == (4, 24, 24, 3) and cache[uuids[0]].dtype == np.uint8
    assert tree_snapshot(synthetic_dir) == before  # nothing written into the dataset


def test_cache_is_reused_and_rebuilt_when_an_image_changes(tmp_path):
    from helpers.datasets import make_dataset

    root = make_dataset(tmp_path / "ds")
    uuids = [f"loc-{i:04d}" for i in range(6)]
    ImageCache.open(tmp_path / "cache", root, uuids, 8, progress=False)
    (array_path,) = (tmp_path / "cache").glob("*.npy")
    stamp = array_path.stat().st_mtime_ns
    ImageCache.open(tmp_path / "cache", root, uuids, 8, progress=False)
    assert array_path.stat().st_mtime_ns == stamp  # reused, not rebuilt
    write_jpeg(root / "images/loc-0003/90.jpg", seed=999)
    cache = ImageCache.open(tmp_path / "cache", root, uuids, 8, progress=False)
    assert np.array_equal(cache["loc-0003"], decode_location(root, "loc-0003", 8))


def test_reduced_size_decoding_is_close_to_a_full_decode(tmp_path):
    rng = np.random.default_rng(0)
    smooth = np.kron(rng.integers(0, 256, (20, 20, 3)), np.ones((32, 32, 1))).astype(np.uint8)
    Image.fromarray(smooth).save(tmp_path / "big.jpg", quality=95)
    fast = decode_view(tmp_path / "big.jpg", 224).astype(float)
    with Image.open(tmp_path / "big.jpg") as image:
        full = np.asarray(
            image.convert("RGB").resize((224, 224), Image.Resampling.BILINEAR)
        ).astype(float)
    assert fast.shape == (224, 224, 3)
    assert np.abs(fast - full).mean() < 6
