"""DIEN's layers against NumPy: the AUGRU step and sequence, and the auxiliary loss."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_recsys.layers.behavior.augru import AUGRU, AUGRUCell
from keras_recsys.layers.behavior.auxiliary_loss import next_behavior_loss


def _np(x):
    return np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float64)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _augru_step_np(x, a, h, kernel, recurrent, bias):
    """The paper's GRU equations with the AUGRU's update gate u' = a · u, in its notation."""
    units = h.shape[-1]
    w_u, w_r, w_h = (kernel[:, i * units : (i + 1) * units] for i in range(3))
    u_u, u_r, u_h = (recurrent[:, i * units : (i + 1) * units] for i in range(3))
    b_u, b_r, b_h = (bias[i * units : (i + 1) * units] for i in range(3))
    u = _sigmoid(x @ w_u + h @ u_u + b_u)
    r = _sigmoid(x @ w_r + h @ u_r + b_r)
    h_tilde = np.tanh(x @ w_h + r * (h @ u_h) + b_h)
    u = a[:, None] * u
    return (1.0 - u) * h + u * h_tilde


def _augru_np(layer, inputs, attention, mask):
    """All states of an AUGRU over (B, L, d), masked steps carrying the state over."""
    cell = layer.cell
    weights = [_np(w) for w in (cell.kernel, cell.recurrent_kernel, cell.bias)]
    h = np.zeros((inputs.shape[0], layer.units))
    states = []
    for t in range(inputs.shape[1]):
        stepped = _augru_step_np(inputs[:, t].astype(np.float64), attention[:, t], h, *weights)
        h = np.where(mask[:, t : t + 1], stepped, h)
        states.append(h)
    return np.stack(states, axis=1)


def _sequence(rng, batch=4, length=7, dim=5):
    inputs = rng.normal(size=(batch, length, dim)).astype("float32")
    attention = rng.uniform(0, 1, size=(batch, length)).astype("float32")
    lengths = np.array([length, 4, 1, 0])[:batch]
    mask = np.arange(length)[None, :] >= (length - lengths)[:, None]  # padded at the front
    return inputs, attention, mask


@pytest.mark.multibackend
def test_cell_step_matches_numpy(rng, randomize):
    """One step: u' = a · u scales the update; h = (1 − u') ⊙ h_prev + u' ⊙ h̃."""
    cell = AUGRUCell(3)
    x = rng.normal(size=(5, 4)).astype("float32")
    a = rng.uniform(size=(5,)).astype("float32")
    h = rng.normal(size=(5, 3)).astype("float32")
    step_input = np.concatenate([x, a[:, None]], axis=-1)
    cell.build(step_input.shape)
    randomize(cell, rng)
    output, states = cell(step_input, [h])
    expected = _augru_step_np(
        x.astype(np.float64),
        a,
        h,
        *(_np(w) for w in (cell.kernel, cell.recurrent_kernel, cell.bias)),
    )
    np.testing.assert_allclose(_np(output), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(_np(states[0]), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.multibackend
def test_sequence_with_front_padding_matches_numpy(rng, randomize):
    """The last state and every state equal the NumPy loop; padded steps keep the state
    at 0 before the first real step, and an empty history ends at 0."""
    inputs, attention, mask = _sequence(rng)
    layer = AUGRU(3)
    layer(inputs, attention, mask=mask)
    randomize(layer, rng)
    expected = _augru_np(layer, inputs, attention, mask)
    np.testing.assert_allclose(
        _np(layer(inputs, attention, mask=mask)), expected[:, -1], rtol=1e-5, atol=1e-5
    )
    everything = AUGRU(3, return_sequences=True)
    everything(inputs, attention, mask=mask)
    everything.set_weights(layer.get_weights())
    got = _np(everything(inputs, attention, mask=mask))
    np.testing.assert_allclose(got[mask], expected[mask], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(_np(layer(inputs, attention, mask=mask))[3], 0.0)


def test_attention_gates_how_far_the_state_moves(rng, randomize):
    """a_t = 0 leaves the state where it was (an unrelated behaviour is skipped); without
    a mask every step is real."""
    inputs, attention, _ = _sequence(rng)
    layer = AUGRU(3, return_sequences=True)
    layer(inputs, attention)
    randomize(layer, rng)
    attention[:, 3] = 0.0
    states = _np(layer(inputs, attention))
    np.testing.assert_allclose(states[:, 3], states[:, 2], atol=1e-7)
    np.testing.assert_allclose(
        states, _augru_np(layer, inputs, attention, np.ones(attention.shape, bool)), atol=1e-5
    )


def _auxiliary_loss_np(states, behaviors, negatives, mask):
    total, count = 0.0, 0
    for b in range(states.shape[0]):
        for t in range(states.shape[1] - 1):
            if mask[b, t] and mask[b, t + 1]:
                positive = states[b, t] @ behaviors[b, t + 1]
                negative = states[b, t] @ negatives[b, t + 1]
                total += -np.log(_sigmoid(positive)) - np.log(1.0 - _sigmoid(negative))
                count += 1
    return total / max(count, 1)


@pytest.mark.multibackend
def test_next_behavior_loss_matches_numpy(rng):
    """L_aux: h_t against the next real behaviour (positive) and a sampled one (negative),
    averaged over the pairs of consecutive real steps."""
    states, _, mask = _sequence(rng)
    behaviors = rng.normal(size=states.shape).astype("float32")
    negatives = rng.normal(size=states.shape).astype("float32")
    got = float(_np(next_behavior_loss(states, behaviors, negatives, mask)))
    expected = _auxiliary_loss_np(
        *(a.astype(np.float64) for a in (states, behaviors, negatives)), mask
    )
    assert got == pytest.approx(expected, rel=1e-5)
    no_pairs = np.zeros_like(mask)
    no_pairs[:, -1] = True
    assert float(_np(next_behavior_loss(states, behaviors, negatives, no_pairs))) == 0.0


def test_config_round_trip_and_saved_in_a_model(tmp_path, rng, randomize, round_trip):
    inputs, attention, mask = _sequence(rng)
    layer = AUGRU(4)
    layer(inputs, attention, mask=mask)
    randomize(layer, rng)
    copy = round_trip(layer, inputs, attention, mask=mask)
    np.testing.assert_allclose(
        _np(copy(inputs, attention, mask=mask)), _np(layer(inputs, attention, mask=mask)), rtol=1e-6
    )

    symbolic = [keras.Input((7, 5)), keras.Input((7,)), keras.Input((7,), dtype="bool")]
    model = keras.Model(symbolic, AUGRU(4)(*symbolic[:2], mask=symbolic[2]))
    randomize(model, rng)
    path = tmp_path / "augru.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(
        _np(loaded([inputs, attention, mask])), _np(model([inputs, attention, mask])), rtol=1e-6
    )
