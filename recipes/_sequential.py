"""The runner of the next-item recipes: leave-one-out, full ranking, early stopping.

Protocol (S3-Rec, Zhou et al., CIKM 2020): per user, the last item is the
test target, the one before it the validation target, the rest trains;
histories keep the latest `max_length` items; every item is ranked (full
ranking, no sampled negatives) with the user's history removed from the
candidates; HR@K and NDCG@K for K in {5, 10, 20} and MRR. Each model trains
until the validation NDCG@10 (checked every `eval_every` epochs) has not
improved for `patience` checks, and is tested with its best weights. A
popularity baseline (training-item counts, history excluded) runs in the
same process.

The vocabulary is the item catalogue (every item of the data set), as in
the S3-Rec code, so test targets are never out of vocabulary.

An arm may pre-train its model first (`Arm.pretrain`, e.g.
`s3rec_pretraining()`: S3-Rec's self-supervised objectives on the training
sequences and the item attributes, then fine-tuning as the arm's model).

Arrays are made with NumPy from the fitted spec (`FeatureSpec.sequence_ids`):
no TensorFlow, so a recipe runs on the GPU machine with JAX as it does here.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from _runner import (  # noqa: E402
    RESULTS_DIR,
    machine,
    replace_readme_table,
    seeds_and_out,
    write_report,
)

import keras_recsys as kr  # noqa: E402
from keras_recsys.models.sequence import S3RecPretrainer  # noqa: E402

KS = (5, 10, 20)


@dataclass
class SequenceData:
    """Arrays of a leave-one-out split, ids from the fitted spec."""

    name: str
    spec: kr.FeatureSpec
    train: np.ndarray  # (N, L + 1) training sequences, front-padded
    valid_history: np.ndarray  # (U, L)
    valid_target: np.ndarray  # (U,)
    test_history: np.ndarray
    test_target: np.ndarray
    notes: dict = field(default_factory=dict)
    # With timestamps: the times aligned with `train`, `valid_history`, `test_history`.
    train_times: np.ndarray | None = None
    valid_times: np.ndarray | None = None
    test_times: np.ndarray | None = None
    # (V, A) multi-hot of each item id's attributes, when the data set has them (S3-Rec).
    item_attributes: np.ndarray | None = None

    def queries(self, split: str, model=None) -> dict:
        """A split's histories as model inputs ({"history", and "history_time" if read})."""
        queries = {"history": getattr(self, f"{split}_history")}
        if getattr(model, "timestamp_feature", None) is not None:
            queries[model.timestamp_feature] = getattr(self, f"{split}_times")
        return queries


def leave_one_out_data(
    dataset: kr.datasets.SequenceDataset, max_length: int, dim: int, timestamps: bool = False
):
    """The S3-Rec split of a `SequenceDataset` as id arrays (and time arrays with `timestamps`)."""
    train, valid, test = dataset.leave_one_out()
    catalogue = pd.DataFrame({"history": dataset.sequences["item_id"]})
    features = [kr.Sequence("history", max_length=max_length)]
    if timestamps:
        features.append(kr.Timestamps("history_time", "history"))
        catalogue["history_time"] = dataset.sequences["timestamp"]
    spec = kr.FeatureSpec(features, dim)
    spec.adapt(catalogue)
    times = {}
    if timestamps:
        times = {
            "train_times": spec.sequence_timestamps(
                "history_time", train["timestamp"], max_length + 1
            ),
            "valid_times": spec.sequence_timestamps("history_time", valid["timestamp"]),
            "test_times": spec.sequence_timestamps("history_time", test["timestamp"]),
        }
    attributes = None
    if dataset.item_attributes is not None:
        attributes = dataset.item_attribute_matrix(spec, "history")
    return SequenceData(
        **times,
        item_attributes=attributes,
        name=dataset.name,
        spec=spec,
        train=spec.sequence_ids("history", train["item_id"], max_length + 1),
        valid_history=spec.sequence_ids("history", valid["history"]),
        valid_target=spec.lookup("history", valid["target"]),
        test_history=spec.sequence_ids("history", test["history"]),
        test_target=spec.lookup("history", test["target"]),
        notes={
            "users": int(len(train)),
            "items": int(spec.input_dim("history") - 2),
            "interactions": int(sum(len(s) for s in dataset.sequences["item_id"])),
            "max_length": max_length,
        },
    )


@dataclass
class Training:
    max_epochs: int = 200
    batch_size: int = 256
    learning_rate: float = 1e-3
    optimizer: str = "adam"  # or "adamw": AdamW(β2 0.98, weight decay 1e-3), HSTU's
    eval_every: int = 5
    patience: int = 4  # checks without a better validation NDCG@10
    max_seconds: float | None = None  # a wall-clock budget for one run (stops like patience)
    # Self-supervised pre-training before the next-item training (arms with `pretrain`).
    pretrain_epochs: int = 0
    pretrain_batch_size: int = 100


@dataclass
class Arm:
    label: str
    build: Callable | None  # spec, seed -> model; None: popularity
    training: Training = field(default_factory=Training)
    # (model, data, training, seed) -> notes: pre-trains the model built by `build`.
    pretrain: Callable | None = None


def s3rec_pretraining(**pretrainer_args) -> Callable:
    """An `Arm.pretrain` that pre-trains a SASRec's encoder with S3-Rec, then copies it in.

    An `S3RecPretrainer` with the SASRec's blocks, heads and dropout (and
    `pretrainer_args`: the objective weights, the masking rate) trains for
    `training.pretrain_epochs` epochs on every prefix of the training
    sequences (batches of `training.pretrain_batch_size`, Adam at
    `training.learning_rate`, the reference's settings), with the data
    set's item attributes; `transfer_to` then puts its encoder into the
    SASRec, which trains next as usual.
    """

    def pretrain(model, data: SequenceData, training: Training, seed: int) -> dict:
        start = time.time()
        args = dict(pretrainer_args)
        uses_attributes = args.get("aap_weight", 0.2) > 0 or args.get("map_weight", 1.0) > 0
        if uses_attributes and data.item_attributes is None:
            raise ValueError(
                f"S3-Rec's attribute objectives need {data.name}'s item attributes "
                "(<name>_item2attributes.json next to the sequences)."
            )
        backbone = model.backbone
        pretrainer = S3RecPretrainer(
            data.spec,
            item_attributes=data.item_attributes if uses_attributes else None,
            num_blocks=backbone.num_blocks,
            num_heads=backbone.num_heads,
            dropout=backbone.dropout,
            **args,
        )
        pretrainer.compile(optimizer=make_optimizer(training))
        batches = pretrainer.pretraining_data(
            data.train, batch_size=training.pretrain_batch_size, seed=seed
        )
        history = {}
        if training.pretrain_epochs > 0:
            history = pretrainer.fit(batches, epochs=training.pretrain_epochs, verbose=0).history
        pretrainer.transfer_to(model)
        return {
            "epochs": training.pretrain_epochs,
            "rows": len(batches.sequences),
            "loss_curve": {
                key: [round(float(v), 4) for v in values] for key, values in history.items()
            },
            "seconds": round(time.time() - start, 1),
        }

    return pretrain


def make_optimizer(training: Training) -> keras.optimizers.Optimizer:
    if training.optimizer == "adamw":
        return keras.optimizers.AdamW(training.learning_rate, beta_2=0.98, weight_decay=1e-3)
    return keras.optimizers.Adam(training.learning_rate)


def _scores_fn(model):
    scorer = model.scorer()
    return lambda batch: scorer.predict_on_batch(batch)


def evaluate(model, data: SequenceData, split: str, batch_size: int = 512) -> dict:
    history = getattr(data, f"{split}_history")
    return kr.evaluation.evaluate_full_ranking(
        _scores_fn(model),
        data.queries(split, model),
        getattr(data, f"{split}_target"),
        exclude=history,
        ks=KS,
        batch_size=batch_size,
    )


def fit_with_early_stopping(model, fit, validate, training: Training, start: float) -> dict:
    """Trains `eval_every` epochs at a time (`fit(epochs)`) while `validate()`'s NDCG@10
    improves within `patience` checks (and `max_epochs`, `max_seconds` since `start`);
    leaves the model with its best weights.

    Returns {"epochs", "best_epoch", "validation_curve", "stopped"}.
    """
    best, best_weights, best_epoch, waited, epoch = -1.0, None, 0, 0, 0
    curve, stopped = [], "max_epochs"
    while epoch < training.max_epochs:
        if waited >= training.patience:
            stopped = "patience"
            break
        if training.max_seconds is not None and time.time() - start > training.max_seconds:
            stopped = "time budget"
            break
        fit(training.eval_every)
        epoch += training.eval_every
        valid = validate()
        curve.append({"epoch": epoch, "NDCG@10": valid["NDCG@10"], "HR@10": valid["HR@10"]})
        if valid["NDCG@10"] > best:
            best, best_weights, best_epoch, waited = valid["NDCG@10"], model.get_weights(), epoch, 0
        else:
            waited += 1
    model.set_weights(best_weights)
    return {
        "epochs": epoch,
        "best_epoch": best_epoch,
        "validation_curve": curve,
        "stopped": stopped,
    }


def train_arm(arm: Arm, data: SequenceData, seed: int) -> dict:
    """Trains one model with early stopping on validation NDCG@10; tests its best weights."""
    start = time.time()
    if arm.build is None:
        counts = kr.evaluation.popularity_scores(data.train, data.spec.input_dim("history"))
        popular = np.asarray(counts, "float32")

        def score(batch):
            return np.broadcast_to(popular, (len(batch), len(popular)))

        result = {}
        for split, history, target in (
            ("valid", data.valid_history, data.valid_target),
            ("test", data.test_history, data.test_target),
        ):
            result[split] = kr.evaluation.evaluate_full_ranking(
                score, history, target, exclude=history, ks=KS
            )
        return {**result, "epochs": 0, "seconds": round(time.time() - start, 1)}
    keras.utils.set_random_seed(seed)
    model = arm.build(data.spec, seed)
    training = arm.training
    pretraining = arm.pretrain(model, data, training, seed) if arm.pretrain else None
    if pretraining is not None:
        print(
            f"[{data.name}] seed {seed}: pre-trained {pretraining['epochs']} epochs in "
            f"{pretraining['seconds']} s",
            flush=True,
        )
    model.compile(optimizer=make_optimizer(training))
    times = data.train_times if getattr(model, "timestamp_feature", None) else None
    if hasattr(model, "training_batches"):  # HSTU: stochastic length when switched on
        batches = model.training_batches(data.train, training.batch_size, times, seed=seed)
    else:
        batches = model.training_pair(data.train, times)

    def fit(epochs):
        if isinstance(batches, tuple):
            x, y = batches
            model.fit(x, y, batch_size=training.batch_size, epochs=epochs, verbose=0, shuffle=True)
        else:
            model.fit(batches, epochs=epochs, verbose=0)

    stopping = fit_with_early_stopping(
        model, fit, lambda: evaluate(model, data, "valid"), training, start
    )
    result = {
        "valid": evaluate(model, data, "valid"),
        "test": evaluate(model, data, "test"),
        **stopping,
        "seconds": round(time.time() - start, 1),
    }
    if pretraining is not None:
        result["pretraining"] = pretraining
    return result


def _summary(runs: list[dict]) -> dict:
    keys = [k for k in runs[0]["test"] if k != "num_queries"]
    return {
        key: {
            "mean": float(np.mean([r["test"][key] for r in runs])),
            "std": float(np.std([r["test"][key] for r in runs], ddof=1 if len(runs) > 1 else 0)),
        }
        for key in keys
    }


def run(
    name: str, data: SequenceData, arms: dict[str, Arm], seeds, out: str | None, write=True
) -> dict:
    runs: dict[str, list] = {key: [] for key in arms}
    start = time.time()
    for seed in seeds:
        for key, arm in arms.items():
            if arm.build is None and runs[key]:
                result = dict(runs[key][0])  # popularity is deterministic
            else:
                result = train_arm(arm, data, seed)
            result["seed"] = seed
            runs[key].append(result)
            test = result["test"]
            print(
                f"[{name}] seed {seed} {key}: test HR@10 {test['HR@10']:.4f} "
                f"NDCG@10 {test['NDCG@10']:.4f} ({result['epochs']} epochs, "
                f"{result['seconds']} s)",
                flush=True,
            )
    report = {
        "recipe": name,
        "dataset": data.name,
        "protocol": "leave-one-out, full ranking over all items, history excluded",
        "data": data.notes,
        "arms": {key: arm.label for key, arm in arms.items()},
        "training": {key: asdict(arm.training) for key, arm in arms.items() if arm.build},
        "seeds": list(seeds),
        "summary": {key: _summary(r) for key, r in runs.items()},
        "runs": runs,
        "backend": keras.backend.backend(),
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "seconds": round(time.time() - start, 1),
        # As run, every option included (time budgets, pre-training epochs).
        "command": " ".join(["python", f"recipes/{name}.py", *sys.argv[1:]]),
    }
    for key, summary in report["summary"].items():
        print(
            f"[{name}] {key} ({arms[key].label}): HR@10 {summary['HR@10']['mean']:.4f} ± "
            f"{summary['HR@10']['std']:.4f}, NDCG@10 {summary['NDCG@10']['mean']:.4f} ± "
            f"{summary['NDCG@10']['std']:.4f}",
            flush=True,
        )
    if write_report(report, os.path.join("sequential", f"{name}.json"), out, results=write):
        write_table()
    return report


def main(name: str, load: Callable[[], SequenceData], arms: dict[str, Arm]) -> None:
    """Command line: `--seeds 0 1 2`, `--out FILE`, `--arms sasrec_bce ...`, `--max-epochs N`,
    `--pretrain-epochs N`, `--pretrain-batch-size N`."""
    parser = argparse.ArgumentParser(description=f"Recipe {name}")
    parser.add_argument("--arms", nargs="+", default=list(arms), choices=list(arms))
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument("--max-seconds", type=float, default=None, help="per run")
    parser.add_argument(
        "--pretrain-epochs", type=int, default=None, help="of the arms that pre-train (s3rec)"
    )
    parser.add_argument("--pretrain-batch-size", type=int, default=None)
    seeds, out, args = seeds_and_out(parser)
    chosen = {key: arms[key] for key in args.arms}
    for arm in chosen.values():
        if args.max_epochs is not None:
            arm.training.max_epochs = args.max_epochs
        if args.max_seconds is not None:
            arm.training.max_seconds = args.max_seconds
        if args.pretrain_epochs is not None and arm.pretrain is not None:
            arm.training.pretrain_epochs = args.pretrain_epochs
        if args.pretrain_batch_size is not None and arm.pretrain is not None:
            arm.training.pretrain_batch_size = args.pretrain_batch_size
    run(name, load(), chosen, seeds, out, write=not args.no_write)


def merge(out: str, paths: list[str]) -> dict:
    """One report from several runs of the same recipe (arms or seeds run apart)."""
    reports = []
    for path in paths:
        with open(path) as f:
            reports.append(json.load(f))
    merged = dict(reports[0])
    runs: dict[str, dict] = {}
    for report in reports:  # a later run of the same arm and seed replaces an earlier one
        for key, arm_runs in report["runs"].items():
            runs.setdefault(key, {}).update({run["seed"]: run for run in arm_runs})
            merged["arms"][key] = report["arms"][key]
            if key in report["training"]:
                merged["training"][key] = report["training"][key]
    merged["runs"] = {key: [r[seed] for seed in sorted(r)] for key, r in runs.items()}
    merged["summary"] = {key: _summary(r) for key, r in merged["runs"].items()}
    merged["seeds"] = sorted({seed for r in runs.values() for seed in r})
    merged["seconds"] = round(sum(report["seconds"] for report in reports), 1)
    merged["command"] = "; ".join(report["command"] for report in reports)
    with open(out, "w") as f:
        json.dump(merged, f, indent=1)
    return merged


TABLE_BEGIN = (
    "<!-- sequential results table: generated by `python recipes/_sequential.py table` -->"
)
TABLE_END = "<!-- end of sequential results table -->"


def table() -> str:
    """The Markdown table of every recipes/results/sequential/*.json."""
    directory = os.path.join(RESULTS_DIR, "sequential")
    lines = [
        "| recipe | arm | HR@5 | NDCG@5 | HR@10 | NDCG@10 | HR@20 | NDCG@20 | MRR | seeds | machine |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
        if not name.endswith(".json"):
            continue
        with open(os.path.join(directory, name)) as f:
            report = json.load(f)
        where = f"{report['backend']}, {report['machine'].split('GPU: ')[-1].split(',')[0]}"
        for arm, summary in report["summary"].items():
            cells = " | ".join(
                f"{summary[k]['mean']:.4f} ± {summary[k]['std']:.4f}"
                for k in ("HR@5", "NDCG@5", "HR@10", "NDCG@10", "HR@20", "NDCG@20", "MRR")
            )
            seeds = len(report["runs"][arm])
            lines.append(
                f"| {report['recipe']} | {report['arms'][arm]} | {cells} | {seeds} | {where} |"
            )
    return "\n".join(lines)


def write_table() -> None:
    replace_readme_table(TABLE_BEGIN, TABLE_END, table())


if __name__ == "__main__":
    import sys

    if len(sys.argv) > 3 and sys.argv[1] == "merge":
        merge(sys.argv[2], sys.argv[3:])
    elif sys.argv[1:] == ["table"]:
        write_table()
        print(table())
    else:
        sys.exit(
            "usage: python recipes/_sequential.py merge OUT.json IN.json [IN.json ...] | table"
        )
