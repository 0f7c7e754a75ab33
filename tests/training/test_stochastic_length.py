"""Stochastic length: the paper's keep-or-shorten rule, aligned arrays, length-grouped batches."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd
import pytest

import keras_recsys as kr
from keras_recsys.training import StochasticLengthBatches, stochastic_length


def _histories(lengths, width):
    ids = np.zeros((len(lengths), width), "int32")
    for row, n in enumerate(lengths):
        ids[row, width - n :] = np.arange(2, 2 + n)
    return ids


@pytest.mark.parametrize("mode", ["recent", "sample"])
def test_long_rows_are_kept_whole_with_probability_n_alpha_over_n_squared(mode):
    # N = 16, α = 1.5: N^α = 64, so rows of n ≤ 8 are always whole and rows of 16
    # are whole with probability 64 / 256 = 1/4, else shortened to ⌊16^0.75⌋ = 8 items.
    rng = np.random.default_rng(0)
    ids = _histories([16] * 4000 + [8] * 100 + [3] * 100, 16)
    times = ids * 1000
    short, short_times = stochastic_length(ids, 1.5, 16, rng, mode, aligned=(times,))
    lengths = (short > 0).sum(axis=1)
    assert set(lengths[:4000]) == {8, 16}
    assert abs((lengths[:4000] == 16).mean() - 0.25) < 0.03
    np.testing.assert_array_equal(short[4000:], ids[4000:])
    np.testing.assert_array_equal(short_times, short * 1000)  # the times follow their items
    cut = short[:4000][lengths[:4000] == 8][:, -8:]
    if mode == "recent":
        assert (cut == np.arange(10, 18)).all()  # the 8 latest items
    else:
        assert (np.diff(cut, axis=1) > 0).all()  # kept in order
        assert len(np.unique(cut[:, 0])) > 3  # not always the same items
    assert (short[:, :8][lengths <= 8] == 0).all()  # still front-padded


def test_alpha_and_mode_are_checked():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"alpha in \(1, 2\]"):
        stochastic_length(np.ones((1, 4), "int32"), 2.5, 4, rng)
    with pytest.raises(ValueError, match="mode"):
        stochastic_length(np.ones((1, 4), "int32"), 1.5, 4, rng, mode="first")
    spec = kr.FeatureSpec([kr.Sequence("history", max_length=8)], 8)
    spec.adapt(pd.DataFrame({"history": [[1, 2, 3]]}))
    with pytest.raises(ValueError, match="stochastic_length is"):
        kr.models.HSTU(spec, stochastic_length=1.0)


def test_batches_group_like_lengths_and_train_hstu():
    spec = kr.FeatureSpec([kr.Sequence("history", max_length=64)], 8)
    rng = np.random.default_rng(1)
    lengths = rng.integers(2, 66, size=300)
    spec.adapt(pd.DataFrame({"history": [list(range(2, 70))]}))
    keras.utils.set_random_seed(0)
    model = kr.models.HSTU(spec, num_negatives=16, stochastic_length=1.5, dropout=0.0, seed=0)
    ids = _histories(lengths, 65)
    batches = model.training_batches(ids, batch_size=32, seed=0)
    assert isinstance(batches, StochasticLengthBatches) and len(batches) == 10
    widths = []
    for index in range(len(batches)):
        x, y = batches[index]
        widths.append(x["history"].shape[1] + 1)
        assert widths[-1] in (32, 64, 65)  # rounded up to a multiple of 32, at most all
        assert x["history"].shape == y.shape and (y[:, -1] > 0).all()
    # ⌊64^0.75⌋ = 22 items for shortened rows: most batches are far narrower than 65.
    assert sorted(widths)[len(widths) // 2] <= 32, widths
    model.compile(optimizer=keras.optimizers.Adam(3e-3))
    losses = model.fit(batches, epochs=3, verbose=0).history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses
