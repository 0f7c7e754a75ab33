"""MaskedPooling against numpy masked mean / sum / max, empty rows included."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_recsys.layers import MaskedPooling

# Row 0 full, row 1 partial, row 2 empty, row 3 a single (last) position.
_MASK = np.array([[1, 1, 1, 1], [1, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 1]], dtype=bool)


def _reference(x, mask, mode):
    out = np.zeros((x.shape[0], x.shape[2]))
    for b in range(x.shape[0]):
        kept = x[b][mask[b]]
        if len(kept) == 0:
            continue  # an empty sequence pools to 0 in every mode
        out[b] = {"mean": kept.mean(0), "sum": kept.sum(0), "max": kept.max(0)}[mode]
    return out


@pytest.mark.parametrize("mode", ["mean", "sum", "max"])
def test_matches_numpy_with_masks(rng, mode):
    """Only unmasked positions count; an empty row gives 0; max works for negative values."""
    x = (rng.normal(size=(4, 4, 3)) - 2.0).astype("float32")  # mostly negative
    out = keras.ops.convert_to_numpy(MaskedPooling(mode)(x, mask=_MASK))
    np.testing.assert_allclose(out, _reference(x, _MASK, mode), rtol=1e-5, atol=1e-6)
    assert np.all(out[2] == 0.0)


@pytest.mark.parametrize("mode", ["mean", "sum", "max"])
def test_without_mask_pools_everything(rng, mode):
    """With no mask every position counts."""
    x = rng.normal(size=(3, 5, 2)).astype("float32")
    out = keras.ops.convert_to_numpy(MaskedPooling(mode)(x))
    np.testing.assert_allclose(out, _reference(x, np.ones((3, 5), bool), mode), rtol=1e-5)


def test_int_mask_equals_bool_mask(rng):
    """A 0/1 integer mask (ids != 0 cast to int) pools like the boolean one."""
    x = rng.normal(size=(4, 4, 2)).astype("float32")
    layer = MaskedPooling("mean")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(layer(x, mask=_MASK.astype("int32"))),
        keras.ops.convert_to_numpy(layer(x, mask=_MASK)),
    )


def test_rejects_unknown_mode():
    """An unknown mode is an error naming the accepted ones."""
    with pytest.raises(ValueError, match="mode must be 'mean', 'sum' or 'max'"):
        MaskedPooling("median")


def test_config_round_trip(rng, round_trip):
    """The mode survives serialization and the copy pools identically."""
    x = rng.normal(size=(4, 4, 3)).astype("float32")
    layer = MaskedPooling("max")
    copy = round_trip(layer, x, mask=_MASK)
    assert copy.mode == "max"
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(copy(x, mask=_MASK)),
        keras.ops.convert_to_numpy(layer(x, mask=_MASK)),
    )
