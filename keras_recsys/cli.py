"""The `keras-recsys` command line.

keras-recsys train CONFIG.yaml [--set training.epochs=1] [--output DIR]
    train, evaluate on test, plot, log to TensorBoard, export (see `train --help`)
keras-recsys evaluate SAVED_MODEL data.csv [--group-column user_id]
    metrics of an export on labelled CSV rows (JSON)
keras-recsys predict SAVED_MODEL data.csv    an export's outputs on CSV rows (JSON lines)
keras-recsys describe SAVED_MODEL            what the export takes and returns, with an
                                             example REST request
keras-recsys demo [--model dcn]              census: train, evaluate, export, verify

Building the parser imports neither TensorFlow nor Keras, so `--help` and
argument errors answer at once; each command imports what it needs.
Foreseeable mistakes (a missing file or column, a bad value, an invalid
config) end with a message on stderr and exit code 2, not a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import sys
import time

# Before any TensorFlow import: no INFO/WARNING lines from its C++ runtime.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from keras_recsys_cli import (  # noqa: F401  (build_parser, DEMO_MODELS: re-exported)
    _STARTUP_NOISE,
    DEMO_MODELS,
    _filtered_stderr,
    build_parser,
)

# C++ INFO lines ("I0000 00:00:17.5 123 file.cc:390] ..."): absl, never
# initialized by TensorFlow's Python package, prints them whatever
# TF_CPP_MIN_LOG_LEVEL says (e.g. TFRecordDataset's buffer_size notice).
_CPP_INFO = re.compile(r"^I\d{4} [\d:.]+\s+\d+ [\w./-]+:\d+\] ")


def _quiet_cpp():
    """A context that drops C++ INFO lines unless TF_CPP_MIN_LOG_LEVEL is 0."""
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0") in ("", "0"):
        return contextlib.nullcontext()
    return _filtered_stderr(_CPP_INFO)


class CommandError(Exception):
    """A foreseeable mistake: printed as one line on stderr, exit code 2."""


def import_tensorflow():
    """TensorFlow (and Keras), imported without its start-up log lines.

    Also quiets TensorFlow's and absl's Python loggers to errors, so that
    commands print their results, not retracing or deprecation notices.
    """
    if "tensorflow" not in sys.modules:
        with _filtered_stderr(_STARTUP_NOISE):
            import keras  # noqa: F401  (imports TensorFlow on the TF backend)
            import tensorflow  # noqa: F401
    import absl.logging
    import tensorflow as tf

    absl.logging.set_verbosity(absl.logging.ERROR)
    tf.get_logger().setLevel("ERROR")
    return tf


# ------------------------------------------------------------------ demo
def _build_demo_model(name: str, spec, tasks, seed: int):
    import keras

    import keras_recsys as kr

    keras.utils.set_random_seed(seed)
    if name == "dcn":
        return kr.models.DCN(
            spec, tasks, version="v2", num_cross_layers=2, projection_dim=32,
            hidden_units=(256, 128), dropout=0.1,
        )  # fmt: skip
    if name == "deepfm":
        return kr.models.DeepFM(spec, tasks, hidden_units=(256, 128), dropout=0.1)
    return kr.models.WideAndDeep(spec, tasks, hidden_units=(256, 128), dropout=0.1)


def save_training_curves(history: dict, path: str, title: str) -> None:
    """One panel per task metric family (loss, AUC), train vs validation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    families = [("loss", "loss"), ("auc", "AUC")]
    fig, axes = plt.subplots(1, len(families), figsize=(11, 4))
    for ax, (suffix, label) in zip(axes, families):
        for key, values in sorted(history.items()):
            if key.startswith("val_") or not (key == suffix or key.endswith("_" + suffix)):
                continue
            epochs = range(1, len(values) + 1)
            (line,) = ax.plot(epochs, values, marker="o", label=f"{key} (train)")
            if f"val_{key}" in history:
                ax.plot(
                    epochs, history[f"val_{key}"], marker="s", linestyle="--",
                    color=line.get_color(), label=f"{key} (valid)",
                )  # fmt: skip
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def demo(args: argparse.Namespace) -> int:
    """Census income, two tasks: fit, evaluate, export, verify, plot."""
    import_tensorflow()
    import keras

    import keras_recsys as kr
    from keras_recsys.export import check_export

    started = time.time()
    train, valid, test = kr.datasets.census_income()
    print(f"census income: {len(train)} train / {len(valid)} valid / {len(test)} test rows")
    spec = kr.datasets.census_feature_spec(embedding_dim=args.embedding_dim).adapt(train)
    tasks = [kr.Task("income"), kr.Task("marital")]
    model = _build_demo_model(args.model, spec, tasks, args.seed)
    model.compile(optimizer=keras.optimizers.Adam(args.learning_rate))
    train_ds = kr.data.from_pandas(
        train, model, batch_size=args.batch_size, shuffle=True, seed=args.seed
    )
    valid_ds = kr.data.from_pandas(valid, model, batch_size=8192)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    history = model.fit(
        train_ds, validation_data=valid_ds, epochs=args.epochs, callbacks=[stop],
        verbose=2,
    )  # fmt: skip
    scores = model.evaluate(
        kr.data.from_pandas(test, model, batch_size=8192), return_dict=True, verbose=0
    )
    print("test AUC: " + ", ".join(f"{t.name} {scores[f'{t.name}_auc']:.4f}" for t in tasks))
    base = os.path.join(args.output, f"census_{args.model}")
    path = model.export(base, warmup_data=test)
    print(f"exported: {path}")
    differences = check_export(model, path, test.sample(2000, random_state=0))
    print(
        "export verified in a fresh TensorFlow-only process: max |diff| "
        + ", ".join(f"{k} {v:.2e}" for k, v in differences.items())
    )
    curves = os.path.join(args.output, f"census_{args.model}_training_curves.png")
    save_training_curves(history.history, curves, f"{model.name} on census income")
    print(f"training curves: {curves}")
    summary = {
        "model": args.model,
        "test_auc": {t.name: round(float(scores[f"{t.name}_auc"]), 4) for t in tasks},
        "export": path,
        "seconds": round(time.time() - started, 1),
    }
    with open(os.path.join(args.output, f"census_{args.model}_summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    floors = {"income": 0.945, "marital": 0.990}
    failed = {k: v for k, v in summary["test_auc"].items() if v < floors[k]}
    if failed:
        print(f"below the quality floor {floors}: {failed}", file=sys.stderr)
        return 1
    print(f"quality floor met {floors}; done in {summary['seconds']} s")
    return 0


# ----------------------------------------------------------------- train
def plain(value):
    """`value` with NumPy scalars as Python numbers and NaN/inf as None (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _write_json(path: str, value) -> None:
    with open(path, "w", encoding="utf-8") as file:
        json.dump(plain(value), file, indent=2, allow_nan=False)
        file.write("\n")


def _format_metrics(results: dict) -> str:
    lines = []
    for task, metrics in results.items():
        shown = ", ".join(
            f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()
        )
        lines.append(f"  {task}: {shown}")
    return "\n".join(lines)


def train(args: argparse.Namespace) -> int:
    """Trains, evaluates and exports the model a config describes."""
    from keras_recsys import cli_config

    started = time.time()
    # YAML and --set errors surface before TensorFlow loads (seconds earlier).
    raw = cli_config.load_config(args.config, args.set)
    import_tensorflow()
    import keras

    import keras_recsys as kr

    config = cli_config.validate(raw, args.config, os.path.dirname(os.path.abspath(args.config)))
    if args.output:
        config["output"] = args.output
    output = os.path.abspath(config["output"])
    training = config["training"]
    keras.utils.set_random_seed(training["seed"])

    # Everything up to fit reads user data: its errors are the user's to fix.
    try:
        train_df, valid_df, test_df = cli_config.load_data(config)
        print(
            f"data: {len(train_df)} train / {len(valid_df)} valid / {len(test_df)} test rows",
            flush=True,
        )
        spec = cli_config.build_spec(config, train_df)
        tasks = cli_config.build_tasks(config)
        model = cli_config.build_model(config, spec, tasks)
        model.compile(optimizer=cli_config.build_optimizer(config))
        train_ds = kr.data.from_pandas(
            train_df,
            model,
            batch_size=training["batch_size"],
            shuffle=True,
            seed=training["seed"],
        )
        valid_ds = kr.data.from_pandas(valid_df, model, batch_size=training["eval_batch_size"])
        kr.data.from_pandas(test_df.head(1), model)  # label columns of the test part
        group = config["data"]["group_column"]
    except (FileNotFoundError, KeyError, TypeError, ValueError) as error:
        raise CommandError(_message(error)) from error

    os.makedirs(output, exist_ok=True)
    _write_json(os.path.join(output, "config.json"), config)
    callbacks = []
    stopping = training["early_stopping"]
    if stopping:
        callbacks.append(
            kr.callbacks.MultiTaskEarlyStopping(
                stopping["metric"],
                tasks=stopping.get("tasks"),
                weights=stopping.get("weights"),
                patience=stopping["patience"],
                min_delta=stopping.get("min_delta", 0.0),
                restore_best_weights=True,
            )
        )
    logs = os.path.join(output, "logs")
    # After early stopping, so that its val_mean_<metric> is logged too.
    callbacks.append(keras.callbacks.TensorBoard(log_dir=logs, write_graph=False))
    print(
        f"training {model.name} ({config['model']['name']}) for up to {training['epochs']} epochs"
    )
    history = model.fit(
        train_ds,
        validation_data=valid_ds,
        epochs=training["epochs"],
        callbacks=callbacks,
        # A progress bar on a terminal; one line per epoch in a log file.
        verbose=1 if sys.stdout.isatty() else 2,
    )
    results = kr.metrics.evaluate(
        model, test_df, group_column=group, batch_size=training["eval_batch_size"]
    )
    results = plain(results)
    print("test metrics:\n" + _format_metrics(results))
    curves = os.path.join(output, "training_curves.png")
    save_training_curves(history.history, curves, f"{config['model']['name']}: {config['name']}")
    export = model.export(
        os.path.join(output, "saved_model"), warmup_data=test_df, model_name=config["name"]
    )
    best_epoch = None
    if stopping and callbacks[0].best_weights is not None:
        best_epoch = int(callbacks[0].best_epoch) + 1
    summary = {
        "name": config["name"],
        "model": config["model"]["name"],
        "rows": {"train": len(train_df), "valid": len(valid_df), "test": len(test_df)},
        "epochs_run": len(history.epoch),
        "best_epoch": best_epoch,
        "test": results,
        "history": history.history,
        "export": export,
        "training_curves": curves,
        "tensorboard": logs,
        "seconds": round(time.time() - started, 1),
    }
    _write_json(os.path.join(output, "metrics.json"), summary)
    print(f"training curves: {curves}")
    print(f"TensorBoard logs: {logs}  (tensorboard --logdir {logs})")
    print(f"exported: {export}")
    print(f"metrics: {os.path.join(output, 'metrics.json')}; done in {summary['seconds']} s")
    return 0


def _message(error: BaseException) -> str:
    # KeyError's str() wraps its message in quotes.
    if isinstance(error, KeyError) and len(error.args) == 1 and isinstance(error.args[0], str):
        return error.args[0]
    return str(error)


# ---------------------------------------------------- exports: shared parts
def _version_dir(path: str) -> str:
    """The SavedModel directory of `path`: itself, or the latest version under it."""
    if not os.path.exists(path):
        raise CommandError(f"'{path}' does not exist")
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    versions = [d for d in os.listdir(path) if d.isdigit()] if os.path.isdir(path) else []
    versions = [d for d in versions if os.path.isfile(os.path.join(path, d, "saved_model.pb"))]
    if versions:
        return os.path.join(path, max(versions, key=int))
    raise CommandError(
        f"'{path}' is not a SavedModel: it has no saved_model.pb (nor version directories with one)"
    )


def _contract(path: str, command: str) -> dict:
    from keras_recsys import serving_contract

    contract = serving_contract.read_contract(path)
    if contract is None:
        raise CommandError(
            f"'{path}' has no {serving_contract.CONTRACT_FILE} (exported before serving "
            f"contracts): `{command}` needs it; export the model again"
        )
    return contract


def _read_csv(path: str):
    """Every cell as text, as a client would read it: the contract decides the types."""
    import pandas as pd

    if not os.path.isfile(path):
        raise CommandError(f"data file '{path}' does not exist")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (ValueError, UnicodeDecodeError) as error:
        raise CommandError(f"{path}: not a readable CSV file ({error})") from error


def _parsed_column(series, source: str, column: str, name: str, dtype: str):
    """A text column as the numbers `dtype` takes; an empty cell is the missing value."""
    import numpy as np

    from keras_recsys.features.raw import MISSING_INT

    values = []
    for row, text in enumerate(series.tolist()):
        text = text.strip()
        try:
            if dtype == "int64":
                values.append(MISSING_INT if text == "" else int(text))
            else:
                values.append(math.nan if text == "" else float(text))
        except ValueError:
            what = "an integer id" if dtype == "int64" else "a number"
            raise CommandError(
                f"{source}: line {row + 2}, column '{column}' (input '{name}', {dtype}) "
                f"holds {text!r}, not {what}"
            ) from None
    return np.asarray(values, dtype=np.int64 if dtype == "int64" else np.float32)


def _inputs_from_csv(df, expected: dict, source: str) -> dict:
    """The export's inputs from CSV columns, checked and cast by the contract."""
    from keras_recsys import serving_contract

    columns = {}
    missing = []
    for name, entry in expected.items():
        column = name if name in df.columns else entry.get("column", name)
        if column not in df.columns:
            missing.append(f"'{name}' ({entry.get('kind', '?')}, {entry['dtype']})")
        columns[name] = column
    if missing:
        raise CommandError(
            f"{source}: missing input column(s) {', '.join(missing)}; the file has "
            f"{', '.join(map(str, df.columns[:30]))}"
        )
    inputs = {}
    for name, entry in expected.items():
        series = df[columns[name]]
        if entry["dtype"] in ("int64", "float32"):
            inputs[name] = _parsed_column(series, source, columns[name], name, entry["dtype"])
        else:
            inputs[name] = series.to_numpy(dtype=object)
    try:
        return serving_contract.prepare_inputs(inputs, expected)
    except (KeyError, TypeError, ValueError) as error:
        raise CommandError(f"{source}: {_message(error)}") from error


def _run_export(path: str, inputs: dict, contract: dict, batch_size: int) -> dict:
    """`serving_default` on `inputs`, batch by batch, as {output: array}.

    The signature's input shapes are (None,), so every batch size runs the
    same concrete function: nothing is retraced.
    """
    import numpy as np

    tf = import_tensorflow()
    with _quiet_cpp():
        loaded = tf.saved_model.load(path)
    function = loaded.signatures[contract.get("signature_name", "serving_default")]
    rows = len(next(iter(inputs.values()))) if inputs else 0
    parts: dict[str, list] = {}
    for start in range(0, rows, batch_size):
        feeds = {}
        for name, values in inputs.items():
            chunk = values[start : start + batch_size]
            dtype = tf.dtypes.as_dtype(contract["inputs"][name]["dtype"])
            feeds[name] = tf.constant(chunk.tolist() if chunk.dtype == object else chunk, dtype)
        for name, value in function(**feeds).items():
            parts.setdefault(name, []).append(value.numpy())
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


def _json_output(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list):
        return [_json_output(v) for v in value]
    return value


# -------------------------------------------------------- evaluate, predict
def evaluate(args: argparse.Namespace) -> int:
    """Metrics of an export on labelled CSV rows; labels named by the contract's outputs."""
    path = _version_dir(args.path)
    contract = _contract(path, "evaluate")
    df = _read_csv(args.csv)
    if args.group_column is not None and args.group_column not in df.columns:
        raise CommandError(f"{args.csv}: no group column '{args.group_column}'")
    scored = {
        name: entry
        for name, entry in contract["outputs"].items()
        if entry.get("task") is not None and entry.get("label") is not None
    }
    if not scored:
        raise CommandError(
            f"'{path}' has no output with a label to compare with (a "
            f"{contract['model'].get('kind')} model): evaluate it with kr.evaluation"
        )
    missing = [f"'{e['label']}' (output '{n}')" for n, e in scored.items() if e["label"] not in df]
    if missing:
        raise CommandError(
            f"{args.csv}: missing label column(s) {', '.join(missing)}; the file has "
            f"{', '.join(map(str, df.columns[:30]))}"
        )
    inputs = _inputs_from_csv(df, contract["inputs"], args.csv)
    import_tensorflow()
    import keras_recsys as kr

    tasks = [
        kr.Task(
            name,
            kind=entry["kind"],
            label=entry["label"],
            num_classes=entry["shape"][1] if entry["kind"] == "multiclass" else None,
        )
        for name, entry in scored.items()
    ]
    try:
        for task in tasks:  # bad labels fail before the export runs
            task.label_array(df)
    except (KeyError, TypeError, ValueError) as error:
        raise CommandError(f"{args.csv}: {_message(error)}") from error
    predictions = _run_export(path, inputs, contract, args.batch_size)
    results = kr.metrics.evaluate(
        None, df, group_column=args.group_column, tasks=tasks, predictions=predictions
    )
    print(json.dumps(plain(results), indent=None if args.compact else 2, allow_nan=False))
    return 0


def predict(args: argparse.Namespace) -> int:
    """Feeds raw CSV rows to an export, as a client would; prints JSON lines."""
    path = _version_dir(args.path)
    contract = _contract(path, "predict")
    df = _read_csv(args.csv)
    inputs = _inputs_from_csv(df, contract["inputs"], args.csv)
    outputs = _run_export(path, inputs, contract, args.batch_size)
    outputs = {name: value.tolist() for name, value in outputs.items()}
    for i in range(len(df)):
        print(json.dumps({name: _json_output(values[i]) for name, values in outputs.items()}))
    return 0


# ---------------------------------------------------------------- describe
_INPUT_DETAILS = (
    "separator",
    "max_length",
    "item_dtype",
    "vocabulary_size",
    "num_hash_bins",
    "shares_vocabulary_with",
    "num_buckets",
    "transform",
    "normalization",
    "role",
)


def describe(args: argparse.Namespace) -> int:
    """Prints what a client needs: each input and output, and an example request."""
    path = _version_dir(args.path)
    import_tensorflow()
    from keras_recsys.export import describe as describe_export

    with _quiet_cpp():
        info = describe_export(path)
    contract = info["contract"]
    if args.json:
        print(json.dumps(plain(info), indent=2))
        return 0
    if contract is None:
        print(f"{path}: exported before serving contracts; signature only")
        for section in ("inputs", "outputs"):
            print(f"{section}:")
            for name, (dtype, shape) in sorted(info[section].items()):
                print(f"  {name}: {dtype} {shape}")
        return 0
    model = contract["model"]
    print(
        f"{path}\nmodel: {model.get('class')} ({model.get('kind')}), served as "
        f"'{model.get('name')}' version {model.get('version')}; signature "
        f"'{contract['signature_name']}'"
    )
    print(contract["batch"])
    ids = contract["id_convention"]
    print(
        f"ids: padding {ids['padding_id']}, out-of-vocabulary {ids['oov_id']}, "
        f"vocabulary from {ids['first_vocabulary_id']}"
    )
    print("\ninputs:")
    for name, entry in contract["inputs"].items():
        details = ", ".join(
            f"{key} {entry[key]!r}" for key in _INPUT_DETAILS if entry.get(key) is not None
        )
        print(f"  {name}: {entry['kind']}, {entry['dtype']}" + (f"; {details}" if details else ""))
        for key in ("encoding", "oov_rule", "missing_rule"):
            if entry.get(key):
                print(f"      {key.replace('_', ' ')}: {entry[key]}")
    print("\noutputs:")
    for name, entry in contract["outputs"].items():
        shape = "(" + ", ".join("B" if d is None else str(d) for d in entry["shape"]) + ")"
        print(f"  {name}: {entry['dtype']} {shape}: {entry['meaning']}")
    for signature, spec in contract.get("other_signatures", {}).items():
        print(f"\nother signature '{signature}':")
        for section in ("inputs", "outputs"):
            for name, entry in spec[section].items():
                print(f"  {section[:-1]} {name}: {entry['dtype']}: {entry['meaning']}")
    request = info["example_request"]
    if request is not None:
        served = model.get("name") or "MODEL"
        print(f"\nexample REST request (POST http://HOST:8501/v1/models/{served}:predict):")
        print(json.dumps(request, indent=2))
    return 0


def run(args: argparse.Namespace) -> int:
    """Runs a parsed command; a foreseeable error is one line on stderr and exit code 2."""
    from keras_recsys.cli_config import ConfigError

    command = {"train": train, "evaluate": evaluate, "predict": predict, "describe": describe,
               "demo": demo}[args.command]  # fmt: skip
    try:
        return command(args)
    except ConfigError as error:
        print(f"keras-recsys {args.command}: {error}", file=sys.stderr)
        return 2
    except CommandError as error:
        print(f"keras-recsys {args.command}: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `keras-recsys predict ... | head`
        sys.stderr.close()
        return 0


def main(argv: list[str] | None = None) -> int:
    """The `keras-recsys` command (see `keras_recsys_cli`, which parses without TensorFlow)."""
    from keras_recsys_cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
