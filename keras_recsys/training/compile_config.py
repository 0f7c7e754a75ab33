"""Compile mixins: `RememberedCompile` (custom compile arguments survive `model.save`) and `OwnLossCompile`."""

from __future__ import annotations

import keras

from keras_recsys.training.fused_steps import FusedJaxSteps
from keras_recsys.training.optimizers import sum_repeated_sparse_gradients


class RememberedCompile:
    """Mixin for keras.Model subclasses with their own `compile`.

    Keras restores a saved model's compile state only through
    `get_compile_config` / `compile_from_config` when `compile` is
    overridden; the subclass stores its arguments in
    `self._recsys_compile_args` and this gives them back, the trained
    optimizer included.
    """

    def get_compile_config(self):
        args = getattr(self, "_recsys_compile_args", None)
        if args is None:
            return None
        args = dict(args, optimizer=self.optimizer)
        return {k: keras.saving.serialize_keras_object(v) for k, v in args.items()}

    def compile_from_config(self, config):
        config = {k: keras.saving.deserialize_keras_object(v) for k, v in config.items()}
        self.compile(**config)
        if self.built and self.optimizer is not None:
            self.optimizer.build(self.trainable_variables)


class OwnLossCompile(FusedJaxSteps, RememberedCompile):
    """Mixin for models whose loss is their own `compute_loss` (retrieval, next item, HSTU).

    `compile` takes the optimizer, defaults to XLA where it pays (JAX and
    PyTorch; not on TensorFlow, see the README), sums repeated sparse
    embedding-gradient rows on TensorFlow (`sum_repeated_sparse_gradients`)
    and is remembered through `model.save`.
    """

    def compile(self, optimizer="adam", jit_compile=None, **kwargs):
        self._recsys_compile_args = {"optimizer": optimizer, "jit_compile": jit_compile}
        if jit_compile is None:
            jit_compile = "auto" if keras.backend.backend() != "tensorflow" else False
        super().compile(optimizer=optimizer, jit_compile=jit_compile, **kwargs)
        sum_repeated_sparse_gradients(self.optimizer)
