"""Serving load: the keras_recsys SavedModel against a hand-written Keras export.

Both sides serve the same function on raw features: a DeepFM on the
Criteo-shaped synthetic data of `common.py` (26 hex-string categoricals, 13
counts; MLP 256-128, embedding dim 16), with its preprocessing inside the
SavedModel.

* **toolkit**: `kr.models.DeepFM(spec, ...).export(base)`, the export TF
  Serving loads (`serving_default`: one (B,) tensor per raw feature).
* **hand-written**: what one writes with Keras alone: `keras.layers.StringLookup`
  per categorical field (padding 0, OOV 1, the fitted vocabulary from 2, the
  toolkit's ids), sign·log1p, imputation and standardization with the same
  fitted statistics for the numerics, `handwritten.deepfm` with the toolkit
  model's weights copied in, exported with `keras.export.ExportArchive`.

The two exports are then loaded in a child process that imports TensorFlow
and numpy only (keras_recsys is never imported there; the result records
which Keras packages were loaded), checked to give the same predictions on
1,024 raw rows, and timed: for each batch size (1, 64, 1024), `--threads`
client threads each send `--requests` requests back to back (a request: the
signature call on ready tensors, outputs read back to numpy), the two
exports alternating in `--rounds` rounds (A B, B A, ...). A latency is the
wall time of one request; throughput is the examples of a round divided by
its wall time. Ratios are toolkit / hand-written: above 1 means the toolkit
is slower (latency) or faster (throughput).

    TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python benchmarks/bench_serving.py
    .venv/bin/python benchmarks/bench_serving.py --quick   # smoke test, writes nothing

Writes `results/serving_tensorflow_cpu.{json,md}`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

SIDES = ("toolkit", "hand-written")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000, help="rows the spec is fitted on")
    parser.add_argument("--batches", default="1,64,1024", help="request batch sizes")
    parser.add_argument(
        "--requests",
        default="100,40,6",
        help="requests per thread per round, one number per batch size",
    )
    parser.add_argument("--threads", type=int, default=4, help="concurrent client threads")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds per batch size")
    parser.add_argument("--warmup", type=int, default=5, help="untimed requests per side first")
    parser.add_argument("--quick", action="store_true", help="tiny run; writes nothing")
    args = parser.parse_args(argv)
    args.batches = [int(b) for b in args.batches.split(",")]
    args.requests = [int(r) for r in args.requests.split(",")]
    if len(args.requests) != len(args.batches):
        parser.error("--requests needs one number per batch size")
    if args.quick:
        args.rows, args.requests, args.rounds = 10_000, [4] * len(args.batches), 2
    return args


def log(message: str) -> None:
    print(message, flush=True)


# ------------------------------------------------------------------ exports
def hand_written_export(toolkit, spec, path: str) -> str:
    """The hand-written serving model (raw features in) as a SavedModel at `path`."""
    import keras
    import tensorflow as tf
    from keras import ops

    from benchmarks import common, handwritten

    input_dim = spec.input_dim(common.CATEGORICAL[0])
    model = handwritten.deepfm(
        common.CATEGORICAL, common.NUMERIC, input_dim, common.EMBEDDING_DIM, common.HIDDEN_UNITS
    )
    handwritten.copy_toolkit_weights(toolkit, model, "deepfm")

    raw = {name: keras.Input((), dtype="string", name=name) for name in common.CATEGORICAL}
    raw.update({name: keras.Input((), dtype="float32", name=name) for name in common.NUMERIC})
    features = {}
    for name in common.CATEGORICAL:
        vocabulary = [str(v) for v in spec.vocabulary_owner(name).vocabulary]
        # mask "" -> 0 and OOV -> 1 put the vocabulary at 2.., as the toolkit's ids.
        lookup = keras.layers.StringLookup(
            vocabulary=vocabulary, mask_token="", num_oov_indices=1, name=f"lookup_{name}"
        )
        features[name] = ops.cast(lookup(raw[name]), "int32")
    for name in common.NUMERIC:
        feature = spec[name]
        x = raw[name]
        finite = ops.isfinite(x)
        x = ops.sign(x) * ops.log1p(ops.abs(ops.where(finite, x, 0.0)))
        x = ops.where(finite, x, feature.fill_value)
        features[name] = (x - feature.mean) / feature.std
    served = keras.Model(raw, model(features), name="handwritten_serving")

    archive = keras.export.ExportArchive()
    archive.track(served)
    signature = {name: tf.TensorSpec([None], tf.string, name) for name in common.CATEGORICAL}
    signature.update({name: tf.TensorSpec([None], tf.float32, name) for name in common.NUMERIC})

    def serve(inputs):
        return {"click": tf.squeeze(served(inputs)["click"], axis=-1)}

    archive.add_endpoint("serving_default", serve, input_signature=[signature])
    archive.write_out(path, verbose=False)
    return path


def build_exports(args, workdir: str) -> dict:
    """Fits the spec, builds both models, exports them, writes the request rows."""
    import keras

    import keras_recsys as kr
    from benchmarks import common

    raw = common.raw_frame(args.rows, seed=0)
    spec = common.feature_spec().adapt(raw)
    keras.utils.set_random_seed(0)
    toolkit = kr.models.DeepFM(
        spec, tasks=[kr.Task(common.LABEL)], hidden_units=common.HIDDEN_UNITS
    )
    started = time.perf_counter()
    toolkit_dir = toolkit.export(os.path.join(workdir, "toolkit"))
    toolkit_seconds = time.perf_counter() - started
    started = time.perf_counter()
    hand_dir = hand_written_export(toolkit, spec, os.path.join(workdir, "hand", "1"))
    hand_seconds = time.perf_counter() - started
    # Requests: random training rows (every category value known), as a client sends them.
    rows = raw.sample(n=4096, random_state=1, replace=False).reset_index(drop=True)
    requests = os.path.join(workdir, "requests.npz")
    arrays = {name: rows[name].to_numpy().astype(bytes) for name in common.CATEGORICAL}
    arrays.update({name: rows[name].to_numpy(np.float32) for name in common.NUMERIC})
    np.savez(requests, **arrays)
    return {
        "toolkit": toolkit_dir,
        "hand-written": hand_dir,
        "requests": requests,
        "export_seconds": {"toolkit": toolkit_seconds, "hand-written": hand_seconds},
        "parameters": int(toolkit.count_params()),
    }


# ---------------------------------------------------- TensorFlow-only child
def _serve_child(argv) -> int:
    """`--serve-child PLAN.json OUT.json`: loads and times both exports, TensorFlow only."""
    import tensorflow as tf

    packages = ("keras", "keras_rs", "keras_recsys")
    loaded_by_tensorflow = [p for p in packages if p in sys.modules]
    plan_file, out_file = argv
    with open(plan_file) as f:
        plan = json.load(f)
    functions = {
        side: tf.saved_model.load(plan[side]).signatures["serving_default"] for side in SIDES
    }
    with np.load(plan["request_file"]) as stored:
        columns = {name: stored[name] for name in stored.files}
    pool = len(next(iter(columns.values())))

    def request(batch: int, index: int) -> dict:
        start = (index * batch) % (pool - batch + 1)
        return {name: tf.constant(v[start : start + batch]) for name, v in columns.items()}

    # The two exports compute the same function: compare them on 1,024 rows.
    check = request(1024, 0)
    outputs = {side: functions[side](**check)["click"].numpy() for side in SIDES}
    difference = float(np.max(np.abs(outputs["toolkit"] - outputs["hand-written"])))

    result = {"max_abs_difference": difference, "batches": {}}
    for batch, per_thread in zip(plan["batches"], plan["requests"]):
        # Distinct requests, built before timing (a client's own cost).
        tensors = [request(batch, i) for i in range(16)]
        for side in SIDES:
            for i in range(plan["warmup"]):
                functions[side](**tensors[i % len(tensors)])["click"].numpy()
        entry = {side: {"latency_s": [], "rounds": []} for side in SIDES}
        for index in range(plan["rounds"]):
            for side in SIDES if index % 2 == 0 else SIDES[::-1]:
                entry[side]["rounds"].append(
                    _load_round(functions[side], tensors, plan["threads"], per_thread, batch)
                )
                entry[side]["latency_s"].extend(entry[side]["rounds"][-1].pop("latency_s"))
        result["batches"][str(batch)] = entry
    result["keras_packages_after_import_tensorflow"] = loaded_by_tensorflow
    result["keras_packages_at_end"] = [p for p in packages if p in sys.modules]
    result["tensorflow"] = tf.__version__
    with open(out_file, "w") as f:
        json.dump(result, f)
    return 0


def _load_round(function, tensors: list, threads: int, per_thread: int, batch: int) -> dict:
    """`threads` threads each send `per_thread` requests back to back."""
    latencies: list[list[float]] = [[] for _ in range(threads)]
    barrier = threading.Barrier(threads + 1)

    def client(slot: int) -> None:
        barrier.wait()
        for i in range(per_thread):
            inputs = tensors[(slot * per_thread + i) % len(tensors)]
            started = time.perf_counter()
            function(**inputs)["click"].numpy()
            latencies[slot].append(time.perf_counter() - started)

    workers = [threading.Thread(target=client, args=(slot,)) for slot in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    wall, cpu = time.perf_counter(), time.process_time()
    for worker in workers:
        worker.join()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    examples = threads * per_thread * batch
    return {
        "latency_s": [s for slot in latencies for s in slot],
        "wall_s": wall,
        "cpu_s": cpu,
        "examples_per_s": examples / wall,
        "examples_per_cpu_s": examples / cpu if cpu > 0 else float("nan"),
    }


def _run_serving_child(plan: dict, workdir: str) -> dict:
    plan_file, out_file = os.path.join(workdir, "plan.json"), os.path.join(workdir, "out.json")
    with open(plan_file, "w") as f:
        json.dump(plan, f)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("PYTHONPATH", None)
    env.pop("KERAS_BACKEND", None)
    done = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--serve-child", plan_file, out_file],
        env=env,
        cwd=tempfile.gettempdir(),  # nothing of this repository importable by accident
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError("the serving child failed:\n" + done.stderr[-4000:])
    with open(out_file) as f:
        return json.load(f)


# ------------------------------------------------------------------ summary
def _quantile(values, q: float) -> float:
    return float(np.quantile(np.asarray(values), q))


def summarize(measured: dict) -> dict:
    batches = {}
    for batch, entry in measured["batches"].items():
        sides = {}
        for side in SIDES:
            latency_ms = [1000 * s for s in entry[side]["latency_s"]]
            rounds = entry[side]["rounds"]
            sides[side] = {
                "p50_ms": _quantile(latency_ms, 0.5),
                "p99_ms": _quantile(latency_ms, 0.99),
                "examples_per_s": statistics.median(r["examples_per_s"] for r in rounds),
                "examples_per_cpu_s": statistics.median(r["examples_per_cpu_s"] for r in rounds),
                "requests": len(latency_ms),
                "rounds": rounds,
            }
        toolkit, hand = entry["toolkit"]["rounds"], entry["hand-written"]["rounds"]
        batches[batch] = {
            "sides": sides,
            "ratios": {
                "p50_latency": sides["toolkit"]["p50_ms"] / sides["hand-written"]["p50_ms"],
                "p99_latency": sides["toolkit"]["p99_ms"] / sides["hand-written"]["p99_ms"],
                # Median over rounds of the per-round ratio (both sides of a round
                # ran back to back, so a drift of the machine's load cancels).
                "throughput": statistics.median(
                    a["examples_per_s"] / b["examples_per_s"] for a, b in zip(toolkit, hand)
                ),
                "throughput_cpu": statistics.median(
                    a["examples_per_cpu_s"] / b["examples_per_cpu_s"] for a, b in zip(toolkit, hand)
                ),
            },
        }
    return batches


def ratio_lines(batches: dict, threads: int) -> list[str]:
    lines = []
    for batch, entry in batches.items():
        r = entry["ratios"]
        lines.append(
            f"batch {batch}, {threads} threads, toolkit/hand-written: latency p50 "
            f"{r['p50_latency']:.2f}, p99 {r['p99_latency']:.2f}; throughput "
            f"{r['throughput']:.2f} (per CPU-second {r['throughput_cpu']:.2f})"
        )
    return lines


def markdown(record: dict) -> str:
    from benchmarks import common

    args = record["arguments"]
    lines = [
        "# Serving load: TensorFlow SavedModel on cpu, keras_recsys vs hand-written Keras",
        "",
        f"DeepFM on Criteo-shaped synthetic data (26 string categoricals of 10,000 values, "
        f"13 counts; MLP 256-128, dim 16; {record['parameters']:,} parameters), raw features "
        "in, preprocessing inside the SavedModel. Toolkit: `model.export`. Hand-written: "
        "`StringLookup` per field + the same numeric transform + `handwritten.deepfm` with "
        "the toolkit's weights, `keras.export.ExportArchive`. Both loaded in one process that "
        "imports TensorFlow and numpy only (Keras packages loaded there: "
        f"{record['serving']['keras_packages_at_end'] or 'none'}; keras_recsys never); "
        f"their predictions on 1,024 raw rows differ by at most "
        f"{record['serving']['max_abs_difference']:.1e}.",
        "",
        f"Method: per batch size, {args['rounds']} rounds alternating the exports (A B, B A, "
        f"...); in a round {args['threads']} client threads each send their requests back to "
        f"back (requests per thread per round: {dict(zip(args['batches'], args['requests']))}), "
        f"after {args['warmup']} warm-up requests per export. Latency: wall time of one "
        "request (signature call on ready tensors + outputs to numpy), over all rounds. "
        "Throughput: examples of a round / its wall time, median over rounds; a throughput "
        "ratio is the median of the per-round ratios. Ratios are toolkit / hand-written.",
        "",
        *common.machine_markdown(record["machine"]),
        f"- load average at end: {record['load_average_end']}",
        "",
        "Rerun:",
        "",
        "```",
        record["command"],
        "```",
        "",
        "| batch | side | p50 ms | p99 ms | examples/s | examples per CPU-s | requests |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for batch, entry in record["batches"].items():
        for side, s in entry["sides"].items():
            lines.append(
                f"| {batch} | {side} | {s['p50_ms']:.2f} | {s['p99_ms']:.2f} | "
                f"{s['examples_per_s']:,.0f} | {s['examples_per_cpu_s']:,.0f} | {s['requests']} |"
            )
    lines += ["", "```", *ratio_lines(record["batches"], args["threads"]), "```", ""]
    lines.append(
        f"Export time: toolkit {record['export_seconds']['toolkit']:.1f} s (includes warm-up "
        f"records and the serving contract), hand-written "
        f"{record['export_seconds']['hand-written']:.1f} s."
    )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--serve-child":
        return _serve_child(argv[1:])
    args = parse_args(argv)
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    from benchmarks import common

    machine = common.machine_info()
    with tempfile.TemporaryDirectory() as workdir:
        log(f"building and exporting both models ({args.rows:,} rows) ...")
        built = build_exports(args, workdir)
        log(
            f"exported: toolkit {built['export_seconds']['toolkit']:.1f}s, hand-written "
            f"{built['export_seconds']['hand-written']:.1f}s; serving in a TensorFlow-only process"
        )
        plan = {
            "toolkit": built["toolkit"],
            "hand-written": built["hand-written"],
            "request_file": built["requests"],
            "batches": args.batches,
            "requests": args.requests,  # per thread per round, one per batch size
            "threads": args.threads,
            "rounds": args.rounds,
            "warmup": args.warmup,
        }
        measured = _run_serving_child(plan, workdir)
    if measured["max_abs_difference"] > 1e-5:
        raise AssertionError(
            f"the exports disagree by {measured['max_abs_difference']:.2e}: not the same function"
        )
    batches = summarize(measured)
    for line in ratio_lines(batches, args.threads):
        log(line)
    record = {
        "benchmark": "serving",
        "backend": "tensorflow",
        "device": "cpu",
        "machine": machine,
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "command": " ".join(
            ["TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python benchmarks/bench_serving.py", *argv]
        ),
        "arguments": {
            "rows": args.rows,
            "batches": args.batches,
            "requests": args.requests,
            "threads": args.threads,
            "rounds": args.rounds,
            "warmup": args.warmup,
        },
        "parameters": built["parameters"],
        "export_seconds": built["export_seconds"],
        "serving": {
            "tensorflow": measured["tensorflow"],
            "max_abs_difference": measured["max_abs_difference"],
            "keras_packages_after_import_tensorflow": measured[
                "keras_packages_after_import_tensorflow"
            ],
            "keras_packages_at_end": measured["keras_packages_at_end"],
        },
        "batches": batches,
    }
    if args.quick:
        return 0
    base = os.path.join(common.RESULTS_DIR, "serving_tensorflow_cpu")
    common.write_json(base + ".json", record)
    with open(base + ".md", "w") as f:
        f.write(markdown(record))
    log(f"wrote {base}.json and {base}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
