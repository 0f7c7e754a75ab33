"""M-FALCON over a stack of HSTU blocks equals one causal pass per candidate."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import keras_recsys as kr
from keras_recsys.layers.sequence.hstu import next_timestamps


def _np(x):
    return keras.ops.convert_to_numpy(x)


def _one_pass_per_candidate(blocks, history, mask, times, candidates, candidate_times):
    """Each candidate appended alone after the history, through every block."""
    outputs = []
    real = mask.sum(axis=1)
    for c in range(candidates.shape[1]):
        x = np.concatenate([history, candidates[:, c : c + 1]], axis=1)
        full_mask = np.concatenate([mask, np.ones((len(mask), 1), bool)], axis=1)
        positions = np.maximum(np.cumsum(full_mask, axis=1) - 1, 0)
        positions[:, -1] = real  # the first position after the history
        stamps = queries = None
        if times is not None:
            stamps = np.concatenate([times, candidate_times[:, c : c + 1]], axis=1)
            # The history's queries measure gaps from its own next tokens, as when
            # it is encoded once for all candidates; the candidate from its own time.
            queries = np.concatenate(
                [_np(next_timestamps(times)), candidate_times[:, c : c + 1]], axis=1
            )
        for block in blocks:
            x = block(
                x, mask=full_mask, timestamps=stamps, positions=positions,
                query_timestamps=queries,
            )  # fmt: skip
        outputs.append(_np(x)[:, -1])
    return np.stack(outputs, axis=1)


@pytest.mark.multibackend
def test_m_falcon_equals_one_pass_per_candidate():
    micro_batch = 2  # 5 candidates: two full micro-batches and a partial one
    rng = np.random.default_rng(0)
    batch, length, count, dim = 2, 6, 5, 8
    blocks = [kr.layers.HSTU(max_length=8, num_heads=2, name=f"b{i}") for i in range(3)]
    history = rng.normal(size=(batch, length, dim)).astype("float32")
    mask = np.ones((batch, length), bool)
    mask[1, :2] = False  # front padding
    times = np.cumsum(rng.integers(1, 50_000, size=(batch, length)), axis=1).astype("int32")
    candidates = rng.normal(size=(batch, count, dim)).astype("float32")
    candidate_times = times[:, -1:] + rng.integers(0, 90_000, size=(batch, count)).astype("int32")
    for block in blocks:  # build, then move the biases away from their init
        block(history, mask=mask, timestamps=times)
        block.position_bias.assign(rng.normal(size=block.position_bias.shape))
        block.time_bias.assign(rng.normal(size=block.time_bias.shape))

    fast = kr.layers.m_falcon(
        blocks, history, candidates, mask, times, candidate_times, micro_batch=micro_batch
    )
    slow = _one_pass_per_candidate(blocks, history, mask, times, candidates, candidate_times)
    assert fast.shape == (batch, count, dim)
    np.testing.assert_allclose(_np(fast), slow, atol=1e-5)
    # Without timestamps: position bias only.
    fast = kr.layers.m_falcon(blocks, history, candidates, mask, micro_batch=micro_batch)
    slow = _one_pass_per_candidate(blocks, history, mask, None, candidates, None)
    np.testing.assert_allclose(_np(fast), slow, atol=1e-5)


def test_m_falcon_rejects_half_given_timestamps():
    block = kr.layers.HSTU(max_length=4)
    x = np.zeros((1, 3, 4), "float32")
    with pytest.raises(ValueError, match="timestamps"):
        kr.layers.m_falcon([block], x, x, history_timestamps=np.zeros((1, 3), "int32"))
    with pytest.raises(ValueError, match="micro_batch"):
        kr.layers.m_falcon([block], x, x, micro_batch=0)
