"""Helpers for the feature tests: run a fitted spec's preprocessing on a frame."""

from __future__ import annotations

import numpy as np
import pytest

from keras_recsys.data.pipeline import frame_tensors


def _preprocess(spec, df) -> dict[str, np.ndarray]:
    """Model inputs (numpy) of a DataFrame, through the spec's TF preprocessor."""
    features, _, _ = frame_tensors(df, spec, None, labels=False)
    return {name: value.numpy() for name, value in spec.preprocessor(features).items()}


@pytest.fixture(scope="session")
def preprocess():
    """`preprocess(spec, df)` -> {feature name: numpy model input}."""
    return _preprocess
