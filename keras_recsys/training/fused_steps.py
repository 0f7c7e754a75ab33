"""Fused training steps on JAX: `steps_per_execution` steps in one compiled call.

Keras' JAX trainer runs `steps_per_execution` steps as a Python loop over
one jitted step, so every step still pays a dispatch: flattening the whole
training state (every weight, optimizer slot and metric variable) and the
batch, launching, and unflattening. For a small, fast model on a GPU that
dispatch costs more than the step (`benchmarks/bench_fit_jax.py`). Here the
steps of one execution are stacked and run by one `jax.lax.scan` over
`train_step` inside one jitted function: one dispatch per execution, the
same arithmetic step after step (the scan carries the state exactly as the
loop does). Used by `RecModel.make_train_function` on the JAX backend when
`steps_per_execution > 1`, without a `keras.distribution` (whose sharded
state Keras' own step handles), and when jit is on; `model.fuse_steps =
False` keeps Keras' loop (to compare, or to debug a step).

When the steps of an execution do not all have the same shapes (the last,
smaller batch of an epoch) or the epoch ends inside it, the steps that are
there run one by one through the ordinary jitted step, as Keras would.
"""

from __future__ import annotations

from typing import Any

import keras


def _shapes(batch) -> tuple:
    import jax

    # Shapes only: a step's dtypes never change within a fit, and this runs
    # for every batch (str(dtype) alone cost more than the dispatch it saves).
    return tuple(getattr(leaf, "shape", None) for leaf in jax.tree_util.tree_leaves(batch))


def make_fused_train_function(model) -> Any:
    """A `train_function(state, iterator)` that runs `model.steps_per_execution`
    steps per call, fused into one `lax.scan` when their batches align."""
    import jax
    import jax.numpy as jnp

    steps = int(model.steps_per_execution)
    single = jax.jit(model.train_step, donate_argnums=0)

    def scan_steps(state, batches):
        stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *batches)

        def body(carry, data):
            logs, carry = model.train_step(carry, data)
            return carry, logs

        state, logs = jax.lax.scan(body, state, stacked)
        return jax.tree_util.tree_map(lambda x: x[-1], logs), state

    fused = jax.jit(scan_steps, donate_argnums=0)

    def train_function(state, iterator):
        # As Keras' loop: the first `next` may end the epoch (StopIteration
        # propagates to the epoch iterator); later ones end the execution.
        batches = [next(iterator)]
        try:
            for _ in range(steps - 1):
                batches.append(next(iterator))
        except StopIteration:
            pass
        first = _shapes(batches[0])
        if len(batches) == steps and all(_shapes(b) == first for b in batches[1:]):
            return fused(state, tuple(batches))
        logs = None
        for batch in batches:
            logs, state = single(state, batch)
        return logs, state

    return train_function


def can_fuse(model) -> bool:
    """Whether `make_fused_train_function` applies to this compiled model."""
    return (
        bool(getattr(model, "fuse_steps", True))
        and int(getattr(model, "steps_per_execution", 1)) > 1
        and not model.run_eagerly
        and bool(model.jit_compile)
        and keras.distribution.distribution() is None
    )


class FusedJaxSteps:
    """Model mixin: on JAX, `steps_per_execution` steps run as one compiled call.

    Everything else is Keras' own train function; `fuse_steps = False` on a
    model keeps Keras' loop.
    """

    fuse_steps = True

    def make_train_function(self, force=False):
        if keras.backend.backend() != "jax":
            return super().make_train_function(force)
        if self.train_function is not None and not force:
            return self.train_function
        if not can_fuse(self):
            return super().make_train_function(force)
        self.train_function = make_fused_train_function(self)
        return self.train_function


__all__ = ["FusedJaxSteps", "can_fuse", "make_fused_train_function"]
