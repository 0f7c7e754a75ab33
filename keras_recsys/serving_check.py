"""Runs an exported SavedModel the way a serving client would.

Executed as a script in a fresh process (`keras_recsys.export.run_saved_model`):
it imports TensorFlow and NumPy only, never keras_recsys, so it proves the
export is self-contained.

Usage: python serving_check.py SAVED_MODEL_DIR INPUTS.npz OUTPUTS.npz
"""

import sys

import numpy as np
import tensorflow as tf


def main(path: str, inputs_file: str, outputs_file: str) -> None:
    function = tf.saved_model.load(path).signatures["serving_default"]
    specs = function.structured_input_signature[1]
    with np.load(inputs_file, allow_pickle=True) as loaded:
        missing = [name for name in specs if name not in loaded.files]
        if missing:
            raise KeyError(f"Inputs {missing} are missing; serving_default takes {sorted(specs)}.")
        feeds = {name: _feed(name, loaded[name], spec.dtype) for name, spec in specs.items()}
    outputs = function(**feeds)
    assert "keras_recsys" not in sys.modules, "the check must not import keras_recsys"
    np.savez(outputs_file, **{k: v.numpy() for k, v in outputs.items()})


def _feed(name: str, value: np.ndarray, dtype: tf.DType) -> tf.Tensor:
    """`value` as the signature's dtype; an error names the input, not its position."""
    try:
        return tf.constant(value.tolist() if dtype == tf.string else value, dtype=dtype)
    except (TypeError, ValueError) as error:
        raise TypeError(
            f"Input '{name}' takes {dtype.name} values; got an array of {value.dtype}: {error}"
        ) from error


if __name__ == "__main__":
    main(*sys.argv[1:])
