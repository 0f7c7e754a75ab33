"""Every tutorial notebook runs top to bottom (its own asserts included)."""

from __future__ import annotations

import glob
import os

import pytest

from keras_recsys.datasets.sequences import S3REC_ENV
from tests.conftest import requires_tensorflow_backend, shared_data_path

TUTORIALS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "tutorials", "*.ipynb")))

# Notebooks that read data keras_recsys does not bundle: (environment variable
# the loader reads, file under ../shared/data). Absent file: the test skips.
NEEDS_DATA = {
    "02_sequential_sasrec_to_serving.ipynb": (S3REC_ENV, ("amazon_s3rec", "Beauty.txt")),
    "03_hstu_retrieval_and_ranking.ipynb": (S3REC_ENV, ("amazon_s3rec", "Beauty.txt")),
}


def _point_at_data(path, monkeypatch):
    """Tells the notebook's kernel (started in tmp_path) where its data is, or skips."""
    needed = NEEDS_DATA.get(os.path.basename(path))
    if needed is None:
        return
    variable, parts = needed
    if os.environ.get(variable):
        return  # an explicit setting wins; if it points nowhere the notebook says so
    file = shared_data_path(*parts)
    monkeypatch.setenv(variable, os.path.dirname(os.path.abspath(file)))


@requires_tensorflow_backend
@pytest.mark.parametrize("path", TUTORIALS, ids=os.path.basename)
def test_tutorial_runs(path, tmp_path, monkeypatch):
    """The notebook executes without error in a fresh kernel (FAST mode)."""
    _point_at_data(path, monkeypatch)
    import nbclient
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute()
