"""Every tutorial notebook runs top to bottom (its own asserts included)."""

from __future__ import annotations

import glob
import os

import pytest

from tests.conftest import requires_tensorflow_backend

TUTORIALS = sorted(glob.glob(os.path.join(os.path.dirname(__file__), "..", "tutorials", "*.ipynb")))


@requires_tensorflow_backend
@pytest.mark.parametrize("path", TUTORIALS, ids=os.path.basename)
def test_tutorial_runs(path, tmp_path):
    """The notebook executes without error in a fresh kernel (FAST mode)."""
    import nbclient
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute()
