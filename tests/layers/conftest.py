"""Helpers for the layer tests: seeded inputs and a serialization round trip."""

from __future__ import annotations

import keras
import numpy as np
import pytest


def _round_trip(layer, *args, **kwargs):
    """A copy of a built layer via serialize/deserialize, with its weights copied over.

    The copy is built by calling it on the same inputs, so the weight lists line up.
    """
    config = keras.saving.serialize_keras_object(layer)
    copy = keras.saving.deserialize_keras_object(config)
    assert type(copy) is type(layer)
    assert copy.get_config() == layer.get_config()
    copy(*args, **kwargs)
    copy.set_weights(layer.get_weights())
    return copy


@pytest.fixture(scope="session")
def round_trip():
    """`round_trip(layer, *call_args)` -> a deserialized copy with the same weights."""
    return _round_trip


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def _randomize(layer, rng, scale=0.5):
    """Sets every weight of a built layer to random values (zeros would hide terms)."""
    layer.set_weights([rng.normal(0, scale, w.shape).astype("float32") for w in layer.weights])


@pytest.fixture(scope="session")
def randomize():
    """`randomize(layer, rng)`: random values for all weights of a built layer."""
    return _randomize
