"""HSTU on real MovieLens-100K sequences with their timestamps: training, time bias, save, export."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pytest

import keras_recsys as kr
from tests.conftest import BACKEND

MAX_LENGTH = 30


def _np(x):
    return keras.ops.convert_to_numpy(x)


@pytest.fixture(scope="module")
def movielens(movielens_sequences):
    """Leave-one-out split of the ML-100K rating sequences; a spec with the history's times."""
    data = movielens_sequences
    train, _, test = data.leave_one_out()
    spec = kr.FeatureSpec(
        [kr.Sequence("history", max_length=MAX_LENGTH), kr.Timestamps("history_time", "history")],
        16,
    )
    spec.adapt(
        pd.DataFrame(
            {"history": data.sequences["item_id"], "history_time": data.sequences["timestamp"]}
        )
    )
    train = pd.DataFrame({"history": train["item_id"], "history_time": train["timestamp"]})
    test = pd.DataFrame(
        {"history": test["history"], "history_time": test["timestamp"], "target": test["target"]}
    )
    return spec, train, test


def _arrays(spec, frame):
    """Preprocessed (ids, times) of max_length + 1 items: what next_item_dataset pairs."""
    longer = kr.FeatureSpec.from_config(spec.get_config())
    longer["history"].max_length += 1
    arrays = kr.data.to_numpy(frame, longer)
    return arrays["history"], arrays["history_time"]


def _model(spec):
    return kr.models.HSTU(spec, timestamps="history_time", dropout=0.1, num_negatives=64, seed=0)


@pytest.mark.multibackend
def test_hstu_learns_from_items_and_time_gaps(movielens, tmp_path):
    spec, train, test = movielens
    keras.utils.set_random_seed(0)
    model = _model(spec)
    model.compile(optimizer=keras.optimizers.AdamW(3e-3, beta_2=0.98))
    x, y = model.training_pair(*_arrays(spec, train))
    time_bias = _np(model.backbone.blocks[0].time_bias).copy()
    losses = model.fit(x, y, batch_size=64, epochs=3, verbose=0).history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < 0.95 * losses[0], losses
    # The time-gap bias trains, and the scores depend on the gaps.
    assert np.abs(_np(model.backbone.blocks[0].time_bias) - time_bias).max() > 1e-3
    queries = kr.data.to_numpy(test.head(32), spec)
    scores = _np(model.score_all(queries))
    stretched = dict(queries, history_time=queries["history_time"] * 7)
    assert np.abs(_np(model.score_all(stretched)) - scores).max() > 1e-4
    np.testing.assert_allclose(
        np.asarray(model.scorer().predict_on_batch(queries)), scores, rtol=1e-4, atol=1e-4
    )
    path = str(tmp_path / "hstu.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.timestamp_feature == "history_time"
    np.testing.assert_allclose(_np(loaded.score_all(queries)), scores, atol=1e-5)


@pytest.mark.skipif(BACKEND != "tensorflow", reason="tf.data pipeline")
def test_next_item_dataset_slices_timestamps_like_the_items(movielens):
    spec, train, _ = movielens
    model = _model(spec)
    frame = train.head(16).rename(columns={"history": "item_id", "history_time": "timestamp"})
    inputs, targets = next(
        iter(
            kr.data.next_item_dataset(
                frame, model, batch_size=16, column="item_id", timestamp_column="timestamp"
            )
        )
    )
    ids, times = _arrays(spec, train.head(16))
    np.testing.assert_array_equal(inputs["history"].numpy(), ids[:, :-1])
    np.testing.assert_array_equal(inputs["history_time"].numpy(), times[:, :-1])
    np.testing.assert_array_equal(targets.numpy(), ids[:, 1:])
    # Items and times stay aligned: padding (id 0) is where the times are 0.
    assert ((ids == 0) <= (times == 0)).all()


@pytest.mark.slow
def test_hstu_export_with_timestamps_answers_like_the_model(movielens, tmp_path):
    spec, train, test = movielens
    model = _model(spec)
    model.compile()
    model.fit(*model.training_pair(*_arrays(spec, train.head(200))), epochs=1, verbose=0)
    path = model.export(str(tmp_path / "hstu"), k=10)
    differences = kr.export.check_export(model, path, test.drop(columns="target").head(20))
    assert differences["scores"] <= 1e-5 and differences["item_ids"] == 0
