"""TaskHeads: one linear head per task, on a shared input or per-task towers."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_recsys.layers import TaskHeads

_UNITS = {"click": 1, "genre": 3}


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _expected(heads, inputs):
    """logits_k = h_k W_k + b_k with each head's own weights."""
    return {
        name: inputs[name] @ _np(head.kernel) + _np(head.bias) for name, head in heads.heads.items()
    }


def test_shared_input(rng, randomize):
    """Every head reads the same representation with its own weights and width."""
    h = rng.normal(size=(6, 5)).astype("float32")
    heads = TaskHeads(_UNITS)
    heads(h)
    randomize(heads, rng)
    out = heads(h)
    assert set(out) == set(_UNITS)
    expected = _expected(heads, {name: h for name in _UNITS})
    for name, units in _UNITS.items():
        assert out[name].shape == (6, units)
        np.testing.assert_allclose(_np(out[name]), expected[name], rtol=1e-5, atol=1e-6)
    assert not np.allclose(
        _np(heads.heads["click"].kernel), _np(heads.heads["genre"].kernel)[:, :1]
    )


def test_per_task_towers(rng, randomize):
    """With a dict, each head reads its own tower, whose widths may differ."""
    towers = {
        "click": rng.normal(size=(4, 3)).astype("float32"),
        "genre": rng.normal(size=(4, 7)).astype("float32"),
    }
    heads = TaskHeads(_UNITS)
    heads(towers)
    randomize(heads, rng)
    out = heads(towers)
    expected = _expected(heads, towers)
    for name in _UNITS:
        np.testing.assert_allclose(_np(out[name]), expected[name], rtol=1e-5, atol=1e-6)


def test_missing_tower_names_the_task(rng):
    """A dict without one task's tower fails naming that task."""
    heads = TaskHeads(_UNITS)
    with pytest.raises(KeyError, match=r"no tower output for task\(s\) \['genre'\]"):
        heads({"click": rng.normal(size=(2, 3)).astype("float32")})


def test_config_round_trip(rng, randomize, round_trip):
    """Rebuilt from config with copied weights, the heads give the same logits."""
    h = rng.normal(size=(3, 4)).astype("float32")
    heads = TaskHeads(_UNITS)
    heads(h)
    randomize(heads, rng)
    copy = round_trip(heads, h)
    assert copy.task_units == _UNITS
    for name in _UNITS:
        np.testing.assert_allclose(_np(copy(h)[name]), _np(heads(h)[name]), rtol=1e-6)
