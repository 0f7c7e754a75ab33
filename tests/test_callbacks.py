"""`kr.callbacks.MultiTaskEarlyStopping` on a tiny two-task model, and Keras'
TensorBoard callback on a keras_recsys model (when tensorboard is installed).

To make "the combined metric stops improving" happen on purpose, a helper
callback flips the sign of every task logit (heads' kernels and biases) at
the start of one epoch and freezes training from then on: each validation AUC
then becomes 1 − AUC, below its best, for the remaining epochs.
"""

from __future__ import annotations

import glob
import os

import keras
import numpy as np
import pytest

import keras_recsys as kr

TASKS = ["income", "marital"]


@pytest.fixture(scope="module")
def data(census_small):
    train, test = census_small
    return train.head(1024), test.head(512)


@pytest.fixture(scope="module")
def spec(data):
    features = [kr.Categorical("education"), kr.Categorical("sex"), kr.Numeric("age")]
    return kr.FeatureSpec(features, default_embedding_dim=4).adapt(data[0])


def tiny_model(spec, tasks=TASKS):
    keras.utils.set_random_seed(0)
    model = kr.models.DNN(spec, tasks, hidden_units=[8])
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    return model


class FlipLogitsAt(keras.callbacks.Callback):
    """From epoch `epoch` on: logits negated once, learning rate 0."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            for head in self.model.heads.heads.values():
                for weight in head.weights:
                    weight.assign(-weight)
            self.model.optimizer.learning_rate.assign(0.0)


class WeightsAtEpochEnd(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.weights = []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append([np.array(w) for w in self.model.get_weights()])


def assert_same_weights(a, b):
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_stops_when_the_mean_auc_stops_improving_and_restores_the_best(spec, data):
    train, valid = data
    model = tiny_model(spec)
    stop = kr.callbacks.MultiTaskEarlyStopping("auc", patience=2, restore_best_weights=True)
    record = WeightsAtEpochEnd()
    history = model.fit(
        train,
        validation_data=valid,
        epochs=20,
        batch_size=256,
        callbacks=[FlipLogitsAt(3), stop, record],
        verbose=0,
    ).history
    means = np.array(history["val_mean_auc"])
    # The logged value is the mean of the tasks' validation AUCs.
    np.testing.assert_allclose(
        means, (np.array(history["val_income_auc"]) + np.array(history["val_marital_auc"])) / 2
    )
    # Stopped `patience` epochs after the best one (at the latest two epochs
    # after the flip), long before epochs=20, with no better epoch since.
    best = int(np.argmax(means))
    assert len(means) == best + 1 + 2 <= 3 + 2
    assert (means[best + 1 :] <= means[best]).all()
    # The weights are those of the end of the best epoch, not of the last one.
    final = model.get_weights()
    assert_same_weights(final, record.weights[best])
    assert not all(np.array_equal(a, b) for a, b in zip(final, record.weights[-1]))


def test_weighted_mean_and_its_logs_key_feed_other_callbacks(spec, data):
    train, valid = data
    model = tiny_model(spec)
    stop = kr.callbacks.MultiTaskEarlyStopping("auc", weights={"income": 3.0, "marital": 1.0})
    seen = []
    later = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: seen.append(logs["val_mean_auc"])
    )
    history = model.fit(
        train, validation_data=valid, epochs=1, callbacks=[stop, later], verbose=0
    ).history
    want = (3 * np.array(history["val_income_auc"]) + np.array(history["val_marital_auc"])) / 4
    np.testing.assert_allclose(history["val_mean_auc"], want, rtol=1e-6)
    np.testing.assert_allclose(seen, want, rtol=1e-6)


def test_a_loss_is_minimized_and_one_task_uses_keras_unprefixed_names(spec, data):
    train, valid = data
    model = tiny_model(spec, ["income"])
    stop = kr.callbacks.MultiTaskEarlyStopping("logloss", patience=5)
    history = model.fit(train, validation_data=valid, epochs=2, callbacks=[stop], verbose=0).history
    np.testing.assert_allclose(history["val_mean_logloss"], history["val_logloss"])
    assert stop.mode == "min"
    assert kr.callbacks.MultiTaskEarlyStopping("auc").mode == "max"


def test_unknown_metric_or_task_is_a_clear_error(spec):
    stop = kr.callbacks.MultiTaskEarlyStopping("ndcg")
    stop.set_model(tiny_model(spec))
    logs = {"loss": 0.5, "val_loss": 0.6, "val_income_auc": 0.8, "val_marital_auc": 0.9}
    with pytest.raises(KeyError, match=r"no \['val_income_ndcg'.*Choose `metric=`"):
        stop.on_epoch_end(0, dict(logs))
    # An epoch without validation (validation_freq) writes nothing.
    assert stop.combined_value({"loss": 0.5}) is None
    assert kr.callbacks.MultiTaskEarlyStopping("auc", tasks=["marital"]).mode == "max"
    with pytest.raises(ValueError, match="`metric=` instead of `monitor=`"):
        kr.callbacks.MultiTaskEarlyStopping(monitor="val_loss")
    with pytest.raises(ValueError, match=r"weights has no weight for task\(s\) \['marital'\]"):
        kr.callbacks.MultiTaskEarlyStopping(tasks=TASKS, weights={"income": 1.0})
    with pytest.raises(ValueError, match="finite number >= 0"):
        kr.callbacks.MultiTaskEarlyStopping(weights={"income": -1.0})


def test_tensorboard_logs_a_keras_recsys_fit(spec, data, tmp_path):
    """`keras.callbacks.TensorBoard` needs the `tensorboard` package (TensorFlow
    >= 2.20 no longer installs it): scalars per epoch, the mean AUC included."""
    pytest.importorskip("tensorboard")
    import tensorflow as tf

    train, valid = data
    model = tiny_model(spec)
    model.fit(
        train,
        validation_data=valid,
        epochs=2,
        callbacks=[
            kr.callbacks.MultiTaskEarlyStopping("auc"),
            keras.callbacks.TensorBoard(str(tmp_path)),
        ],
        verbose=0,
    )

    def tags(folder):
        found = set()
        for path in glob.glob(os.path.join(tmp_path, folder, "events.out.tfevents.*")):
            for event in tf.compat.v1.train.summary_iterator(path):
                found.update(value.tag for value in event.summary.value)
        return found

    assert {"epoch_loss", "epoch_income_auc", "epoch_marital_auc"} <= tags("train")
    assert {"epoch_loss", "epoch_mean_auc"} <= tags("validation")
