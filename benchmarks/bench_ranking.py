"""Training throughput: keras_recsys DeepFM / DCNv2 against the same models written by hand.

Synthetic Criteo-shaped data (26 categorical fields with 10,000 values each,
16-d embeddings, 13 numeric fields), MLP 256-128, batch 4096, Adam, binary
cross-entropy. Both sides are fed the same preprocessed tensors from the same
kind of `tf.data` pipeline, so the model step is what is compared. Toolkit
and hand-written training steps alternate in one process and are reported as
ratios, because on a shared machine only ratios measured in the same run
mean anything; each ratio is given on CPU time (the headline: other
processes' load barely moves it) and on the wall clock. On TensorFlow a
second hand-written baseline sums the repeated ids of sparse gradients as the
toolkit does (`hand-written+sum`). The toolkit's full pipeline from raw
values (`kr.data.from_pandas`) is measured on a separate, labelled line.

One backend per process (`KERAS_BACKEND` is fixed when Keras is imported);
`--backend all` (the default) runs TensorFlow (jit_compile off and on) and
JAX, one process each, and writes a summary:

    TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python benchmarks/bench_ranking.py
    .venv/bin/python benchmarks/bench_ranking.py --backend tensorflow --jit both
    .venv/bin/python benchmarks/bench_ranking.py --backend torch
    .venv/bin/python benchmarks/bench_ranking.py --backend jax --quick
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_LABELS = {"deepfm": "DeepFM", "dcn": "DCN"}
BACKENDS = ("tensorflow", "jax", "torch")
ALL_BACKENDS = ("tensorflow", "jax")  # torch: eager, slow and noisy on CPU; run it alone
_START = time.perf_counter()


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--backend",
        choices=(*BACKENDS, "all"),
        default="all",
        help="Keras backend; 'all' (default) runs tensorflow with jit off and on, then jax, "
        "one process each (torch only when asked for)",
    )
    parser.add_argument(
        "--jit",
        choices=("default", "on", "off", "both"),
        default="default",
        help="jit_compile of both sides: 'default' = the toolkit's default for the backend "
        "(False on TensorFlow, 'auto' elsewhere); 'both' = off and on, interleaved in one "
        "process",
    )
    parser.add_argument("--models", default="deepfm,dcn", help="comma-separated: deepfm,dcn")
    parser.add_argument(
        "--steps",
        "--rounds",
        dest="rounds",
        type=int,
        default=40,
        help="timed steps per variant: rounds in each of which every variant runs one step",
    )
    parser.add_argument(
        "--warmup", type=int, default=2, help="untimed steps (tracing, compiling) per variant"
    )
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument(
        "--data-batches", type=int, default=32, help="distinct batches of synthetic data"
    )
    parser.add_argument(
        "--feed",
        choices=("tfdata", "numpy"),
        default="tfdata",
        help="how preprocessed batches reach the model: a tf.data pipeline (default) or a "
        "numpy generator (no tf.data in the training loop)",
    )
    parser.add_argument(
        "--metrics",
        choices=("none", "task"),
        default="none",
        help="'none': loss only on both sides; 'task': the toolkit's default task metrics "
        "(AUC with 1000 thresholds, log loss) on both sides",
    )
    parser.add_argument(
        "--no-pipeline",
        action="store_true",
        help="skip the toolkit fed from raw values through kr.data.from_pandas",
    )
    parser.add_argument(
        "--pipeline-reps",
        type=int,
        default=4,
        help="rounds of the raw-pipeline comparison (each a fit of --pipeline-steps steps)",
    )
    parser.add_argument("--pipeline-steps", type=int, default=8)
    parser.add_argument(
        "--no-sum-baseline",
        action="store_true",
        help="TensorFlow: skip the hand-written baseline whose Adam sums repeated rows of "
        "sparse gradients as keras_recsys does",
    )
    parser.add_argument(
        "--save-data",
        metavar="FILE",
        help="write the preprocessed synthetic data and fitted spec to FILE (.npz) and exit",
    )
    parser.add_argument(
        "--data",
        metavar="FILE",
        help="read the data from a --save-data FILE instead of preprocessing it here: runs "
        "without TensorFlow (implies --feed numpy and --no-pipeline)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke test: a few steps, writes no result files"
    )
    parser.add_argument(
        "--out", default=None, help="results directory (default: benchmarks/results)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.warmup, args.data_batches = 4, 1, 4
        args.pipeline_reps, args.pipeline_steps = 2, 3
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    unknown = set(args.models) - set(MODEL_LABELS)
    if unknown:
        parser.error(f"unknown models {sorted(unknown)}; choose from {sorted(MODEL_LABELS)}")
    if args.data:
        args.feed, args.no_pipeline = "numpy", True
        if args.backend in ("all", "tensorflow"):
            parser.error("--data is for the jax or torch backend on a host without TensorFlow")
    if args.backend == "all" and args.jit != "default":
        parser.error("--backend all picks the jit paths itself; drop --jit")
    return args


def log(message: str) -> None:
    """Prints with the seconds elapsed since the process started."""
    lead = len(message) - len(message.lstrip("\n"))
    print(f"{message[:lead]}[{time.perf_counter() - _START:5.0f}s] {message[lead:]}", flush=True)


# ---------------------------------------------------------- one backend
def _device(backend: str) -> str:
    if backend == "tensorflow":
        import tensorflow as tf

        return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"
    if backend == "jax":
        import jax

        return jax.default_backend()
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


def _requested_jit(jit: str) -> list:
    """Values of jit_compile to run; None means "the toolkit's default"."""
    return {"default": [None], "on": [True], "off": [False], "both": [False, True]}[jit]


def _toolkit_model(kind: str, spec):
    import keras_recsys as kr
    from benchmarks import common

    if kind == "deepfm":
        return kr.models.DeepFM(spec, tasks=[kr.Task("click")], hidden_units=common.HIDDEN_UNITS)
    return kr.models.DCN(
        spec,
        tasks=[kr.Task("click")],
        version="v2",
        num_cross_layers=3,
        hidden_units=common.HIDDEN_UNITS,
    )


def _hand_model(kind: str, data):
    from benchmarks import common, handwritten

    build = handwritten.deepfm if kind == "deepfm" else handwritten.dcn_v2
    return build(
        common.CATEGORICAL,
        common.NUMERIC,
        data.input_dim,
        common.EMBEDDING_DIM,
        common.HIDDEN_UNITS,
    )


def _compile_toolkit(model, jit, metrics: str):
    """The toolkit's own compile defaults, jit_compile overridden only when asked.

    Returns the jit_compile that the toolkit's default resolves to.
    """
    kwargs = {} if metrics == "task" else {"metrics": []}
    model.compile(optimizer="adam", **kwargs)
    default = model.jit_compile
    if jit is not None and jit != default:
        model.compile(optimizer="adam", jit_compile=jit, **kwargs)
    return default


def _compile_hand(model, jit, metrics: str, summed_sparse: bool = False) -> None:
    import keras

    from benchmarks import handwritten

    kwargs = {}
    if metrics == "task":
        kwargs["weighted_metrics"] = {
            "click": [
                keras.metrics.AUC(name="auc", num_thresholds=1000),
                keras.metrics.BinaryCrossentropy(name="logloss"),
            ]
        }
    model.compile(
        optimizer=handwritten.SummedSparseAdam() if summed_sparse else "adam",
        loss={"click": keras.losses.BinaryCrossentropy()},
        jit_compile=jit,
        **kwargs,
    )


def _predict(model, batch):
    from keras import ops

    # The toolkit serves probabilities through `predict_outputs` (its call
    # returns logits); the hand-written models return {"click": sigmoid}.
    outputs = model.predict_outputs(batch) if hasattr(model, "predict_outputs") else model(batch)
    return ops.convert_to_numpy(outputs["click"]).reshape(-1)


def _check_equivalent(toolkit, hands: list, kind: str, data) -> tuple[float, list[float]]:
    """Gives every hand-written model the toolkit's weights and checks the predictions.

    Returns the largest prediction difference with equal weights (asserted to
    be tiny), and, for each hand-written model, the largest difference after
    one training step of both on the same batch (reported: it shows whether
    the two training steps compute the same update).
    """
    import numpy as np
    from keras import ops

    from benchmarks import common, handwritten

    batch = {name: ops.convert_to_tensor(v[:1024]) for name, v in data.features.items()}
    train_x = {name: v[: data.batch_size] for name, v in data.features.items()}
    train_y = {common.LABEL: data.labels[: data.batch_size]}
    for hand in hands:
        if toolkit.count_params() != hand.count_params():
            raise AssertionError(
                f"{kind}: toolkit has {toolkit.count_params():,} parameters, hand-written "
                f"{hand.count_params():,}"
            )
        handwritten.copy_toolkit_weights(toolkit, hand, kind)
    expected = _predict(toolkit, batch)
    error = max(float(np.max(np.abs(expected - _predict(hand, batch)))) for hand in hands)
    if error > 1e-4:
        raise AssertionError(f"{kind}: hand-written predictions differ by {error:.2e}")
    for model in (toolkit, *hands):
        model.train_on_batch(train_x, train_y)
    expected = _predict(toolkit, batch)
    after = [float(np.max(np.abs(expected - _predict(hand, batch)))) for hand in hands]
    return error, after


def _ratio_entry(what: str, path: str, numerator: dict, denominator: dict) -> dict:
    from benchmarks import common

    entry = {"what": what, "path": path}
    for clock in common.CLOCKS:
        entry[clock] = common.ratio(numerator[clock], denominator[clock])
    return entry


def _bench_model(kind: str, args, data, feed) -> dict:
    """Times one model kind: toolkit and hand-written for every jit path, and the raw pipeline."""
    import keras_recsys as kr
    from benchmarks import common

    runs, variants, pairs, models, checks = {}, {}, [], {}, {}
    requested = _requested_jit(args.jit)
    for index, jit in enumerate(requested):
        toolkit = _toolkit_model(kind, data.spec)
        default_jit = _compile_toolkit(toolkit, jit, args.metrics)
        resolved = toolkit.jit_compile
        path = f"{args.backend}, jit_compile={resolved}"
        if resolved == default_jit:
            path += " (toolkit default)"
        suffix = f" jit={resolved}" if len(requested) > 1 else ""
        sides = {f"toolkit{suffix}": toolkit}
        hand = _hand_model(kind, data)
        _compile_hand(hand, resolved, args.metrics)
        sides[f"hand-written{suffix}"] = hand
        if args.backend == "tensorflow" and index == 0 and not args.no_sum_baseline:
            summed = _hand_model(kind, data)
            _compile_hand(summed, resolved, args.metrics, summed_sparse=True)
            sides[f"hand-written+sum{suffix}"] = summed
        names = list(sides)
        error, after = _check_equivalent(toolkit, list(sides.values())[1:], kind, data)
        for name, difference in zip(names[1:], after):
            checks[name] = {"equal_weights": error, "after_one_step": difference}
        for name, model in sides.items():
            step = common.step_runner(model, common.batches(feed, args.backend))
            for _ in range(args.warmup):
                step()
            runs[name], models[name] = step, model
            variants[name] = {
                "side": name.split(" ")[0],
                "jit_compile": resolved,
                "path": path,
                "input": "preprocessed tensors",
                "method": "alternating train steps",
                **({"equivalence": checks[name]} if name in checks else {}),
            }
        after_text = ", ".join(f"{name} {d:.1e}" for name, d in zip(names[1:], after))
        log(
            f"{path}: {toolkit.count_params():,} parameters on every side; predictions "
            f"with equal weights differ by <= {error:.1e}; after one training step on the "
            f"same batch: {after_text}; warmed up"
        )
        pairs.append((names, path, resolved))

    log(f"timing {len(runs)} variants, {args.rounds} rounds of one step each")
    results = common.interleaved(
        runs, args.rounds, args.batch_size, log, log_every=max(args.rounds // 3, 1)
    )
    for name, seconds in results.items():
        for clock, rounds in seconds.items():
            variants[name][clock] = common.summarize(rounds, args.batch_size)
    ratios = []
    for names, path, _ in pairs:
        ratios.append(
            _ratio_entry("toolkit/hand-written", path, variants[names[0]], variants[names[1]])
        )
        if len(names) == 3:
            ratios.append(
                _ratio_entry(
                    "toolkit/hand-written+sum (same sparse-gradient math)",
                    path,
                    variants[names[0]],
                    variants[names[2]],
                )
            )
    if len(pairs) == 2:
        for side in (0, 1):
            off, on = pairs[0][0][side], pairs[1][0][side]
            ratios.append(
                _ratio_entry(
                    f"{variants[off]['side']} jit on/off",
                    f"{args.backend}, jit_compile={pairs[1][2]} vs {pairs[0][2]}",
                    variants[on],
                    variants[off],
                )
            )

    if not args.no_pipeline:
        # The same toolkit model, fed by `fit` from raw values (kr.data.from_pandas:
        # lookups and normalization in tf.data) or from the preprocessed tensors.
        # Blocks of consecutive steps, so that tf.data's background prefetching
        # cannot run ahead during another variant's steps.
        toolkit = models[pairs[0][0][0]]
        raw = kr.data.from_pandas(
            data.raw, toolkit, batch_size=args.batch_size, drop_remainder=True
        ).repeat()
        sources = {
            "toolkit, fit on preprocessed tensors": (
                "preprocessed tensors",
                lambda: feed() if callable(feed) else feed,
            ),
            "toolkit, fit from raw values": ("raw values via kr.data.from_pandas", lambda: raw),
        }
        fit_runs = {}
        for name, (source, data_fn) in sources.items():
            toolkit.fit(data_fn(), steps_per_epoch=args.warmup, verbose=0, shuffle=False)
            fit_runs[name] = common.fit_runner(toolkit, data_fn, args.pipeline_steps)
            variants[name] = {
                "side": "toolkit",
                "jit_compile": pairs[0][2],
                "path": pairs[0][1],
                "input": source,
                "method": f"interleaved fit calls of {args.pipeline_steps} steps",
            }
        log(
            f"timing the raw-value pipeline: {args.pipeline_reps} rounds of "
            f"{args.pipeline_steps}-step fits"
        )
        fit_results = common.interleaved(fit_runs, args.pipeline_reps, args.batch_size, log)
        for name, seconds in fit_results.items():
            for clock, rounds in seconds.items():
                variants[name][clock] = common.summarize(rounds, args.batch_size)
        names = list(fit_runs)
        ratios.append(
            _ratio_entry(
                "toolkit from raw values (kr.data.from_pandas)/from preprocessed tensors, fit",
                pairs[0][1],
                variants[names[1]],
                variants[names[0]],
            )
        )
    return {"label": MODEL_LABELS[kind], "variants": variants, "ratios": ratios}


def run_backend(args) -> dict:
    """Runs the comparison on this process's backend; returns the result record."""
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
    if args.data:
        data = common.load_synthetic(args.data)
        log(f"data: read from {args.data}")
    else:
        data = common.synthetic_data(args.data_batches, args.batch_size)
    log(
        f"data: {data.num_rows:,} rows; {len(common.CATEGORICAL)} fields x input_dim "
        f"{data.input_dim:,} x dim {common.EMBEDDING_DIM}, {len(common.NUMERIC)} numeric; "
        f"batch {args.batch_size}"
    )
    feed = (
        common.tf_dataset(data, args.batch_size)
        if args.feed == "tfdata"
        else common.numpy_batches(data, args.batch_size)
    )
    record = {
        "benchmark": "ranking",
        "backend": args.backend,
        "device": device,
        "machine": info,
        "command": common.rerun_command(),
        "settings": {
            "batch_size": args.batch_size,
            "rounds": args.rounds,
            "warmup": args.warmup,
            "pipeline_reps": args.pipeline_reps,
            "pipeline_steps": args.pipeline_steps,
            "feed": args.feed,
            "metrics": args.metrics,
            "data_rows": data.num_rows,
            "categorical_fields": len(common.CATEGORICAL),
            "input_dim": data.input_dim,
            "embedding_dim": common.EMBEDDING_DIM,
            "numeric_fields": len(common.NUMERIC),
            "hidden_units": list(common.HIDDEN_UNITS),
        },
        "models": {},
    }
    for kind in args.models:
        log(f"\n== {MODEL_LABELS[kind]} ==")
        record["models"][kind] = _bench_model(kind, args, data, feed)
        log("results:\n" + format_model(record, kind))
    record["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return record


# -------------------------------------------------------------- reporting
def ratio_lines(record: dict, kind: str) -> list[str]:
    model = record["models"][kind]
    lines = []
    for r in model["ratios"]:
        cpu, wall = r["cpu"], r["wall"]
        lines.append(
            f"{model['label']} {r['what']}: {cpu['ratio']:.2f}  (CPU time; wall clock "
            f"{wall['ratio']:.2f}; {r['path']}; interquartile CPU {cpu['iqr'][0]:.2f}-"
            f"{cpu['iqr'][1]:.2f}, wall {wall['iqr'][0]:.2f}-{wall['iqr'][1]:.2f}; "
            f"{cpu['rounds']} rounds)"
        )
    return lines


def format_model(record: dict, kind: str) -> str:
    model = record["models"][kind]
    rows = [f"{'variant':<38} {'input':<36} {'ex/s':>8} {'p25':>8} {'p75':>8} {'ex/CPU-s':>9}"]
    for name, v in model["variants"].items():
        wall = v["wall"]
        rows.append(
            f"{name:<38} {v['input']:<36} {wall['median']:>8,.0f} {wall['p25']:>8,.0f} "
            f"{wall['p75']:>8,.0f} {v['cpu']['median']:>9,.0f}"
        )
    return "\n".join(rows + [""] + ratio_lines(record, kind))


def _method_text(settings: dict) -> str:
    return (
        f"Method: after {settings['warmup']} warm-up steps per variant, "
        f"{settings['rounds']} rounds in which every variant runs one training step "
        "(next batch + `train_on_batch`, the compiled step that `fit` runs), alternating "
        "A B ... B A. Each step is timed on two clocks: the wall clock (examples/s = "
        "batch / median step time; p25/p75 from the 75th/25th percentile steps) and the "
        "CPU time of the process, all threads (examples per CPU-second). A ratio is the "
        "median over rounds of the per-round ratio, with its interquartile range; the "
        "headline ratio is the CPU-time one, because on a shared machine the wall clock "
        "mostly measures other processes, and the wall-clock ratio is printed beside it. "
        f"The raw-value pipeline is timed in {settings['pipeline_reps']} interleaved "
        f"rounds of `fit` calls of {settings['pipeline_steps']} steps (consecutive "
        "steps, so that tf.data's prefetching cannot work ahead during other variants' "
        "steps)."
    )


def markdown(record: dict) -> str:
    from benchmarks import common

    s = record["settings"]
    lines = [
        f"# Ranking training throughput: {record['backend']} on {record['device']}",
        "",
        f"Synthetic Criteo-shaped data: {s['categorical_fields']} categorical fields "
        f"(input_dim {s['input_dim']:,}, dim {s['embedding_dim']}), {s['numeric_fields']} "
        f"numeric, MLP {'-'.join(map(str, s['hidden_units']))}, batch {s['batch_size']}, "
        f"Adam, binary cross-entropy; metrics: {s['metrics']}; feed: {s['feed']}.",
        "",
        _method_text(s),
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
    ]
    for kind, model in record["models"].items():
        lines += [
            f"## {model['label']}",
            "",
            "| variant | path | input | examples/s (median) | p25 | p75 | examples per "
            "CPU-second |",
            "| --- | --- | --- | ---: | ---: | ---: | ---: |",
        ]
        for name, v in model["variants"].items():
            wall = v["wall"]
            lines.append(
                f"| {name} | {v['path']} | {v['input']} | {wall['median']:,.0f} | "
                f"{wall['p25']:,.0f} | {wall['p75']:,.0f} | {v['cpu']['median']:,.0f} |"
            )
        lines += ["", "```", *ratio_lines(record, kind), "```", ""]
    return "\n".join(lines)


def write_record(record: dict, out_dir: str) -> str:
    from benchmarks import common

    stem = os.path.join(out_dir, f"ranking_{record['backend']}_{common.device_label(record)}")
    if record["settings"]["batch_size"] != common.BATCH_SIZE:
        stem += f"_batch{record['settings']['batch_size']}"
    common.write_json(stem + ".json", record)
    with open(stem + ".md", "w") as f:
        f.write(markdown(record))
    return stem


# ----------------------------------------------------------------- driver
def _child_args(args, backend: str) -> list[str]:
    argv = ["--backend", backend, "--jit", "both" if backend == "tensorflow" else "default"]
    argv += ["--models", ",".join(args.models), "--feed", args.feed, "--metrics", args.metrics]
    if args.quick:
        argv.append("--quick")
    else:
        argv += ["--steps", str(args.rounds), "--warmup", str(args.warmup)]
        argv += ["--pipeline-reps", str(args.pipeline_reps)]
        argv += ["--pipeline-steps", str(args.pipeline_steps)]
    argv += ["--batch-size", str(args.batch_size), "--data-batches", str(args.data_batches)]
    if args.no_pipeline:
        argv.append("--no-pipeline")
    if args.no_sum_baseline:
        argv.append("--no-sum-baseline")
    if args.out:
        argv += ["--out", args.out]
    return argv


def run_all(args) -> int:
    """One process per backend, then a summary of all of them."""
    from benchmarks import common

    out_dir = args.out or common.RESULTS_DIR
    info = common.machine_info()
    command = common.rerun_command()
    records, failed = [], []
    for backend in ALL_BACKENDS:
        env = dict(os.environ, KERAS_BACKEND=backend)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        child = [sys.executable, os.path.join(ROOT, "benchmarks", "bench_ranking.py")]
        child += _child_args(args, backend)
        started = time.time()
        print(f"\n######## {backend}: {' '.join(child[1:])}", flush=True)
        if subprocess.run(child, cwd=ROOT, env=env).returncode != 0:
            failed.append(backend)
            continue
        if args.quick and not args.out:
            continue
        written = [
            os.path.join(out_dir, name)
            for name in os.listdir(out_dir)
            if name.startswith(f"ranking_{backend}_") and name.endswith(".json")
        ]
        written = [path for path in written if os.path.getmtime(path) >= started]
        with open(max(written, key=os.path.getmtime)) as f:
            records.append(json.load(f))
    if records:
        path = os.path.join(out_dir, f"ranking_summary_{records[0]['device']}.md")
        with open(path, "w") as f:
            f.write(summary_markdown(records, info, command))
        print(f"\n######## summary (also in {os.path.relpath(path, ROOT)})\n")
        for record in records:
            for kind in record["models"]:
                print("\n".join(ratio_lines(record, kind)))
    if failed:
        print(f"failed backends: {failed}", file=sys.stderr)
        return 1
    return 0


def summary_markdown(records: list[dict], info: dict, command: str) -> str:
    from benchmarks import common

    lines = [
        "# Ranking training throughput: all backends",
        "",
        "Each backend ran in its own process, one after the other, so examples/s of "
        "different backends come from different minutes of a shared machine: compare them "
        "as indications. The ratios are each measured within one process.",
        "",
        _method_text(records[0]["settings"]),
        "",
        *common.machine_markdown(info),
        "",
        "Rerun:",
        "",
        "```",
        command,
        "```",
        "",
        "| model | variant | path | input | examples/s | examples per CPU-second |",
        "| --- | --- | --- | --- | ---: | ---: |",
    ]
    for record in records:
        for model in record["models"].values():
            for name, v in model["variants"].items():
                lines.append(
                    f"| {model['label']} | {name} | {v['path']} | {v['input']} | "
                    f"{v['wall']['median']:,.0f} | {v['cpu']['median']:,.0f} |"
                )
    lines += ["", "```"]
    for record in records:
        for kind in record["models"]:
            lines += ratio_lines(record, kind)
    lines += ["```", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if ROOT not in sys.path:  # run as a script: make `benchmarks` importable
        sys.path.insert(0, ROOT)
    if args.save_data:
        from benchmarks import common

        data = common.synthetic_data(args.data_batches, args.batch_size)
        common.save_synthetic(data, args.save_data)
        print(f"wrote {args.save_data}: {data.num_rows:,} preprocessed rows and the fitted spec")
        return 0
    if args.backend == "all":
        return run_all(args)
    record = run_backend(args)
    if args.quick and not args.out:
        print("\n(--quick: no result files written)")
        return 0
    from benchmarks import common

    stem = write_record(record, args.out or common.RESULTS_DIR)
    print(f"\nwrote {os.path.relpath(stem, ROOT)}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
