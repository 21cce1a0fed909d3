import numpy as np
import pandas as pd
import pytest

from geoguesser.errors import UserError
from geoguesser.geo.coords import to_projected
from geoguesser.geo.splits import split_locations


def test_default_fractions_and_determinism(locations):
    first = split_locations(locations, seed=3)
    assert first.split.value_counts().to_dict() == {"train": 800, "val": 100, "test": 100}
    assert first.equals(split_locations(locations, seed=3))
    assert not first.split.equals(split_locations(locations, seed=4).split)


def test_split_does_not_depend_on_row_order(locations):
    shuffled = locations.sample(frac=1, random_state=1)
    a = split_locations(locations, seed=5).set_index("uuid").split
    b = split_locations(shuffled, seed=5).set_index("uuid").split
    assert a.sort_index().equals(b.sort_index())


def test_custom_fractions_and_dataset_frac(locations):
    part = split_locations(locations, fractions=(0.6, 0.2, 0.2), seed=0, dataset_frac=0.5)
    assert len(part) == 500
    assert part.split.value_counts().to_dict() == {"train": 300, "val": 100, "test": 100}
    assert set(part.uuid) <= set(locations.uuid)


def test_blocked_split_keeps_each_block_in_one_split(locations):
    frame = split_locations(locations, seed=1, block_km=25)
    x, y = to_projected(frame.latitude, frame.longitude)
    block = pd.Series(list(zip(np.floor(x / 25_000), np.floor(y / 25_000), strict=True)))
    assert (frame.groupby(block.to_numpy()).split.nunique() == 1).all()
    shares = frame.split.value_counts(normalize=True)
    assert shares["train"] == pytest.approx(0.8, abs=0.06)
    assert shares["val"] == pytest.approx(0.1, abs=0.05) and shares["test"] == pytest.approx(
        0.1, abs=0.05
    )


@pytest.mark.parametrize(
    "kwargs", [{"fractions": (0.8, 0.1)}, {"fractions": (0.9, 0.2, -0.1)}, {"dataset_frac": 0}]
)
def test_bad_settings_are_user_errors(locations, kwargs):
    with pytest.raises(UserError):
        split_locations(locations, **kwargs)
