"""`kr.data.DeviceDataset` and `kr.data.preprocess` / `PreprocessedArrays`."""

import keras
import numpy as np
import pytest
from keras import ops

import keras_recsys as kr

pytestmark = pytest.mark.multibackend


def _np(x):
    return np.asarray(ops.convert_to_numpy(x))


def _epoch(dataset):
    batches = [dataset[i] for i in range(len(dataset))]
    rows = np.concatenate([_np(x["row"]) for x, _ in batches])
    doubled = np.concatenate([_np(y["twice"]) for _, y in batches])
    return rows, doubled, [len(_np(x["row"])) for x, _ in batches]


def test_each_epoch_is_a_new_permutation_of_every_row():
    rows = np.arange(10)
    dataset = kr.data.DeviceDataset({"row": rows}, {"twice": 2 * rows}, batch_size=4, seed=3)
    first, doubled, sizes = _epoch(dataset)
    assert sizes == [4, 4, 2]
    assert sorted(first) == list(rows) and not np.array_equal(first, rows)
    np.testing.assert_array_equal(doubled, 2 * first)  # labels stay with their rows
    dataset.on_epoch_end()
    second, _, _ = _epoch(dataset)
    assert sorted(second) == list(rows) and not np.array_equal(second, first)
    again = kr.data.DeviceDataset({"row": rows}, {"twice": 2 * rows}, batch_size=4, seed=3)
    np.testing.assert_array_equal(_epoch(again)[0], first)  # the seed fixes the orders
    ordered = kr.data.DeviceDataset(
        {"row": rows}, {"twice": 2 * rows}, batch_size=4, shuffle=False, drop_remainder=True
    )
    np.testing.assert_array_equal(_epoch(ordered)[0], rows[:8])
    assert len(ordered) == 2
    with pytest.raises(IndexError, match="has 2 batches"):
        ordered[2]


def test_bad_arrays_are_named():
    with pytest.raises(ValueError, match=r"different numbers of rows.*'b'.*: 3"):
        kr.data.DeviceDataset({"a": np.zeros(4), "b": np.zeros(3)})
    with pytest.raises(TypeError, match="x as a dict"):
        kr.data.DeviceDataset(np.zeros(4))
    with pytest.raises(ValueError, match="sample_weight needs labels"):
        kr.data.DeviceDataset({"a": np.zeros(4)}, sample_weight={"t": np.ones(4)})
    with pytest.raises(ValueError, match="4 rows make no full batch of 8"):
        kr.data.DeviceDataset({"a": np.zeros(4)}, batch_size=8, drop_remainder=True)
    with pytest.raises(ValueError, match="'a' is a scalar"):
        kr.data.DeviceDataset({"a": np.float32(1.0)})


@pytest.fixture(scope="module")
def census_arrays():
    train, _, _ = kr.datasets.census_income()
    train = train.head(600)
    spec = kr.FeatureSpec(
        [kr.Categorical(c) for c in ["education", "class_worker", "sex"]]
        + [kr.Numeric("age", transform="log1p")],
        default_embedding_dim=4,
    ).adapt(train)
    return train, spec


def test_preprocess_once_equals_the_pipeline_and_round_trips(census_arrays, tmp_path):
    train, spec = census_arrays
    model = kr.models.DNN(spec, ["income", "marital"], hidden_units=(4,))
    arrays = kr.data.preprocess(train, model, batch_size=256)
    assert arrays.num_rows == 600 and set(arrays.labels) == {"income", "marital"}
    piped = next(iter(kr.data.from_pandas(train, model, batch_size=600)))
    for name, value in piped[0].items():
        np.testing.assert_array_equal(arrays.features[name], value.numpy(), err_msg=name)
    for name, value in piped[1].items():
        np.testing.assert_array_equal(arrays.labels[name], value.numpy(), err_msg=name)
    path = arrays.save(str(tmp_path / "train"))
    loaded = kr.data.PreprocessedArrays.load(path)
    assert loaded.sample_weights is None
    for name in arrays.features:
        np.testing.assert_array_equal(loaded.features[name], arrays.features[name])
    with pytest.raises(FileNotFoundError, match="No preprocessed arrays at"):
        kr.data.PreprocessedArrays.load(str(tmp_path / "missing.npz"))
    np.savez(tmp_path / "other.npz", a=np.zeros(2))
    with pytest.raises(ValueError, match="not written by PreprocessedArrays.save"):
        kr.data.PreprocessedArrays.load(str(tmp_path / "other.npz"))


def test_fit_on_a_device_dataset_equals_fit_on_arrays(census_arrays):
    """Unshuffled, the same batches in the same order: the same weights."""
    train, spec = census_arrays
    arrays = kr.data.preprocess(train, spec, tasks=["income"])
    weights = []
    for feed in ("arrays", "device"):
        keras.utils.set_random_seed(0)
        model = kr.models.DNN(spec, ["income"], hidden_units=(4,))
        model.compile(optimizer="adam")
        if feed == "arrays":
            history = model.fit(
                **arrays.as_fit_arguments(), batch_size=128, shuffle=False, epochs=2, verbose=0
            )
        else:
            data = kr.data.DeviceDataset(
                arrays.features, arrays.labels, batch_size=128, shuffle=False
            )
            history = model.fit(data, shuffle=False, epochs=2, verbose=0)
        weights.append([_np(w) for w in model.weights])
        assert history.history["loss"][1] < history.history["loss"][0]
    for a, b in zip(*weights):
        np.testing.assert_allclose(a, b, atol=1e-6)
