"""A backbone of one's own becomes a full model: `kr.models.RecModel(spec, tasks, backbone=...)`."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops

import keras_recsys as kr


@keras.saving.register_keras_serializable(package="test_backbone")
class MeanFieldsBackbone(kr.models.Backbone):
    """hidden = ReLU(W · [mean of the field embeddings, numerics] + b): a body of one's own."""

    def __init__(self, spec, task_units, units: int = 16, **kwargs):
        super().__init__(spec, task_units, **kwargs)
        self.units = units
        self.dense = keras.layers.Dense(
            units, activation="relu", dtype=self.dtype_policy, name="dense"
        )

    def body(self, embedded, inputs, training=None):
        fields = ops.stack([embedded["fields"][n] for n in self.field_names], axis=1)
        x = ops.concatenate([ops.mean(fields, axis=1), embedded["dense"]], axis=-1)
        return {"hidden": self.dense(x)}

    def get_config(self):
        config = super().get_config()
        config.update(units=self.units)
        return config


def _model(spec, tasks):
    backbone = MeanFieldsBackbone(spec, {t.name: t.units for t in tasks}, units=16)
    return kr.models.RecModel(spec, tasks, backbone=backbone)


def _batch(spec, frame):
    return next(iter(kr.data.from_pandas(frame, spec, batch_size=len(frame), labels=False)))


@pytest.mark.multibackend
def test_logits_are_the_heads_on_the_backbones_hidden(census_spec, census_small, census_tasks):
    """The model's logit of each task is W_k · hidden + b_k (NumPy, from the weights)."""
    model = _model(census_spec, census_tasks)
    x = {
        k: ops.convert_to_tensor(np.asarray(v))
        for k, v in _batch(census_spec, census_small[1].head(64)).items()
    }
    hidden = ops.convert_to_numpy(model.backbone(x)["hidden"])
    assert hidden.shape == (64, 16)
    logits = model(x)
    for task in census_tasks:
        kernel, bias = (ops.convert_to_numpy(w) for w in model.heads.heads[task.name].weights)
        np.testing.assert_allclose(
            ops.convert_to_numpy(logits[task.name]), hidden @ kernel + bias, rtol=1e-5, atol=1e-5
        )
    assert model.gradnorm_variables() == list(model.embedding.trainable_variables)


def test_trains_saves_and_reloads(census_spec, census_small, census_tasks, tmp_path):
    """Loss goes down on census; `save` / `load_model` rebuild the backbone and its weights."""
    train, test = census_small
    model = _model(census_spec, census_tasks)
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    history = model.fit(train.head(3072), batch_size=256, epochs=3, verbose=0)
    assert history.history["loss"][-1] < 0.8 * history.history["loss"][0]

    path = str(tmp_path / "own.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.backbone, MeanFieldsBackbone) and loaded.backbone.units == 16
    before, after = model.predict(test.head(200)), loaded.predict(test.head(200))
    for task in census_tasks:
        np.testing.assert_allclose(after[task.name], before[task.name], atol=1e-6)


def test_bad_backbones_are_named(census_spec, census_tasks):
    with pytest.raises(ValueError, match=r"built for tasks \{'income': 1\}"):
        kr.models.RecModel(
            census_spec, census_tasks, backbone=MeanFieldsBackbone(census_spec, {"income": 1})
        )
    with pytest.raises(TypeError, match="must be a keras_recsys Backbone"):
        kr.models.RecModel(census_spec, census_tasks, backbone=keras.layers.Dense(4))
    backbone = MeanFieldsBackbone(census_spec, {t.name: 1 for t in census_tasks})
    with pytest.raises(TypeError, match="DNN builds its own backbone"):
        kr.models.DNN(census_spec, census_tasks, backbone=backbone)
    with pytest.raises(ValueError, match="which a given backbone owns"):
        kr.models.RecModel(census_spec, census_tasks, backbone=backbone, oov_dropout=0.01)
