"""NextItemHead: every loss against numpy from the same negatives, logQ, hits, padding, grads."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_recsys.heads.next_item import NextItemHead

NUM_ITEMS, DIM = 12, 4
# Row 0 front-padded, row 1 with an OOV target (1) and item 3 twice (an
# in-batch accidental hit across positions), row 2 empty (no target at all).
TARGETS = np.array([[0, 0, 5, 7], [3, 1, 9, 3], [0, 0, 0, 0]], dtype="int32")
VALID = TARGETS >= 2


def _np(x):
    return keras.ops.convert_to_numpy(x).astype(np.float64)


def _scalar(x):
    return float(np.asarray(keras.ops.convert_to_numpy(x)))


@pytest.fixture
def data(rng):
    table = rng.normal(size=(NUM_ITEMS, DIM)).astype("float32")
    sequence = rng.normal(size=TARGETS.shape + (DIM,)).astype("float32")
    return table, sequence


def _head(table, **kwargs):
    embedding = keras.layers.Embedding(NUM_ITEMS, DIM)
    embedding.build()
    embedding.embeddings.assign(table)
    return NextItemHead(embedding, **kwargs)


# ----------------------------------------------------------------- numpy side
def _unit(x):
    return x / np.sqrt(np.maximum((x**2).sum(-1, keepdims=True), 1e-12))


def _vectors(sequence, table, normalize):
    h = sequence.reshape(-1, DIM).astype(np.float64)
    e = table.astype(np.float64)
    return (_unit(h), _unit(e)) if normalize else (h, e)


def _mean(losses, weights):
    weights = weights * VALID.reshape(-1)
    return _scalar((losses * weights).sum() / weights.sum()) if weights.sum() else 0.0


def _bce(sequence, table, negatives, temperature=1.0, normalize=False, weights=None):
    """−log σ(s_pos) − Σ_k [neg_k ≠ pos] log(1 − σ(s_neg_k)), position by position."""
    h, e = _vectors(sequence, table, normalize)
    targets, negatives = TARGETS.reshape(-1), negatives.reshape(len(h), -1)
    losses = np.zeros(len(h))
    for n in range(len(h)):
        pos = h[n] @ e[max(targets[n], 2)] / temperature
        neg = e[negatives[n]] @ h[n] / temperature
        keep = negatives[n] != targets[n]
        losses[n] = np.logaddexp(0, -pos) + (np.logaddexp(0, neg) * keep).sum()
    return _mean(losses, np.ones(len(h)) if weights is None else weights)


def _sampled_softmax(sequence, table, negatives, temperature=1.0, normalize=False, q=None):
    """CE of [s_pos, s_neg...] (− log q when given), accidental hits and padding left out."""
    h, e = _vectors(sequence, table, normalize)
    targets = TARGETS.reshape(-1)
    losses = np.zeros(len(h))
    for n in range(len(h)):
        pos_id = max(targets[n], 2)
        ids = np.concatenate([[pos_id], negatives])
        logits = e[ids] @ h[n] / temperature
        if q is not None:
            logits = logits - np.log(q[ids])
        keep = np.concatenate([[True], (negatives != pos_id) & (negatives >= 2)])
        losses[n] = np.logaddexp.reduce(logits[keep]) - logits[0]
    return _mean(losses, np.ones(len(h)))


def _softmax(sequence, table, temperature=1.0, normalize=False, weights=None):
    h, e = _vectors(sequence, table, normalize)
    logits = h @ e[2:].T / temperature
    targets = np.maximum(TARGETS.reshape(-1), 2) - 2
    losses = np.logaddexp.reduce(logits, axis=1) - logits[np.arange(len(h)), targets]
    return _mean(losses, np.ones(len(h)) if weights is None else weights)


VARIANTS = {
    "plain": dict(),
    "temperature": dict(temperature=0.5),
    "normalized": dict(temperature=0.05, normalize=True),
}


# ---------------------------------------------------------------------- losses
@pytest.mark.multibackend
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_bce_matches_numpy(data, variant):
    table, sequence = data
    head = _head(table, loss="bce", num_negatives=3, seed=0, **VARIANTS[variant])
    negatives = head.sample_negatives(TARGETS)
    drawn = keras.ops.convert_to_numpy(negatives)
    assert drawn.shape == TARGETS.shape + (3,)
    assert drawn.min() >= 2 and drawn.max() < NUM_ITEMS
    loss = head.compute_loss(sequence, TARGETS, negatives=negatives)
    expected = _bce(sequence, table, drawn, **VARIANTS[variant])
    np.testing.assert_allclose(_scalar(loss), expected, rtol=1e-5)


@pytest.mark.multibackend
def test_bce_drops_negatives_equal_to_the_positive(data):
    table, sequence = data
    head = _head(table, loss="bce", num_negatives=2)
    # Every position gets its own target as its first negative.
    negatives = np.stack([np.maximum(TARGETS, 2), np.full_like(TARGETS, 4)], axis=-1)
    loss = _scalar(head.compute_loss(sequence, TARGETS, negatives=negatives))
    np.testing.assert_allclose(loss, _bce(sequence, table, negatives), rtol=1e-5)
    only_item_4 = _bce(sequence, table, np.full(TARGETS.shape + (1,), 4))
    np.testing.assert_allclose(loss, only_item_4, rtol=1e-5)


@pytest.mark.multibackend
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_uniform_sampled_softmax_matches_numpy(data, variant):
    table, sequence = data
    head = _head(table, loss="sampled_softmax", num_negatives=6, seed=3, **VARIANTS[variant])
    negatives = head.sample_negatives(TARGETS)
    drawn = keras.ops.convert_to_numpy(negatives)
    assert drawn.shape == (6,) and drawn.min() >= 2 and drawn.max() < NUM_ITEMS
    loss = head.compute_loss(sequence, TARGETS, negatives=negatives)
    expected = _sampled_softmax(sequence, table, drawn, **VARIANTS[variant])
    np.testing.assert_allclose(_scalar(loss), expected, rtol=1e-5)


@pytest.mark.multibackend
def test_sampled_softmax_removes_accidental_hits(data):
    """A negative equal to the row's positive leaves that row's softmax, and only that row's."""
    table, sequence = data
    head = _head(table, loss="sampled_softmax", num_negatives=3)
    negatives = np.array([5, 9, 11], dtype="int32")  # 5 and 9 are targets of some rows
    loss = _scalar(head.compute_loss(sequence, TARGETS, negatives=negatives))
    np.testing.assert_allclose(loss, _sampled_softmax(sequence, table, negatives), rtol=1e-5)
    # Not removing them (what keras-rs 0.4.0's RemoveAccidentalHits amounts to) differs.
    h, e = _vectors(sequence, table, False)
    kept_all = []
    for n in np.flatnonzero(VALID.reshape(-1)):
        logits = e[np.concatenate([[TARGETS.reshape(-1)[n]], negatives])] @ h[n]
        kept_all.append(np.logaddexp.reduce(logits) - logits[0])
    assert abs(loss - np.mean(kept_all)) > 1e-3


@pytest.mark.multibackend
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_in_batch_softmax_with_logq_matches_numpy(data, rng, variant):
    """Negatives are the batch's targets; every logit − log Q; hits and padding removed."""
    table, sequence = data
    head = _head(table, loss="sampled_softmax", sampler="in_batch", **VARIANTS[variant])
    counts = rng.integers(1, 50, size=NUM_ITEMS).astype("float64")
    counts[10] = 0  # never seen: gets the smallest count, not log 0
    head.set_item_frequencies(counts)
    floored = np.maximum(counts, counts[counts > 0].min())
    q = floored / floored.sum()
    np.testing.assert_allclose(_np(head.item_probability), q, rtol=1e-6)
    negatives = keras.ops.convert_to_numpy(head.sample_negatives(TARGETS))
    np.testing.assert_array_equal(negatives, TARGETS.reshape(-1))
    loss = _scalar(head.compute_loss(sequence, TARGETS))
    expected = _sampled_softmax(sequence, table, negatives, q=q, **VARIANTS[variant])
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    no_correction = _sampled_softmax(sequence, table, negatives, **VARIANTS[variant])
    assert abs(loss - no_correction) > 1e-3


@pytest.mark.multibackend
def test_in_batch_without_frequencies_or_correction_is_uncorrected(data, rng):
    table, sequence = data
    expected = _sampled_softmax(sequence, table, TARGETS.reshape(-1))
    plain = _head(table, loss="sampled_softmax", sampler="in_batch")
    np.testing.assert_allclose(_scalar(plain.compute_loss(sequence, TARGETS)), expected, rtol=1e-5)
    off = _head(table, loss="sampled_softmax", sampler="in_batch", logq_correction=False)
    off.set_item_frequencies(rng.integers(1, 50, size=NUM_ITEMS))
    np.testing.assert_allclose(_scalar(off.compute_loss(sequence, TARGETS)), expected, rtol=1e-5)


@pytest.mark.multibackend
def test_in_batch_subset_draws_valid_targets(data):
    table, sequence = data
    head = _head(table, loss="sampled_softmax", sampler="in_batch", num_negatives=20, seed=1)
    negatives = head.sample_negatives(TARGETS)
    drawn = keras.ops.convert_to_numpy(negatives)
    assert drawn.shape == (20,) and set(drawn) <= set(TARGETS[VALID])
    loss = _scalar(head.compute_loss(sequence, TARGETS, negatives=negatives))
    np.testing.assert_allclose(loss, _sampled_softmax(sequence, table, drawn), rtol=1e-5)


@pytest.mark.multibackend
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_full_softmax_matches_numpy(data, variant):
    table, sequence = data
    head = _head(table, loss="softmax", **VARIANTS[variant])
    loss = _scalar(head.compute_loss(sequence, TARGETS))
    np.testing.assert_allclose(loss, _softmax(sequence, table, **VARIANTS[variant]), rtol=1e-5)


@pytest.mark.multibackend
def test_last_position_vectors_and_sample_weights(data):
    """(B, d) vectors with (B,) targets, and (B,) weights over (B, L) targets."""
    table, sequence = data
    head = _head(table, loss="softmax")
    weights = np.array([2.0, 0.5, 3.0], dtype="float32")
    loss = _scalar(head.compute_loss(sequence, TARGETS, sample_weight=weights))
    per_position = np.repeat(weights, TARGETS.shape[1]).astype(np.float64)
    np.testing.assert_allclose(loss, _softmax(sequence, table, weights=per_position), rtol=1e-5)

    last = _scalar(head.compute_loss(sequence[:, -1], TARGETS[:, -1]))
    h, e = sequence[:2, -1].astype(np.float64), table.astype(np.float64)
    logits = h @ e[2:].T
    expected = np.mean(np.logaddexp.reduce(logits, axis=1) - logits[[0, 1], [5, 1]])
    np.testing.assert_allclose(last, expected, rtol=1e-5)


@pytest.mark.multibackend
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(loss="bce"),
        dict(loss="sampled_softmax"),
        dict(loss="sampled_softmax", sampler="in_batch"),
        dict(loss="softmax", normalize=True),
    ],
    ids=["bce", "uniform", "in_batch", "softmax"],
)
def test_padding_targets_are_ignored_and_empty_batch_is_zero(data, rng, kwargs):
    table, sequence = data
    head = _head(table, seed=0, **kwargs)
    empty = np.zeros_like(TARGETS)
    assert _scalar(head.compute_loss(sequence, empty)) == 0.0
    assert _scalar(head.compute_loss(sequence, np.ones_like(TARGETS))) == 0.0  # all OOV
    if kwargs.get("sampler") == "in_batch" or kwargs["loss"] == "softmax":
        # Deterministic losses: vectors at positions without a target change nothing.
        noisy = sequence.copy()
        noisy[~VALID] = rng.normal(0, 5.0, size=(int((~VALID).sum()), DIM))
        np.testing.assert_allclose(
            _scalar(head.compute_loss(noisy, TARGETS)),
            _scalar(head.compute_loss(sequence, TARGETS)),
            rtol=1e-6,
        )


# ---------------------------------------------------------------- scores, grads
@pytest.mark.multibackend
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_scores_of_every_item(data, variant):
    table, sequence = data
    head = _head(table, **VARIANTS[variant])
    vectors = sequence[:, -1]
    scores = _np(head(vectors))
    assert scores.shape == (3, NUM_ITEMS)
    h, e = _vectors(vectors, table, VARIANTS[variant].get("normalize", False))
    expected = h @ e.T / VARIANTS[variant].get("temperature", 1.0)
    np.testing.assert_allclose(scores[:, 2:], expected[:, 2:], rtol=1e-5, atol=1e-5)
    assert (scores[:, :2] < -1e8).all()
    np.testing.assert_allclose(_np(head.item_vectors([3, 7])), e[[3, 7]], rtol=1e-6, atol=1e-7)


def _gradient(loss_fn, variable):
    """d loss / d variable on the current backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_fn()
        return _np(tape.gradient(loss, variable.value))
    if backend == "jax":
        import jax

        def stateless(value):
            with keras.StatelessScope(state_mapping=[(variable, value)]):
                return loss_fn()

        return _np(jax.grad(stateless)(variable.value))
    loss = loss_fn()
    loss.backward()
    return _np(variable.value.grad)


@pytest.mark.multibackend
def test_gradients_reach_the_tied_table_only(data):
    """The head owns no trainable weight; d(softmax loss)/dE is (p − y) h / τ, rows 0, 1 zero."""
    table, sequence = data
    head = _head(table, loss="softmax", temperature=0.5)
    embedding = head.item_embedding
    assert [id(w) for w in head.trainable_weights] == [id(embedding.embeddings)]
    assert [w.name for w in head.non_trainable_weights] == ["item_probability"]

    grad = _gradient(lambda: head.compute_loss(sequence, TARGETS), embedding.embeddings)
    h, e = _vectors(sequence, table, False)
    logits = h @ e[2:].T / 0.5
    p = np.exp(logits - np.logaddexp.reduce(logits, axis=1, keepdims=True))
    y = np.eye(NUM_ITEMS - 2)[np.maximum(TARGETS.reshape(-1), 2) - 2]
    w = VALID.reshape(-1, 1) / VALID.sum()
    expected = np.zeros((NUM_ITEMS, DIM))
    expected[2:] = ((p - y) * w).T @ h / 0.5
    np.testing.assert_allclose(grad, expected, atol=1e-5)
    assert np.abs(grad[:2]).max() == 0.0


# ----------------------------------------------------------- config, dtypes, rng
def test_config_leaves_out_the_table(data):
    table, _ = data
    head = _head(table, loss="sampled_softmax", num_negatives=7, temperature=0.1, seed=5)
    config = head.get_config()
    assert "item_embedding" not in config
    assert config["num_negatives"] == 7 and config["seed"] == 5 and config["temperature"] == 0.1
    copy = NextItemHead.from_config({**config, "item_embedding": head.item_embedding})
    assert copy.get_config() == config and copy.item_embedding is head.item_embedding
    with pytest.raises(ValueError, match="live layer"):
        NextItemHead.from_config(config)


def test_defaults_and_argument_checks(data):
    table, _ = data
    assert _head(table).num_negatives == 1
    assert _head(table, loss="sampled_softmax").num_negatives == 100
    assert _head(table, loss="sampled_softmax", sampler="in_batch").num_negatives is None
    with pytest.raises(ValueError, match="loss must be"):
        _head(table, loss="hinge")
    with pytest.raises(ValueError, match="only used with"):
        _head(table, loss="bce", sampler="in_batch")
    with pytest.raises(ValueError, match="num_negatives"):
        _head(table, loss="softmax", num_negatives=5)
    with pytest.raises(ValueError, match="shape"):
        _head(table).set_item_frequencies(np.ones(3))


def test_seeded_negatives_are_reproducible(data):
    table, _ = data
    first = _head(table, loss="bce", num_negatives=4, seed=11)
    second = _head(table, loss="bce", num_negatives=4, seed=11)
    a = keras.ops.convert_to_numpy(first.sample_negatives(TARGETS))
    np.testing.assert_array_equal(a, keras.ops.convert_to_numpy(second.sample_negatives(TARGETS)))
    assert (a != keras.ops.convert_to_numpy(first.sample_negatives(TARGETS))).any()


def test_reversible_embedding_table(data):
    table, sequence = data
    embedding = keras.layers.ReversibleEmbedding(NUM_ITEMS, DIM)
    embedding.build()
    embedding.embeddings.assign(table)
    head = NextItemHead(embedding, loss="softmax")
    np.testing.assert_allclose(
        _scalar(head.compute_loss(sequence, TARGETS)), _softmax(sequence, table), rtol=1e-5
    )


def test_mixed_bfloat16(data):
    table, sequence = data
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        for kwargs in (dict(loss="bce"), dict(loss="sampled_softmax"), dict(loss="softmax")):
            head = _head(table, seed=0, **kwargs)
            scores = head(sequence[:, -1])
            assert keras.backend.standardize_dtype(scores.dtype) == "bfloat16"
            loss = head.compute_loss(sequence, TARGETS)
            assert keras.backend.standardize_dtype(loss.dtype) == "float32"
            assert np.isfinite(_scalar(loss))
    finally:
        keras.config.set_dtype_policy("float32")


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="jax.jit with a stateless scope")
def test_sampling_inside_jit_advances_the_seed(data):
    import jax

    table, sequence = data
    head = _head(table, loss="sampled_softmax", num_negatives=5, seed=2)
    state = head.seed_generator.state

    @jax.jit
    def step(seed_value):
        with keras.StatelessScope(state_mapping=[(state, seed_value)]) as scope:
            loss = head.compute_loss(sequence, TARGETS)
        return loss, scope.get_current_value(state)

    loss_1, seed_1 = step(state.value)
    loss_2, _ = step(seed_1)
    assert np.isfinite(_scalar(loss_1)) and _scalar(loss_1) != _scalar(loss_2)
