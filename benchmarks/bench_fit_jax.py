"""DeepFM training through `fit` on JAX, against plain JAX, in one process.

The question (issue "Speed"): how close does a user calling the toolkit's
`model.fit` get to what the same accelerator does with the same math written
in plain JAX? Every row trains the same DeepFM (Criteo-shaped synthetic
data: 26 categorical fields x 10,000 ids x 16, 13 numeric, MLP 256-128, Adam,
binary cross-entropy) for whole epochs over the same rows:

- plain JAX (`plain_jax.py`): data on the device, one jitted `fori_loop` per
  epoch; fp32 and bf16 matmuls. The anchor: every other row is printed as a
  ratio to it.
- hand-written Keras 3 (`handwritten.py`), `fit` on NumPy arrays;
- the toolkit's `kr.models.DeepFM`, `fit` on NumPy arrays (what users do
  today), with and without its default metrics;
- the toolkit fed by `kr.data.DeviceDataset` (arrays on the device, batches
  gathered there), with `steps_per_execution` 1 and 32, with the fused
  embedding table, and under `mixed_bfloat16`.

Before timing, the toolkit model's weights go into the hand-written model and
the plain-JAX parameters and the three predictions are compared. Timing: in
each round every variant trains `--epochs` epochs (order reversed on odd
rounds); an epoch's time runs from `on_epoch_begin` to `on_epoch_end` after
the loss is read (which waits for the device); the first epoch of each call
(compilation, start-up) is not counted. Examples/s = rows / median epoch
time; a ratio is the median over rounds of the per-round ratio.

    KERAS_BACKEND=jax python benchmarks/bench_fit_jax.py --data .bench/criteo_131072.npz

The data file comes from `--write-data` on a machine with TensorFlow (the
spec's preprocessing); on the GPU machine it is tiled to `--rows`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

VARIANTS = (
    "plain_jax_fp32",
    "plain_jax_bf16",
    "hand_keras_numpy",
    "toolkit_numpy",
    "toolkit_numpy_no_metrics",
    "toolkit_device_spe1",
    "toolkit_device_loop",
    "toolkit_device_scan",
    "toolkit_device_scan_tables",
    "toolkit_device_scan_tables_metrics",
    "toolkit_device_scan_tables_bf16",
    "toolkit_step_only_tables",
    "toolkit_step_only_tables_bf16",
    "plain_jax_fp32_sgd",
    "toolkit_step_only_tables_sgd",
)

LABELS = {
    "plain_jax_fp32": "plain JAX: data on the device, one jitted loop per epoch, fp32",
    "plain_jax_bf16": "plain JAX: same, bf16 matmuls",
    "hand_keras_numpy": "hand-written Keras, `fit` on NumPy arrays",
    "toolkit_numpy": "toolkit DeepFM, `fit` on NumPy arrays, default compile (AUC, log loss)",
    "toolkit_numpy_no_metrics": "toolkit, `fit` on NumPy arrays, no metrics",
    "toolkit_device_spe1": "toolkit, `DeviceDataset`, steps_per_execution=1, no metrics",
    "toolkit_device_loop": "+ steps_per_execution=S as Keras runs it (a Python loop of jitted steps)",
    "toolkit_device_scan": "+ the S steps fused in one `lax.scan` (toolkit default on JAX)",
    "toolkit_device_scan_tables": "+ fused embedding tables (`FeatureSpec(fuse_tables=True)`)",
    "toolkit_device_scan_tables_metrics": "same, default metrics (AUC, log loss)",
    "toolkit_device_scan_tables_bf16": "same as fused tables, no metrics, `mixed_bfloat16`",
    "toolkit_step_only_tables": "diagnostic: the fused-tables model's compiled S-step function "
    "called on one fixed block of batches (no input path, no `fit` loop)",
    "toolkit_step_only_tables_bf16": "diagnostic: same, `mixed_bfloat16`",
    "plain_jax_fp32_sgd": "diagnostic: plain JAX fp32 with SGD instead of Adam",
    "toolkit_step_only_tables_sgd": "diagnostic: the toolkit's compiled steps alone, SGD instead of Adam",
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.path.join(ROOT, ".bench", "criteo_131072.npz"))
    parser.add_argument(
        "--write-data", action="store_true", help="write --data (needs TensorFlow) and exit"
    )
    parser.add_argument("--rows", type=int, default=2_097_152, help="rows per epoch (data tiled)")
    parser.add_argument("--batch-size", type=int, default=32_768)
    parser.add_argument(
        "--epochs", type=int, default=3, help="epochs per call; the first is not timed"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps-per-execution", type=int, default=32, help="S above")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--out", default=None, help="results basename (json + md)")
    return parser.parse_args(argv)


def log(message: str) -> None:
    print(f"[bench_fit_jax] {message}", flush=True)


def load_rows(args):
    import numpy as np

    from benchmarks import common

    data = common.load_synthetic(args.data)
    reps = -(-args.rows // data.num_rows)
    features = {k: np.tile(v, reps)[: args.rows] for k, v in data.features.items()}
    labels = np.tile(data.labels, (reps, 1))[: args.rows]
    return data, features, labels


def toolkit_model(spec, fused: bool = False, policy: str | None = None):
    import keras

    import keras_recsys as kr
    from benchmarks import common

    previous = keras.config.dtype_policy()
    if policy:
        keras.config.set_dtype_policy(policy)
    if fused:
        spec = kr.FeatureSpec.from_config({**spec.get_config(), "fuse_tables": True})
    try:
        return kr.models.DeepFM(spec, tasks=[kr.Task("click")], hidden_units=common.HIDDEN_UNITS)
    finally:
        keras.config.set_dtype_policy(previous)


def epoch_timer():
    """A callback recording seconds per epoch; the end waits for the device by reading the loss."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            float(logs["loss"])
            self.seconds.append(time.perf_counter() - self._start)

    return EpochTimer()


def keras_runner(model, fit_kwargs, epochs):
    def run():
        timer = epoch_timer()
        model.fit(**fit_kwargs, epochs=epochs, verbose=0, callbacks=[timer])
        return timer.seconds[1:]

    return run


def plain_runner(params, data, batch_size, rows, epochs, bf16, optimizer="adam"):
    import jax

    from benchmarks import plain_jax

    epoch = plain_jax.make_epoch(batch_size, rows // batch_size, bf16, optimizer)
    state = {"params": jax.tree_util.tree_map(lambda a: a.copy(), params)}
    state["opt"] = plain_jax.adam_init(state["params"])
    counter = [0]

    def run():
        seconds = []
        for _ in range(epochs):
            counter[0] += 1
            start = time.perf_counter()
            p, o, loss = epoch(state["params"], state["opt"], data, jax.random.key(counter[0]))
            float(loss)
            seconds.append(time.perf_counter() - start)
            state["params"], state["opt"] = p, o
        state["last_loss"] = float(loss)
        return seconds[1:]

    return run, state


def step_only_runner(model, dataset, rows, batch, epochs):
    """Seconds per `rows` examples of the model's train function alone.

    The function `fit` calls (S steps per call) runs on the same S batches,
    already on the device, `rows / (S * batch)` times per "epoch": what the
    model costs when the input path and `fit`'s loop cost nothing.
    """
    import jax

    model.fit(dataset, epochs=1, verbose=0)  # builds, compiles
    model.make_train_function()
    block = [dataset[i] for i in range(model.steps_per_execution)]
    calls = rows // (batch * model.steps_per_execution)
    state = model._get_jax_state(
        trainable_variables=True,
        non_trainable_variables=True,
        optimizer_variables=True,
        metrics_variables=True,
    )

    def run():
        nonlocal state
        seconds = []
        for _ in range(epochs):
            start = time.perf_counter()
            for _ in range(calls):
                logs, state = model.train_function(state, iter(block))
            jax.block_until_ready(logs)
            seconds.append(time.perf_counter() - start)
        return seconds[1:]

    return run


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.write_data:
        from benchmarks import common

        data = common.synthetic_data(131_072 // args.batch_size or 1, args.batch_size)
        common.save_synthetic(data, args.data)
        log(f"wrote {args.data}: {data.num_rows} rows")
        return 0

    import jax
    import keras
    import numpy as np

    import keras_recsys as kr
    from benchmarks import common, handwritten, plain_jax

    info = common.machine_info()
    data, features, labels = load_rows(args)
    rows, batch = args.rows, args.batch_size
    log(f"{rows:,} rows, batch {batch:,}, devices {jax.devices()}")

    # ---------------------------------------------- the same model everywhere
    keras.utils.set_random_seed(0)
    toolkit = toolkit_model(data.spec)
    hand = handwritten.deepfm(
        common.CATEGORICAL,
        common.NUMERIC,
        data.input_dim,
        common.EMBEDDING_DIM,
        common.HIDDEN_UNITS,
    )
    probe = {k: v[:1024] for k, v in features.items()}
    toolkit_out = np.asarray(toolkit.predict(probe, verbose=0)["click"]).reshape(-1)
    handwritten.copy_toolkit_weights(toolkit, hand, "deepfm")
    hand_out = np.asarray(hand.predict(probe, verbose=0)["click"]).reshape(-1)
    params = plain_jax.params_from_handwritten(hand, common.CATEGORICAL, common.NUMERIC)
    device = plain_jax.device_data(
        features, labels, common.CATEGORICAL, common.NUMERIC, data.input_dim
    )
    probe_ids, probe_dense = device[0][:1024], device[1][:1024]
    plain_out = np.asarray(
        jax.nn.sigmoid(plain_jax.logits(params, probe_ids, probe_dense))
    ).reshape(-1)
    equivalence = {
        "toolkit_parameters": int(toolkit.count_params()),
        "plain_jax_parameters": plain_jax.count_parameters(params),
        "hand_vs_toolkit": float(np.max(np.abs(hand_out - toolkit_out))),
        "plain_jax_vs_toolkit": float(np.max(np.abs(plain_out - toolkit_out))),
    }
    log(f"equivalence: {equivalence}")

    # ------------------------------------------------------------- variants
    y = {"click": labels}
    numpy_fit = {"x": features, "y": y, "batch_size": batch, "shuffle": True}
    runners = {}
    for name in args.variants:
        if name.startswith("plain_jax"):
            runners[name], _ = plain_runner(
                params,
                device,
                batch,
                rows,
                args.epochs,
                "bf16" in name,
                "sgd" if "sgd" in name else "adam",
            )
            continue
        if name == "hand_keras_numpy":
            model = handwritten.deepfm(
                common.CATEGORICAL,
                common.NUMERIC,
                data.input_dim,
                common.EMBEDDING_DIM,
                common.HIDDEN_UNITS,
            )
            model.compile(optimizer="adam", loss={"click": keras.losses.BinaryCrossentropy()})
            runners[name] = keras_runner(model, numpy_fit, args.epochs)
            continue
        fused = "tables" in name
        model = toolkit_model(
            data.spec, fused=fused, policy="mixed_bfloat16" if "bf16" in name else None
        )
        compile_kwargs = (
            {} if name.endswith("metrics") or name == "toolkit_numpy" else {"metrics": []}
        )
        spe = 1 if "numpy" in name or name.endswith("spe1") else args.steps_per_execution
        optimizer = "sgd" if name.endswith("sgd") else "adam"
        model.compile(optimizer=optimizer, steps_per_execution=spe, **compile_kwargs)
        model.fuse_steps = "loop" not in name
        if "numpy" in name:
            runners[name] = keras_runner(model, numpy_fit, args.epochs)
        elif "step_only" in name:
            dataset = kr.data.DeviceDataset(features, y, batch_size=batch, seed=0)
            runners[name] = step_only_runner(model, dataset, rows, batch, args.epochs)
        else:
            dataset = kr.data.DeviceDataset(features, y, batch_size=batch, seed=0)
            runners[name] = keras_runner(model, {"x": dataset}, args.epochs)

    seconds = {name: [] for name in runners}
    order = list(runners)
    for r in range(args.rounds):
        for name in order if r % 2 == 0 else order[::-1]:
            epoch_seconds = runners[name]()
            seconds[name].append(statistics.median(epoch_seconds))
            log(f"round {r} {name}: {rows / seconds[name][-1] / 1e6:.2f}M examples/s")

    anchor = "plain_jax_bf16" if "plain_jax_bf16" in seconds else order[0]
    results = {}
    for name, per_round in seconds.items():
        ratios = [a / b for a, b in zip(seconds[anchor], per_round)]
        results[name] = {
            "label": LABELS[name],
            "examples_per_second": rows / statistics.median(per_round),
            "rounds_examples_per_second": [rows / s for s in per_round],
            f"ratio_to_{anchor}": statistics.median(ratios),
        }
    record = {
        "benchmark": "bench_fit_jax",
        "settings": vars(args),
        "machine": info,
        "equivalence": equivalence,
        "anchor": anchor,
        "results": results,
        "command": "KERAS_BACKEND=jax python benchmarks/bench_fit_jax.py " + " ".join(sys.argv[1:]),
    }
    print(json.dumps(record["results"], indent=1))
    lines = [f"| variant | examples/s | ratio to {anchor} |", "|---|---:|---:|"]
    for result in results.values():
        lines.append(
            f"| {result['label']} | {result['examples_per_second'] / 1e6:.2f}M | "
            f"{result[f'ratio_to_{anchor}']:.3f} |"
        )
    print("\n".join(lines))
    if args.out:
        common.write_json(args.out + ".json", record)
        with open(args.out + ".md", "w") as f:
            f.write("# DeepFM through `fit` on JAX vs plain JAX\n\n")
            f.write("\n".join(common.machine_markdown(info)) + "\n\n")
            f.write(f"Equivalence before timing: {json.dumps(equivalence)}\n\n")
            f.write("\n".join(lines) + "\n\n```\n" + record["command"] + "\n```\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
