"""Losses from logits: no dead zone where σ(logit) saturates, on every backend.

A binary cross-entropy on clipped probabilities has zero gradient once
σ(logit) passes the clip (1e-7): JAX and PyTorch reach it past |logit| ≈ 16,
and ESMM's pCTR·pCVR reaches it with both logits at −9. The gradients here
come from each backend's own autodiff.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_recsys as kr
from keras_recsys.models.multitask.esmm import ctcvr_logit
from tests.conftest import BACKEND


def gradient(fn, *values):
    """d fn / d values (float32 numpy arrays), with the backend's autodiff."""
    values = [np.asarray(v, "float32") for v in values]
    if BACKEND == "tensorflow":
        import tensorflow as tf

        tensors = [tf.constant(v) for v in values]
        with tf.GradientTape() as tape:
            tape.watch(tensors)
            out = fn(*tensors)
        return [g.numpy() for g in tape.gradient(out, tensors)]
    if BACKEND == "jax":
        import jax

        grads = jax.grad(lambda *a: fn(*a), argnums=tuple(range(len(values))))(*values)
        return [np.asarray(g) for g in grads]
    import torch

    tensors = [torch.tensor(v, requires_grad=True) for v in values]
    fn(*tensors).backward()
    return [t.grad.numpy() for t in tensors]


@pytest.mark.multibackend
@pytest.mark.parametrize("logit", [-20.0, -40.0])
def test_binary_task_loss_has_gradient_far_past_the_clip(logit):
    loss = kr.Task("click").make_loss()
    y = keras.ops.ones((4, 1))
    (g,) = gradient(lambda z: loss(y, z), np.full((4, 1), logit))
    # d/dz mean BCE(1, σ(z)) = (σ(z) − 1) / 4 ≈ −1/4 per example.
    np.testing.assert_allclose(g, np.full((4, 1), -0.25), rtol=1e-4)


@pytest.mark.multibackend
def test_esmm_ctcvr_loss_keeps_its_gradient_where_the_product_underflows():
    loss = kr.Task("ctcvr").make_loss()
    y = keras.ops.ones((1, 1))
    a = b = np.full((1, 1), -9.0)
    ga, gb = gradient(lambda a, b: loss(y, ctcvr_logit(a, b)), a, b)
    # −log(σ(a)σ(b)) = softplus(−a) + softplus(−b): gradient −σ(−a) ≈ −1 on each logit.
    want = -1.0 / (1.0 + np.exp(-9.0))
    np.testing.assert_allclose(ga, [[want]], rtol=1e-4)
    np.testing.assert_allclose(gb, [[want]], rtol=1e-4)
    # A product that rounds to 1 gives a large finite logit, not +inf or NaN.
    z = keras.ops.convert_to_numpy(ctcvr_logit(np.full((1,), 120.0), np.full((1,), 120.0)))
    assert np.all(np.isfinite(z)) and z[0] > 60


@pytest.mark.multibackend
def test_a_user_loss_sees_probabilities():
    task = kr.Task("click", loss="binary_crossentropy")
    logits = np.array([[0.3], [-1.2]], "float32")
    y = np.array([[1.0], [0.0]], "float32")
    p = 1 / (1 + np.exp(-logits))
    want = -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean()
    got = keras.ops.convert_to_numpy(task.make_loss()(y, logits))
    np.testing.assert_allclose(got, want, rtol=1e-5)
