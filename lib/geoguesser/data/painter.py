"""Painting one synthetic view, as pixels, from its scene.

Random camera pitch, light, cars, poles and pixel noise keep the location learnable from
the scene but not from one pixel; roofs turn terracotta near the sea.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from geoguesser.data.landscape import Scene

CLUTTER_COLOURS = np.array(
    [[200, 30, 30], [30, 60, 160], [230, 230, 230], [30, 30, 30], [200, 180, 40], [120, 120, 130]],
    dtype=np.float32,
)


def _mix(a, b, t):
    return np.asarray(a, dtype=np.float32) * (1 - t) + np.asarray(b, dtype=np.float32) * t


@lru_cache(maxsize=8)
def _canvas(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates u (left to right) and v (top to bottom), both in 0..1."""
    axis = (np.arange(size, dtype=np.float32) + 0.5) / size
    return axis[None, :], axis[:, None]


@lru_cache(maxsize=8)
def _noise_bank(size: int) -> np.ndarray:
    """Sensor noise to cut random windows from: drawing fresh normals cost a fifth of a view."""
    return 6 * np.random.default_rng(size).standard_normal(
        (2 * size, 2 * size, 3), dtype=np.float32
    )


def render_view(scene: Scene, view: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Paint one view as a (size, size, 3) uint8 image.

    Each layer is computed only on the rows it covers and land covers with negligible
    weight are skipped: the generator must keep up with 100 locations a second.
    """
    u, v = _canvas(size)
    c = scene.coastal
    horizon = 0.5 + rng.normal(0, 0.025)
    top = int(round(horizon * size))  # first ground row
    image = np.empty((size, size, 3), dtype=np.float32)
    # Sky, hazier toward the horizon; clouds grey it at random.
    sky = _mix([60, 120, 200], [205, 220, 235], np.clip(v[:top] / horizon, 0, 1)[..., None])
    image[:top] = _mix(sky, [190, 190, 195], rng.uniform(0, 0.5))
    # Ridge line: terrain ahead lifts the horizon; its profile has random phase.
    phase = rng.uniform(0, 2 * np.pi, 2)
    profile = 0.7 + 0.2 * np.sin(2 * np.pi * 1.3 * u + phase[0])
    profile += 0.1 * np.sin(2 * np.pi * 4.1 * u + phase[1])
    ridge_top = horizon - 0.28 * scene.ridge[view] * profile
    slope_colour = _mix([165, 160, 150], [45, 85, 45], min(1.0, scene.forest[view] * 1.6))
    image[:top][v[:top] >= ridge_top] = slope_colour * rng.uniform(0.8, 1.0)
    # Ground: a blend of land covers, each with its own texture.
    gu, gv = u, v[top:]
    depth = np.clip((gv - horizon) / (1 - horizon), 1e-3, 1)  # 0 at the horizon, 1 at the car
    green = _mix([60, 125, 50], [115, 125, 70], c)  # lush continental to olive Mediterranean
    soil = _mix(_mix([125, 95, 70], [65, 52, 42], scene.slavonia), [160, 80, 50], c)  # terra rossa
    speckle = rng.random((size - top, size, 1), dtype=np.float32)
    weights = np.array(
        [scene.forest[view], scene.field[view], scene.karst[view], scene.urban[view]],
        dtype=np.float32,
    )
    weights /= max(float(weights.sum()), 1e-6)
    land = np.zeros((size - top, size, 3), dtype=np.float32)
    if weights[0] > 0.02:
        land += weights[0] * _mix([30, 70, 35], green, 0.35) * (0.7 + 0.4 * speckle)
    if weights[1] > 0.02:
        stripes = (np.sin(2 * np.pi * 6 * (gu - 0.5) / depth + phase[0]) > 0)[..., None]
        field = np.where(stripes, _mix([205, 185, 95], soil, 0.3), _mix(green, [150, 160, 70], 0.5))
        land += weights[1] * field
    if weights[2] > 0.02:
        land += weights[2] * _mix([185, 182, 172], soil, 0.25) * (0.85 + 0.25 * speckle)
    if weights[3] > 0.02:
        land += weights[3] * np.float32([150, 148, 140])
    # The sea, between the horizon and the land, when the view faces the coast.
    sea_rows = int(round(0.3 * scene.sea[view] * size))
    if sea_rows:
        land[:sea_rows] = _mix([25, 85, 140], [70, 140, 185], speckle[:sea_rows] * 0.5)
    image[top:] = land
    _draw_buildings(image, scene.urban[view], horizon, _mix([95, 85, 80], [185, 85, 55], c), rng)
    if rng.random() < 0.75:
        _draw_road(image[top:], gu, depth, rng)
    _draw_clutter(image, horizon, rng)
    image *= rng.uniform(0.75, 1.2) * rng.uniform(0.92, 1.08, 3).astype(np.float32)
    top_row, left = rng.integers(0, size, 2)
    image += _noise_bank(size)[top_row : top_row + size, left : left + size]
    return np.clip(image, 0, 255, out=image).astype(np.uint8)


def _draw_buildings(image, urban: float, horizon: float, roof, rng) -> None:
    size = image.shape[0]
    for _ in range(rng.poisson(urban * 7)):
        width = rng.uniform(0.06, 0.2)
        left = rng.uniform(-0.05, 1 - width)
        top = horizon - rng.uniform(0.05, 0.25)
        bottom = horizon + rng.uniform(0.0, 0.08)
        x0, x1 = int(max(left, 0) * size), int((left + width) * size)
        y0, y1, yr = int(top * size), int(bottom * size), int((top + 0.04) * size)
        image[y0:y1, x0:x1] = _mix([225, 215, 195], [170, 160, 150], rng.random())
        image[y0:yr, x0:x1] = roof * rng.uniform(0.85, 1.1)


def _draw_road(ground, u, depth, rng) -> None:
    centre = 0.5 + rng.normal(0, 0.05)
    road = np.abs(u - centre) < 0.02 + 0.4 * depth
    ground[road] = np.float32([88, 88, 92]) * rng.uniform(0.85, 1.15)
    line = road & (np.abs(u - centre) < 0.004 + 0.012 * depth) & (np.sin(30 / depth) > 0)
    ground[line] = [235, 235, 225]


def _draw_clutter(image, horizon: float, rng) -> None:
    """Cars, signs and poles: objects that say nothing about where we are."""
    size = image.shape[0]
    for _ in range(rng.integers(0, 5)):
        w, h = rng.uniform(0.03, 0.15), rng.uniform(0.03, 0.1)
        x, y = rng.uniform(0, 1 - w), rng.uniform(horizon - 0.05, 1 - h)
        image[int(y * size) : int((y + h) * size), int(x * size) : int((x + w) * size)] = (
            CLUTTER_COLOURS[rng.integers(len(CLUTTER_COLOURS))]
        )
    for _ in range(rng.integers(0, 3)):
        x = rng.uniform(0, 0.98)
        image[
            int((horizon - 0.3) * size) : int((horizon + 0.1) * size),
            int(x * size) : int(x * size) + 2,
        ] = 60
