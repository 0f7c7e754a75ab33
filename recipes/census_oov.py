"""Out-of-vocabulary handling on census income: values never seen in training.

With the default `min_frequency=1` every training value of census is in its
vocabulary, so no training example carries the out-of-vocabulary id 1 and
row 1 of every table keeps its random initial vector: an unseen value at
serving time feeds the model noise. This recipe trains a DNN (income and
marital, as census_mmoe) with the two ways of giving that row a meaning:

* `oov_dropout=p` (`kr.layers.FeatureEmbedding`): in training each real id
  of a categorical feature becomes id 1 with probability p;
* `min_frequency=k` (`kr.Categorical`): values seen fewer than k times in
  training share id 1 (every categorical column of the spec);

against neither, and measures every arm on the test split as it is, and on
the same split with unseen values injected: for a random 30% of its rows
(the same rows for every arm and seed) the values of the three
highest-cardinality categorical columns (det_ind_code 52 values,
state_prev_res 51, det_occ_code 47) are replaced by strings never seen in
training, which the preprocessing maps to id 1. AUC (and log loss, in the
JSON record) is reported on

* `test`: the test split as it is;
* `test_unseen`: the whole test split with the injected values;
* `rows_clean`: the chosen 30% of rows, with their own values;
* `rows_unseen`: the same rows with the injected values;
* `rows_all_unseen`: the same rows with every categorical column unseen (a
  stress test: only the numeric features are known).

Training is shorter than census_mmoe's (at most 8 epochs, early stopping
with patience 2 on the validation AUC of the unmodified validation split)
to keep the whole recipe near 10 minutes on a 2-core CPU.

python recipes/census_oov.py          # 3 seeds, writes results/oov/census_oov.json
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import time

import _common as common
import keras
import numpy as np
from _runner import machine, seeds_and_out, write_report

import keras_recsys as kr
from keras_recsys.datasets.census import CATEGORICAL_COLUMNS

NAME = "census_oov"
UNSEEN_COLUMNS = ("det_ind_code", "state_prev_res", "det_occ_code")
UNSEEN_FRACTION = 0.3
UNSEEN_SEED = 2026
HIDDEN_UNITS = (128, 64)
TRAINING = common.Training(epochs=8, patience=2)
MIN_FREQUENCY = 100
# (arm name, oov_dropout, min_frequency of every categorical column)
ARMS = (
    ("none", 0.0, 1),
    ("oov_dropout=0.01", 0.01, 1),
    ("oov_dropout=0.05", 0.05, 1),
    (f"min_frequency={MIN_FREQUENCY}", 0.0, MIN_FREQUENCY),
)
SPLITS = ("test", "test_unseen", "rows_clean", "rows_unseen", "rows_all_unseen")


def census_spec(min_frequency: int):
    """`common.census_spec()` with `min_frequency` on every categorical column."""
    spec = common.census_spec()
    if min_frequency == 1:
        return spec
    features = [
        kr.Categorical(f.name, min_frequency=min_frequency) if f.kind == "categorical" else f
        for f in spec.features
    ]
    return kr.FeatureSpec(features, default_embedding_dim=spec.default_embedding_dim)


def unseen_rows(test, seed: int = UNSEEN_SEED):
    """The rows that get unseen values: a random UNSEEN_FRACTION of `test`, as a bool mask."""
    return np.random.default_rng(seed).random(len(test)) < UNSEEN_FRACTION


def inject_unseen(test, rows, columns):
    """A copy of `test` whose `columns` hold a value never seen in training on `rows`."""
    out = test.copy()
    for column in columns:
        out.loc[rows, column] = f"never seen {column}"
    return out


def evaluate(model, data, rows) -> dict:
    """{split: {task: metrics}} for every split of SPLITS (see the module docstring)."""
    unseen = inject_unseen(data.test, rows, UNSEEN_COLUMNS)
    all_unseen = inject_unseen(data.test[rows], np.ones(rows.sum(), bool), CATEGORICAL_COLUMNS)
    clean = common.predict(model, data.test)
    injected = common.predict(model, unseen)
    splits = {
        "test": (data.test, clean),
        "test_unseen": (unseen, injected),
        "rows_clean": (data.test[rows], {k: v[rows] for k, v in clean.items()}),
        "rows_unseen": (unseen[rows], {k: v[rows] for k, v in injected.items()}),
        "rows_all_unseen": (all_unseen, common.predict(model, all_unseen)),
    }
    return {
        split: kr.metrics.evaluate(None, df, tasks=data.eval_tasks, predictions=predictions)
        for split, (df, predictions) in splits.items()
    }


def run_arm(data, oov_dropout: float, seed: int, rows) -> dict:
    keras.utils.set_random_seed(seed)
    model = kr.models.DNN(
        data.spec, data.model_tasks, hidden_units=HIDDEN_UNITS, oov_dropout=oov_dropout
    )
    fit = common.fit(model, data, TRAINING, seed)
    table = _np(model.embedding.tables["det_ind_code"].embeddings)
    return {
        "fit": fit,
        "test": evaluate(model, data, rows),
        # How far row 1 (OOV) moved from the ±0.05 initializer's scale.
        "oov_row_norm_det_ind_code": float(np.linalg.norm(table[1])),
        "mean_row_norm_det_ind_code": float(np.linalg.norm(table[2:], axis=1).mean()),
    }


def _np(x):
    return keras.ops.convert_to_numpy(x)


def summarize(runs: list[dict], tasks: list[str]) -> dict:
    """{"<split>/<task>_<metric>": mean, std (ddof 1) and values over the seeds}."""
    out = {}
    for split in SPLITS:
        for task in tasks:
            for metric in ("auc", "logloss"):
                values = [r["test"][split][task][metric] for r in runs]
                out[f"{split}/{task}_{metric}"] = {
                    "mean": float(np.mean(values)),
                    "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                    "values": values,
                }
    return out


def print_table(summary: dict, tasks: list[str], seeds) -> None:
    """One table per task: the arms against the splits, test AUC mean ± std."""
    for task in tasks:
        print(f"\n[{NAME}] {task}: test AUC, mean ± std over seeds {list(seeds)}")
        print(f"{'arm':<20}" + "".join(f"{split:>19}" for split in SPLITS))
        for arm, values in summary.items():
            cells = (values[f"{split}/{task}_auc"] for split in SPLITS)
            print(f"{arm:<20}" + "".join(f"{c['mean']:>10.4f} ± {c['std']:.4f}" for c in cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=f"Recipe {NAME}")
    seeds, out, args = seeds_and_out(parser)
    start = time.time()
    data = common.census_data()
    rows = unseen_rows(data.test)
    tasks = [t.name for t in data.eval_tasks]
    specs = {k: census_spec(k).adapt(data.train) for k in {k for _, _, k in ARMS}}
    runs: dict[str, list] = {name: [] for name, _, _ in ARMS}
    for seed in seeds:
        for name, rate, min_frequency in ARMS:
            arm_data = dataclasses.replace(data, spec=specs[min_frequency])
            result = run_arm(arm_data, rate, seed, rows)
            result["seed"] = seed
            runs[name].append(result)
            text = ", ".join(
                f"{split} " + " ".join(f"{t} {result['test'][split][t]['auc']:.4f}" for t in tasks)
                for split in SPLITS
            )
            print(f"[{NAME}] seed {seed} {name}: AUC {text}", flush=True)
    summary = {name: summarize(r, tasks) for name, r in runs.items()}
    report = {
        "recipe": NAME,
        "dataset": data.name,
        "model": f"DNN {list(HIDDEN_UNITS)}, heads income and marital",
        "tasks": tasks,
        "arms": {name: {"oov_dropout": r, "min_frequency": k} for name, r, k in ARMS},
        "unseen": {
            "columns": list(UNSEEN_COLUMNS),
            "rows_all_unseen_columns": list(CATEGORICAL_COLUMNS),
            "fraction_of_test_rows": UNSEEN_FRACTION,
            "rows": int(rows.sum()),
            "seed": UNSEEN_SEED,
        },
        "seeds": list(seeds),
        "training": dataclasses.asdict(TRAINING),
        "summary": summary,
        "runs": runs,
        "backend": keras.backend.backend(),
        "date": datetime.date.today().isoformat(),
        "machine": machine(),
        "seconds": round(time.time() - start, 1),
        "command": f"python recipes/{NAME}.py --seeds {' '.join(map(str, seeds))}",
    }
    print_table(summary, tasks, seeds)
    write_report(report, os.path.join("oov", f"{NAME}.json"), out, results=not args.no_write)


if __name__ == "__main__":
    main()
