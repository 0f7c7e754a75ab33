"""Streaming from shards larger than memory: peak memory and rows/s of adapt and an epoch.

Writes `--rows` synthetic rows (default 10M) into `--shards` Parquet (or CSV)
files, then runs each phase in its own child process, so each phase's peak
resident memory (`getrusage` ru_maxrss, the whole process: Python,
TensorFlow and data) is its own:

* `baseline`: import TensorFlow and keras_recsys, nothing else (the floor);
* `adapt`: `spec.adapt(directory)` over every shard, one pass;
* `read`: one pass of `kr.data.from_parquet(directory, ...)` (preprocessed
  batches, interleaved over files), no model;
* `epoch`: one `model.fit` epoch of a DNN on that dataset, Adagrad.

The spec has a hashed user id (1M buckets), a counted item vocabulary, two
string categoricals, a bucketized and a standardized numeric and a
10-item history sharing the item vocabulary. The goal is a peak under
2 GiB in every phase, whatever `--rows` is: memory must not grow with the
data.

    TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python benchmarks/bench_streaming.py --rows 2000000
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks.common import RESULTS_DIR, _cpu_model, _version, write_json  # noqa: E402

GOAL_MIB = 2048
USERS = 5_000_000
USER_BUCKETS = 1_000_000
ITEMS = 200_000
HISTORY = 10


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# --------------------------------------------------------------------- data
def write_shards(directory: str, rows: int, shards: int, fmt: str, seed: int = 0) -> int:
    """Synthetic rows, one shard at a time (never all in memory); returns bytes written."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(seed)
    categories = np.array([f"cat{i}" for i in range(1000)], dtype=object)
    cities = np.array([f"city{i}" for i in range(100)], dtype=object)
    per_shard = -(-rows // shards)
    written = 0
    for shard in range(shards):
        n = min(per_shard, rows - shard * per_shard)
        if n <= 0:
            break
        items = (rng.zipf(1.3, n) - 1) % ITEMS
        lengths = rng.integers(0, HISTORY + 1, n)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
        history_items = (rng.zipf(1.3, int(offsets[-1])) - 1) % ITEMS
        columns = {
            "user_id": rng.integers(0, USERS, n),
            "item_id": items,
            "category": categories[rng.integers(0, len(categories), n)],
            "city": cities[(rng.zipf(1.5, n) - 1) % len(cities)],
            "price": rng.lognormal(3.0, 1.0, n),
            "age": rng.normal(40, 12, n).round(),
            "click": (rng.random(n) < 0.2 + 0.3 * (items % 7 == 0)).astype(np.int64),
        }
        table = pa.table(columns)
        path = os.path.join(directory, f"part-{shard:05d}.{fmt}")
        if fmt == "parquet":
            history = pa.ListArray.from_arrays(pa.array(offsets), pa.array(history_items))
            table = table.append_column("history", history)
            pq.write_table(table, path, row_group_size=100_000)
        else:
            text = history_items.astype(str)
            joined = ["|".join(text[a:b]) for a, b in zip(offsets[:-1], offsets[1:])]
            table = table.append_column("history", pa.array(joined))
            pacsv.write_csv(table, path)
        written += os.path.getsize(path)
    return written


# ------------------------------------------------------------------- phases
def _spec():
    import keras_recsys as kr

    return kr.FeatureSpec(
        [
            kr.Categorical("user_id", hash_buckets=USER_BUCKETS),
            kr.Categorical("item_id", min_frequency=2),
            kr.Categorical("category"),
            kr.Categorical("city"),
            kr.Numeric("price", transform="log1p", buckets=16),
            kr.Numeric("age"),
            kr.Sequence("history", shares_vocabulary_with="item_id", max_length=HISTORY),
        ],
        default_embedding_dim=16,
    )


def _dataset(args, target):
    import keras_recsys as kr

    reader = kr.data.from_parquet if args.format == "parquet" else kr.data.from_csv
    return reader(
        args.data_dir,
        target,
        batch_size=args.batch_size,
        chunk_rows=args.chunk_rows,
        tasks=None if hasattr(target, "tasks") else "click",
        cycle_length=args.cycle_length,
        shuffle_files=True,
        seed=0,
    )


def run_phase(args) -> dict:
    start_import = time.perf_counter()
    import keras

    import keras_recsys as kr

    imported = time.perf_counter() - start_import
    result: dict = {"phase": args.phase, "import_s": round(imported, 2)}
    if args.phase == "adapt":
        start = time.perf_counter()
        spec = _spec().adapt(args.data_dir, batch_size=args.chunk_rows)
        seconds = time.perf_counter() - start
        with open(args.spec_path, "w") as f:
            f.write(spec.to_json())
        result.update(
            seconds=seconds,
            rows_per_s=args.rows / seconds,
            item_vocabulary=len(spec["item_id"].vocabulary),
        )
    elif args.phase in ("read", "epoch"):
        with open(args.spec_path) as f:
            spec = kr.FeatureSpec.from_json(f.read())
        if args.phase == "read":
            data = _dataset(args, spec)
            start = time.perf_counter()
            rows = sum(int(batch[1]["click"].shape[0]) for batch in data)
        else:
            keras.utils.set_random_seed(0)
            model = kr.models.DNN(spec, "click", hidden_units=(64, 32))
            # Adagrad updates only the looked-up rows of the big tables.
            model.compile(optimizer=keras.optimizers.Adagrad(0.05))
            data = _dataset(args, model)
            start = time.perf_counter()
            history = model.fit(data, epochs=1, verbose=0)
            rows = args.rows
            result["loss"] = float(history.history["loss"][-1])
        seconds = time.perf_counter() - start
        assert rows == args.rows, (rows, args.rows)
        result.update(seconds=seconds, rows_per_s=rows / seconds)
    result["peak_rss_mib"] = _peak_rss_mib()
    return result


def _child(args, phase: str) -> dict:
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--phase",
        phase,
        "--data-dir",
        args.data_dir,
        "--spec-path",
        args.spec_path,
        "--rows",
        str(args.rows),
        "--format",
        args.format,
        "--batch-size",
        str(args.batch_size),
        "--chunk-rows",
        str(args.chunk_rows),
        "--cycle-length",
        str(args.cycle_length),
    ]
    out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        sys.stderr.write(out.stderr[-5000:])
        raise RuntimeError(f"phase {phase} failed (exit {out.returncode})")
    return json.loads(lines[-1][len("RESULT ") :])


# ------------------------------------------------------------------- report
def _machine() -> dict:
    versions = {"python": platform.python_version()}
    for package in ("keras", "tensorflow", "tensorflow-cpu", "numpy", "pandas", "pyarrow"):
        version = _version(package)
        if version is not None:
            versions[package] = version
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": _cpu_model(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "platform": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "versions": versions,
    }


def _markdown(record: dict) -> str:
    machine = record["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
    lines = [
        "# Streaming shards: peak memory and throughput, tensorflow on CPU",
        "",
        f"{record['rows']:,} synthetic rows in {record['shards']} {record['format']} shards "
        f"({record['data_mib']:,.0f} MiB on disk); chunks of {record['chunk_rows']:,} rows, "
        f"batch {record['batch_size']:,}, {record['cycle_length']} files interleaved. Spec: "
        f"hashed user id ({USER_BUCKETS:,} buckets), item vocabulary counted from the data, "
        "two string categoricals, a bucketized and a standardized numeric, a 10-item "
        "history sharing the item vocabulary. Each phase runs in its own process; peak RSS "
        "is that process's `ru_maxrss` (Python + TensorFlow + data).",
        "",
        f"- date: {machine['date']}",
        f"- machine: {machine['nproc']} cores (`nproc`), CPU `{machine['cpu_model']}`, "
        f"{machine['memory_gib']} GiB memory, {machine['platform']}",
        f"- load average at start: {machine['load_average']} (shared machine)",
        f"- versions: {versions}",
        "",
        "Rerun:",
        "",
        "```",
        record["command"],
        "```",
        "",
        "| phase | what | seconds | rows/s | peak RSS (MiB) | under 2 GiB |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    what = {
        "baseline": "import tensorflow + keras_recsys",
        "adapt": "`spec.adapt(directory)`, one pass",
        "read": "one pass of `kr.data.from_parquet`, no model",
        "epoch": "one `model.fit` epoch, DNN, Adagrad",
    }
    for phase in record["phases"]:
        seconds = phase.get("seconds")
        timing = ["", ""] if seconds is None else [f"{seconds:.1f}", f"{phase['rows_per_s']:,.0f}"]
        lines.append(
            f"| {phase['phase']} | {what[phase['phase']]} | {timing[0]} | {timing[1]} | "
            f"{phase['peak_rss_mib']:,.0f} | "
            f"{'yes' if phase['peak_rss_mib'] < GOAL_MIB else 'NO'} |"
        )
    lines.append("")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--shards", type=int, default=20)
    parser.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--chunk-rows", type=int, default=100_000)
    parser.add_argument("--cycle-length", type=int, default=4)
    parser.add_argument("--phases", default="baseline,adapt,read,epoch")
    parser.add_argument("--data-dir", default=None, help="shards directory (default: a temp dir)")
    parser.add_argument("--spec-path", default=None)
    parser.add_argument("--phase", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)

    if args.phase is not None:  # a child process
        print("RESULT " + json.dumps(run_phase(args)), flush=True)
        return

    machine = _machine()
    workdir = tempfile.mkdtemp(prefix="bench_streaming_")
    args.data_dir = args.data_dir or os.path.join(workdir, "shards")
    args.spec_path = args.spec_path or os.path.join(workdir, "spec.json")
    try:
        start = time.perf_counter()
        data_bytes = write_shards(args.data_dir, args.rows, args.shards, args.format)
        print(f"wrote {args.rows:,} rows in {time.perf_counter() - start:.0f} s", flush=True)
        phases = []
        for phase in args.phases.split(","):
            phases.append(_child(args, phase))
            print(json.dumps(phases[-1]), flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    record = {
        "benchmark": "streaming",
        "backend": "tensorflow",
        "device": "cpu",
        "rows": args.rows,
        "shards": args.shards,
        "format": args.format,
        "data_mib": data_bytes / 2**20,
        "batch_size": args.batch_size,
        "chunk_rows": args.chunk_rows,
        "cycle_length": args.cycle_length,
        "goal_peak_rss_mib": GOAL_MIB,
        "command": "TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python benchmarks/bench_streaming.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine,
        "phases": phases,
    }
    record["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    print(_markdown(record))
    if not args.no_save:
        name = f"streaming_tensorflow_cpu{'' if args.format == 'parquet' else '_csv'}"
        write_json(os.path.join(RESULTS_DIR, f"{name}.json"), record)
        with open(os.path.join(RESULTS_DIR, f"{name}.md"), "w") as f:
            f.write(_markdown(record))


if __name__ == "__main__":
    main()
