"""HSTU speed: the block against softmax self-attention, and M-FALCON against one pass per candidate.

Two measurements, each side by side in one process and reported as ratios:

1. **Block scaling**: one `kr.layers.HSTU` block against one SASRec block
   (`kr.layers.TransformerBlock`, causal pre-norm softmax attention with its
   feed-forward layer) of the same width d = 128, 2 heads, at sequence
   lengths 64 → 4096 with B · L = 16,384 tokens a batch: forward + backward
   time of `sum(block(x)²)` with respect to the block's weights (jitted on
   JAX, a `tf.function` on TensorFlow), and on JAX the compiled step's
   temporary memory (`memory_analysis().temp_size_in_bytes`, the peak of its
   intermediates). Both blocks are written with `keras.ops`: HSTU
   materializes its (B, h, L, L) pointwise attention like the softmax block.
2. **M-FALCON** (inference): a stack of 2 HSTU blocks (d 64, 2 heads, with
   timestamps) scoring m candidates after one history of n tokens, for one
   user, `kr.layers.m_falcon` (history once, then micro-batches of b = 128
   candidates against the cached keys and values) against one pass per
   candidate (each candidate appended to the history, m sequences of n + 1
   tokens, run 128 at a time). Both jitted on JAX; outputs checked equal.

    KERAS_BACKEND=jax python benchmarks/bench_hstu.py            # the GPU machine
    KERAS_BACKEND=tensorflow python benchmarks/bench_hstu.py --lengths 64 256 --parts block
    python benchmarks/bench_hstu.py --quick                       # smoke test, writes nothing
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.common import RESULTS_DIR, device_label, machine_info, write_json  # noqa: E402

TOKENS = 16_384
WIDTH, HEADS = 128, 2


def _timed(step, repeats: int) -> float:
    """Median seconds of `step()` (which blocks until its result is ready)."""
    step()
    step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _block_step(block, x, mask, backend: str):
    """A callable running forward + backward of sum(block(x)²); its temp bytes on JAX."""
    import keras

    block(x[:1], mask=mask[:1])  # build
    if backend == "jax":
        import jax

        trainable = [v.value for v in block.trainable_variables]
        non_trainable = [v.value for v in block.non_trainable_variables]

        def loss(weights, x, mask):
            y, _ = block.stateless_call(weights, non_trainable, x, mask=mask, training=True)
            return keras.ops.sum(keras.ops.square(y))

        grad = jax.jit(jax.value_and_grad(loss))
        compiled = grad.lower(trainable, x, mask).compile()
        memory = compiled.memory_analysis()
        temp = getattr(memory, "temp_size_in_bytes", None) if memory is not None else None

        def step():
            value, grads = compiled(trainable, x, mask)
            jax.block_until_ready(grads)

        return step, temp
    import tensorflow as tf

    x, mask = tf.constant(x), tf.constant(mask)

    @tf.function
    def train(x, mask):
        with tf.GradientTape() as tape:
            y = block(x, mask=mask, training=True)
            value = tf.reduce_sum(tf.square(y))
        return tape.gradient(value, block.trainable_variables)

    def step():
        [tf.convert_to_tensor(g).numpy() for g in train(x, mask)]

    return step, None


def bench_blocks(lengths, repeats: int, backend: str) -> list[dict]:
    import keras

    import keras_recsys as kr

    rows = []
    for length in lengths:
        batch = max(1, TOKENS // length)
        rng = np.random.default_rng(0)
        x = rng.normal(size=(batch, length, WIDTH)).astype("float32")
        mask = np.ones((batch, length), bool)
        keras.utils.set_random_seed(0)
        hstu = kr.layers.HSTU(max_length=length, num_heads=HEADS, use_time_bias=False)
        softmax = kr.layers.TransformerBlock(HEADS, causal=True)
        results = {}
        for name, block in (("hstu", hstu), ("softmax", softmax)):
            step, temp = _block_step(block, x, mask, backend)
            results[name] = {"seconds": _timed(step, repeats), "temp_bytes": temp}
        row = {
            "length": length,
            "batch": batch,
            "hstu_ms": 1e3 * results["hstu"]["seconds"],
            "softmax_ms": 1e3 * results["softmax"]["seconds"],
            "time_ratio_hstu_over_softmax": results["hstu"]["seconds"]
            / results["softmax"]["seconds"],
            "hstu_temp_mib": _mib(results["hstu"]["temp_bytes"]),
            "softmax_temp_mib": _mib(results["softmax"]["temp_bytes"]),
        }
        print(
            f"block L={length:5d} B={batch:4d}: HSTU {row['hstu_ms']:8.2f} ms, softmax "
            f"{row['softmax_ms']:8.2f} ms, ratio {row['time_ratio_hstu_over_softmax']:.2f}; "
            f"temp MiB {row['hstu_temp_mib']} vs {row['softmax_temp_mib']}",
            flush=True,
        )
        rows.append(row)
    return rows


def _mib(value):
    return None if value is None else round(value / 2**20, 1)


def _weights(blocks, values):
    """The blocks' variables read as the (traced) `values` inside a jitted function."""
    import keras

    mapping = [
        (variable, value)
        for block, block_values in zip(blocks, values)
        for variable, value in zip(block.variables, block_values)
    ]
    return keras.StatelessScope(state_mapping=mapping)


def _m_falcon(blocks, micro_batch, weights, history, times, candidates, candidate_times):
    import keras_recsys as kr

    with _weights(blocks, weights):
        return kr.layers.m_falcon(
            blocks, history, candidates, None, times, candidate_times, micro_batch
        )


def _one_pass_each(blocks, chunk_size, weights, history, times, candidates, candidate_times):
    """Each candidate appended alone to the history; `chunk_size` such sequences a pass."""
    from keras import ops

    from keras_recsys.layers.sequence.hstu import next_timestamps

    outputs = []
    with _weights(blocks, weights):
        for start in range(0, candidates.shape[1], chunk_size):
            chunk = candidates[0, start : start + chunk_size][:, None, :]
            size = chunk.shape[0]
            own_times = candidate_times[0, start : start + size][:, None]
            x = ops.concatenate([ops.repeat(history, size, axis=0), chunk], axis=1)
            stamps = ops.concatenate([ops.repeat(times, size, axis=0), own_times], axis=1)
            # The history's queries use its own next times, as when encoded once.
            queries = ops.concatenate(
                [ops.repeat(next_timestamps(times), size, axis=0), own_times], axis=1
            )
            for block in blocks:
                x = block(x, timestamps=stamps, query_timestamps=queries)
            outputs.append(x[:, -1])
    return ops.concatenate(outputs, axis=0)[None]


def bench_m_falcon(histories, counts, repeats: int, micro_batch: int = 128) -> list[dict]:
    import functools

    import jax
    import keras

    import keras_recsys as kr

    dim, heads, num_blocks = 64, 2, 2
    rows = []
    for n in histories:
        keras.utils.set_random_seed(0)
        blocks = [
            kr.layers.HSTU(max_length=n + 1, num_heads=heads, name=f"block_{i}")
            for i in range(num_blocks)
        ]
        rng = np.random.default_rng(0)
        history = rng.normal(size=(1, n, dim)).astype("float32")
        times = np.cumsum(rng.integers(1, 10_000, size=(1, n)), axis=1).astype("int32")
        for block in blocks:
            block(history, timestamps=times)
        weights = [[v.value for v in b.variables] for b in blocks]
        fast = jax.jit(functools.partial(_m_falcon, blocks, micro_batch))
        slow = jax.jit(functools.partial(_one_pass_each, blocks, micro_batch))
        for m in counts:
            candidates = rng.normal(size=(1, m, dim)).astype("float32")
            candidate_times = np.full((1, m), times[0, -1] + 60, "int32")
            args = (weights, history, times, candidates, candidate_times)
            difference = float(np.abs(np.asarray(fast(*args)) - np.asarray(slow(*args))).max())
            fast_s = _timed(functools.partial(_ready, fast, args), repeats)
            slow_s = _timed(functools.partial(_ready, slow, args), repeats)
            row = {
                "history": n,
                "candidates": m,
                "micro_batch": micro_batch,
                "m_falcon_ms": 1e3 * fast_s,
                "one_pass_each_ms": 1e3 * slow_s,
                "speedup": slow_s / fast_s,
                "max_abs_difference": difference,
            }
            print(
                f"M-FALCON n={n:5d} m={m:5d}: {row['m_falcon_ms']:8.2f} ms vs one pass each "
                f"{row['one_pass_each_ms']:8.2f} ms: {row['speedup']:.1f}x "
                f"(max |difference| {difference:.1e})",
                flush=True,
            )
            rows.append(row)
    return rows


def _ready(function, args):
    import jax

    jax.block_until_ready(function(*args))


def bench_stochastic_length(lengths, alpha: float, users: int, batch_size: int) -> list[dict]:
    """Seconds per training epoch of HSTU on long histories, whole vs stochastic length."""
    import keras
    import pandas as pd

    import keras_recsys as kr

    rows = []
    for n in lengths:
        rng = np.random.default_rng(0)
        sizes = rng.integers(n // 4, n + 2, size=users)  # long histories, up to N + 1
        ids = np.zeros((users, n + 1), "int32")
        for row, size in enumerate(sizes):
            ids[row, n + 1 - size :] = rng.integers(2, 10_002, size=size)
        spec = kr.FeatureSpec([kr.Sequence("history", max_length=n)], 64)
        spec.adapt(pd.DataFrame({"history": [list(range(10_002))]}))
        seconds = {}
        for name, stochastic in (("whole", None), ("stochastic", alpha)):
            keras.utils.set_random_seed(0)
            model = kr.models.HSTU(
                spec, num_blocks=2, num_heads=1, dropout=0.0, stochastic_length=stochastic, seed=0
            )
            model.compile()
            data = model.training_batches(ids, batch_size=batch_size, seed=0)
            fit = {"batch_size": batch_size} if stochastic is None else {}
            args = data if isinstance(data, tuple) else (data,)
            model.fit(*args, epochs=2, verbose=0, **fit)  # compiles every width
            start = time.perf_counter()
            model.fit(*args, epochs=3, verbose=0, **fit)
            seconds[name] = (time.perf_counter() - start) / 3
        row = {
            "max_length": n,
            "alpha": alpha,
            "kept_length": int(math.floor(n ** (alpha / 2))),
            "users": users,
            "batch_size": batch_size,
            "whole_epoch_s": seconds["whole"],
            "stochastic_epoch_s": seconds["stochastic"],
            "speedup": seconds["whole"] / seconds["stochastic"],
        }
        print(
            f"stochastic length N={n:5d} α={alpha}: epoch {row['whole_epoch_s']:.2f} s whole vs "
            f"{row['stochastic_epoch_s']:.2f} s: {row['speedup']:.1f}x",
            flush=True,
        )
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 256, 1024, 4096])
    parser.add_argument("--histories", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--candidates", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--parts", default="block,m_falcon,stochastic")
    parser.add_argument("--stochastic-lengths", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--alpha", type=float, default=1.6)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, writes nothing")
    args = parser.parse_args()
    import keras

    backend = keras.backend.backend()
    parts = args.parts.split(",")
    if args.quick:
        args.lengths, args.histories, args.candidates, args.repeats = [32, 64], [16], [32], 2
        args.stochastic_lengths = [64]
    info = machine_info()
    record = {
        "benchmark": "hstu",
        "machine": info,
        "device": "gpu" if info.get("gpus") else "cpu",
        "backend": backend,
        "command": "python benchmarks/bench_hstu.py " + " ".join(sys.argv[1:]),
    }
    if "block" in parts:
        record["blocks"] = bench_blocks(args.lengths, args.repeats, backend)
    if "m_falcon" in parts:
        if backend != "jax":
            print("M-FALCON is measured on JAX (jitted); skipped on", backend)
        else:
            record["m_falcon"] = bench_m_falcon(args.histories, args.candidates, args.repeats)
    if "stochastic" in parts:
        users = 64 if args.quick else 512
        record["stochastic_length"] = bench_stochastic_length(
            args.stochastic_lengths, args.alpha, users, 16 if args.quick else 32
        )
    if args.quick:
        return
    label = device_label(record)
    path = os.path.join(RESULTS_DIR, f"hstu_{backend}_{label}.json")
    write_json(path, record)
    print("wrote", path)


if __name__ == "__main__":
    main()
