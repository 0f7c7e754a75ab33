"""GradNorm's training step on each backend, for `RecModel(loss_weighting="gradnorm")`.

The task weights w_k (`GradNormWeighting.task_weights`) take the gradient
c_k = sign(G_k − T_k) · ‖∇_W L_k‖ (`GradNormWeighting.weight_gradient`),
applied by the model's optimizer in the same step as the network's own
gradient of Σ_k w_k · L_k; then w is renormalized to sum to K. The norms
need every task loss's gradient on the shared weights W
(`RecModel.gradnorm_variables`), taken inside the step:

* TensorFlow: a persistent tape in a train step of its own
  (`tensorflow_train_step`);
* PyTorch: `torch.autograd.grad` of each L_k on the forward graph of Keras'
  own step (`torch_task_gradient_norms`);
* JAX: a pullback of the task losses as a function of W, taken before
  Keras' own loss in `RecModel.compute_loss_and_updates`
  (`jax_task_gradient_norms`): one more forward pass.

On JAX and PyTorch the loss gains Σ_k (w_k − sg(w_k)) · sg(c_k)
(`weight_term`): zero in value and c_k as the gradient on w_k, so Keras'
own train step applies it and the logged loss is unchanged.

Reference: Chen, Badrinarayanan, Lee and Rabinovich, 2018, "GradNorm:
Gradient Normalization for Adaptive Loss Balancing in Deep Multitask
Networks" (ICML).
"""

from __future__ import annotations

import keras
from keras import ops


def global_norm(gradients):
    """√(Σ g²) over a list of gradients (None: no path; sparse slices made dense)."""
    squares = [
        ops.sum(ops.square(ops.cast(ops.convert_to_tensor(g), "float32")))
        for g in gradients
        if g is not None
    ]
    return ops.sqrt(sum(squares)) if squares else ops.zeros((), "float32")


def weight_term(model, losses):
    """Σ_k (w_k − sg(w_k)) · sg(c_k) on JAX and PyTorch; 0 where no norms are at hand
    (TensorFlow, which updates w in its own step, and evaluation)."""
    backend = keras.backend.backend()
    if backend == "jax":
        norms = getattr(model, "_gradnorm_norms", None)
    elif backend == "torch":
        norms = torch_task_gradient_norms(model, losses)
    else:
        norms = None
    if norms is None:
        return ops.zeros((), "float32")
    weighter = model.loss_weighter
    losses = [ops.stop_gradient(loss) for loss in losses]
    weighter.record_initial_losses(losses)
    gradient = ops.stop_gradient(weighter.weight_gradient(losses, norms))
    weights = weighter.task_weights
    return ops.sum((weights - ops.stop_gradient(weights)) * gradient)


def torch_task_gradient_norms(model, losses):
    """‖∇_W L_k‖ for every task (PyTorch), or None outside a gradient-recording step."""
    import torch

    if not torch.is_grad_enabled() or not all(loss.requires_grad for loss in losses):
        return None
    shared = [v.value for v in model.gradnorm_variables()]
    norms = [
        global_norm(torch.autograd.grad(loss, shared, retain_graph=True, allow_unused=True))
        for loss in losses
    ]
    return torch.stack(norms).detach()


def jax_task_gradient_norms(model, trainable_values, non_trainable_values, x, y, sample_weight):
    """‖∇_W L_k‖ for every task (JAX), from the step's variable values."""
    import jax
    import jax.numpy as jnp

    shared = {id(v) for v in model.gradnorm_variables()}
    positions = [i for i, v in enumerate(model.trainable_variables) if id(v) in shared]

    def task_losses(shared_values):
        values = list(trainable_values)
        for position, value in zip(positions, shared_values):
            values[position] = value
        y_pred, _ = model.stateless_call(values, non_trainable_values, x, training=True)
        losses = model.task_losses(y, model.supervised_outputs(y_pred), sample_weight)
        return jnp.stack([jnp.asarray(loss, "float32") for loss in losses])

    losses, pullback = jax.vjp(task_losses, [trainable_values[i] for i in positions])
    norms = [
        global_norm(pullback(jnp.zeros_like(losses).at[k].set(1.0))[0])
        for k in range(len(model.tasks))
    ]
    return jax.lax.stop_gradient(jnp.stack(norms))


def renormalized_jax_state(model, state):
    """The JAX train step's new state with w renormalized to sum to K."""
    trainable, *rest = state
    weights = model.loss_weighter.task_weights
    position = next(i for i, v in enumerate(model.trainable_variables) if v is weights)
    trainable = list(trainable)
    trainable[position] = model.loss_weighter.renormalized(trainable[position])
    return (trainable, *rest)


def renormalize_in_place(model) -> None:
    """w ← K · w / Σ w after a PyTorch step (outside autograd)."""
    import torch

    with torch.no_grad():
        model.loss_weighter.renormalize()


def tensorflow_train_step(model, data):
    """One GradNorm step on TensorFlow: the network's and w's gradients, one update."""
    import tensorflow as tf
    from keras.utils import unpack_x_y_sample_weight

    x, y, sample_weight = unpack_x_y_sample_weight(data)
    weighter = model.loss_weighter
    shared = model.gradnorm_variables()
    with tf.GradientTape(persistent=True) as tape:
        y_pred = model(x, training=True)
        losses = model.task_losses(y, y_pred, sample_weight)
        loss = model._weighted_loss(losses, y_pred)
        scaled = model.optimizer.scale_loss(loss) if model.optimizer else loss
    variables = [v for v in model.trainable_variables if v is not weighter.task_weights]
    gradients = tape.gradient(scaled, variables)
    norms = [global_norm(tape.gradient(task_loss, shared)) for task_loss in losses]
    del tape
    weighter.record_initial_losses(losses)
    weight_gradient = weighter.weight_gradient(losses, norms)
    model.optimizer.apply_gradients(
        zip(gradients + [weight_gradient], variables + [weighter.task_weights])
    )
    weighter.renormalize()
    model._loss_tracker.update_state(loss, sample_weight=tf.shape(next(iter(y_pred.values())))[0])
    return model.compute_metrics(x, y, y_pred, sample_weight=sample_weight)
