"""CustomizedGateControl (a CGC / PLE level) against numpy, and its structure."""

import numpy as np
import pytest
from keras import ops

import keras_recsys as kr
from tests.layers.test_moe import mlp_numpy, softmax


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


def cgc_numpy(layer, task_inputs, shared_input):
    """The CGC equations, from the layer's weights: per-task and shared gates."""
    shared = [mlp_numpy(e, shared_input) for e in layer.shared_experts]
    own = [
        [mlp_numpy(e, task_inputs[k]) for e in layer.task_experts[k]]
        for k in range(layer.num_tasks)
    ]
    outputs, gates = [], []
    for k in range(layer.num_tasks):
        g = softmax(task_inputs[k] @ _np(layer.task_gates[k].dense.kernel))
        outputs.append(np.einsum("bn,bnd->bd", g, np.stack(own[k] + shared, axis=1)))
        gates.append(g)
    if layer.output_shared:
        everything = [e for experts in own for e in experts] + shared
        g = softmax(shared_input @ _np(layer.shared_gate.dense.kernel))
        outputs.append(np.einsum("bn,bnd->bd", g, np.stack(everything, axis=1)))
        gates.append(g)
    return outputs, gates


@pytest.mark.multibackend
def test_first_level_matches_numpy():
    x = np.random.default_rng(0).normal(size=(16, 9)).astype("float32")
    layer = kr.layers.CustomizedGateControl(
        num_tasks=3, num_task_experts=2, num_shared_experts=1, expert_units=[8, 4]
    )
    outputs, gates = layer(x, return_gates=True)
    expected, expected_gates = cgc_numpy(layer, [x] * 3, x)
    assert len(outputs) == 3
    for got, want in zip(outputs, expected):
        np.testing.assert_allclose(_np(got), want, rtol=1e-4, atol=1e-5)
    for got, want in zip(gates, expected_gates):
        np.testing.assert_allclose(_np(got), want, rtol=1e-5, atol=1e-6)
        assert got.shape == (16, 3)  # 2 own experts + 1 shared
        np.testing.assert_allclose(_np(got).sum(-1), 1.0, rtol=1e-6)


def test_inner_level_reads_its_own_inputs_and_outputs_shared():
    rng = np.random.default_rng(1)
    inputs = [rng.normal(size=(8, 5)).astype("float32") for _ in range(3)]  # 2 tasks + shared
    layer = kr.layers.CustomizedGateControl(
        num_tasks=2, num_task_experts=1, num_shared_experts=2, expert_units=[6],
        output_shared=True,
    )  # fmt: skip
    outputs, gates = layer(inputs, return_gates=True)
    expected, expected_gates = cgc_numpy(layer, inputs[:2], inputs[2])
    assert len(outputs) == 3
    for got, want in zip(outputs, expected):
        np.testing.assert_allclose(_np(got), want, rtol=1e-4, atol=1e-5)
    assert gates[-1].shape == (8, 2 * 1 + 2)  # the shared gate sees every expert
    for got, want in zip(gates, expected_gates):
        np.testing.assert_allclose(_np(got), want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(_np(got).sum(-1), 1.0, rtol=1e-6)


def test_gates_are_bias_free():
    layer = kr.layers.CustomizedGateControl(2, expert_units=[4], output_shared=True)
    layer.build((None, 3))
    assert all(g.dense.bias is None for g in layer.task_gates + [layer.shared_gate])


def test_only_shared_experts_is_mmoe_like():
    # With no task-specific experts every task gate mixes the same shared experts.
    x = np.random.default_rng(2).normal(size=(4, 3)).astype("float32")
    layer = kr.layers.CustomizedGateControl(2, 0, 3, expert_units=[5])
    outputs = layer(x)
    expected, _ = cgc_numpy(layer, [x, x], x)
    for got, want in zip(outputs, expected):
        np.testing.assert_allclose(_np(got), want, rtol=1e-4, atol=1e-5)


def test_config_round_trip_and_errors():
    x = np.ones((2, 3), "float32")
    layer = kr.layers.CustomizedGateControl(2, 2, 1, expert_units=[4], output_shared=True)
    first = layer(x)
    clone = kr.layers.CustomizedGateControl.from_config(layer.get_config())
    clone.build(x.shape)
    clone.set_weights(layer.get_weights())
    for a, b in zip(first, clone(x)):
        np.testing.assert_allclose(_np(a), _np(b), rtol=1e-6)
    with pytest.raises(ValueError, match="num_tasks \\+ 1"):
        layer([x, x])
    with pytest.raises(ValueError, match="at least one expert"):
        kr.layers.CustomizedGateControl(2, 0, 0)
