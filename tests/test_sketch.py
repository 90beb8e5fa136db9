import numpy as np
import pytest

from sketchdown.data.render import rasterize
from sketchdown.data.sketch import Sketch
from sketchdown.errors import InputError

POINTS = np.array([[10, 10, 0], [50, 10, 1], [20, 40, 0], [20, 80, 0], [60, 80, 1]], dtype=np.float32)


def test_points_round_trip_and_strokes():
    s = Sketch.from_points(POINTS)
    assert len(s.strokes) == 2 and s.num_points == 5 and s.is_vector
    np.testing.assert_array_equal(s.to_points(), POINTS)


def test_stroke3_round_trip():
    s = Sketch.from_points(POINTS)
    back = Sketch.from_stroke3(s.to_stroke3())
    # from_stroke3 fits the drawing into the 256 frame: same shape, scaled and centred
    a, b = s.to_points(), back.to_points()
    np.testing.assert_array_equal(a[:, 2], b[:, 2])
    scale = (b[1, 0] - b[0, 0]) / (a[1, 0] - a[0, 0])
    np.testing.assert_allclose((b[:, :2] - b[0, :2]), (a[:, :2] - a[0, :2]) * scale, atol=1e-3)
    x0, y0, x1, y1 = back.bounds()
    assert max(x1 - x0, y1 - y0) == pytest.approx(256 * 0.9, abs=1e-3)


def test_rasterize_makes_a_raster_sketch():
    r = rasterize(Sketch.from_points(POINTS), 128)
    assert not r.is_vector and r.raster.shape == (128, 128) and r.raster.min() < 200
    with pytest.raises(InputError, match="needs a vector sketch"):
        r.to_points()


@pytest.mark.parametrize("bad", [np.zeros((0, 3)), np.zeros((4, 2)), np.zeros(5)])
def test_bad_point_arrays(bad):
    with pytest.raises(InputError):
        Sketch.from_points(bad)


def test_blank_and_empty_sketches_are_refused():
    with pytest.raises(InputError, match="blank"):
        Sketch(raster=np.full((8, 8), 255, np.uint8))
    with pytest.raises(InputError, match="no strokes"):
        Sketch(strokes=(np.zeros((0, 2)),))
    with pytest.raises(ValueError):
        Sketch()
