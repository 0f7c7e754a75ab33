"""Shared fixtures: small slices of real data, fitted specs, backend info."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if os.environ.get("KERAS_BACKEND") == "jax":
    # JAX compiles every train step (and every eager op, once per shape) with XLA. On
    # test-sized CPU batches the backend's LLVM optimization passes cost more than they
    # save: without them the model tests spend about a quarter less CPU time. Float
    # semantics do not change (XLA's CPU fast math stays off). An explicit XLA_FLAGS wins.
    os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")

import keras  # noqa: E402
import pytest  # noqa: E402

import keras_recsys as kr  # noqa: E402

SHARED_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data")
BACKEND = keras.backend.backend()


def shared_data_path(*parts: str) -> str:
    """A file under ../shared/data, or skip the test saying it is absent."""
    path = os.path.join(SHARED_DATA, *parts)
    if not os.path.exists(path):
        pytest.skip(f"real data file {path} is not present on this machine")
    return path


requires_tensorflow_backend = pytest.mark.skipif(
    BACKEND != "tensorflow", reason="needs the TensorFlow backend"
)


def backend_params(names, multibackend=()) -> list:
    """Pytest params for `names`, one fast path per model on every backend.

    Those in `multibackend` carry the `multibackend` mark (the JAX and PyTorch passes
    of `make test` run them); the others run in the default TensorFlow pass, and under
    `-m slow` on the other backends, so no variant goes untested anywhere.
    """
    params = []
    for name in names:
        if name in multibackend:
            marks = [pytest.mark.multibackend]
        elif BACKEND == "tensorflow":
            marks = []
        else:
            marks = [pytest.mark.slow]
        params.append(pytest.param(name, marks=marks, id=name))
    return params


@pytest.fixture(scope="session")
def census_splits():
    """(train, valid, test) of the bundled census data, documented split."""
    return kr.datasets.census_income()


@pytest.fixture(scope="session")
def census_small(census_splits):
    """Small real slices for fast model tests: 6,000 train / 2,000 test rows."""
    train, _, test = census_splits
    return train.head(6000).copy(), test.head(2000).copy()


@pytest.fixture(scope="session")
def census_spec(census_small):
    """A census FeatureSpec fitted on the small training slice."""
    spec = kr.datasets.census_feature_spec(embedding_dim=8)
    return spec.adapt(census_small[0])


@pytest.fixture
def census_tasks():
    return [kr.Task("income"), kr.Task("marital")]


@pytest.fixture(scope="session")
def movielens_sequences():
    """MovieLens-100K as time-ordered rating sequences (downloaded once), or skip."""
    try:
        return kr.datasets.movielens_100k_sequences()
    except FileNotFoundError as error:
        pytest.skip(f"MovieLens-100K not cached and not downloadable: {str(error).splitlines()[0]}")
