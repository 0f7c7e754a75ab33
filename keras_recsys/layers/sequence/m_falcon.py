"""M-FALCON: score many candidates after one history with a stack of HSTU blocks."""

from __future__ import annotations

from collections.abc import Sequence

from keras import ops

from keras_recsys.layers.sequence.hstu import HSTU, positions_from_oldest


def m_falcon(
    blocks: Sequence[HSTU],
    history,
    candidates,
    history_mask=None,
    history_timestamps=None,
    candidate_timestamps=None,
    micro_batch: int = 128,
):
    """(B, m, d) outputs of m candidate tokens, each as if appended alone after the history.

    One pass over the history through every block caches each block's keys
    and values; the candidates then run in ⌈m / b⌉ micro-batches of
    `micro_batch` = b tokens, each block attending from a candidate to the
    cached history and to the candidate itself, never to another candidate
    (`HSTU.call_candidates`). Every candidate takes the first position after
    the history. The result equals scoring each candidate in its own pass
    over history + candidate, at a cost of one history pass plus O(m · n)
    instead of m passes of O(n²).

    Args:
        blocks: the HSTU blocks, in order.
        history: (B, n, d) history tokens (front padding allowed).
        candidates: (B, m, d) candidate tokens.
        history_mask: (B, n) bool, True at real history tokens (default all).
        history_timestamps: optional (B, n) integer times of the history.
        candidate_timestamps: (B, m) times of the candidates (the request
            time); required when the history has timestamps.
        micro_batch: b, candidates per micro-batch.

    Returns:
        (B, m, d) candidate outputs of the last block.

    Reference: Zhai et al., 2024, "Actions Speak Louder than Words" (ICML), §3.4.
    """
    if int(micro_batch) < 1:
        raise ValueError(f"micro_batch must be positive, got {micro_batch}.")
    if (history_timestamps is None) != (candidate_timestamps is None):
        raise ValueError("Give timestamps for both the history and the candidates, or for neither.")
    history, candidates = ops.convert_to_tensor(history), ops.convert_to_tensor(candidates)
    if history_timestamps is not None:
        history_timestamps = ops.convert_to_tensor(history_timestamps)
        candidate_timestamps = ops.convert_to_tensor(candidate_timestamps)
    batch, length = ops.shape(history)[0], ops.shape(history)[1]
    if history_mask is None:
        history_mask = ops.ones((batch, length), "bool")
    history_mask = ops.cast(ops.convert_to_tensor(history_mask), "bool")
    # Positions counted from the oldest real token; the candidates come next.
    positions = positions_from_oldest(history_mask)
    next_position = ops.sum(ops.cast(history_mask, "int32"), axis=1, keepdims=True)

    caches, x = [], history
    for block in blocks:
        caches.append(block.keys_and_values(x, history_mask))
        x = block(x, mask=history_mask, timestamps=history_timestamps, positions=positions)

    count = candidates.shape[1]
    if count is None:
        raise ValueError("m_falcon needs a static number of candidates.")
    outputs = []
    for start in range(0, count, int(micro_batch)):
        y = candidates[:, start : start + int(micro_batch)]
        size = y.shape[1]
        times = None
        if candidate_timestamps is not None:
            times = candidate_timestamps[:, start : start + size]
        candidate_positions = ops.broadcast_to(next_position, (batch, size))
        for block, (keys, values) in zip(blocks, caches):
            y = block.call_candidates(
                y,
                keys,
                values,
                history_mask,
                positions,
                candidate_positions,
                history_times=history_timestamps,
                candidate_times=times,
            )
        outputs.append(y)
    return outputs[0] if len(outputs) == 1 else ops.concatenate(outputs, axis=1)
