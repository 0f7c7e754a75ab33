"""Models build, train and save on JAX in a process where TensorFlow cannot load.

Preprocessing is TensorFlow by design, but the model is Keras alone: a JAX
(or PyTorch) host without TensorFlow trains on arrays that a TensorFlow
pipeline preprocessed elsewhere, and its saved model serves on the
TensorFlow side. `import keras_recsys` must therefore not import
TensorFlow; `kr.data` loads it on first use.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import keras_recsys as kr

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = textwrap.dedent(
    """
    import sys
    sys.modules["tensorflow"] = None  # `import tensorflow` raises ImportError
    import json
    import numpy as np
    import keras
    import keras_recsys as kr

    folder = sys.argv[1]
    spec = kr.FeatureSpec.from_json(open(f"{folder}/spec.json").read())
    arrays = kr.data.PreprocessedArrays.load(f"{folder}/train.npz")
    x = arrays.features
    keras.utils.set_random_seed(0)
    model = kr.models.MMoE(spec, ["income", "marital"], num_experts=2, expert_units=(16,),
                           tower_units=(8,))
    # Several steps per execution: on JAX they run fused in one compiled call.
    model.compile(optimizer=keras.optimizers.Adam(3e-3), steps_per_execution=4)
    train = kr.data.DeviceDataset(x, arrays.labels, batch_size=256, seed=0)
    history = model.fit(train, epochs=3, verbose=0).history
    model.save(f"{folder}/model.keras")
    predictions = model.predict(x, batch_size=1024, verbose=0)
    np.savez(f"{folder}/predictions.npz", **{k: np.asarray(v) for k, v in predictions.items()})
    print(json.dumps({"loss": history["loss"], "backend": keras.backend.backend(),
                      "tensorflow_loaded": sys.modules.get("tensorflow") is not None}))
    """
)


def test_trains_on_jax_without_tensorflow_and_loads_back(census_small, census_spec, tmp_path):
    import json

    train, _ = census_small
    # Preprocessed here, with TensorFlow; trained there, without.
    arrays = kr.data.preprocess(train, census_spec, tasks=["income", "marital"])
    arrays.save(str(tmp_path / "train.npz"))
    features = arrays.features
    (tmp_path / "spec.json").write_text(census_spec.to_json())

    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=ROOT)
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["backend"] == "jax"
    assert not report["tensorflow_loaded"]
    assert report["loss"][-1] < report["loss"][0]

    # The JAX-trained model, loaded here, predicts what it predicted there.
    model = keras.models.load_model(tmp_path / "model.keras")
    expected = np.load(tmp_path / "predictions.npz")
    got = model.predict(features, batch_size=1024, verbose=0)
    for task in ("income", "marital"):
        np.testing.assert_allclose(np.asarray(got[task]), expected[task], atol=1e-5)


@pytest.mark.parametrize(
    "module", ["keras_recsys", "keras_recsys.models", "keras_recsys.layers", "keras_recsys.data"]
)
def test_import_does_not_load_tensorflow(module):
    code = f"import sys; import {module}; print('tensorflow' in sys.modules)"
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=ROOT)
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "False"
