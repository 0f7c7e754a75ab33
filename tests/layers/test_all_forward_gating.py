"""AllForwardGating (STEM-Net's gating layer) against numpy, and its stop-gradients."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_recsys.layers.multitask.all_forward_gating import AllForwardGating
from tests.conftest import BACKEND
from tests.layers.test_moe import mlp_numpy, softmax


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


def all_forward_gating_numpy(layer, task_inputs, shared_input):
    """[y_1, ..., y_K] and the gates, from the layer's own weights (no dropout)."""
    own = [
        [mlp_numpy(e, q) for e in experts] for experts, q in zip(layer.task_experts, task_inputs)
    ]
    shared = [mlp_numpy(e, shared_input) for e in layer.shared_experts]
    experts = np.stack([e for outputs in own for e in outputs] + shared, axis=1)  # (B, n, d)
    outputs, gates = [], []
    for k, q in enumerate(task_inputs):
        hidden = q + shared_input
        if layer.gate_hidden:
            hidden = mlp_numpy(layer.gate_hidden[k], hidden)
        gate = softmax(hidden @ _np(layer.gates[k].dense.kernel))
        outputs.append(np.einsum("bn,bnd->bd", gate, experts))
        gates.append(gate)
    return outputs, gates


def _inputs(rng, count, width=6, batch=16):
    return [rng.normal(size=(batch, width)).astype("float32") for _ in range(count)]


@pytest.mark.multibackend
@pytest.mark.parametrize(
    "num_tasks, num_task_experts, num_shared_experts, gate_units",
    [(2, 1, 1, [5]), (3, 2, 1, []), (2, 0, 3, [4, 3])],
)
def test_matches_numpy(num_tasks, num_task_experts, num_shared_experts, gate_units, rng, randomize):
    inputs = _inputs(rng, num_tasks + 1)
    layer = AllForwardGating(
        num_tasks,
        num_task_experts=num_task_experts,
        num_shared_experts=num_shared_experts,
        expert_units=[7, 4],
        gate_units=gate_units,
    )
    layer(inputs)
    randomize(layer, rng)
    outputs, gates = layer(inputs, return_gates=True)
    want_outputs, want_gates = all_forward_gating_numpy(layer, inputs[:-1], inputs[-1])
    experts = num_tasks * num_task_experts + num_shared_experts
    assert layer.num_experts == experts
    for k in range(num_tasks):
        assert tuple(outputs[k].shape) == (16, 4) and tuple(gates[k].shape) == (16, experts)
        np.testing.assert_allclose(_np(gates[k]), want_gates[k], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(_np(gates[k]).sum(-1), 1.0, rtol=1e-6)
        np.testing.assert_allclose(_np(outputs[k]), want_outputs[k], rtol=1e-5, atol=1e-5)


def _input_gradients(layer, inputs, task):
    """d(Σ y_task) / d(every input), by the backend's own autodiff."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        tensors = [tf.constant(x) for x in inputs]
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            total = tf.reduce_sum(layer(tensors)[task])
        grads = tape.gradient(total, tensors, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return [_np(g) for g in grads]
    if BACKEND == "torch":
        import torch

        tensors = [torch.tensor(x, requires_grad=True) for x in inputs]
        total = layer(tensors)[task].sum()
        grads = torch.autograd.grad(total, tensors, allow_unused=True)
        return [np.zeros(x.shape) if g is None else _np(g) for g, x in zip(grads, inputs)]
    import jax

    values = [v.value for v in layer.variables]

    def total(tensors):
        outputs, _ = layer.stateless_call(values, [], tensors)
        return outputs[task].sum()

    return [_np(g) for g in jax.grad(total)([jax.numpy.asarray(x) for x in inputs])]


@pytest.mark.multibackend
def test_other_tasks_experts_are_forward_only(rng, randomize):
    """Task 0 reads task 1's experts (its output moves with q_1), but its
    gradient never reaches q_1: only q_0 and q_s."""
    inputs = _inputs(rng, 3)
    layer = AllForwardGating(2, num_task_experts=1, num_shared_experts=1, expert_units=[8])
    layer(inputs)
    randomize(layer, rng)
    moved = [inputs[0], inputs[1] + 1.0, inputs[2]]
    assert not np.allclose(_np(layer(moved)[0]), _np(layer(inputs)[0]), atol=1e-4)
    for task, other in ((0, 1), (1, 0)):
        grads = _input_gradients(layer, inputs, task)
        assert np.all(grads[other] == 0.0), f"task {task} trains task {other}'s input"
        assert np.abs(grads[task]).sum() > 0 and np.abs(grads[-1]).sum() > 0


def test_round_trip_and_checks(rng, round_trip):
    inputs = _inputs(rng, 3, batch=4)
    layer = AllForwardGating(
        2, num_task_experts=2, num_shared_experts=1, expert_units=[5], gate_units=[3], name="afg"
    )
    layer(inputs)
    copy = round_trip(layer, inputs)
    for got, want in zip(copy(inputs), layer(inputs)):
        np.testing.assert_allclose(_np(got), _np(want), rtol=1e-6)
    assert [tuple(s) for s in layer.compute_output_shape([(None, 6)] * 3)] == [(None, 5)] * 2
    with pytest.raises(ValueError, match="num_tasks \\+ 1 = 3"):
        layer(inputs[:2])
    with pytest.raises(ValueError, match="one width"):
        AllForwardGating(2, expert_units=[4])([inputs[0], inputs[1], keras.ops.ones((4, 2))])
    with pytest.raises(ValueError, match="at least one expert"):
        AllForwardGating(2, num_task_experts=0, num_shared_experts=0)
