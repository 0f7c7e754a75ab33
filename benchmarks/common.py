"""Shared pieces of the benchmarks: synthetic Criteo-shaped data, timing, reports.

Keras, TensorFlow and keras_recsys are imported inside the functions that need
them, so that a driver process can use the report helpers without importing a
Keras backend (`KERAS_BACKEND` is fixed when Keras is first imported).
"""

from __future__ import annotations

import dataclasses
import datetime
import gc
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_DIR = os.path.join(ROOT, "benchmarks", "results")

# The shape of the Criteo display-ads data, as set by the benchmark issue.
NUM_CATEGORICAL = 26
NUM_NUMERIC = 13
VOCABULARY_SIZE = 10_000
EMBEDDING_DIM = 16
HIDDEN_UNITS = (256, 128)
BATCH_SIZE = 4096
CATEGORICAL = [f"C{i}" for i in range(1, NUM_CATEGORICAL + 1)]
NUMERIC = [f"I{i}" for i in range(1, NUM_NUMERIC + 1)]
LABEL = "click"


# --------------------------------------------------------------------- data
@dataclasses.dataclass
class SyntheticData:
    """Raw rows, the spec fitted on them, and the same rows preprocessed.

    `features` holds what the model reads, one numpy array per feature: int32
    ids in [2, input_dim) for the categorical fields and standardized float32
    values for the numeric ones, produced by the spec's own TensorFlow
    preprocessing, so the toolkit and the hand-written models are fed
    identical tensors.
    """

    raw: pd.DataFrame | None  # None when loaded from a saved file
    spec: Any
    features: dict[str, np.ndarray]
    labels: np.ndarray
    input_dim: int
    batch_size: int

    @property
    def num_rows(self) -> int:
        return len(self.labels)


def raw_frame(num_rows: int, seed: int = 0) -> pd.DataFrame:
    """Criteo-shaped raw rows: 26 hex-string categoricals, 13 counts, a 0/1 label.

    Category frequencies follow a Zipf-like law (a few values are very
    frequent, as in Criteo, so ids repeat within a batch); every value
    appears at least once, so the fitted vocabulary has exactly
    `VOCABULARY_SIZE` entries.
    """
    if num_rows < VOCABULARY_SIZE:
        raise ValueError(f"num_rows must be >= {VOCABULARY_SIZE} to cover every category.")
    rng = np.random.default_rng(seed)
    ranks = np.arange(1, VOCABULARY_SIZE + 1, dtype=np.float64)
    probabilities = ranks**-1.05
    probabilities /= probabilities.sum()
    columns: dict[str, Any] = {}
    for name in CATEGORICAL:
        codes = rng.choice(2**32, VOCABULARY_SIZE, replace=False)
        tokens = np.char.mod("%08x", codes).astype(object)
        index = rng.choice(VOCABULARY_SIZE, num_rows, p=probabilities)
        # Values never drawn replace repeats (never a value's first occurrence).
        unseen = np.setdiff1d(np.arange(VOCABULARY_SIZE), index)
        repeats = np.setdiff1d(np.arange(num_rows), np.unique(index, return_index=True)[1])
        index[rng.choice(repeats, len(unseen), replace=False)] = unseen
        columns[name] = tokens[index]
    for name in NUMERIC:
        columns[name] = np.floor(rng.lognormal(1.0, 1.5, num_rows))
    columns[LABEL] = (rng.random(num_rows) < 0.25).astype(np.int64)
    return pd.DataFrame(columns)


def feature_spec():
    """The toolkit's description of the Criteo-shaped features (not yet fitted)."""
    import keras_recsys as kr

    return kr.FeatureSpec(
        [kr.Categorical(name) for name in CATEGORICAL]
        + [kr.Numeric(name, transform="log1p") for name in NUMERIC],
        default_embedding_dim=EMBEDDING_DIM,
    )


def synthetic_data(num_batches: int, batch_size: int = BATCH_SIZE, seed: int = 0):
    """`SyntheticData` of `num_batches * batch_size` rows, spec fitted on the raw rows."""
    import keras_recsys as kr

    num_rows = max(num_batches * batch_size, VOCABULARY_SIZE)
    raw = raw_frame(num_rows, seed)
    spec = feature_spec().adapt(raw)
    input_dims = {spec.input_dim(name) for name in CATEGORICAL}
    expected = VOCABULARY_SIZE + 2  # + padding and out-of-vocabulary ids
    if input_dims != {expected}:
        raise AssertionError(f"fitted input_dim {sorted(input_dims)} != {expected}")
    parts: dict[str, list[np.ndarray]] = {}
    pipeline = kr.data.from_pandas(raw, spec, batch_size=65_536, labels=False)
    for batch in pipeline.as_numpy_iterator():
        for name, value in batch.items():
            parts.setdefault(name, []).append(value)
    features = {name: np.concatenate(chunks) for name, chunks in parts.items()}
    labels = raw[LABEL].to_numpy(np.float32).reshape(-1, 1)
    return SyntheticData(raw, spec, features, labels, expected, batch_size)


def save_synthetic(data: SyntheticData, path: str) -> None:
    """Writes the preprocessed arrays, labels and fitted spec to one `.npz`.

    A host without TensorFlow (the GPU machine) reads it back with
    `load_synthetic`: the spec's fitted state is plain JSON, and the arrays
    are what the TensorFlow preprocessing produced here.
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    np.savez(
        path,
        spec=np.array(data.spec.to_json()),
        labels=data.labels,
        meta=np.array([data.input_dim, data.batch_size]),
        **{f"feature_{name}": value for name, value in data.features.items()},
    )


def load_synthetic(path: str) -> SyntheticData:
    """`SyntheticData` from `save_synthetic`'s file (no raw rows; no TensorFlow)."""
    import keras_recsys as kr

    with np.load(path) as stored:
        features = {
            key[len("feature_") :]: stored[key]
            for key in stored.files
            if key.startswith("feature_")
        }
        input_dim, batch_size = (int(v) for v in stored["meta"])
        spec = kr.FeatureSpec.from_json(str(stored["spec"]))
        labels = stored["labels"]
    return SyntheticData(None, spec, features, labels, input_dim, batch_size)


def _pre_batched(data: SyntheticData, batch_size: int) -> tuple[dict, dict]:
    num_batches = data.num_rows // batch_size
    rows = num_batches * batch_size
    features = {
        name: value[:rows].reshape(num_batches, batch_size) for name, value in data.features.items()
    }
    labels = {LABEL: data.labels[:rows].reshape(num_batches, batch_size, 1)}
    return features, labels


def tf_dataset(data: SyntheticData, batch_size: int = BATCH_SIZE):
    """An endless `tf.data.Dataset` of preprocessed `(features, {"click": y})` batches.

    Batches are cut once in numpy, so the pipeline only hands out ready
    tensors: the model step is what gets timed. Both sides of a comparison
    iterate this same dataset.
    """
    import tensorflow as tf

    features, labels = _pre_batched(data, batch_size)
    dataset = tf.data.Dataset.from_tensor_slices((features, labels))
    return dataset.repeat().prefetch(tf.data.AUTOTUNE)


def numpy_batches(data: SyntheticData, batch_size: int = BATCH_SIZE) -> Callable[[], Iterator]:
    """A factory of endless generators of the same batches as numpy (no tf.data)."""
    features, labels = _pre_batched(data, batch_size)
    num_batches = len(labels[LABEL])

    def generate():
        i = 0
        while True:
            yield (
                {name: value[i] for name, value in features.items()},
                {LABEL: labels[LABEL][i]},
            )
            i = (i + 1) % num_batches

    return generate


# ------------------------------------------------------------------- timing
#
# A measurement is a list of rounds; in each round every variant runs once
# (one training step, or one `fit` of a few steps) and reports, for each step
# it timed, the wall-clock seconds and the CPU seconds of this process (all
# its threads: `time.process_time`). Variants alternate within a round, in
# reverse order on odd rounds (A B B A ...), so a drift of the machine's speed
# cancels out of every pairwise comparison; a ratio is the median over rounds
# of the per-round ratio, so a burst of load that hits one round barely moves
# it.
#
# Two clocks because the machine is shared: the wall clock is what a user
# waits for, but while other processes take the cores it mostly measures
# them; CPU time counts the work this process did for the step, which
# another process's load barely changes, so its ratios are far less noisy.

CLOCKS = ("wall", "cpu")


def batches(feed, backend: str) -> Iterator:
    """An endless iterator of `(features, labels)` batches from a feed.

    `feed` is a `tf.data.Dataset` (iterated as tensors on the TensorFlow
    backend and as numpy elsewhere, as `fit` does) or a generator factory.
    """
    if callable(feed):
        return feed()
    return iter(feed) if backend == "tensorflow" else feed.as_numpy_iterator()


def _now() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _steps(marks: list[tuple[float, float]]) -> dict[str, list[float]]:
    """{clock: seconds of each step} from the clock readings between steps."""
    return {
        clock: [b[i] - a[i] for a, b in zip(marks, marks[1:])] for i, clock in enumerate(CLOCKS)
    }


def step_runner(model, iterator: Iterator) -> Callable[[], dict[str, list[float]]]:
    """One timed training step per call: the next batch, then `train_on_batch`.

    `train_on_batch` runs the model's compiled train function (the one `fit`
    runs) and returns the step's logs as Python numbers, so it waits for the
    step to finish on every backend.
    """

    def run() -> dict[str, list[float]]:
        start = _now()
        x, y = next(iterator)
        model.train_on_batch(x, y)
        return _steps([start, _now()])

    return run


def _step_timer():
    import keras

    class StepTimer(keras.callbacks.Callback):
        """Reads the clocks at the end of every training step.

        Deliberately not `async_safe`: Keras then converts each step's logs
        to Python numbers before calling it, which waits for the step to
        finish on every backend (JAX dispatches asynchronously), so the gap
        between two ends is one whole step (data included).
        """

        def __init__(self):
            super().__init__()
            self.marks = []

        def on_train_batch_end(self, batch, logs=None):
            self.marks.append(_now())

    return StepTimer()


def fit_runner(
    model, data_fn: Callable[[], Any], steps: int, skip: int = 1
) -> Callable[[], dict[str, list[float]]]:
    """One `model.fit` of `skip + steps` steps per call; the last `steps` are timed.

    The first `skip` steps (iterator start-up) are not timed.
    """

    def run() -> dict[str, list[float]]:
        timer = _step_timer()
        model.fit(
            data_fn(), steps_per_epoch=skip + steps, verbose=0, shuffle=False, callbacks=[timer]
        )
        return _steps(timer.marks[max(skip, 1) - 1 :])

    return run


def interleaved(
    runs: dict[str, Callable[[], dict[str, list[float]]]],
    rounds: int,
    batch_size: int,
    log: Callable[[str], None] = print,
    log_every: int = 1,
) -> dict[str, dict[str, list[list[float]]]]:
    """Runs every variant once per round: {variant: {clock: [step seconds of each round]}}."""
    names = list(runs)
    results = {name: {clock: [] for clock in CLOCKS} for name in names}
    gc.collect()
    gc.freeze()  # no long collections of the setup's objects inside timed steps
    try:
        for index in range(rounds):
            order = names if index % 2 == 0 else names[::-1]
            for name in order:
                for clock, seconds in runs[name]().items():
                    results[name][clock].append(seconds)
            if (index + 1) % log_every == 0 or index + 1 == rounds:
                line = "  ".join(
                    f"{name} {summarize(results[name]['wall'], batch_size)['median']:,.0f}"
                    for name in names
                )
                log(f"  round {index + 1}/{rounds}, examples/s so far: {line}")
    finally:
        gc.unfreeze()
    return results


def _quantile(values: list[float], q: float) -> float:
    return float(np.quantile(np.asarray(values), q))


def summarize(step_seconds: list[list[float]], batch_size: int) -> dict[str, Any]:
    """Examples per second of one clock from the median step time: overall and per round.

    The median, not the mean, because other processes on a shared machine
    steal time in bursts that hit a few steps hard. `p25`/`p75` are the
    examples/s of the 75th/25th percentile step times.
    """
    per_round = [batch_size / statistics.median(steps) for steps in step_seconds]
    every_step = [s for steps in step_seconds for s in steps]
    return {
        "median": batch_size / statistics.median(every_step),
        "p25": batch_size / _quantile(every_step, 0.75),
        "p75": batch_size / _quantile(every_step, 0.25),
        "rounds": [round(v, 1) for v in per_round],
        "steps_timed": len(every_step),
    }


def ratio(numerator: dict[str, Any], denominator: dict[str, Any]) -> dict[str, Any]:
    """Speed ratio of two `summarize` results of the same clock and rounds.

    `ratio` is the median over rounds of the per-round ratio (both runs of a
    pair are from the same round, so drift cancels); `iqr` is the 25th-75th
    percentile range of the per-round ratios; `ratio_of_medians` divides the
    overall medians, for reference.
    """
    paired = [a / b for a, b in zip(numerator["rounds"], denominator["rounds"])]
    return {
        "ratio": statistics.median(paired),
        "iqr": [_quantile(paired, 0.25), _quantile(paired, 0.75)],
        "rounds": len(paired),
        "ratio_of_medians": numerator["median"] / denominator["median"],
    }


# ------------------------------------------------------------------ reports
def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _gpus() -> list[str]:
    """Name and memory of each NVIDIA GPU (`nvidia-smi`), or [] where there is none."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def machine_info() -> dict[str, Any]:
    """Date, machine, load, versions and commit of this run."""
    versions = {"python": platform.python_version()}
    for package in (
        "keras",
        "keras-rs",
        "tensorflow",
        "tensorflow-cpu",
        "jax",
        "jaxlib",
        "torch",
        "numpy",
        "pandas",
        "keras-recsys",
    ):
        version = _version(package)
        if version is not None:
            versions[package] = version
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "versions": versions,
        "gpus": _gpus(),
        # A copy of the tree sent elsewhere (the GPU machine) names its commit here:
        # the .git that travels with it may not be the tree's.
        "git_commit": os.environ.get("KERAS_RECSYS_COMMIT")
        or (_git("rev-parse", "--short", "HEAD") + (" (modified)" if status else ""))
        or "unknown",
    }


def device_label(record: dict[str, Any]) -> str:
    """ "cpu", or the GPU's model for a result file's name: "gpu" -> "h200"."""
    gpus = record["machine"].get("gpus") or []
    if record["device"] == "cpu" or not gpus:
        return record["device"]
    name = gpus[0].split(",")[0].lower().replace("nvidia", "").split()
    return name[0] if name else record["device"]


def rerun_command() -> str:
    """The command line of this process, as run from the repository root."""
    args = " ".join(sys.argv[1:])
    return f"TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python benchmarks/bench_ranking.py {args}".strip()


def write_json(path: str, payload: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(payload, f, indent=2)
        f.write("\n")


def machine_markdown(info: dict[str, Any]) -> list[str]:
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    return [
        f"- date: {info['date']}",
        f"- machine: {info['nproc']} cores (`nproc`), CPU `{info['cpu_model']}`, "
        f"{info['platform']}",
        *(
            [f"- accelerator: {'; '.join(info['gpus'])} (`nvidia-smi`: name, memory, driver)"]
            if info.get("gpus")
            else []
        ),
        f"- load average at start: {info['load_average']} (shared machine: compare "
        "ratios, not absolute numbers)",
        f"- versions: {versions}",
        f"- commit: {info['git_commit']}",
    ]
