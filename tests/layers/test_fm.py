"""FactorizationMachine against the explicit pairwise sum over i < j."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_recsys.layers import FactorizationMachine


def _pairwise(fields):
    """Σ_{i<j} <e_i, e_j> by a double loop over field pairs."""
    batch, num_fields, _ = fields.shape
    out = np.zeros((batch, 1))
    for i in range(num_fields):
        for j in range(i + 1, num_fields):
            out[:, 0] += np.sum(fields[:, i] * fields[:, j], axis=-1)
    return out


@pytest.mark.parametrize(("num_fields", "dim"), [(2, 1), (3, 4), (7, 5)])
def test_matches_pairwise_sum(rng, num_fields, dim):
    """The O(F·d) identity equals the explicit sum of pairwise dot products."""
    fields = rng.normal(size=(6, num_fields, dim)).astype("float32")
    out = keras.ops.convert_to_numpy(FactorizationMachine()(fields))
    assert out.shape == (6, 1)
    np.testing.assert_allclose(out, _pairwise(fields.astype(np.float64)), rtol=1e-4, atol=1e-5)


def test_single_field_has_no_interaction(rng):
    """One field has no pair, so the output is 0."""
    fields = rng.normal(size=(3, 1, 4)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(FactorizationMachine()(fields)), 0.0)


def test_config_round_trip(rng, round_trip):
    """The layer deserializes from its config and computes the same values."""
    fields = rng.normal(size=(4, 3, 2)).astype("float32")
    layer = FactorizationMachine(name="fm")
    copy = round_trip(layer, fields)
    assert copy.name == "fm"
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(copy(fields)), keras.ops.convert_to_numpy(layer(fields))
    )
