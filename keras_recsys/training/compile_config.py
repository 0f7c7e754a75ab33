"""`RememberedCompile`: a model whose custom `compile` arguments survive `model.save`."""

from __future__ import annotations

import keras


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
