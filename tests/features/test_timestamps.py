"""`Timestamps`: times aligned with a sequence's items, fitted origin, checked alignment."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import keras_recsys as kr

T0 = 1_700_000_000  # Unix seconds: beyond float32's exact integers, within int64


def _spec(max_length=3):
    return kr.FeatureSpec(
        [kr.Sequence("h", max_length=max_length), kr.Timestamps("h_time", "h")], 8
    )


def _frame(encode):
    items = [["a", "b", "c", "d"], ["b"], []]
    times = [[T0, T0 + 60, T0 + 3_600, T0 + 86_400], [T0 - 5], []]
    if encode == "strings":
        return pd.DataFrame(
            {
                "h": ["|".join(r) for r in items],
                "h_time": ["|".join(map(str, r)) for r in times],
            }
        )
    return pd.DataFrame({"h": items, "h_time": times})


@pytest.mark.parametrize("encode", ["lists", "strings"])
def test_times_follow_the_kept_items_as_seconds_since_the_origin(preprocess, encode):
    spec = _spec().adapt(_frame(encode))
    assert spec["h_time"].origin == T0 - 5  # the earliest time seen
    out = preprocess(spec, _frame(encode))
    assert out["h_time"].dtype == np.int32 and out["h_time"].shape == (3, 3)
    # The latest 3 items and their times, padded at the front like the ids; exact seconds.
    np.testing.assert_array_equal(out["h"] > 0, [[1, 1, 1], [0, 0, 1], [0, 0, 0]])
    np.testing.assert_array_equal(out["h_time"], [[65, 3_605, 86_405], [0, 0, 0], [0, 0, 0]])
    assert spec.timestamps_of("h") == "h_time" and spec.timestamps_of("x") is None


def test_config_round_trip_keeps_the_origin(preprocess):
    spec = _spec().adapt(_frame("lists"))
    copy = kr.FeatureSpec.from_json(spec.to_json())
    assert copy["h_time"].origin == spec["h_time"].origin and copy["h_time"].sequence == "h"
    for name, value in preprocess(spec, _frame("lists")).items():
        np.testing.assert_array_equal(preprocess(copy, _frame("lists"))[name], value)


def test_misaligned_or_missing_times_are_named():
    spec = _spec().adapt(_frame("lists"))
    short = pd.DataFrame({"h": [["a", "b"]], "h_time": [[T0]]})
    with pytest.raises(
        ValueError, match=r"'h_time' must have one value per item of 'h'.*1 timestamp"
    ):
        spec.raw_from_frame(short)
    missing = pd.DataFrame({"h": [["a", "b"]], "h_time": [[T0, None]]})
    with pytest.raises(ValueError, match="'h_time'.*not an integer time"):
        spec.raw_from_frame(missing)
    # The serving path (joined strings) checks the alignment too, naming both features.
    with pytest.raises(tf.errors.InvalidArgumentError, match="'h_time' must have one value"):
        spec.preprocessor({"h": tf.constant(["a|b"]), "h_time": tf.constant([str(T0)])})


def test_timestamps_must_time_a_sequence_of_the_spec():
    with pytest.raises(ValueError, match="'nope', which is not a Sequence"):
        kr.FeatureSpec([kr.Sequence("h"), kr.Timestamps("t", "nope")])
    with pytest.raises(ValueError, match="more than one Timestamps"):
        kr.FeatureSpec([kr.Sequence("h"), kr.Timestamps("t", "h"), kr.Timestamps("u", "h")])
    with pytest.raises(ValueError, match="no value in the adapt data"):
        _spec().adapt(pd.DataFrame({"h": [[]], "h_time": [[]]}))


def test_numpy_timestamps_equal_the_tensorflow_preprocessing(preprocess):
    spec = _spec().adapt(_frame("lists"))
    frame = _frame("lists")
    np.testing.assert_array_equal(
        spec.sequence_timestamps("h_time", frame["h_time"]), preprocess(spec, frame)["h_time"]
    )
    with pytest.raises(ValueError, match="not Timestamps"):
        spec.sequence_timestamps("h", frame["h"])
