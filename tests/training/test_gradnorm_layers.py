"""GradNorm's shared weights W: the last layer the task heads share (Chen et al., 2018).

The norms ‖∇_W L_k‖ that balance the task weights are taken on the last
shared layer, as in the paper; the embedding tables are only the fallback of
models without a shared network.
"""

import keras
import numpy as np
import pytest

import keras_recsys as kr
from tests.models.test_multitask import TASKS, _fit, data, spec  # noqa: F401 (fixtures)


def _gradnorm(model_class, feature_spec, **kwargs):
    keras.utils.set_random_seed(0)
    return model_class(feature_spec, TASKS, loss_weighting="gradnorm", **kwargs)


def _ids(variables):
    return [id(v) for v in variables]


# name: (builder, the layers whose weights W must be)
CASES = {
    "dnn": (
        lambda s: _gradnorm(kr.models.DNN, s, hidden_units=[16, 8]),
        lambda m: [m.backbone.mlp.dense_layers[1]],
    ),
    "deepfm": (
        lambda s: _gradnorm(kr.models.DeepFM, s, hidden_units=[16, 8]),
        lambda m: [m.backbone.mlp.dense_layers[1]],
    ),
    "wide_deep": (
        lambda s: _gradnorm(kr.models.WideAndDeep, s, hidden_units=[16, 8]),
        lambda m: [m.backbone.deep.dense_layers[1]],
    ),
    "dcn_stacked": (
        lambda s: _gradnorm(kr.models.DCN, s, num_cross_layers=2, hidden_units=[16, 8]),
        lambda m: [m.backbone.mlp.dense_layers[1]],
    ),
    "dcn_parallel": (
        lambda s: _gradnorm(
            kr.models.DCN, s, num_cross_layers=2, structure="parallel", hidden_units=[8]
        ),
        lambda m: [m.backbone.cross_layers[1], m.backbone.mlp.dense_layers[0]],
    ),
    "dcn_cross_only": (
        lambda s: _gradnorm(kr.models.DCN, s, version="v1", num_cross_layers=2, hidden_units=()),
        lambda m: [m.backbone.cross_layers[1]],
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradnorm_variables_are_the_last_shared_layer(name, spec):  # noqa: F811
    build, last_layers = CASES[name]
    model = build(spec)
    want = [v for layer in last_layers(model) for v in layer.trainable_variables]
    assert want and _ids(model.gradnorm_variables()) == _ids(want)
    embedding = _ids(model.embedding.trainable_variables)
    assert not set(_ids(model.gradnorm_variables())) & set(embedding)


@pytest.mark.multibackend
def test_gradnorm_on_the_last_shared_layers_trains(spec, data):  # noqa: F811
    """DCN (parallel: W spans a cross layer and an MLP layer): every task's loss
    reaches W, so GradNorm moves the task weights, and a GradNorm fit on a
    small census frame lowers the loss."""
    build, last_layers = CASES["dcn_parallel"]
    model = build(spec)
    assert _ids(model.gradnorm_variables()) == _ids(
        [v for layer in last_layers(model) for v in layer.trainable_variables]
    )
    history = _fit(model, data[0].head(1024), epochs=2)
    assert history["loss"][-1] < history["loss"][0], history["loss"]
    weights = np.asarray(keras.ops.convert_to_numpy(model.loss_weighter.task_weights))
    np.testing.assert_allclose(weights.sum(), len(TASKS), rtol=1e-5)
    assert not np.allclose(weights, 1.0, atol=1e-4), weights  # the norms moved them
    # Without a shared network the embedding tables are the last shared weights.
    plain = _gradnorm(kr.models.DNN, spec, hidden_units=())
    assert _ids(plain.gradnorm_variables()) == _ids(plain.embedding.trainable_variables)
