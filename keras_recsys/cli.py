"""The `keras-recsys` command line.

keras-recsys demo [--model dcn] [--epochs 8]     census: train, evaluate, export, verify
keras-recsys describe saved_models/census_dcn/1  the serving signature of an export
keras-recsys predict saved_models/census_dcn/1 rows.csv   run an export on raw CSV rows
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEMO_MODELS = ("dcn", "deepfm", "wide_deep")


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


def describe(args: argparse.Namespace) -> int:
    from keras_recsys.export import describe as describe_export

    info = describe_export(args.path)
    print("inputs:")
    for name, (dtype, shape) in sorted(info["inputs"].items()):
        print(f"  {name}: {dtype} {shape}")
    print("outputs:")
    for name, (dtype, shape) in sorted(info["outputs"].items()):
        print(f"  {name}: {dtype} {shape}")
    return 0


def predict(args: argparse.Namespace) -> int:
    """Feeds raw CSV rows to an export, as a client would; prints JSON lines."""
    import numpy as np
    import pandas as pd
    import tensorflow as tf

    function = tf.saved_model.load(args.path).signatures["serving_default"]
    specs = function.structured_input_signature[1]
    df = pd.read_csv(args.csv, dtype=str, keep_default_na=False)
    missing = [name for name in specs if name not in df.columns]
    if missing:
        print(f"{args.csv}: missing columns {missing}", file=sys.stderr)
        return 2
    feeds = {}
    for name, spec in specs.items():
        if spec.dtype == tf.string:
            feeds[name] = tf.constant(df[name].tolist())
        else:
            values = pd.to_numeric(df[name].replace("", np.nan), errors="raise")
            feeds[name] = tf.constant(values.to_numpy(), dtype=spec.dtype)
    outputs = {k: v.numpy().tolist() for k, v in function(**feeds).items()}
    for i in range(len(df)):
        print(json.dumps({k: v[i] for k, v in outputs.items()}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="keras-recsys", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("demo", help="census: train, evaluate, export, verify, plot")
    run.add_argument("--model", choices=DEMO_MODELS, default="dcn")
    run.add_argument("--epochs", type=int, default=8)
    run.add_argument("--batch-size", type=int, default=1024)
    run.add_argument("--learning-rate", type=float, default=1e-3)
    run.add_argument("--embedding-dim", type=int, default=8)
    run.add_argument("--seed", type=int, default=2026)
    run.add_argument("--output", default="saved_models")
    run.set_defaults(func=demo)
    show = commands.add_parser("describe", help="the serving signature of an export")
    show.add_argument("path")
    show.set_defaults(func=describe)
    serve = commands.add_parser("predict", help="run an export on raw CSV rows")
    serve.add_argument("path")
    serve.add_argument("csv")
    serve.set_defaults(func=predict)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
