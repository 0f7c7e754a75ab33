"""`TopKRecommender`: what every model that recommends from the whole catalogue shares."""

from __future__ import annotations

import keras

from keras_recsys.training.compile_config import OwnLossCompile


class TopKRecommender(OwnLossCompile, keras.Model):
    """Base of retrieval and next-item models: `recommend` returns the top k items.

    Subclasses implement `score_all(inputs) -> (B, V)`, `recommend`,
    `candidate_embeddings(ids)` and the `item_feature` property; this class
    gives them the toolkit's `compile` defaults (XLA where it pays, the
    repeated-sparse-rows fix on TensorFlow), a compile config that survives
    `model.save`, `fit` without Keras' reshuffle warning on `kr.data`
    pipelines, and `export` (a top-k SavedModel with raw item ids).
    """

    @property
    def tasks(self) -> tuple:
        """No pointwise tasks: the targets are items."""
        return ()

    def predict_outputs(self, inputs, k: int = 10) -> dict:
        """The served outputs: the top-k `item_ids` (internal) and their `scores`."""
        return self.recommend(inputs, k=k)

    def fit(self, x=None, y=None, *args, **kwargs):
        """Keras `fit`; a `tf.data.Dataset` is not reshuffled (it shuffles itself)."""
        if "shuffle" not in kwargs and "tensorflow" in type(x).__module__:
            kwargs["shuffle"] = False
        return super().fit(x, y, *args, **kwargs)

    def export(self, base_dir: str, version: int | None = None, **kwargs) -> str:
        """Writes a top-k SavedModel to `base_dir/<version>/`.

        `serving_default` takes the raw query features and returns
        `item_ids` (raw, as the data had them) and `scores`; `k=` sets how
        many (default 10). See `keras_recsys.export.export_model`.
        """
        from keras_recsys.export import export_model

        return export_model(self, base_dir, version=version, **kwargs)
