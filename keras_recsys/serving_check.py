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
        feeds = {
            name: tf.constant(
                loaded[name].tolist() if spec.dtype == tf.string else loaded[name],
                dtype=spec.dtype,
            )
            for name, spec in specs.items()
        }
    outputs = function(**feeds)
    assert "keras_recsys" not in sys.modules, "the check must not import keras_recsys"
    np.savez(outputs_file, **{k: v.numpy() for k, v in outputs.items()})


if __name__ == "__main__":
    main(*sys.argv[1:])
