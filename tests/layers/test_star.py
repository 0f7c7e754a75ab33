"""PartitionedNormalization and StarTopologyDense against numpy."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_recsys as kr

S = 5  # id space: 0 pad, 1 OOV, 2..4 scenarios


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


def _randomize(layer, names, seed=0):
    rng = np.random.default_rng(seed)
    for w in layer.weights:
        if w.name in names:
            w.assign(rng.uniform(0.5, 1.5, size=w.shape).astype("float32"))


def _batch(seed=0):
    rng = np.random.default_rng(seed)
    ids = np.array([2, 2, 2, 3, 3, 3, 3, 2, 1, 1], dtype="int32")  # no example of id 4
    x = rng.normal(size=(len(ids), 3)).astype("float32") + ids[:, None] * 2.0
    return x, ids


@pytest.mark.multibackend
def test_partitioned_normalization_training_matches_numpy():
    norm = kr.layers.PartitionedNormalization(S, momentum=0.9, epsilon=1e-3)
    x, ids = _batch()
    norm.build(x.shape)
    _randomize(norm, {"gamma", "beta", "scenario_gamma", "scenario_beta"})
    gamma, beta = _np(norm.gamma), _np(norm.beta)
    g_p, b_p = _np(norm.scenario_gamma), _np(norm.scenario_beta)
    got = _np(norm(x, ids, training=True))

    want = np.zeros_like(x)
    mean = np.zeros((S, 3), "float32")
    var = np.ones((S, 3), "float32")
    for p in np.unique(ids):
        rows = ids == p
        mean[p], var[p] = x[rows].mean(0), x[rows].var(0)
        z = (x[rows] - mean[p]) / np.sqrt(var[p] + 1e-3)
        want[rows] = gamma * g_p[p] * z + beta + b_p[p]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)

    present = np.isin(np.arange(S), ids)
    moving_mean = np.where(present[:, None], 0.1 * mean, 0.0)
    moving_var = np.where(present[:, None], 0.9 + 0.1 * var, 1.0)
    np.testing.assert_allclose(_np(norm.moving_mean), moving_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_np(norm.moving_variance), moving_var, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(_np(norm.seen), present.astype("float32"))
    np.testing.assert_allclose(_np(norm.global_mean), 0.1 * x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(_np(norm.global_variance), 0.9 + 0.1 * x.var(0), rtol=1e-5)


@pytest.mark.multibackend
def test_partitioned_normalization_inference_uses_own_scenario_statistics():
    norm = kr.layers.PartitionedNormalization(S, epsilon=1e-3)
    x, ids = _batch(1)
    norm.build(x.shape)
    rng = np.random.default_rng(2)
    mm = rng.normal(size=(S, 3)).astype("float32")
    mv = rng.uniform(0.5, 2.0, size=(S, 3)).astype("float32")
    gm = rng.normal(size=(3,)).astype("float32")
    gv = rng.uniform(0.5, 2.0, size=(3,)).astype("float32")
    norm.moving_mean.assign(mm)
    norm.moving_variance.assign(mv)
    norm.global_mean.assign(gm)
    norm.global_variance.assign(gv)
    seen = np.array([0, 0, 1, 1, 1], "float32")  # the OOV id 1 was never trained
    norm.seen.assign(seen)
    got = _np(norm(x, ids, training=False))
    mean = np.where(seen[ids, None] > 0, mm[ids], gm)
    var = np.where(seen[ids, None] > 0, mv[ids], gv)
    np.testing.assert_allclose(got, (x - mean) / np.sqrt(var + 1e-3), rtol=1e-4, atol=1e-5)

    # Another scenario's statistics do not move an example of scenario 2.
    mm_other = mm.copy()
    mm_other[3] += 10.0
    norm.moving_mean.assign(mm_other)
    again = _np(norm(x, ids, training=False))
    np.testing.assert_allclose(again[ids == 2], got[ids == 2], rtol=1e-6)
    assert not np.allclose(again[ids == 3], got[ids == 3])


def test_partitioned_normalization_moving_statistics_converge_per_scenario():
    norm = kr.layers.PartitionedNormalization(S, momentum=0.5)
    x, ids = _batch(3)
    for _ in range(40):
        norm(x, ids, training=True)
    for p in (2, 3):
        np.testing.assert_allclose(_np(norm.moving_mean)[p], x[ids == p].mean(0), rtol=1e-4)
        np.testing.assert_allclose(_np(norm.moving_variance)[p], x[ids == p].var(0), rtol=1e-4)
    # Trained to the batch statistics, inference reproduces training.
    np.testing.assert_allclose(
        _np(norm(x, ids, training=False)), _np(norm(x, ids, training=True)), atol=1e-4
    )


@pytest.mark.multibackend
def test_star_topology_dense_matches_numpy():
    dense = kr.layers.StarTopologyDense(4, S, activation="relu")
    x, ids = _batch(4)
    dense.build(x.shape)
    _randomize(dense, {"scenario_kernel", "scenario_bias", "bias"}, seed=5)
    w, b = _np(dense.kernel), _np(dense.bias)
    w_p, b_p = _np(dense.scenario_kernel), _np(dense.scenario_bias)
    got = _np(dense(x, ids))
    want = np.stack([np.maximum(x[i] @ (w * w_p[p]) + b + b_p[p], 0) for i, p in enumerate(ids)])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_star_topology_dense_starts_as_the_shared_layer():
    dense = kr.layers.StarTopologyDense(4, S)
    x, ids = _batch(5)
    got = _np(dense(x, ids))
    np.testing.assert_allclose(got, x @ _np(dense.kernel), rtol=1e-5, atol=1e-6)
    for layer in (dense, kr.layers.PartitionedNormalization(S, momentum=0.9)):
        config = layer.get_config()
        assert type(layer).from_config(config).get_config() == config


def test_star_layers_serialize_in_a_model(tmp_path):
    x_in = keras.Input((3,))
    ids_in = keras.Input((), dtype="int32")
    h = kr.layers.PartitionedNormalization(S)(x_in, ids_in)
    out = kr.layers.StarTopologyDense(2, S)(h, ids_in)
    model = keras.Model([x_in, ids_in], out)
    x, ids = _batch(6)
    model.layers[2](x, ids, training=True)  # move the statistics off their init
    path = str(tmp_path / "star.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(_np(loaded([x, ids])), _np(model([x, ids])), rtol=1e-6)
