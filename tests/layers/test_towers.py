"""TaskTowers against numpy."""

import numpy as np
import pytest
from keras import ops

import keras_recsys as kr
from tests.layers.test_moe import mlp_numpy


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


def test_one_tower_per_task():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 4)).astype("float32")
    towers = kr.layers.TaskTowers(["a", "b"], units=[5, 3])
    shared = towers(x)
    own = towers({"a": x, "b": 2 * x})
    listed = towers([x, 2 * x])
    for name in ("a", "b"):
        np.testing.assert_allclose(_np(shared[name]), mlp_numpy(towers.towers[name], x), rtol=1e-5)
    np.testing.assert_allclose(_np(own["b"]), mlp_numpy(towers.towers["b"], 2 * x), rtol=1e-5)
    np.testing.assert_allclose(_np(listed["b"]), _np(own["b"]), rtol=1e-6)
    assert not np.allclose(_np(shared["a"]), _np(shared["b"]))


def test_no_units_is_identity_and_config():
    x = np.ones((2, 3), "float32")
    towers = kr.layers.TaskTowers(["a"], units=[])
    np.testing.assert_array_equal(_np(towers(x)["a"]), x)
    clone = kr.layers.TaskTowers.from_config(
        kr.layers.TaskTowers(["a", "b"], [4], dropout=0.2).get_config()
    )
    assert clone.names == ["a", "b"] and clone.units == [4] and clone.dropout == 0.2
    with pytest.raises(ValueError, match="2 towers"):
        kr.layers.TaskTowers(["a", "b"], [4])([x])
