"""Hyperparameter tuning with keras-tuner: `HyperModel`s for the model builders.

`RecHyperModel(spec, tasks, kr.models.MMoE)` builds and trains one model per
trial for any keras-tuner tuner (`RandomSearch`, `BayesianOptimization`,
`Hyperband`), on every Keras backend; `objective(tasks, "auc")` is the mean
validation AUC over the tasks; the ready-made search spaces (`dnn_space`,
`deepfm_space`, `dcn_space`, `mmoe_space`, `ple_space`,
`shared_bottom_space`) document where a search starts; `best_hyperparameters`
gives the winner as a plain dict for the records.

This module imports keras-tuner; `import keras_recsys` does not load it
(`kr.tuning` is imported on first use).

Example:

>>> import keras_tuner
>>> hypermodel = kr.tuning.RecHyperModel(spec, tasks, kr.models.MMoE, patience=2, seed=0)
>>> tuner = keras_tuner.BayesianOptimization(
...     hypermodel, objective=kr.tuning.objective(tasks), max_trials=20,
...     directory="tuning", project_name="census_mmoe")
>>> tuner.search(train, validation_data=valid, epochs=10)
>>> kr.tuning.best_hyperparameters(tuner)
"""

from keras_recsys.tuning.hypermodel import (
    RecHyperModel,
    apply_l2,
    best_hyperparameters,
    metric_names,
    objective,
    with_embedding_dim,
)
from keras_recsys.tuning.search_spaces import (
    SearchSpace,
    dcn_space,
    deepfm_space,
    default_search_space,
    dnn_space,
    dropout,
    funnel,
    mmoe_space,
    ple_space,
    shared_bottom_space,
)

__all__ = [
    "RecHyperModel",
    "SearchSpace",
    "apply_l2",
    "best_hyperparameters",
    "dcn_space",
    "deepfm_space",
    "default_search_space",
    "dnn_space",
    "dropout",
    "funnel",
    "metric_names",
    "mmoe_space",
    "objective",
    "ple_space",
    "shared_bottom_space",
    "with_embedding_dim",
]
