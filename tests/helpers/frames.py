"""Location tables the tests share as fixtures."""

import numpy as np
import pandas as pd
import pytest


@pytest.fixture
def locations() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 1000
    return pd.DataFrame(
        {
            "uuid": [f"u{i:05d}" for i in range(n)],
            "latitude": rng.uniform(44.5, 46.0, n),
            "longitude": rng.uniform(15.0, 18.5, n),
        }
    )
