"""Next-item speed: keras_recsys SASRec against the same model written by hand, side by side.

Three measurements, each alternating the toolkit and a hand-written baseline
in one run and reported as ratios (on a shared machine only ratios measured
in the same run mean anything):

1. **Training throughput** (sequences/s): `kr.models.SASRec(spec,
   num_blocks=2, num_heads=1, dropout=0.2, loss="bce")` against a SASRec
   written here with `keras.layers` (its own item `Embedding`, a learned
   position table, the same pre-norm causal blocks, the same BCE with one
   uniform negative per valid position in `compute_loss`), both trained with
   `model.fit(x, y, batch_size=256)` from numpy arrays, Adam 1e-3. Before
   timing, the toolkit's weights are copied into the hand-written model and
   its outputs and loss (on the same negatives) are checked equal; the
   trainable parameter counts are asserted equal. On TensorFlow a second
   hand-written baseline sums the repeated rows of sparse embedding
   gradients as the toolkit does (`hand-written+sum`, the same training
   math; see `README.md`).
2. **Full-ranking evaluation throughput** (users/s):
   `kr.evaluation.evaluate_full_ranking(model.scorer().predict_on_batch, ...)`
   against numpy on the same scores: `argsort` of every row (the usual way)
   and a counting variant (rank = 1 + number of candidates scoring at least
   the target, the toolkit's definition); then the ranking step alone on
   precomputed scores, `kr.evaluation.target_ranks` against the count.
3. **Retrieval SavedModel latency** (ms per request, batch 1 and 64):
   `model.export(dir, k=10)` against a hand-written export of the
   hand-written SASRec (one `tf.function`: string split, vocabulary lookup,
   model, history exclusion, `top_k`), both loaded in a child process that
   imports TensorFlow only and called alternately.

Data: the Amazon Beauty sequences of S3-Rec (`kr.datasets.amazon_beauty()`,
`../shared/data/amazon_s3rec/Beauty.txt`) when present, else synthetic Zipf
sequences of the same shape; histories of 50 items, embedding size 64.

    TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python benchmarks/bench_sequential.py
    .venv/bin/python benchmarks/bench_sequential.py --quick        # smoke test, writes nothing
    .venv/bin/python benchmarks/bench_sequential.py --backend jax --parts train,eval
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.abspath(os.path.dirname(__file__)))
BACKENDS = ("tensorflow", "jax", "torch")
PARTS = ("train", "eval", "serve")
MAX_LENGTH = 50
EMBEDDING_DIM = 64
NUM_BLOCKS = 2
NUM_HEADS = 1
DROPOUT = 0.2
LEARNING_RATE = 1e-3
SEPARATOR = "|"
_START = time.perf_counter()


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--backend", choices=BACKENDS, default="tensorflow")
    parser.add_argument(
        "--parts",
        default="train,eval,serve",
        help="comma-separated measurements to run: train,eval,serve",
    )
    parser.add_argument("--batch-size", type=int, default=256, help="training batch")
    parser.add_argument(
        "--rounds", type=int, default=12, help="training: rounds, each one fit call per variant"
    )
    parser.add_argument(
        "--steps", type=int, default=8, help="training: timed steps per fit call (+1 untimed)"
    )
    parser.add_argument("--warmup", type=int, default=3, help="training: untimed warm-up steps")
    parser.add_argument(
        "--eval-users", type=int, default=3072, help="evaluation: test users ranked per run"
    )
    parser.add_argument(
        "--eval-batch-sizes", default="256,1024", help="evaluation: comma-separated batch sizes"
    )
    parser.add_argument(
        "--eval-rounds", type=int, default=5, help="evaluation: rounds of one full evaluation"
    )
    parser.add_argument(
        "--requests",
        default="200,50",
        help="serving: requests timed at batch 1 and at batch 64 (comma-separated)",
    )
    parser.add_argument(
        "--synthetic", action="store_true", help="synthetic data even if Beauty is here"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: a few steps, writes no result files"
    )
    parser.add_argument(
        "--out", default=None, help="results directory (default: benchmarks/results)"
    )
    args = parser.parse_args(argv)
    args.parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = set(args.parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}; choose from {list(PARTS)}")
    args.eval_batch_sizes = [int(b) for b in args.eval_batch_sizes.split(",")]
    args.requests = [int(n) for n in args.requests.split(",")]
    if len(args.requests) != 2:
        parser.error("--requests takes two numbers: requests at batch 1 and at batch 64")
    if args.quick:
        args.rounds, args.steps, args.warmup = 2, 2, 1
        args.eval_users, args.eval_rounds = 1024, 2
        args.requests = [20, 5]
    return args


def log(message: str) -> None:
    """Prints with the seconds elapsed since the process started."""
    lead = len(message) - len(message.lstrip("\n"))
    print(f"{message[:lead]}[{time.perf_counter() - _START:5.0f}s] {message[lead:]}", flush=True)


# ------------------------------------------------------------------- data
def _synthetic_sequences(num_users: int = 22_363, num_items: int = 12_101, seed: int = 0):
    """Beauty-shaped sequences: lengths >= 5 (mean ~9), Zipf-distributed item ids."""
    import numpy as np
    import pandas as pd

    import keras_recsys as kr

    rng = np.random.default_rng(seed)
    ranks = np.arange(1, num_items + 1, dtype=np.float64)
    probabilities = ranks**-1.0
    probabilities /= probabilities.sum()
    names = rng.permutation(num_items) + 1  # raw item ids 1..V, popularity unrelated to the id
    lengths = np.minimum(5 + rng.geometric(0.25, num_users) - 1, 200)
    items = names[rng.choice(num_items, int(lengths.sum()), p=probabilities)]
    rows = np.split(items, np.cumsum(lengths)[:-1])
    frame = pd.DataFrame({"user_id": np.arange(num_users), "item_id": [r.tolist() for r in rows]})
    return kr.datasets.SequenceDataset(frame, name="synthetic Zipf (Beauty-shaped)")


def load_data(synthetic: bool) -> dict:
    """Leave-one-out id arrays of Beauty (or synthetic) sequences, with a fitted spec."""
    import pandas as pd

    import keras_recsys as kr

    source = None
    if not synthetic:
        try:
            dataset = kr.datasets.amazon_beauty()
            source = "Amazon Beauty, S3-Rec preprocessing (kr.datasets.amazon_beauty)"
        except FileNotFoundError as error:
            log(f"Beauty not found ({error}); using synthetic sequences")
    if source is None:
        dataset = _synthetic_sequences()
        source = dataset.name
    train, _, test = dataset.leave_one_out()
    spec = kr.FeatureSpec([kr.Sequence("history", max_length=MAX_LENGTH)], EMBEDDING_DIM)
    spec.adapt(pd.DataFrame({"history": dataset.sequences["item_id"]}))
    train_ids = spec.sequence_ids("history", train["item_id"], MAX_LENGTH + 1)
    raw_histories = [SEPARATOR.join(str(v) for v in row) for row in test["history"]]
    return {
        "source": source,
        "spec": spec,
        "train": train_ids,  # (N, L + 1): x = [:, :-1], y = [:, 1:] (recipes/_sequential.py)
        "test_history": spec.sequence_ids("history", test["history"]),
        "test_target": spec.lookup("history", test["target"]),
        "raw_test_history": raw_histories,
        "users": int(len(train)),
        "num_items": int(spec.input_dim("history")),
        "interactions": int(dataset.num_interactions),
    }


# --------------------------------------------------- hand-written SASRec
@functools.cache
def _hand_classes():
    """The hand-written SASRec's classes (built lazily: Keras' backend is set first)."""
    import keras
    from keras import ops

    class CausalBlock(keras.layers.Layer):
        """Pre-norm block: x += Drop(MHA(LN(x))); x += Drop(W2 Drop(relu(W1 LN(x)))); x *= m."""

        def __init__(self, dim, dropout, **kwargs):
            super().__init__(**kwargs)
            self.attention_norm = keras.layers.LayerNormalization(epsilon=1e-8)
            self.attention = keras.layers.MultiHeadAttention(
                num_heads=NUM_HEADS, key_dim=dim // NUM_HEADS, dropout=dropout
            )
            self.attention_dropout = keras.layers.Dropout(dropout)
            self.ffn_norm = keras.layers.LayerNormalization(epsilon=1e-8)
            self.ffn_inner = keras.layers.Dense(dim, activation="relu")
            self.ffn_dropout = keras.layers.Dropout(dropout)
            self.ffn_outer = keras.layers.Dense(dim)
            self.output_dropout = keras.layers.Dropout(dropout)

        def call(self, x, attention_mask, keep, training=None):
            h = self.attention_norm(x) * keep
            h = self.attention(h, h, attention_mask=attention_mask, training=training)
            x = x + self.attention_dropout(h, training=training)
            h = self.ffn_inner(self.ffn_norm(x))
            h = self.ffn_outer(self.ffn_dropout(h, training=training))
            x = x + self.output_dropout(h, training=training)
            return x * keep

    class HandSASRec(keras.Model):
        """(B, L) item ids -> (B, L, d); BCE with one uniform negative per valid position."""

        def __init__(self, num_items, dim, max_length, num_blocks, dropout, seed=None, **kwargs):
            super().__init__(**kwargs)
            self.num_items, self.dim, self.max_length = num_items, dim, max_length
            init = keras.initializers.TruncatedNormal(stddev=0.02)
            self.items = keras.layers.Embedding(num_items, dim, embeddings_initializer=init)
            self.positions = keras.layers.Embedding(max_length, dim, embeddings_initializer=init)
            self.input_dropout = keras.layers.Dropout(dropout)
            self.blocks = [CausalBlock(dim, dropout) for _ in range(num_blocks)]
            self.final_norm = keras.layers.LayerNormalization(epsilon=1e-8)
            self.negatives_seed = keras.random.SeedGenerator(seed)

        def call(self, inputs, training=None):
            ids = ops.cast(inputs["history"] if isinstance(inputs, dict) else inputs, "int32")
            length = ids.shape[1]
            mask = ids >= 2  # 0 = padding, 1 = unknown item
            keep = ops.cast(mask[:, :, None], "float32")
            x = self.items(ids) * math.sqrt(self.dim)
            x = x + self.positions(ops.arange(length))[None]
            x = self.input_dropout(x, training=training) * keep
            causal = ops.tril(ops.ones((length, length), "bool"))
            diagonal = ops.eye(length, dtype="bool")
            attention_mask = ops.logical_or(
                ops.logical_and(mask[:, None, :], causal[None]), diagonal[None]
            )
            for block in self.blocks:
                x = block(x, attention_mask, keep, training=training)
            return self.final_norm(x) * keep

        def bce(self, sequence, targets, negatives):
            h = ops.reshape(sequence, (-1, self.dim))
            targets = ops.reshape(ops.cast(targets, "int32"), (-1,))
            valid = ops.cast(targets >= 2, "float32")
            positives = ops.where(targets >= 2, targets, 2)
            table = self.items.embeddings
            positive = ops.sum(h * ops.take(table, positives, axis=0), axis=-1)
            negative = ops.sum(h * ops.take(table, negatives, axis=0), axis=-1)
            counted = ops.cast(ops.not_equal(negatives, positives), "float32")
            losses = ops.softplus(-positive) + ops.softplus(negative) * counted
            return ops.sum(losses * valid) / ops.maximum(ops.sum(valid), 1.0)

        def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
            count = ops.shape(ops.reshape(y, (-1,)))[0]
            negatives = keras.random.randint(
                (count,), 2, self.num_items, dtype="int32", seed=self.negatives_seed
            )
            return self.bce(y_pred, y, negatives)

    return CausalBlock, HandSASRec


def hand_sasrec(num_items: int, seed: int = 0):
    from keras import ops

    model = _hand_classes()[1](num_items, EMBEDDING_DIM, MAX_LENGTH, NUM_BLOCKS, DROPOUT, seed)
    model(ops.ones((2, MAX_LENGTH), "int32"))
    return model


def trainable_count(model) -> int:
    return sum(int(math.prod(w.shape)) for w in model.trainable_weights)


def copy_toolkit_weights(toolkit, hand) -> None:
    """Gives the hand-written model the toolkit SASRec's weights."""
    from keras import ops

    def assign(target, source):
        if tuple(target.shape) != tuple(source.shape):
            raise ValueError(f"shape mismatch: {target.path} {target.shape} vs {source.shape}")
        target.assign(ops.convert_to_numpy(source))

    backbone = toolkit.backbone
    assign(hand.items.embeddings, backbone.item_embedding.embeddings)
    assign(hand.positions.embeddings, backbone.positions.position_embeddings)
    for mine, theirs in zip(hand.blocks, backbone.blocks, strict=True):
        for name in ("attention_norm", "attention", "ffn_norm", "ffn_inner", "ffn_outer"):
            source, target = getattr(theirs, name), getattr(mine, name)
            for t, s in zip(target.weights, source.weights, strict=True):
                assign(t, s)
    for t, s in zip(hand.final_norm.weights, backbone.final_norm.weights, strict=True):
        assign(t, s)


def check_equivalent(toolkit, hand, data) -> dict:
    """Same weights: max |difference| of the outputs and of the loss on the same negatives."""
    import numpy as np
    from keras import ops

    ids = data["train"][:256]
    x, y = ids[:, :-1], ids[:, 1:]
    expected = toolkit({"history": x}, training=False)["sequence"]
    got = hand({"history": x}, training=False)
    rng = np.random.default_rng(0)
    negatives = rng.integers(2, data["num_items"], y.size).astype("int32")
    loss_toolkit = toolkit.head.compute_loss(expected, y, negatives=negatives[:, None])
    loss_hand = hand.bce(got, y, ops.convert_to_tensor(negatives))
    return {
        "sequence": float(np.max(np.abs(ops.convert_to_numpy(expected - got)))),
        "loss": float(abs(ops.convert_to_numpy(loss_toolkit) - ops.convert_to_numpy(loss_hand))),
        "loss_value": float(ops.convert_to_numpy(loss_toolkit)),
    }


# ------------------------------------------------------------ 1. training
def _fit_runner(model, x, y, batch_size: int, steps: int):
    """One `fit` of steps + 1 batches per call, on the next rows; the last `steps` are timed."""
    from benchmarks import common

    rows = (steps + 1) * batch_size
    state = {"offset": 0}

    def run():
        start = state["offset"]
        if start + rows > len(y):
            start = 0
        state["offset"] = start + rows
        timer = common._step_timer()
        model.fit(
            {"history": x[start : start + rows]},
            y[start : start + rows],
            batch_size=batch_size,
            epochs=1,
            shuffle=False,
            verbose=0,
            callbacks=[timer],
        )
        return common._steps(timer.marks)

    return run


def build_models(args, data) -> dict:
    """The toolkit SASRec and the hand-written ones, compiled, with the toolkit's weights."""
    import keras

    import keras_recsys as kr
    from benchmarks import handwritten

    toolkit = kr.models.SASRec(
        data["spec"], num_blocks=NUM_BLOCKS, num_heads=NUM_HEADS, dropout=DROPOUT, loss="bce",
        seed=0,
    )  # fmt: skip
    toolkit.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE))
    jit = toolkit.jit_compile
    sides = {"toolkit": toolkit}
    hand = hand_sasrec(data["num_items"])
    hand.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE), jit_compile=jit)
    sides["hand-written"] = hand
    if args.backend == "tensorflow":
        summed = hand_sasrec(data["num_items"])
        summed.compile(
            optimizer=handwritten.SummedSparseAdam(learning_rate=LEARNING_RATE), jit_compile=jit
        )
        sides["hand-written+sum"] = summed
    counts = {name: trainable_count(m) for name, m in sides.items()}
    if len(set(counts.values())) != 1:
        raise AssertionError(f"trainable parameter counts differ: {counts}")
    checks = {}
    for name, model in list(sides.items())[1:]:
        copy_toolkit_weights(toolkit, model)
        checks[name] = check_equivalent(toolkit, model, data)
        if checks[name]["sequence"] > 1e-4 or checks[name]["loss"] > 1e-4:
            raise AssertionError(f"{name} does not compute the toolkit's SASRec: {checks[name]}")
    log(
        f"SASRec: {counts['toolkit']:,} trainable parameters on every side (toolkit total "
        f"{toolkit.count_params():,}, hand-written {hand.count_params():,}); equal weights: "
        + "; ".join(
            f"{n} outputs differ by {c['sequence']:.1e}, loss by {c['loss']:.1e}"
            for n, c in checks.items()
        )
        + f"; jit_compile={jit}"
    )
    return {
        "sides": sides,
        "jit_compile": jit,
        "trainable_parameters": counts["toolkit"],
        "total_parameters": {
            "toolkit": toolkit.count_params(),
            "hand-written": hand.count_params(),
        },
        "checks": checks,
    }


def bench_training(args, data, built) -> dict:
    from benchmarks import common

    train = data["train"]
    x, y = train[:, :-1], train[:, 1:]
    sides, checks = built["sides"], built["checks"]
    runs = {}
    for name, model in sides.items():
        model.fit({"history": x[: args.warmup * args.batch_size]}, y[: args.warmup * args.batch_size],
                  batch_size=args.batch_size, epochs=1, shuffle=False, verbose=0)  # fmt: skip
        runs[name] = _fit_runner(model, x, y, args.batch_size, args.steps)
    log(
        f"timing {len(runs)} variants: {args.rounds} rounds of one fit of {args.steps + 1} "
        f"batches each ({args.steps} timed)"
    )
    results = common.interleaved(
        runs, args.rounds, args.batch_size, log, log_every=max(args.rounds // 3, 1)
    )
    variants = {
        name: {clock: common.summarize(seconds[clock], args.batch_size) for clock in common.CLOCKS}
        for name, seconds in results.items()
    }
    for name, check in checks.items():
        variants[name]["equivalence"] = check
    ratios = [_ratio("toolkit/hand-written", variants["toolkit"], variants["hand-written"])]
    if "hand-written+sum" in variants:
        ratios.append(
            _ratio(
                "toolkit/hand-written+sum (same sparse-gradient math)",
                variants["toolkit"],
                variants["hand-written+sum"],
            )
        )
    return {
        "jit_compile": built["jit_compile"],
        "trainable_parameters": built["trainable_parameters"],
        "total_parameters": built["total_parameters"],
        "variants": variants,
        "ratios": ratios,
    }


def _ratio(what: str, numerator: dict, denominator: dict) -> dict:
    from benchmarks import common

    return {"what": what, **{c: common.ratio(numerator[c], denominator[c]) for c in common.CLOCKS}}


# ---------------------------------------------------------- 2. evaluation
def numpy_ranks(score_fn, histories, targets, batch_size: int, method: str):
    """Ranks of the targets with the history excluded, in numpy, from the same scores.

    `score_fn(start, history)` gives the (b, V) scores of the batch starting
    at row `start`. "argsort": sort every row, find the target's position
    (ties in id order); "count": 1 + candidates scoring >= the target (ties
    pessimistic, as the toolkit counts them).
    """
    import numpy as np

    ranks = []
    for start in range(0, len(targets), batch_size):
        history = histories[start : start + batch_size]
        target = targets[start : start + batch_size]
        scores = np.array(score_fn(start, history), dtype=np.float32)  # a copy: edited below
        rows = np.arange(len(target))
        target_scores = scores[rows, target]
        scores[:, :2] = -np.inf
        scores[np.repeat(rows, history.shape[1]), history.reshape(-1)] = -np.inf
        scores[rows, target] = target_scores
        if method == "argsort":
            order = np.argsort(-scores, axis=1, kind="stable")
            ranks.append(np.argmax(order == target[:, None], axis=1) + 1)
        else:
            ranks.append(np.sum(scores >= target_scores[:, None], axis=1))
    return np.concatenate(ranks)


def bench_evaluation(args, data, model) -> dict:
    import numpy as np

    import keras_recsys as kr
    from benchmarks import common

    users = min(args.eval_users, len(data["test_target"]))
    histories = data["test_history"][:users]
    targets = data["test_target"][:users]
    scorer = model.scorer()
    runs, results_by_variant = {}, {}

    def variant(name, fn):
        def run():
            start = common._now()
            results_by_variant[name] = fn()
            return common._steps([start, common._now()])

        runs[name] = run

    for batch in args.eval_batch_sizes:
        variant(
            f"toolkit B={batch}",
            functools.partial(
                kr.evaluation.evaluate_full_ranking,
                scorer.predict_on_batch,
                histories,
                targets,
                exclude=histories,
                batch_size=batch,
            ),
        )
        for method in ("argsort", "count"):

            def numpy_metrics(batch=batch, method=method):
                ranks = numpy_ranks(
                    lambda _, h: scorer.predict_on_batch(h), histories, targets, batch, method
                )
                return kr.evaluation.metrics_from_ranks(ranks)

            variant(f"numpy {method} B={batch}", numpy_metrics)
    for run in runs.values():  # warm-up: traces the scorer for every batch size
        run()
    metrics = dict(results_by_variant)
    reference = metrics[f"toolkit B={args.eval_batch_sizes[0]}"]
    agreement = {
        name: max(abs(m[k] - reference[k]) for k in reference) for name, m in metrics.items()
    }
    log(
        f"evaluation: {users:,} test users, HR@10 {reference['HR@10']:.4f} NDCG@10 "
        f"{reference['NDCG@10']:.4f}; largest metric difference from the toolkit: "
        f"{max(agreement.values()):.1e}; timing {len(runs)} variants, {args.eval_rounds} rounds"
    )
    results = common.interleaved(runs, args.eval_rounds, users, log, log_every=args.eval_rounds)
    variants = {
        name: {clock: common.summarize(seconds[clock], users) for clock in common.CLOCKS}
        for name, seconds in results.items()
    }
    for name in variants:
        variants[name]["metrics_difference"] = agreement[name]
    ratios = []
    for batch in args.eval_batch_sizes:
        for method in ("argsort", "count"):
            ratios.append(
                _ratio(
                    f"toolkit/numpy {method}, B={batch}",
                    variants[f"toolkit B={batch}"],
                    variants[f"numpy {method} B={batch}"],
                )
            )

    # The ranking step alone, on scores computed beforehand (the same arrays for
    # both): what evaluate_full_ranking adds to the scorer, against numpy.
    ranking_runs = {}
    for batch in args.eval_batch_sizes:
        scores = {
            start: scorer.predict_on_batch(histories[start : start + batch])
            for start in range(0, users, batch)
        }

        def toolkit_ranks(batch=batch, scores=scores):
            ranks = [
                kr.evaluation.target_ranks(
                    scores[start], targets[start : start + batch], histories[start : start + batch]
                )
                for start in range(0, users, batch)
            ]
            return kr.evaluation.metrics_from_ranks(np.concatenate(ranks))

        def count_ranks(batch=batch, scores=scores):
            ranks = numpy_ranks(lambda row, _: scores[row], histories, targets, batch, "count")
            return kr.evaluation.metrics_from_ranks(ranks)

        for name, fn in (("toolkit target_ranks", toolkit_ranks), ("numpy count", count_ranks)):
            key = f"{name} B={batch}, ranking only"
            fn()  # warm-up

            def run(fn=fn):
                start = common._now()
                fn()
                return common._steps([start, common._now()])

            ranking_runs[key] = run
    rounds = 3 * args.eval_rounds
    log(f"timing the ranking step alone on precomputed scores: {rounds} rounds")
    results = common.interleaved(ranking_runs, rounds, users, log, log_every=rounds)
    for name, seconds in results.items():
        variants[name] = {clock: common.summarize(seconds[clock], users) for clock in common.CLOCKS}
        variants[name]["metrics_difference"] = None
    for batch in args.eval_batch_sizes:
        ratios.append(
            _ratio(
                f"ranking step only, toolkit target_ranks/numpy count, B={batch}",
                variants[f"toolkit target_ranks B={batch}, ranking only"],
                variants[f"numpy count B={batch}, ranking only"],
            )
        )
    return {"users": users, "metrics": reference, "variants": variants, "ratios": ratios}


# ------------------------------------------------------------- 3. serving
def export_hand_written(model, vocabulary, vocabulary_dtype: str, path: str, k: int = 10) -> str:
    """A SavedModel of the hand-written SASRec: raw "id|id|..." histories -> top-k raw ids.

    TensorFlow backend only. One tf.function: split, lookup (unknown -> 1),
    keep the latest L items, pad at the front, the model, scores against the
    item table, padding/OOV/history excluded, top_k, ids back to raw values.
    """
    import tensorflow as tf

    dtype = tf.string if vocabulary_dtype == "string" else tf.int64
    length = model.max_length

    class Served(tf.Module):
        def __init__(self):
            super().__init__()
            self.model = model
            keys = tf.constant(vocabulary, dtype)
            ids = tf.range(2, len(vocabulary) + 2, dtype=tf.int64)
            self.table = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(keys, ids), default_value=1
            )
            missing = "" if dtype == tf.string else -1
            self.values = tf.constant([missing, missing, *vocabulary], dtype)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="history")])
        def serve(self, history):
            tokens = tf.strings.split(history, sep=SEPARATOR)
            tokens = tf.ragged.boolean_mask(tokens, tf.not_equal(tokens, ""))[:, -length:]
            if dtype == tf.int64:
                tokens = tf.ragged.map_flat_values(tf.strings.to_number, tokens, tf.int64)
            ids = tf.cast(tf.ragged.map_flat_values(self.table.lookup, tokens), tf.int32)
            pad = length - ids.row_lengths()  # int64, the row_splits dtype of `ids`
            padding = tf.RaggedTensor.from_row_lengths(
                tf.zeros([tf.reduce_sum(pad)], tf.int32), pad
            )
            ids = tf.concat([padding, ids], axis=1).to_tensor(shape=[None, length])
            query = self.model(ids, training=False)[:, -1, :]
            scores = tf.matmul(
                query, tf.convert_to_tensor(self.model.items.embeddings), transpose_b=True
            )
            batch = tf.shape(ids)[0]
            rows = tf.repeat(tf.range(batch), length)
            seen = tf.scatter_nd(
                tf.stack([rows, tf.reshape(ids, [-1])], axis=1),
                tf.ones([batch * length]),
                tf.shape(scores),
            )
            excluded = tf.logical_or(seen > 0, tf.range(tf.shape(scores)[1])[None, :] < 2)
            top = tf.math.top_k(tf.where(excluded, -1e9, scores), k)
            return {"item_ids": tf.gather(self.values, top.indices), "scores": top.values}

    served = Served()
    tf.saved_model.save(served, path, signatures={"serving_default": served.serve})
    return path


def _export_hand_child(argv) -> int:
    """`--export-hand-child WEIGHTS.npz CONFIG.json PATH`: the hand-written export under TF."""
    import numpy as np

    weights_file, config_file, path = argv
    with open(config_file) as f:
        config = json.load(f)
    model = hand_sasrec(config["num_items"])
    with np.load(weights_file) as stored:
        model.set_weights([stored[f"w{i}"] for i in range(len(stored.files))])
    export_hand_written(model, config["vocabulary"], config["dtype"], path, config["k"])
    return 0


def _latency_child(argv) -> int:
    """`--latency-child REQUESTS.json TOOLKIT_DIR HAND_DIR OUT.json`: TensorFlow only."""
    import tensorflow as tf

    # Importing TensorFlow loads parts of Keras 3 by itself where Keras is installed.
    packages = ("keras", "keras_rs", "keras_recsys")
    loaded_by_tensorflow = [p for p in packages if p in sys.modules]
    requests_file, toolkit_dir, hand_dir, out_file = argv
    with open(requests_file) as f:
        plan = json.load(f)
    functions = {
        "toolkit": tf.saved_model.load(toolkit_dir).signatures["serving_default"],
        "hand-written": tf.saved_model.load(hand_dir).signatures["serving_default"],
    }
    names = list(functions)
    result = {"batches": {}}
    for batch, requests in plan["requests"].items():
        tensors = [tf.constant(r) for r in requests]
        for tensor in tensors[: plan["warmup"]]:
            for fn in functions.values():
                fn(history=tensor)["item_ids"].numpy()
        times = {name: {"wall": [], "cpu": []} for name in names}
        mismatched = 0
        for i, tensor in enumerate(tensors):
            outputs = {}
            for name in names if i % 2 == 0 else names[::-1]:
                wall, cpu = time.perf_counter(), time.process_time()
                out = functions[name](history=tensor)
                ids, _ = out["item_ids"].numpy(), out["scores"].numpy()
                times[name]["wall"].append(time.perf_counter() - wall)
                times[name]["cpu"].append(time.process_time() - cpu)
                outputs[name] = ids
            mismatched += int((outputs["toolkit"] != outputs["hand-written"]).any(axis=1).sum())
        result["batches"][batch] = {"seconds": times, "rows_with_different_top_k": mismatched}
    result["keras_packages_after_import_tensorflow"] = loaded_by_tensorflow
    result["keras_packages_at_end"] = [p for p in packages if p in sys.modules]
    with open(out_file, "w") as f:
        json.dump(result, f)
    return 0


def _quantile(values, q):
    import numpy as np

    return float(np.quantile(np.asarray(values), q))


def bench_serving(args, data, toolkit, hand) -> dict:
    import keras
    import numpy as np

    spec = data["spec"]
    owner = spec.vocabulary_owner("history")
    vocabulary = list(owner.vocabulary)
    if owner.dtype != "string":
        vocabulary = [int(v) for v in vocabulary]
    copy_toolkit_weights(toolkit, hand)
    check = check_equivalent(toolkit, hand, data)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        toolkit_dir = toolkit.export(os.path.join(tmp, "toolkit"), k=10)
        toolkit_seconds = time.perf_counter() - started
        started = time.perf_counter()
        hand_dir = os.path.join(tmp, "hand", "1")
        if keras.backend.backend() == "tensorflow":
            export_hand_written(hand, vocabulary, owner.dtype, hand_dir)
        else:  # rebuilt under the TensorFlow backend in a child process
            weights = os.path.join(tmp, "hand.npz")
            np.savez(weights, **{f"w{i}": w for i, w in enumerate(hand.get_weights())})
            config = os.path.join(tmp, "hand.json")
            with open(config, "w") as f:
                json.dump({"num_items": data["num_items"], "vocabulary": vocabulary,
                           "dtype": owner.dtype, "k": 10}, f)  # fmt: skip
            _child(["--export-hand-child", weights, config, hand_dir], "tensorflow")
        hand_seconds = time.perf_counter() - started
        log(
            f"exported: toolkit {toolkit_seconds:.1f}s, hand-written {hand_seconds:.1f}s; "
            f"timing {args.requests[0]} requests of 1 history and {args.requests[1]} of 64 "
            "in a TensorFlow-only process"
        )
        raw = data["raw_test_history"]
        requests = {
            "1": [[raw[i % len(raw)]] for i in range(args.requests[0])],
            "64": [
                [raw[(64 * i + j) % len(raw)] for j in range(64)] for i in range(args.requests[1])
            ],
        }
        plan_file = os.path.join(tmp, "requests.json")
        with open(plan_file, "w") as f:
            json.dump({"requests": requests, "warmup": 5}, f)
        out_file = os.path.join(tmp, "latency.json")
        _child(["--latency-child", plan_file, toolkit_dir, hand_dir, out_file], None)
        with open(out_file) as f:
            measured = json.load(f)
    batches = {}
    for batch, entry in measured["batches"].items():
        summary = {}
        for name, clocks in entry["seconds"].items():
            wall = [1000 * s for s in clocks["wall"]]
            summary[name] = {
                "p50_ms": _quantile(wall, 0.5),
                "p99_ms": _quantile(wall, 0.99),
                "mean_ms": statistics.fmean(wall),
                "cpu_p50_ms": _quantile([1000 * s for s in clocks["cpu"]], 0.5),
                "requests": len(wall),
            }
        paired = [a / b for a, b in zip(entry["seconds"]["toolkit"]["wall"],
                                         entry["seconds"]["hand-written"]["wall"])]  # fmt: skip
        batches[batch] = {
            "sides": summary,
            "p50_ratio": summary["toolkit"]["p50_ms"] / summary["hand-written"]["p50_ms"],
            "p99_ratio": summary["toolkit"]["p99_ms"] / summary["hand-written"]["p99_ms"],
            "cpu_p50_ratio": summary["toolkit"]["cpu_p50_ms"]
            / summary["hand-written"]["cpu_p50_ms"],
            "paired_ratio": statistics.median(paired),
            "paired_iqr": [_quantile(paired, 0.25), _quantile(paired, 0.75)],
            "rows_with_different_top_k": entry["rows_with_different_top_k"],
            "rows": len(entry["seconds"]["toolkit"]["wall"]) * int(batch),
        }
    return {
        "export_seconds": {"toolkit": toolkit_seconds, "hand-written": hand_seconds},
        "equal_weights_check": check,
        "serving_process_modules": {
            "keras packages after `import tensorflow`": measured[
                "keras_packages_after_import_tensorflow"
            ],
            "keras packages after loading and calling both": measured["keras_packages_at_end"],
        },
        "batches": batches,
    }


def _child(arguments: list[str], backend: str | None) -> None:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    if backend is None:  # serving: TensorFlow only, nothing of this project importable
        env.pop("PYTHONPATH", None)
        env.pop("KERAS_BACKEND", None)
    else:
        env["KERAS_BACKEND"] = backend
    done = subprocess.run(
        [sys.executable, os.path.abspath(__file__), *arguments],
        env=env,
        cwd=tempfile.gettempdir() if backend is None else ROOT,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"child {arguments[0]} failed:\n{done.stderr[-4000:]}")


# ---------------------------------------------------------------- driver
def rerun_command() -> str:
    args = " ".join(sys.argv[1:])
    return f"TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python benchmarks/bench_sequential.py {args}".strip()


def _device(backend: str) -> str:
    if backend == "tensorflow":
        import tensorflow as tf

        return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
    if backend == "jax":
        import jax

        return jax.default_backend()
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


def run(args) -> dict:
    os.environ["KERAS_BACKEND"] = args.backend
    import keras

    from benchmarks import common

    if keras.backend.backend() != args.backend:
        raise RuntimeError(f"Keras was already imported with backend {keras.backend.backend()!r}")
    keras.utils.set_random_seed(0)
    info = common.machine_info()
    device = _device(args.backend)
    log(
        f"{args.backend} on {device}: {info['nproc']} cores, {info['cpu_model']}, "
        f"load average {info['load_average']}"
    )
    data = load_data(args.synthetic)
    log(
        f"data: {data['source']}: {data['users']:,} users, {data['num_items'] - 2:,} items "
        f"(input_dim {data['num_items']:,}), {data['interactions']:,} interactions; "
        f"histories of {MAX_LENGTH}, dim {EMBEDDING_DIM}"
    )
    record = {
        "benchmark": "sequential",
        "backend": args.backend,
        "device": device,
        "machine": info,
        "command": rerun_command(),
        "settings": {
            "data": data["source"],
            "users": data["users"],
            "input_dim": data["num_items"],
            "max_length": MAX_LENGTH,
            "embedding_dim": EMBEDDING_DIM,
            "num_blocks": NUM_BLOCKS,
            "num_heads": NUM_HEADS,
            "dropout": DROPOUT,
            "loss": "bce, 1 uniform negative per position",
            "optimizer": f"Adam({LEARNING_RATE})",
            "batch_size": args.batch_size,
            "rounds": args.rounds,
            "steps_per_round": args.steps,
            "warmup_steps": args.warmup,
            "eval_users": args.eval_users,
            "eval_batch_sizes": args.eval_batch_sizes,
            "eval_rounds": args.eval_rounds,
            "requests": {"1": args.requests[0], "64": args.requests[1]},
            "parts": args.parts,
        },
    }
    loads = record["machine"]["load_during"] = {}

    def sample_load(part):
        loads[part] = [round(x, 2) for x in os.getloadavg()]

    log("\n== models ==")
    built = build_models(args, data)
    models = built["sides"]
    if "train" in args.parts:
        sample_load("training")
        log("\n== 1. SASRec training throughput ==")
        record["training"] = bench_training(args, data, built)
        log("results:\n" + "\n".join(training_lines(record)))
    if "eval" in args.parts:
        sample_load("evaluation")
        log("\n== 2. Full-ranking evaluation throughput ==")
        record["evaluation"] = bench_evaluation(args, data, models["toolkit"])
        log("results:\n" + "\n".join(evaluation_lines(record)))
    if "serve" in args.parts:
        sample_load("serving")
        log("\n== 3. Retrieval SavedModel latency ==")
        hand = models.get("hand-written+sum", models["hand-written"])
        record["serving"] = bench_serving(args, data, models["toolkit"], hand)
        log("results:\n" + "\n".join(serving_lines(record)))
    record["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    record["seconds"] = round(time.perf_counter() - _START, 1)
    return record


# -------------------------------------------------------------- reporting
def _ratio_text(r: dict) -> str:
    cpu, wall = r["cpu"], r["wall"]
    return (
        f"{r['what']}: {cpu['ratio']:.2f} (CPU time; wall clock {wall['ratio']:.2f}; "
        f"interquartile CPU {cpu['iqr'][0]:.2f}-{cpu['iqr'][1]:.2f}, wall "
        f"{wall['iqr'][0]:.2f}-{wall['iqr'][1]:.2f}; {cpu['rounds']} rounds)"
    )


def training_lines(record: dict) -> list[str]:
    t = record["training"]
    lines = [f"{'variant':<20} {'sequences/s':>12} {'p25':>8} {'p75':>8} {'per CPU-s':>10}"]
    for name, v in t["variants"].items():
        w = v["wall"]
        lines.append(
            f"{name:<20} {w['median']:>12,.0f} {w['p25']:>8,.0f} {w['p75']:>8,.0f} "
            f"{v['cpu']['median']:>10,.0f}"
        )
    return lines + [""] + ["SASRec training " + _ratio_text(r) for r in t["ratios"]]


def evaluation_lines(record: dict) -> list[str]:
    e = record["evaluation"]
    lines = [f"{'variant':<42} {'users/s':>9} {'per CPU-s':>10} {'metric diff':>12}"]
    for name, v in e["variants"].items():
        lines.append(
            f"{name:<42} {v['wall']['median']:>9,.0f} {v['cpu']['median']:>10,.0f} "
            + (f"{v['metrics_difference']:>12.1e}" if v["metrics_difference"] is not None else "")
        )
    return lines + [""] + ["full-ranking evaluation " + _ratio_text(r) for r in e["ratios"]]


def serving_lines(record: dict) -> list[str]:
    s = record["serving"]
    lines = [
        f"{'batch':>5} {'side':<13} {'p50 ms':>8} {'p99 ms':>8} {'CPU p50 ms':>11} {'requests':>9}"
    ]
    for batch, entry in s["batches"].items():
        for name, side in entry["sides"].items():
            lines.append(
                f"{batch:>5} {name:<13} {side['p50_ms']:>8.2f} {side['p99_ms']:>8.2f} "
                f"{side['cpu_p50_ms']:>11.2f} {side['requests']:>9}"
            )
    lines.append("")
    for batch, entry in s["batches"].items():
        lines.append(
            f"SavedModel latency toolkit/hand-written, batch {batch}: p50 {entry['p50_ratio']:.2f}, "
            f"p99 {entry['p99_ratio']:.2f}, CPU p50 {entry['cpu_p50_ratio']:.2f}, per-request median {entry['paired_ratio']:.2f} "
            f"(interquartile {entry['paired_iqr'][0]:.2f}-{entry['paired_iqr'][1]:.2f}); "
            f"< 1 = toolkit faster; top-10 differs in {entry['rows_with_different_top_k']} of "
            f"{entry['rows']} rows"
        )
    return lines


def _busy_note(record: dict) -> list[str]:
    machine = record["machine"]
    samples = [machine["load_average"], machine.get("load_average_end") or [0]]
    samples += list(machine.get("load_during", {}).values())
    peak = max(sample[0] for sample in samples)
    if peak <= machine["nproc"]:
        return []
    return [
        f"- **the machine was busy**: the 1-minute load average reached {peak:.1f} on "
        f"{machine['nproc']} cores (other people's processes); wall-clock numbers and "
        "latencies are inflated and noisy, read the CPU-time ratios"
    ]


def markdown(record: dict) -> str:
    from benchmarks import common

    s = record["settings"]
    lines = [
        f"# Next-item models (SASRec): {record['backend']} on {record['device']}",
        "",
        f"Data: {s['data']}, {s['users']:,} users, input_dim {s['input_dim']:,} (items + "
        f"padding + OOV), histories of {s['max_length']}, embedding {s['embedding_dim']}. "
        f"SASRec: {s['num_blocks']} blocks, {s['num_heads']} head, dropout {s['dropout']}, "
        f"{s['loss']}, {s['optimizer']}, batch {s['batch_size']}.",
        "",
        *common.machine_markdown(record["machine"]),
        f"- load average at end: {record['machine'].get('load_average_end')}; at the start "
        "of each part: "
        + ", ".join(f"{k} {v}" for k, v in record["machine"].get("load_during", {}).items()),
        *_busy_note(record),
        f"- whole run: {record['seconds']:.0f} s",
        "",
        "Rerun:",
        "",
        "```",
        record["command"],
        "```",
        "",
    ]
    if "training" in record:
        t = record["training"]
        lines += [
            "## 1. Training throughput",
            "",
            f"`model.fit(x, y, batch_size={s['batch_size']})` from numpy arrays "
            f"(x = ids[:, :-1], y = ids[:, 1:]), jit_compile={t['jit_compile']} on every side. "
            f"{s['rounds']} rounds; in each, every variant runs one `fit` of "
            f"{s['steps_per_round'] + 1} batches (the same rows for every variant), of which "
            f"the last {s['steps_per_round']} steps are timed, in the order A B C, reversed on "
            "odd rounds. A ratio is the median over rounds of the per-round ratio of "
            "sequences/s (median step), with its interquartile range; the headline is CPU "
            "time of the process, the wall clock beside it. Trainable parameters: "
            f"{t['trainable_parameters']:,} on every side (total with non-trainable: "
            f"toolkit {t['total_parameters']['toolkit']:,}, hand-written "
            f"{t['total_parameters']['hand-written']:,}).",
            "",
            "| variant | sequences/s (median) | p25 | p75 | sequences per CPU-second | "
            "equal weights: max output / loss difference |",
            "| --- | ---: | ---: | ---: | ---: | --- |",
        ]
        for name, v in t["variants"].items():
            eq = v.get("equivalence")
            eq_text = f"{eq['sequence']:.1e} / {eq['loss']:.1e}" if eq else ""
            w = v["wall"]
            lines.append(
                f"| {name} | {w['median']:,.0f} | {w['p25']:,.0f} | {w['p75']:,.0f} | "
                f"{v['cpu']['median']:,.0f} | {eq_text} |"
            )
        lines += ["", "```", *training_lines(record)[-len(t["ratios"]) :], "```", ""]
    if "evaluation" in record:
        e = record["evaluation"]
        lines += [
            "## 2. Full-ranking evaluation throughput",
            "",
            f"The first {e['users']:,} test users (leave-one-out), every item ranked, history "
            "excluded. `toolkit`: `kr.evaluation.evaluate_full_ranking(model.scorer()."
            "predict_on_batch, h, y, exclude=h, batch_size=B)`. `numpy argsort` / `numpy "
            "count`: the same `scorer().predict_on_batch` scores, history and reserved ids set "
            "to -inf in numpy, then the target's position in `np.argsort` of each row, or 1 + "
            "the number of candidates scoring at least the target; metrics by "
            f"`metrics_from_ranks`. {s['eval_rounds']} rounds of one whole evaluation per "
            f"variant, alternating. HR@10 {e['metrics']['HR@10']:.4f}, NDCG@10 "
            f"{e['metrics']['NDCG@10']:.4f} (a model trained only for the timed steps: "
            "only the agreement matters). The `ranking only` lines time the ranking step "
            "alone on scores computed beforehand (the same arrays for both): "
            "`kr.evaluation.target_ranks` per batch against the numpy count, "
            f"{3 * s['eval_rounds']} alternating rounds.",
            "",
            "| variant | users/s (median) | users per CPU-second | max metric difference "
            "from the toolkit |",
            "| --- | ---: | ---: | ---: |",
        ]
        for name, v in e["variants"].items():
            lines.append(
                f"| {name} | {v['wall']['median']:,.0f} | {v['cpu']['median']:,.0f} | "
                + (
                    f"{v['metrics_difference']:.1e} |"
                    if v["metrics_difference"] is not None
                    else " |"
                )
            )
        lines += ["", "```", *evaluation_lines(record)[-len(e["ratios"]) :], "```", ""]
    if "serving" in record:
        sv = record["serving"]
        lines += [
            "## 3. Retrieval SavedModel latency",
            "",
            "`model.export(dir, k=10)` against a `tf.saved_model.save` of the hand-written "
            "SASRec with one `tf.function` (split, lookup, model, history excluded, "
            "`top_k`, raw ids), both with the same weights, loaded with "
            "`tf.saved_model.load(path).signatures['serving_default']` in a child process "
            "that imports TensorFlow only (of keras, keras_rs, keras_recsys, loaded there: "
            + "; ".join(
                f"{k}: {', '.join(v) or 'none'}" for k, v in sv["serving_process_modules"].items()
            )
            + "). Requests are raw test histories "
            '`"id|id|..."`; the two models are called alternately (order reversed every '
            "other request) after 5 warm-up requests each; a latency is the wall time of the "
            f"call and of reading its outputs. Export took {sv['export_seconds']['toolkit']:.1f} s "
            f"(toolkit, with warm-up records) and {sv['export_seconds']['hand-written']:.1f} s "
            "(hand-written).",
            "",
            "| batch | side | p50 ms | p99 ms | CPU p50 ms | requests |",
            "| ---: | --- | ---: | ---: | ---: | ---: |",
        ]
        for batch, entry in sv["batches"].items():
            for name, side in entry["sides"].items():
                lines.append(
                    f"| {batch} | {name} | {side['p50_ms']:.2f} | {side['p99_ms']:.2f} | "
                    f"{side['cpu_p50_ms']:.2f} | {side['requests']} |"
                )
        lines += ["", "```", *serving_lines(record)[-len(sv["batches"]) :], "```", ""]
    return "\n".join(lines)


def write_record(record: dict, out_dir: str) -> str:
    from benchmarks import common

    stem = os.path.join(out_dir, f"sequential_{record['backend']}_{common.device_label(record)}")
    common.write_json(stem + ".json", record)
    with open(stem + ".md", "w") as f:
        f.write(markdown(record))
    return stem


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--latency-child":
        return _latency_child(argv[1:])
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if ROOT not in sys.path:  # run as a script: make `benchmarks` importable
        sys.path.insert(0, ROOT)
    if argv and argv[0] == "--export-hand-child":
        return _export_hand_child(argv[1:])
    args = parse_args(argv)
    record = run(args)
    if args.quick and not args.out:
        print("\n(--quick: no result files written)")
        return 0
    from benchmarks import common

    stem = write_record(record, args.out or common.RESULTS_DIR)
    print(f"\nwrote {os.path.relpath(stem, ROOT)}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
