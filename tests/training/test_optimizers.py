"""The repeated-sparse-rows fix against an independent numpy optimizer.

An id looked up k times in a batch gives TensorFlow an `IndexedSlices`
gradient with k rows for it; the other backends see one dense row, their
sum. With the fix, TensorFlow must train exactly as the dense gradient says,
gradient clipping included.
"""

import keras
import numpy as np
import pytest

from keras_recsys.training.optimizers import sum_repeated_sparse_gradients
from tests.conftest import requires_tensorflow_backend

VOCAB, DIM = 5, 3
IDS = np.array([1, 3, 1, 1, 4, 3], "int32")  # id 1 three times, id 3 twice
LR, BETA_1, BETA_2, EPSILON = 0.01, 0.9, 0.999, 1e-7
CLIPPING = {"clipnorm": 0.5, "global_clipnorm": 0.5, "clipvalue": 0.05}
# One batch per step, of different gradient scales: Adam is invariant to a
# clipping factor that is the same at every step.
STEP_SCALES = (1.0, 4.0, 0.25)

OPTIMIZERS = {
    # Adam's update is dense (the fix sums by densifying), Adagrad's sparse
    # (the fix sums with unique + segment sum).
    "adam": lambda **kw: keras.optimizers.Adam(
        LR, beta_1=BETA_1, beta_2=BETA_2, epsilon=EPSILON, **kw
    ),
    "adagrad": lambda **kw: keras.optimizers.Adagrad(LR, epsilon=EPSILON, **kw),
}


def _dense_gradients(table, bias, coefficients):
    """The gradients of L = Σ_p Σ_j c_pj·(t[ids_p, j] + b_j) + ½·t[ids_p, j]²: a table
    row's gradient is the sum over the positions that look it up."""
    grad_table = np.zeros_like(table)
    np.add.at(grad_table, IDS, coefficients + table[IDS])
    return [grad_table, coefficients.sum(axis=0)]


def _keras_clip(gradients, clipping, value):
    """Keras' `BaseOptimizer._clip_gradients` formulas."""
    if clipping == "clipnorm":
        return [g * value / max(np.sqrt(np.sum(g**2)), value) for g in gradients]
    if clipping == "global_clipnorm":
        norm = np.sqrt(sum(np.sum(g**2) for g in gradients))
        return [g * value * min(1 / norm, 1 / value) for g in gradients]
    return [np.clip(g, -value, value) for g in gradients]


def _numpy_training(variables, batches, optimizer, clipping):
    """Keras' Adam or Adagrad update on the clipped dense gradients, in float64."""
    variables = [v.astype(np.float64) for v in variables]
    first = [np.zeros_like(v) for v in variables]  # Adam's m
    second = [np.full_like(v, 0.0 if optimizer == "adam" else 0.1) for v in variables]
    for t, coefficients in enumerate(batches, start=1):
        grads = _keras_clip(_dense_gradients(*variables, coefficients), *clipping)
        alpha = LR * np.sqrt(1 - BETA_2**t) / (1 - BETA_1**t)
        for i, g in enumerate(grads):
            if optimizer == "adam":
                first[i] += (g - first[i]) * (1 - BETA_1)
                second[i] += (g**2 - second[i]) * (1 - BETA_2)
                variables[i] = variables[i] - alpha * first[i] / (np.sqrt(second[i]) + EPSILON)
            else:  # Adagrad, initial accumulator 0.1
                second[i] += g**2
                variables[i] = variables[i] - LR * g / np.sqrt(second[i] + EPSILON)
    return variables


def _keras_training(variables, batches, optimizer):
    """`optimizer` on an Embedding lookup, whose gradient is sparse, and a bias."""
    import tensorflow as tf

    embedding = keras.layers.Embedding(VOCAB, DIM)
    embedding.build((None,))
    embedding.embeddings.assign(variables[0])
    bias = keras.Variable(variables[1], name="bias")
    trainable = [embedding.embeddings, bias]
    for coefficients in batches:
        c = tf.constant(coefficients, "float32")
        with tf.GradientTape() as tape:
            rows = embedding(tf.constant(IDS))
            loss = tf.reduce_sum(c * (rows + bias) + 0.5 * rows**2)
        gradients = tape.gradient(loss, trainable)
        assert isinstance(gradients[0], tf.IndexedSlices)  # what the fix is about
        optimizer.apply_gradients(zip(gradients, trainable))
    return [np.asarray(v.numpy()) for v in trainable]


@requires_tensorflow_backend
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("clipping", sorted(CLIPPING))
def test_clipping_sees_the_summed_rows(clipping, optimizer):
    """3 steps with clipping on an id repeated in the batch = the dense-gradient
    update of JAX and PyTorch: the clip norms and values see the summed rows."""
    rng = np.random.default_rng(0)
    table = rng.normal(size=(VOCAB, DIM)).astype("float32")
    bias = rng.normal(size=(DIM,)).astype("float32")
    batches = [
        (scale * rng.normal(size=(len(IDS), DIM))).astype("float32") for scale in STEP_SCALES
    ]
    value = CLIPPING[clipping]
    # Clipping binds: the first dense gradients exceed the limits.
    assert max(np.abs(g).max() for g in _dense_gradients(table, bias, batches[0])) > value
    keras_optimizer = OPTIMIZERS[optimizer](**{clipping: value})
    sum_repeated_sparse_gradients(keras_optimizer)
    got = _keras_training([table, bias], batches, keras_optimizer)
    want = _numpy_training([table, bias], batches, optimizer, (clipping, value))
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-6)


@requires_tensorflow_backend
def test_rec_model_compile_sums_before_clipping(census_small):
    """`RecModel.compile` patches its optimizer: 3 `train_on_batch` steps (a traced
    train step, sparse embedding gradients with repeated ids) with
    `global_clipnorm` = the same steps on the densified gradients."""
    import tensorflow as tf

    import keras_recsys as kr

    train = census_small[0].head(256)
    spec = kr.FeatureSpec(
        [kr.Categorical("education"), kr.Categorical("sex"), kr.Numeric("age")],
        default_embedding_dim=4,
    ).adapt(train)
    keras.utils.set_random_seed(0)
    model = kr.models.DNN(spec, "income", hidden_units=[8])
    twin = kr.models.DNN.from_config(model.get_config())
    twin.set_weights(model.get_weights())
    for m in (model, twin):
        m.compile(optimizer=keras.optimizers.Adam(0.01, global_clipnorm=0.5), metrics=[])
    x, y = next(iter(kr.data.from_pandas(train, model, batch_size=256)))
    for _ in range(3):
        model.train_on_batch(x, y)
    for _ in range(3):
        with tf.GradientTape() as tape:
            loss = twin.compute_loss(x, y, twin(x, training=True))
        gradients = tape.gradient(loss, twin.trainable_variables)
        assert any(isinstance(g, tf.IndexedSlices) for g in gradients)
        twin.optimizer.apply([tf.convert_to_tensor(g) for g in gradients], twin.trainable_variables)
    for got, want in zip(model.trainable_variables, twin.trainable_variables):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=0, atol=1e-6, err_msg=got.path)
