"""Ranking models on the multi-behaviour MovieLens-100K view: AUC and gAUC per task.

python recipes/movielens_behaviors.py                       # every arm, 3 seeds
python recipes/movielens_behaviors.py --arms hstu_ranker mmoe din --seeds 0

Data: `kr.datasets.movielens_100k_behaviors(max_length=50)`: every rating an
impression carrying the user's earlier ratings as sequences by behaviour
(all, liked >= 4, disliked <= 2, and their genres), three tasks like
(rating >= 4), love (= 5) and dislike (<= 2), split by time (oldest 80%
train, next 10% validation, newest 10% test). Metrics on the test split:
AUC and gAUC (grouped by user, impression-weighted) per task, the way the
INFNet paper reports them.

Arms: pointwise models read every feature of the view (user and movie
fields, the movie's genres, the six behaviour sequences, pooled unless the
model attends over them) and train with early stopping on the mean
validation AUC of the tasks. `hstu_ranker` is generative ranking
(`kr.models.HSTURanker`): the history of (movie, rating) pairs as
interleaved tokens, trained with teacher forcing on the training impressions
(one row per user every `max_length` impressions, so each training rating
is a labelled token about once), and it scores the impression's movie as a
one-candidate list through M-FALCON; its tasks are the rating values that
count as positive.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from _runner import machine, seeds_and_out, write_report  # noqa: E402

import keras_recsys as kr  # noqa: E402

NAME = "movielens_behaviors"
MAX_LENGTH, DIM = 50, 16
TASKS = ("like", "love", "dislike")
POSITIVE_RATINGS = {"like": [4, 5], "love": [5], "dislike": [1, 2]}


@dataclass
class Arm:
    label: str
    build: Callable  # (spec, tasks) -> compiled-ready RecModel, or None for HSTURanker
    epochs: int = 20
    batch_size: int = 1024
    learning_rate: float = 1e-3


def _pointwise(builder: Callable, **options) -> Callable:
    return lambda spec, tasks: builder(spec, tasks, **options)


ARMS: dict[str, Arm] = {
    "dnn": Arm("DNN (256-128) on every feature, sequences mean-pooled", _pointwise(kr.models.DNN)),
    "shared_bottom": Arm(
        "Shared-Bottom (128-64, towers 32)",
        _pointwise(kr.models.SharedBottom, bottom_units=(128, 64), tower_units=(32,)),
    ),
    "mmoe": Arm(
        "MMoE (8 experts of 64, towers 32)",
        _pointwise(kr.models.MMoE, num_experts=8, expert_units=(64,), tower_units=(32,)),
    ),
    "ple": Arm(
        "PLE (2 levels, 2+2 experts of 64, towers 32)",
        _pointwise(kr.models.PLE, expert_units=(64,), tower_units=(32,)),
    ),
    "dcn_v2": Arm(
        "DCNv2 (3 cross layers, stacked MLP 256-128)",
        _pointwise(kr.models.DCN, version="v2", num_cross_layers=3),
    ),
    "din": Arm(
        "DIN (target attention of the three item histories on the movie, MLP 200-80)",
        _pointwise(kr.models.DIN),
    ),
    "dien": Arm(
        "DIEN (interest GRU with the auxiliary loss, AUGRU evolution, MLP 200-80)",
        _pointwise(kr.models.DIEN),
    ),
    "omoe": Arm(
        "OMoE (8 experts of 64, one gate, towers 32)",
        _pointwise(kr.models.OMoE, num_experts=8, expert_units=(64,), tower_units=(32,)),
    ),
    "stem": Arm("STEM (shared and task-specific embeddings, defaults)", _pointwise(kr.models.STEM)),
    "infnet": Arm(
        "INFNet (2 blocks, 4 categorical proxies, 2 shared task tokens; the six histories "
        "as behaviour tokens)",
        _pointwise(kr.models.INFNet),
    ),
    "infnet_no_task_tokens": Arm(
        "INFNet without task tokens", _pointwise(kr.models.INFNet, task_tokens=False)
    ),
    "infnet_no_homogeneous": Arm(
        "INFNet without the homogeneous flow (PGU)",
        _pointwise(kr.models.INFNet, homogeneous_flow=False),
    ),
    "infnet_no_heterogeneous": Arm(
        "INFNet without the heterogeneous flow (cross attention)",
        _pointwise(kr.models.INFNet, heterogeneous_flow=False),
    ),
    "hstu_ranker": Arm(
        "HSTURanker (2 blocks, 1 head, d 64, dropout 0.2): (movie, rating) tokens, "
        "M-FALCON on the impression's movie",
        None,
        epochs=40,
        batch_size=64,
    ),
}


# ---------------------------------------------------------------------- data
def load(rows: int | None = None):
    train, valid, test = kr.datasets.movielens_100k_behaviors(max_length=MAX_LENGTH)
    if rows:  # a quick run: the latest training rows, the first validation and test rows
        train, valid, test = train.tail(rows), valid.head(rows // 4), test.head(rows // 4)
    return train.reset_index(drop=True), valid.reset_index(drop=True), test.reset_index(drop=True)


def measure(frame: pd.DataFrame, scores: dict) -> dict:
    """{task: {"auc", "gauc"}} on `frame` (gAUC grouped by user)."""
    out = {}
    for task in TASKS:
        labels, score = frame[task].to_numpy(), np.asarray(scores[task]).reshape(-1)
        out[task] = {
            "auc": kr.metrics.auc(labels, score),
            "gauc": kr.metrics.gauc(labels, score, frame["user_id"].to_numpy()),
        }
    return out


# ------------------------------------------------------------------ pointwise
def train_pointwise(arm: Arm, data, seed: int) -> dict:
    train, valid, test = data
    keras.utils.set_random_seed(seed)
    spec = kr.datasets.movielens_behavior_feature_spec(DIM, MAX_LENGTH).adapt(train)
    tasks = [kr.Task(t) for t in TASKS]
    model = arm.build(spec, tasks)
    model.compile(optimizer=keras.optimizers.Adam(arm.learning_rate))
    stop = kr.callbacks.MultiTaskEarlyStopping("auc", patience=2, restore_best_weights=True)
    history = model.fit(
        train,
        validation_data=valid,
        batch_size=arm.batch_size,
        epochs=arm.epochs,
        callbacks=[stop],
        verbose=0,
    )
    return {
        "test": measure(test, model.predict(test, batch_size=4096, verbose=0)),
        "epochs": len(history.history["loss"]),
        "best_val_mean_auc": float(max(history.history["val_mean_auc"])),
    }


# ------------------------------------------------------- generative ranking
def _ranker_spec(train: pd.DataFrame):
    spec = kr.FeatureSpec(
        [
            kr.Sequence("history", max_length=MAX_LENGTH),
            kr.Sequence("history_actions", max_length=MAX_LENGTH),
            kr.Sequence("candidates", max_length=1, shares_vocabulary_with="history"),
        ],
        default_embedding_dim=64,
    )
    frame = pd.DataFrame(
        {
            "history": [h + [i] for h, i in zip(train["hist_items"], train["item_id"])],
            "history_actions": [h + [r] for h, r in zip(train["hist_ratings"], train["rating"])],
            "candidates": [[i] for i in train["item_id"]],
        }
    )
    return spec.adapt(frame)


def _ranker_rows(frame: pd.DataFrame, every: int) -> pd.DataFrame:
    """Per user, every `every`-th impression in time order and the last one."""
    order = frame.sort_values("timestamp", kind="stable")
    rank = order.groupby("user_id").cumcount()
    size = order.groupby("user_id")["item_id"].transform("size")
    keep = ((rank + 1) % every == 0) | (rank == size - 1)
    return order[keep]


def _ranker_inputs(spec, frame: pd.DataFrame, with_target: bool) -> dict:
    if with_target:  # the impression as the last, labelled token
        items = [h + [i] for h, i in zip(frame["hist_items"], frame["item_id"])]
        actions = [h + [r] for h, r in zip(frame["hist_ratings"], frame["rating"])]
    else:
        items, actions = list(frame["hist_items"]), list(frame["hist_ratings"])
    x = {
        "history": spec.sequence_ids("history", items),
        "history_actions": spec.sequence_ids("history_actions", actions),
    }
    if not with_target:
        x["candidates"] = spec.sequence_ids("candidates", [[i] for i in frame["item_id"]])
    return x


def train_ranker(arm: Arm, data, seed: int) -> dict:
    train, valid, test = data
    keras.utils.set_random_seed(seed)
    spec = _ranker_spec(train)
    model = kr.models.HSTURanker(spec, tasks=POSITIVE_RATINGS, num_blocks=2, num_heads=1)
    model.compile()
    x = _ranker_inputs(spec, _ranker_rows(train, MAX_LENGTH), with_target=True)

    def scores(frame):
        out = model.score_candidates(_ranker_inputs(spec, frame, with_target=False))
        return {t: keras.ops.convert_to_numpy(out[t])[:, 0] for t in TASKS}

    best, best_weights, best_epoch, waited, epoch = -1.0, None, 0, 0, 0
    while epoch < arm.epochs and waited < 3:
        model.fit(x, None, batch_size=arm.batch_size, epochs=1, verbose=0)
        epoch += 1
        valid_scores = scores(valid)
        mean_auc = float(np.mean([kr.metrics.auc(valid[t], valid_scores[t]) for t in TASKS]))
        if mean_auc > best:
            best, best_weights, best_epoch, waited = mean_auc, model.get_weights(), epoch, 0
        else:
            waited += 1
    model.set_weights(best_weights)
    return {
        "test": measure(test, scores(test)),
        "epochs": epoch,
        "best_epoch": best_epoch,
        "best_val_mean_auc": best,
    }


# --------------------------------------------------------------------- main
def summary(runs: list[dict]) -> dict:
    out = {}
    for task in TASKS:
        for metric in ("auc", "gauc"):
            values = [r["test"][task][metric] for r in runs]
            out[f"{task}_{metric}"] = {
                "mean": float(np.mean(values)),
                "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
                "values": values,
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument("--rows", type=int, default=None, help="a quick run on fewer rows")
    seeds, out, args = seeds_and_out(parser)
    start = time.time()
    data = load(args.rows)
    report = {
        "recipe": NAME,
        "data": f"movielens_100k_behaviors(max_length={MAX_LENGTH}), time split 80/10/10"
        + (f", quick run on {args.rows} training rows" if args.rows else ""),
        "arms": {},
        "runs": {},
        "summary": {},
    }
    for key in args.arms:
        arm = ARMS[key]
        if args.max_epochs is not None:
            arm.epochs = args.max_epochs
        runs = []
        for seed in seeds:
            t0 = time.time()
            trainer = train_ranker if arm.build is None else train_pointwise
            run = {"seed": seed, **trainer(arm, data, seed), "seconds": round(time.time() - t0)}
            runs.append(run)
            test = run["test"]
            print(
                f"[{NAME}] {key} seed {seed}: "
                + ", ".join(
                    f"{t} AUC {test[t]['auc']:.4f} gAUC {test[t]['gauc']:.4f}" for t in TASKS
                ),
                flush=True,
            )
        report["arms"][key] = arm.label
        report["runs"][key] = runs
        report["summary"][key] = summary(runs)
    report.update(
        backend=keras.backend.backend(),
        date=datetime.date.today().isoformat(),
        machine=machine(),
        seconds=round(time.time() - start, 1),
        command=" ".join(["python", "recipes/movielens_behaviors.py", *sys.argv[1:]]),
    )
    write_report(report, os.path.join("behaviors", f"{NAME}.json"), out, not args.no_write)


if __name__ == "__main__":
    main()
