"""Tuning MMoE and PLE on census income (income, marital) with keras-tuner.

For each model, a keras-tuner search (Bayesian optimization by default,
`--tuner hyperband` for Hyperband) over `kr.tuning`'s ready-made space
(`mmoe_space()`, `ple_space()`: the model's own knobs, embedding size,
learning rate, L2) plus the batch size (512, 1024, 2048), on the validation
split of the recipes' census data (`_common.census_data`: the documented
60/20/20 split, the spec with bucketized numerics). The objective is the
mean validation AUC of the two tasks (`kr.tuning.objective`); every trial
trains at most `--search-epochs` epochs and stops after `--search-patience`
epochs without a better mean, and the tuner keeps each trial's best epoch.
All trials start from the same initial weights' seed (0), so they differ
by their hyperparameters only.

The best settings are then retrained once per seed exactly as the hand-set
recipes train (`_common.fit`: early stopping with patience 3 on the mean
validation AUC, best weights kept, at most `--epochs` epochs, with the
tuned learning rate and batch size) and measured on the test split. The
record holds the found settings, every trial's hyperparameters and score,
the test AUC and log loss over the seeds, and, for comparison, the
hand-set recipes' test AUC (recipes/results/census_mmoe.json,
census_ple.json) where those records exist.

python recipes/census_tuning.py                      # 20 trials a model, seeds 0 1 2 (long)
python recipes/census_tuning.py --trials 40 --models mmoe
python recipes/census_tuning.py --quick --seeds 0    # smoke test: 2 trials, 1 epoch, small slices

`--quick` never writes recipes/results (only `--out`, if given): its numbers
measure nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import tempfile
import time

import _common as common
import keras
import keras_tuner
import numpy as np
from _runner import RESULTS_DIR, machine, seeds_and_out, write_report

import keras_recsys as kr

NAME = "census_tuning"
MODELS = {
    "mmoe": (kr.models.MMoE, kr.tuning.mmoe_space, "census_mmoe.json"),
    "ple": (kr.models.PLE, kr.tuning.ple_space, "census_ple.json"),
}
BATCH_SIZES = (512, 1024, 2048)
SEARCH_SEED = 0
QUICK_ROWS = {"train": 4096, "valid": 2048, "test": 2048}


def make_tuner(kind: str, hypermodel, objective, trials: int, epochs: int, directory: str):
    common_arguments = {
        "objective": objective,
        "directory": directory,
        "project_name": hypermodel.name,
        "overwrite": True,
        "seed": SEARCH_SEED,
    }
    if kind == "bayesian":
        return keras_tuner.BayesianOptimization(hypermodel, max_trials=trials, **common_arguments)
    # Hyperband sets its own number of trials from max_epochs (and factor 3).
    return keras_tuner.Hyperband(hypermodel, max_epochs=epochs, factor=3, **common_arguments)


def trial_records(tuner) -> list[dict]:
    """Every trial's id, status, score and hyperparameters, in the order they ran."""
    records = []
    for trial in tuner.oracle.trials.values():
        records.append(
            {
                "trial_id": trial.trial_id,
                "status": trial.status,
                "score": None if trial.score is None else float(trial.score),
                "hyperparameters": _json_ready(trial.hyperparameters.values),
            }
        )
    return records


def search(name: str, data: common.Data, args, directory: str) -> dict:
    """Runs the tuner for one model; the best hyperparameters and the search's record."""
    builder, space, _ = MODELS[name]
    hypermodel = kr.tuning.RecHyperModel(
        data.spec,
        data.model_tasks,
        builder,
        space().replace(batch_size=BATCH_SIZES),
        patience=args.search_patience,
        seed=SEARCH_SEED,
        name=name,
    )
    objective = kr.tuning.objective(data.model_tasks, "auc")
    tuner = make_tuner(
        args.tuner, hypermodel, objective, args.trials, args.search_epochs, directory
    )
    # Preprocessed once with the fitted spec: every trial's model reads them
    # (a tuned batch size re-batches the training set).
    train = kr.data.from_pandas(
        data.train, data.spec, tasks=data.model_tasks, batch_size=1024, shuffle=True, seed=0
    )
    valid = kr.data.from_pandas(data.valid, data.spec, tasks=data.model_tasks, batch_size=8192)
    start = time.time()
    tuner.search(train, validation_data=valid, epochs=args.search_epochs, verbose=0)
    best_hp = tuner.get_best_hyperparameters(1)[0]
    best_trial = tuner.oracle.get_best_trials(1)[0]
    record = {
        "best_hyperparameters": kr.tuning.best_hyperparameters(tuner),
        "settings": hypermodel.settings(best_hp),
        "best_val_mean_auc": float(best_trial.score),
        "trials": trial_records(tuner),
        "search_seconds": round(time.time() - start, 1),
    }
    return {"hypermodel": hypermodel, "hp": best_hp, "record": record}


def retrain(found: dict, data: common.Data, epochs: int, seed: int) -> dict:
    """The best settings trained from scratch with `seed`, measured on the test split."""
    hypermodel, hp = found["hypermodel"], found["hp"]
    settings = found["record"]["settings"]
    training = common.Training(
        epochs=epochs,
        batch_size=settings["batch_size"],
        learning_rate=settings["learning_rate"],
        patience=3,
    )
    hypermodel.seed = seed
    model = hypermodel.build(hp)  # the tuned L2 penalty stays on its weights
    fit = common.fit(model, data, training, seed)  # compiles Adam(tuned learning rate)
    metrics = kr.metrics.evaluate(
        None, data.test, tasks=data.eval_tasks, predictions=common.predict(model, data.test)
    )
    return {"seed": seed, "fit": fit, "test": metrics}


def hand_set_reference(filename: str) -> dict | None:
    """The hand-set recipe's test AUC (its model arm), where its record exists."""
    path = os.path.join(RESULTS_DIR, filename)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        report = json.load(f)
    summary = report["summary"]["model"]
    return {
        "recipe": report["recipe"],
        "model": report["model"],
        "seeds": report["seeds"],
        **{
            key: {"mean": value["mean"], "std": value["std"]}
            for key, value in summary.items()
            if key.endswith("_auc")
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=f"Recipe {NAME}")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--tuner", default="bayesian", choices=("bayesian", "hyperband"))
    parser.add_argument("--trials", type=int, default=20, help="trials a model (bayesian)")
    parser.add_argument(
        "--search-epochs", type=int, default=10, help="epochs a trial (hyperband: max_epochs)"
    )
    parser.add_argument("--search-patience", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=30, help="most epochs of the retraining")
    parser.add_argument(
        "--tuner-dir", default=None, help="keep the tuner's trials here (default: a temp dir)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 2 trials of 1 epoch, 1 retraining epoch, small slices; no results",
    )
    seeds, out, args = seeds_and_out(parser)
    write = not args.no_write
    data = common.census_data()
    if args.quick:
        args.trials, args.search_epochs, args.epochs = 2, 1, 1
        # Hyperband needs max_epochs >= 2 for two trials (one bracket of two).
        if args.tuner == "hyperband":
            args.search_epochs = 2
        data = dataclasses.replace(
            data,
            train=data.train.head(QUICK_ROWS["train"]),
            valid=data.valid.head(QUICK_ROWS["valid"]),
            test=data.test.head(QUICK_ROWS["test"]),
        )
        write = False
    task_names = [t.name for t in data.eval_tasks]
    start = time.time()
    models = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.models:
            found = search(name, data, args, args.tuner_dir or scratch)
            record = found["record"]
            print(
                f"[{NAME}] {name}: best validation mean AUC {record['best_val_mean_auc']:.4f} "
                f"after {len(record['trials'])} trials ({record['search_seconds']:.0f} s): "
                f"{json.dumps(record['settings'])}",
                flush=True,
            )
            runs = []
            for seed in seeds:
                result = retrain(found, data, args.epochs, seed)
                runs.append(result)
                aucs = ", ".join(f"{t} {result['test'][t]['auc']:.4f}" for t in task_names)
                print(f"[{NAME}] {name} seed {seed}: test AUC {aucs}", flush=True)
            summary = common._summary(runs, task_names)
            text = ", ".join(
                f"{t} {summary[f'{t}_auc']['mean']:.4f} ± {summary[f'{t}_auc']['std']:.4f}"
                for t in task_names
            )
            print(f"[{NAME}] {name} tuned: test AUC {text}", flush=True)
            reference = hand_set_reference(MODELS[name][2])
            if reference is not None:
                text = ", ".join(f"{t} {reference[f'{t}_auc']['mean']:.4f}" for t in task_names)
                print(f"[{NAME}] {name} hand-set ({reference['model']}): test AUC {text}")
            models[name] = {**record, "summary": summary, "runs": runs, "hand_set": reference}
    report = {
        "recipe": NAME,
        "dataset": data.name,
        "tasks": task_names,
        "seeds": list(seeds),
        "search": {
            "tuner": args.tuner,
            "trials": args.trials if args.tuner == "bayesian" else None,
            "epochs": args.search_epochs,
            "patience": args.search_patience,
            "objective": "val_mean_auc",
            "batch_sizes": list(BATCH_SIZES),
            "seed": SEARCH_SEED,
        },
        "retraining": {"epochs": args.epochs, "patience": 3},
        "quick": args.quick,
        "models": models,
        "backend": keras.backend.backend(),
        "keras_tuner": keras_tuner.__version__,
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "seconds": round(time.time() - start, 1),
        "command": (
            f"python recipes/{NAME}.py --tuner {args.tuner} --trials {args.trials} "
            f"--search-epochs {args.search_epochs} --seeds {' '.join(map(str, seeds))}"
            + (" --quick" if args.quick else "")
        ),
    }
    write_report(_json_ready(report), os.path.join("tuning", f"{NAME}.json"), out, results=write)


def _json_ready(value):
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


if __name__ == "__main__":
    main()
