"""Fused JAX steps (`steps_per_execution` in one `lax.scan`) train exactly like Keras' loop."""

import keras
import numpy as np
import pandas as pd
import pytest

import keras_recsys as kr

pytestmark = [
    pytest.mark.multibackend,
    pytest.mark.skipif(keras.backend.backend() != "jax", reason="the fused path is JAX's"),
]


def _fit(census_small, steps_per_execution, dataset):
    train, spec, arrays = census_small
    keras.utils.set_random_seed(0)
    model = kr.models.DeepFM(spec, ["income"], hidden_units=(8,))
    model.compile(optimizer="adam", steps_per_execution=steps_per_execution)
    if dataset:
        data = {
            "x": kr.data.DeviceDataset(
                arrays.features, arrays.labels, batch_size=256, shuffle=False
            )
        }
    else:
        data = {**arrays.as_fit_arguments(), "batch_size": 256, "shuffle": False}
    history = model.fit(**data, epochs=2, verbose=0)
    return model, history.history


@pytest.fixture(scope="module")
def census_small():
    train, _, _ = kr.datasets.census_income()
    train = train.head(1100)  # 4 full batches of 256 and one of 76
    spec = kr.FeatureSpec(
        [kr.Categorical(c) for c in ["education", "class_worker", "sex", "race"]]
        + [kr.Numeric("age", transform="log1p")],
        default_embedding_dim=4,
    ).adapt(train)
    model = kr.models.DeepFM(spec, ["income"], hidden_units=(8,))
    return train, spec, kr.data.preprocess(train, model)


@pytest.mark.parametrize("dataset", [False, True], ids=["numpy", "device_dataset"])
def test_fused_steps_match_keras_loop(census_small, dataset):
    """Executions of 4 steps (then the epoch's short last batch, which runs
    alone) end at the weights and logs of one step at a time."""
    looped, looped_logs = _fit(census_small, 1, dataset)
    fused, fused_logs = _fit(census_small, 4, dataset)
    from keras_recsys.training import fused_steps

    assert fused_steps.can_fuse(fused) and not fused_steps.can_fuse(looped)
    for a, b in zip(looped.weights, fused.weights):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-6, err_msg=a.path)
    for name in looped_logs:
        np.testing.assert_allclose(looped_logs[name], fused_logs[name], rtol=1e-5, err_msg=name)
    assert looped_logs["loss"][1] < looped_logs["loss"][0]


def test_fused_steps_match_keras_loop_for_a_next_item_model():
    """SASRec (dropout on: its seed state is carried through the scan too)."""
    from keras_recsys.training import fused_steps

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"history": [list(rng.integers(10, 40, rng.integers(2, 9))) for _ in range(200)]}
    )
    spec = kr.FeatureSpec([kr.Sequence("history", max_length=8)], 8).adapt(frame)
    weights, losses = [], []
    for steps in (1, 3):
        keras.utils.set_random_seed(0)
        model = kr.models.SASRec(spec, loss="bce", dropout=0.2, seed=0)
        model.compile(optimizer="adam", steps_per_execution=steps)
        data = kr.data.next_item_dataset(frame, model, batch_size=32)  # 6 full + 1 short
        losses.append(model.fit(data, epochs=2, verbose=0).history["loss"])
        assert fused_steps.can_fuse(model) == (steps > 1)
        weights.append([np.asarray(w) for w in model.weights])
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, atol=2e-6)
