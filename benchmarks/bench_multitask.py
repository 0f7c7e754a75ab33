"""Training throughput: keras_recsys MMoE / PLE against the same models written by hand.

Real data: the census-income training split (income and marital tasks),
every input column of the census recipes (34 categorical fields, 7 numeric),
preprocessed once by the fitted spec, so both sides are fed the same int and
float tensors from the same pre-batched `tf.data` pipeline and the model step
is what is compared. The hand-written models below use only `keras.layers`
and `keras.ops` (no keras_recsys code); the toolkit's weights are copied into
them and their predictions checked equal before anything is timed. Both
sides compile the same way: Adam, binary cross-entropy per task, per-task AUC
and log-loss metrics, `jit_compile=False` (the toolkit's TensorFlow default).
A second hand-written model whose Adam sums the repeated rows of sparse
embedding gradients, as keras_recsys does, gives the same-math ratio.
Toolkit and hand-written steps alternate one by one in one process (or,
with `--mode fit`, whole `fit` calls interleave A B B A ...); the reported
ratio is the median of the per-repetition ratios of examples/s,
toolkit / hand-written (goal: >= 0.95).

    TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python -m benchmarks.bench_multitask
    .venv/bin/python -m benchmarks.bench_multitask --quick
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TASKS = ("income", "marital")
MODELS = {
    "mmoe": {"label": "MMoE", "num_experts": 8, "expert_units": (64,), "tower_units": (32,)},
    "ple": {
        "label": "PLE",
        "num_levels": 2,
        "num_task_experts": 2,
        "num_shared_experts": 2,
        "expert_units": (64,),
        "tower_units": (32,),
    },
}


def log(message: str) -> None:
    print(message, flush=True)


# ------------------------------------------------------------ hand-written
def _hand_inputs(categorical, numeric):
    import keras

    inputs = {name: keras.Input((), dtype="int32", name=name) for name in categorical}
    inputs.update({name: keras.Input((), dtype="float32", name=name) for name in numeric})
    return inputs


def _hand_x0(inputs, categorical, numeric, input_dims, embedding_dim):
    """[one embedding per categorical field, the numeric values], concatenated."""
    import keras
    from keras import ops

    parts = [
        keras.layers.Embedding(input_dims[name], embedding_dim, name=f"emb_{name}")(inputs[name])
        for name in categorical
    ]
    parts.append(ops.stack([inputs[name] for name in numeric], axis=-1))
    return ops.concatenate(parts, axis=-1)


def _hand_mlp(x, units, prefix):
    import keras

    for j, width in enumerate(units):
        x = keras.layers.Dense(width, activation="relu", name=f"{prefix}_{j}")(x)
    return x


def _hand_gate_mix(x_gate, experts, name):
    """softmax(W x) (no bias) over the experts, then Σ_i g_i · e_i."""
    import keras
    from keras import ops

    gate = keras.layers.Dense(len(experts), use_bias=False, name=name)(x_gate)
    gate = ops.softmax(gate, axis=-1)
    return ops.einsum("bn,bnd->bd", gate, ops.stack(experts, axis=1))


def _hand_outputs(hidden, tower_units):
    import keras

    outputs = {}
    for k, task in enumerate(TASKS):
        tower = _hand_mlp(hidden[k], tower_units, f"tower_{task}")
        outputs[task] = keras.layers.Dense(1, activation="sigmoid", name=f"head_{task}")(tower)
    return outputs


def hand_mmoe(categorical, numeric, input_dims, embedding_dim, num_experts, expert_units,
              tower_units):  # fmt: skip
    """MMoE by hand: n expert MLPs, one bias-free softmax gate and one tower per task."""
    import keras

    inputs = _hand_inputs(categorical, numeric)
    x0 = _hand_x0(inputs, categorical, numeric, input_dims, embedding_dim)
    experts = [_hand_mlp(x0, expert_units, f"expert_{i}") for i in range(num_experts)]
    mixed = [_hand_gate_mix(x0, experts, f"gate_{k}") for k in range(len(TASKS))]
    return keras.Model(inputs, _hand_outputs(mixed, tower_units), name="hand_mmoe")


def hand_ple(categorical, numeric, input_dims, embedding_dim, num_levels, num_task_experts,
             num_shared_experts, expert_units, tower_units):  # fmt: skip
    """PLE by hand: per level task and shared experts, per-task gates, a shared gate
    (all levels but the last) feeding the next level's shared input."""
    import keras

    inputs = _hand_inputs(categorical, numeric)
    x0 = _hand_x0(inputs, categorical, numeric, input_dims, embedding_dim)
    task_in, shared_in = [x0] * len(TASKS), x0
    for level in range(num_levels):
        prefix = f"l{level}"
        shared = [
            _hand_mlp(shared_in, expert_units, f"{prefix}_shared_{i}")
            for i in range(num_shared_experts)
        ]
        own = [
            [_hand_mlp(task_in[k], expert_units, f"{prefix}_t{k}_{i}") for i in range(num_task_experts)]
            for k in range(len(TASKS))
        ]  # fmt: skip
        outputs = [
            _hand_gate_mix(task_in[k], own[k] + shared, f"{prefix}_gate_t{k}")
            for k in range(len(TASKS))
        ]
        if level < num_levels - 1:
            everything = [e for experts in own for e in experts] + shared
            shared_in = _hand_gate_mix(shared_in, everything, f"{prefix}_gate_shared")
        task_in = outputs
    return keras.Model(inputs, _hand_outputs(task_in, tower_units), name="hand_ple")


# ------------------------------------------------------------ weight copy
def _layer_pairs(toolkit, kind):
    """(toolkit Keras layer, hand-written layer name) for every weighted layer."""
    pairs = [(table, f"emb_{name}") for name, table in toolkit.embedding.tables.items()]

    def mlp(mlp_layer, prefix):
        return [(d, f"{prefix}_{j}") for j, d in enumerate(mlp_layer.dense_layers)]

    if kind == "mmoe":
        for i, expert in enumerate(toolkit.backbone.moe.experts):
            pairs += mlp(expert, f"expert_{i}")
        pairs += [(g.dense, f"gate_{k}") for k, g in enumerate(toolkit.backbone.moe.gates)]
    else:
        for level, cgc in enumerate(toolkit.backbone.levels):
            prefix = f"l{level}"
            for i, expert in enumerate(cgc.shared_experts):
                pairs += mlp(expert, f"{prefix}_shared_{i}")
            for k, experts in enumerate(cgc.task_experts):
                for i, expert in enumerate(experts):
                    pairs += mlp(expert, f"{prefix}_t{k}_{i}")
            pairs += [(g.dense, f"{prefix}_gate_t{k}") for k, g in enumerate(cgc.task_gates)]
            if cgc.shared_gate is not None:
                pairs.append((cgc.shared_gate.dense, f"{prefix}_gate_shared"))
    for task in TASKS:
        pairs += mlp(toolkit.backbone.towers.towers[task], f"tower_{task}")
        pairs.append((toolkit.heads.heads[task], f"head_{task}"))
    return pairs


def check_equivalent(toolkit, hand, kind, features) -> float:
    """Copies the toolkit's weights into the hand-written model; max |Δ prediction|."""
    import numpy as np
    from keras import ops

    if toolkit.count_params() != hand.count_params():
        raise AssertionError(
            f"{kind}: toolkit has {toolkit.count_params():,} parameters, hand-written "
            f"{hand.count_params():,}"
        )
    for layer, name in _layer_pairs(toolkit, kind):
        hand.get_layer(name).set_weights(layer.get_weights())
    batch = {name: ops.convert_to_tensor(v[:1024]) for name, v in features.items()}
    # The toolkit's call returns logits; the hand-written models end in a sigmoid.
    want = toolkit.serving_outputs(toolkit(batch, training=False))
    got = hand(batch, training=False)
    error = max(
        float(np.max(np.abs(ops.convert_to_numpy(want[t]) - ops.convert_to_numpy(got[t]))))
        for t in TASKS
    )
    if error > 1e-4:
        raise AssertionError(f"{kind}: hand-written predictions differ by {error:.2e}")
    return error


# ------------------------------------------------------------------- data
def census_arrays(embedding_dim: int):
    """(spec, preprocessed features, labels) of the census training split."""
    import numpy as np

    import keras_recsys as kr

    train, _, _ = kr.datasets.census_income()
    spec = kr.datasets.census_feature_spec(embedding_dim=embedding_dim).adapt(train)
    parts: dict[str, list] = {}
    for batch in kr.data.from_pandas(train, spec, batch_size=65_536).as_numpy_iterator():
        for name, value in batch.items():
            parts.setdefault(name, []).append(value)
    features = {name: np.concatenate(chunks) for name, chunks in parts.items()}
    labels = {t: train[t].to_numpy(np.float32).reshape(-1, 1) for t in TASKS}
    return spec, features, labels


def dataset(features, labels, batch_size):
    """An endless pre-batched tf.data pipeline of (features, labels)."""
    import tensorflow as tf

    n = len(next(iter(labels.values()))) // batch_size * batch_size

    def cut(arrays):
        return {
            k: v[:n].reshape(n // batch_size, batch_size, *v.shape[1:]) for k, v in arrays.items()
        }

    return tf.data.Dataset.from_tensor_slices((cut(features), cut(labels))).repeat().prefetch(2)


# ---------------------------------------------------------------- compile
def compile_hand(model, summed_sparse: bool = False):
    import keras

    from benchmarks import handwritten

    model.compile(
        optimizer=handwritten.SummedSparseAdam() if summed_sparse else "adam",
        loss={t: keras.losses.BinaryCrossentropy() for t in TASKS},
        weighted_metrics={
            t: [
                keras.metrics.AUC(name="auc", num_thresholds=1000),
                keras.metrics.BinaryCrossentropy(name="logloss"),
            ]
            for t in TASKS
        },
        jit_compile=False,
    )


def toolkit_model(kind, spec):
    import keras_recsys as kr

    settings = {k: v for k, v in MODELS[kind].items() if k != "label"}
    cls = kr.models.MMoE if kind == "mmoe" else kr.models.PLE
    return cls(spec, list(TASKS), **settings)


def hand_model(kind, spec, embedding_dim):
    categorical = [f.name for f in spec.features if f.kind == "categorical"]
    numeric = [f.name for f in spec.dense]
    input_dims = {name: spec.input_dim(name) for name in categorical}
    settings = {k: v for k, v in MODELS[kind].items() if k != "label"}
    build = hand_mmoe if kind == "mmoe" else hand_ple
    return build(categorical, numeric, input_dims, embedding_dim, **settings)


# ----------------------------------------------------------------- timing
def _step_timer():
    import keras

    class StepTimer(keras.callbacks.Callback):
        """Time at the end of every step (not async-safe: each step is waited for)."""

        def __init__(self):
            super().__init__()
            self.ends = []

        def on_train_batch_end(self, batch, logs=None):
            self.ends.append(time.perf_counter())

    return StepTimer()


def timed_fit(model, data, steps: int, skip: int) -> list[float]:
    """Seconds of each of `steps` steps of one `fit` (the first `skip` untimed)."""
    timer = _step_timer()
    model.fit(data, steps_per_epoch=skip + steps, verbose=0, shuffle=False, callbacks=[timer])
    ends = timer.ends[max(skip, 1) - 1 :]
    return [b - a for a, b in zip(ends, ends[1:])]


def interleaved(runs: dict, repetitions: int, batch_size: int) -> dict[str, list[float]]:
    """{variant: examples/s of each repetition}, variants in A B B A ... order.

    Each repetition's speed is the batch size over its median step time (the
    median resists the bursts other processes steal on a shared machine);
    alternating the order cancels a linear drift out of the paired ratios.
    """
    results: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for rep in range(repetitions):
        for name in names if rep % 2 == 0 else names[::-1]:
            results[name].append(batch_size / statistics.median(runs[name]()))
        log(f"  rep {rep + 1}/{repetitions}: " + "  ".join(
            f"{name} {results[name][-1]:,.0f} ex/s" for name in names
        ))  # fmt: skip
    return results


def alternating(models: dict, batches: list, repetitions: int, steps: int, batch_size: int):
    """{variant: examples/s of each repetition}, the variants' steps alternating one by one.

    Every repetition runs `steps` `train_on_batch` steps of each variant,
    A B B A A B ... step by step, so both see the same load from other
    processes at the same moments; its speed is the batch size over the
    median step time.
    """
    names = list(models)
    results: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(repetitions):
        times: dict[str, list[float]] = {name: [] for name in names}
        for i in range(steps):
            x, y = batches[i % len(batches)]
            for name in names if (rep + i) % 2 == 0 else names[::-1]:
                start = time.perf_counter()
                models[name].train_on_batch(x, y)
                times[name].append(time.perf_counter() - start)
        for name in names:
            results[name].append(batch_size / statistics.median(times[name]))
        log(f"  rep {rep + 1}/{repetitions}: " + "  ".join(
            f"{name} {results[name][-1]:,.0f} ex/s" for name in names
        ))  # fmt: skip
    return results


# ------------------------------------------------------------------- run
def run(args) -> dict:
    import keras

    from benchmarks import common

    keras.utils.set_random_seed(0)
    info = common.machine_info()
    log(f"{info['nproc']} cores, {info['cpu_model']}, load {info['load_average']}")
    spec, features, labels = census_arrays(args.embedding_dim)
    data = dataset(features, labels, args.batch_size)
    log(f"census train: {len(labels['income']):,} rows, batch {args.batch_size}")
    record = {
        "backend": keras.backend.backend(),
        "machine": info,
        "settings": {
            "batch_size": args.batch_size,
            "steps": args.steps,
            "reps": args.reps,
            "skip": args.skip,
            "embedding_dim": args.embedding_dim,
            "mode": args.mode,
            "rows": int(len(labels["income"])),
        },
        "models": {},
        "command": "TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python -m benchmarks.bench_multitask "
        + " ".join(sys.argv[1:]),
    }
    for kind in args.models.split(","):
        toolkit = toolkit_model(kind, spec)
        toolkit.compile(optimizer="adam")
        models = {"keras_recsys": toolkit}
        # hand-written: plain Keras Adam; hand-written+sum: an Adam that sums the
        # repeated rows of sparse embedding gradients, as keras_recsys does on
        # TensorFlow (benchmarks/README.md), i.e. the same training math.
        for name, summed in (("hand-written", False), ("hand-written+sum", True)):
            hand = hand_model(kind, spec, args.embedding_dim)
            compile_hand(hand, summed_sparse=summed)
            error = check_equivalent(toolkit, hand, kind, features)
            models[name] = hand
        log(f"{MODELS[kind]['label']}: {toolkit.count_params():,} parameters each, "
            f"max |Δ prediction| {error:.1e}")  # fmt: skip
        for model in models.values():  # trace and warm up, untimed
            model.fit(data, steps_per_epoch=args.warmup, verbose=0, shuffle=False)
        if args.mode == "alternate":
            batches = list(data.take(16))
            for model in models.values():  # trace train_on_batch's function, untimed
                for x, y in batches[:3]:
                    model.train_on_batch(x, y)
            results = alternating(models, batches, args.reps, args.steps, args.batch_size)
        else:
            runs = {
                name: lambda m=model: timed_fit(m, data, args.steps, args.skip)
                for name, model in models.items()
            }
            results = interleaved(runs, args.reps, args.batch_size)
        variants = {
            name: {"median": statistics.median(v), "runs": [round(x, 1) for x in v]}
            for name, v in results.items()
        }
        ratios = {}
        for baseline in ("hand-written", "hand-written+sum"):
            paired = [a / b for a, b in zip(results["keras_recsys"], results[baseline])]
            ratios[baseline] = {
                "ratio": statistics.median(paired),
                "paired": [round(r, 3) for r in paired],
            }
        record["models"][kind] = {
            "label": MODELS[kind]["label"],
            "settings": {k: v for k, v in MODELS[kind].items() if k != "label"},
            "parameters": int(toolkit.count_params()),
            "max_prediction_difference": error,
            "variants": variants,
            "ratio": ratios["hand-written"],
            "ratio_same_math": ratios["hand-written+sum"],
        }
        for baseline, ratio in ratios.items():
            log(f"{MODELS[kind]['label']}: keras_recsys / {baseline} = {ratio['ratio']:.3f} "
                f"(paired {ratio['paired']})")  # fmt: skip
    record["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return record


def markdown(record: dict) -> str:
    from benchmarks import common

    s = record["settings"]
    if s["mode"] == "alternate":
        timing = (
            f"{s['reps']} repetitions of {s['steps']} `train_on_batch` steps per side, the two "
            "sides' steps alternating one by one (A B B A ...), so both meet the same load."
        )
    else:
        timing = (
            f"{s['reps']} interleaved repetitions of one `fit` of {s['steps']} timed steps per "
            f"side (the first {s['skip']} steps of every fit untimed)."
        )
    lines = [
        f"# Multi-task training throughput: {record['backend']} on CPU",
        "",
        f"Census-income training split ({s['rows']:,} rows; tasks income and marital), "
        f"34 categorical fields (dim {s['embedding_dim']}) and 7 numeric, preprocessed once; "
        f"batch {s['batch_size']}, Adam, binary cross-entropy and AUC / log-loss metrics per "
        f"task, jit_compile=False on both sides. {timing} Examples/s are the batch size over "
        "a repetition's median step time. The hand-written models are plain `keras.layers` / `keras.ops` code in "
        "`benchmarks/bench_multitask.py`, given the toolkit's weights and checked to predict "
        "the same before timing.",
        "",
        *common.machine_markdown(record["machine"]),
        f"- load average at end: {record['machine'].get('load_average_end')}",
        "",
        "Rerun:",
        "",
        "```",
        record["command"],
        "```",
        "",
        "| model | settings | baseline | keras_recsys ex/s (median) | baseline ex/s (median) "
        "| ratio (median of paired) | paired ratios |",
        "| --- | --- | --- | ---: | ---: | ---: | --- |",
    ]
    for model in record["models"].values():
        settings = ", ".join(f"{k}={v}" for k, v in model["settings"].items())
        ours = model["variants"]["keras_recsys"]
        for baseline, key in (("hand-written", "ratio"), ("hand-written+sum", "ratio_same_math")):
            if key not in model:
                continue
            theirs = model["variants"][baseline]
            lines.append(
                f"| {model['label']} | {settings} | {baseline} | {ours['median']:,.0f} "
                f"| {theirs['median']:,.0f} | {model[key]['ratio']:.3f} | {model[key]['paired']} |"
            )
    lines += [
        "",
        "`hand-written` uses Keras' Adam as it is; `hand-written+sum` an Adam that sums the "
        "repeated rows of sparse embedding gradients first, the update keras_recsys applies "
        "on TensorFlow (and JAX and PyTorch apply anyway), so it is the same-math baseline. "
        "Read the median ratio: single repetitions swing both ways on a shared machine (the "
        "paired ratios).",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="mmoe,ple", help="comma-separated: mmoe,ple")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=40, help="timed steps per repetition")
    parser.add_argument("--reps", type=int, default=6, help="repetitions per variant")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before timing")
    parser.add_argument("--skip", type=int, default=2, help="untimed steps of every timed fit")
    parser.add_argument("--embedding-dim", type=int, default=8)
    parser.add_argument(
        "--mode",
        choices=("alternate", "fit"),
        default="alternate",
        help="alternate: train_on_batch steps of the two variants alternate one by one "
        "(robust on a shared machine); fit: interleaved fit() calls of --steps steps",
    )
    parser.add_argument("--quick", action="store_true", help="few steps, for a smoke run")
    parser.add_argument("--out", default=None, help="results directory")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.reps, args.warmup = 5, 2, 2
    from benchmarks import common

    record = run(args)
    out_dir = args.out or common.RESULTS_DIR
    stem = os.path.join(out_dir, f"multitask_{record['backend']}_cpu")
    common.write_json(stem + ".json", record)
    with open(stem + ".md", "w") as f:
        f.write(markdown(record))
    log(f"wrote {stem}.md and {stem}.json")
    return 0


if __name__ == "__main__":
    start = time.time()
    code = main()
    log(f"{time.time() - start:.0f} s")
    sys.exit(code)
