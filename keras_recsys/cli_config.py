"""The training config of `keras-recsys train`: loading, validation, building.

A config is a YAML (or JSON) mapping; `keras-recsys train --help` prints the
schema and recipes/configs/ holds worked examples:

```yaml
name: census_dcn                      # default: the config file's name
data:
  dataset: census_income              # bundled: census_income, movielens_100k
  # or files (CSV or Parquet): train: a.csv, valid: b.csv, test: c.csv,
  # with `split` carving the missing valid/test parts out of train:
  # split: {kind: random, valid: 0.1, test: 0.1, seed: 2026}
  # split: {kind: time, column: timestamp, valid: 0.1, test: 0.1}
  group_column: null                  # gAUC per group (e.g. user_id)
  max_rows: null                      # keep the first N rows of each part
features: auto                        # or a list, or {default_embedding_dim: 8, list: ...}
  # - {kind: categorical, name: user_id, embedding_dim: 16}
  # - {kind: numeric, name: price, transform: log1p}
  # - {kind: bucketized, name: age, buckets: 10}
  # - {kind: sequence, name: history, shares_vocabulary_with: item_id, max_length: 50}
  # - {kind: crossed, name: user_x_item, features: [user_id, item_id], num_bins: 1000}
model: {name: DCN, num_cross_layers: 2, hidden_units: [256, 128]}
tasks:                                # default for bundled data sets: their labels
  - {name: income, kind: binary, label: income, weight: 1.0}
training:
  epochs: 8
  batch_size: 1024
  learning_rate: 0.001
  optimizer: adam                     # adam, adamw, sgd, rmsprop, adagrad
  seed: 2026
  early_stopping: {metric: auc, patience: 2}   # or false
output: runs/census_dcn               # default: runs/<name>
```

Everything is checked before any data is read or model built, and every
problem is reported with its key path (`model.hidden_unit`,
`features[3].kind`, `data.train`) and what was expected, so a typo costs a
second rather than a failed run. Loading YAML and applying `--set`
overrides imports neither TensorFlow nor Keras; validating the model
section imports the model zoo.
"""

from __future__ import annotations

import copy
import difflib
import inspect
import json
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

DATASETS = ("census_income", "movielens_100k")
# What a bundled data set predicts when the config names no tasks, and the
# group column its gAUC uses by default (None: no gAUC).
DATASET_TASKS = {
    "census_income": [{"name": "income"}, {"name": "marital"}],
    "movielens_100k": [{"name": "click"}, {"name": "conversion"}],
}
DATASET_SPLITS = {"census_income": ("random",), "movielens_100k": ("random", "time")}
OPTIMIZERS = {
    "adam": "Adam",
    "adamw": "AdamW",
    "sgd": "SGD",
    "rmsprop": "RMSprop",
    "adagrad": "Adagrad",
}
FEATURE_KINDS = ("categorical", "numeric", "bucketized", "sequence", "crossed")
DATA_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".parquet", ".pq")
TOP_KEYS = ("name", "data", "features", "model", "tasks", "training", "output")
DATA_KEYS = (
    "dataset",
    "dataset_path",
    "train",
    "valid",
    "test",
    "split",
    "group_column",
    "max_rows",
)
SPLIT_KEYS = ("kind", "valid", "test", "column", "seed")
TASK_KEYS = (
    "name",
    "kind",
    "label",
    "weight",
    "num_classes",
    "mask",
    "sample_weight",
    "pos_weight",
)
TRAINING_KEYS = (
    "epochs",
    "batch_size",
    "eval_batch_size",
    "learning_rate",
    "optimizer",
    "seed",
    "early_stopping",
)
EARLY_STOPPING_KEYS = ("metric", "patience", "min_delta", "tasks", "weights")
TRAINING_DEFAULTS = {
    "epochs": 8,
    "batch_size": 1024,
    "eval_batch_size": 8192,
    "learning_rate": 1e-3,
    "optimizer": "adam",
    "seed": 2026,
    "early_stopping": {"metric": "auc", "patience": 2},
}


class ConfigError(ValueError):
    """A config that cannot run; `problems` lists each as 'key.path: what is wrong'."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = list(problems)
        listed = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"invalid config {source}:\n{listed}")


# ------------------------------------------------------------------ loading
def load_config(path: str, overrides: list[str] | None = None) -> dict[str, Any]:
    """The config at `path` (YAML, or JSON for *.json) with `--set` overrides applied.

    Raises:
        ConfigError: the file is missing, unreadable, not a mapping, or an
            override is malformed.
    """
    if not os.path.isfile(path):
        raise ConfigError(path, [f"config file '{path}' does not exist"])
    with open(path, encoding="utf-8") as file:
        text = file.read()
    try:
        if path.endswith(".json"):
            config = json.loads(text)
        else:
            import yaml

            config = yaml.safe_load(text)
    except ValueError as error:  # json.JSONDecodeError
        raise ConfigError(path, [f"not valid JSON: {error}"]) from error
    except Exception as error:  # yaml.YAMLError, without importing yaml up front
        raise ConfigError(path, [f"not valid YAML: {error}"]) from error
    if not isinstance(config, dict):
        raise ConfigError(path, [f"the file must hold a mapping, got {type(config).__name__}"])
    config = copy.deepcopy(config)
    problems = []
    for override in overrides or []:
        try:
            apply_override(config, override)
        except ValueError as error:
            problems.append(str(error))
    if problems:
        raise ConfigError(path, problems)
    config.setdefault("name", _stem(path))
    return config


def _stem(path: str) -> str:
    name = os.path.basename(path)
    for suffix in (".yaml", ".yml", ".json"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def apply_override(config: dict[str, Any], assignment: str) -> None:
    """Sets `KEY.PATH=VALUE` in `config`; VALUE is read as YAML (`1`, `[64, 32]`, `false`).

    A path segment that is an integer indexes a list (`tasks.0.weight=0.5`);
    missing mappings on the way are created.
    """
    key, sep, text = assignment.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"--set {assignment!r}: expected KEY.PATH=VALUE, e.g. training.epochs=1")
    import yaml

    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as error:
        raise ValueError(f"--set {assignment!r}: the value is not valid YAML ({error})") from error
    parts = key.strip().split(".")
    node: Any = config
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ValueError(
                    f"--set {assignment!r}: '{where}' indexes a list of {len(node)} "
                    "items; use an index 0.."
                    f"{len(node) - 1}"
                )
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                if node.get(part) is None:
                    node[part] = {}
                node = node[part]
        else:
            raise ValueError(
                f"--set {assignment!r}: '{'.'.join(parts[:depth])}' is "
                f"{type(node).__name__} {node!r}, not a mapping or list"
            )


# --------------------------------------------------------------- validation
class _Checker:
    """Collects problems as 'key.path: message' while walking the config."""

    def __init__(self):
        self.problems: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def mapping(self, value: Any, path: str, keys: tuple[str, ...] | None) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.add(path, f"expected a mapping, got {type(value).__name__} {value!r}")
            return {}
        if keys is not None:
            for key in value:
                if key not in keys:
                    self.add(f"{path}.{key}" if path else str(key), _unknown(key, keys, "key"))
        return value

    def integer(self, value: Any, path: str, minimum: int = 1) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.add(path, f"expected an integer >= {minimum}, got {value!r}")
            return None
        return value

    def number(self, value: Any, path: str, positive: bool = True) -> float | None:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok or not math.isfinite(value) or (positive and value <= 0):
            what = "a positive number" if positive else "a number"
            self.add(path, f"expected {what}, got {value!r}")
            return None
        return float(value)

    def fraction(self, value: Any, path: str) -> float | None:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok or not 0 <= value < 1:
            self.add(path, f"expected a fraction in [0, 1), got {value!r}")
            return None
        return float(value)

    def text(self, value: Any, path: str) -> str | None:
        if not isinstance(value, str) or not value:
            self.add(path, f"expected a non-empty string, got {value!r}")
            return None
        return value


def _unknown(name: Any, valid, what: str) -> str:
    valid = list(valid)
    close = difflib.get_close_matches(str(name), [str(v) for v in valid], n=1, cutoff=0.6)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown {what} '{name}'{hint}; expected one of {', '.join(map(str, valid))}"


def validate(config: Mapping[str, Any], source: str = "<config>", base_dir: str = ".") -> dict:
    """A checked, normalized copy of `config` with every default filled in.

    A relative data path is read from the working directory when it exists
    there, else beside the config file (`base_dir`; see `resolve_path`).

    Raises:
        ConfigError: listing every problem found, each with its key path.
    """
    check = _Checker()
    top = check.mapping(dict(config), "", TOP_KEYS)
    name = check.text(top.get("name", "run"), "name") or "run"
    data = _validate_data(check, top.get("data"), base_dir)
    features = _validate_features(check, top.get("features", "auto"), data)
    tasks = _validate_tasks(check, top.get("tasks"), data)
    model = _validate_model(check, top.get("model"))
    training = _validate_training(check, top.get("training"), data, tasks)
    output = top.get("output") or os.path.join("runs", name)
    if not isinstance(output, str):
        check.add("output", f"expected a directory path, got {output!r}")
    if check.problems:
        raise ConfigError(source, check.problems)
    return {
        "name": name,
        "data": data,
        "features": features,
        "model": model,
        "tasks": tasks,
        "training": training,
        "output": output,
    }


def resolve_path(path: str, base_dir: str) -> str:
    """`path` as given when it exists from the working directory, else beside the config."""
    if os.path.isabs(path) or os.path.exists(path):
        return path
    beside = os.path.join(base_dir, path)
    return beside if os.path.exists(beside) else path


def _validate_data(check: _Checker, value: Any, base_dir: str) -> dict:
    data = check.mapping(value, "data", DATA_KEYS)
    if value is None:
        check.add(
            "data", "missing: give `dataset` (census_income, movielens_100k) or `train` files"
        )
    out: dict[str, Any] = {
        "dataset": None,
        "dataset_path": None,
        "train": None,
        "valid": None,
        "test": None,
        "split": None,
        "group_column": data.get("group_column"),
        "max_rows": None,
    }
    dataset = data.get("dataset")
    if dataset is not None:
        if dataset not in DATASETS:
            check.add("data.dataset", _unknown(dataset, DATASETS, "data set"))
        out["dataset"] = dataset
        for key in ("train", "valid", "test"):
            if data.get(key) is not None:
                check.add(f"data.{key}", "give either `dataset` or files, not both")
        if data.get("dataset_path") is not None:
            out["dataset_path"] = _existing_path(
                check, data["dataset_path"], "data.dataset_path", base_dir
            )
    elif data.get("train") is None:
        if value is not None:
            check.add("data", "give `dataset` (census_income, movielens_100k) or a `train` file")
    else:
        for key in ("train", "valid", "test"):
            if data.get(key) is not None:
                out[key] = _data_file(check, data[key], f"data.{key}", base_dir)
    split = data.get("split")
    needs_split = (
        dataset is None
        and data.get("train") is not None
        and (data.get("valid") is None or data.get("test") is None)
    )
    if split is not None or needs_split:
        out["split"] = _validate_split(check, split, dataset, needs_split)
    if data.get("max_rows") is not None:
        out["max_rows"] = check.integer(data["max_rows"], "data.max_rows")
    if out["group_column"] is not None:
        check.text(out["group_column"], "data.group_column")
    return out


def _existing_path(check: _Checker, value: Any, path: str, base_dir: str) -> str | None:
    if not isinstance(value, str) or not value:
        check.add(path, f"expected a file path, got {value!r}")
        return None
    resolved = resolve_path(value, base_dir)
    if not os.path.exists(resolved):
        check.add(path, f"file '{value}' does not exist")
        return None
    return resolved


def _data_file(check: _Checker, value: Any, path: str, base_dir: str) -> str | None:
    resolved = _existing_path(check, value, path, base_dir)
    if resolved is not None and not resolved.lower().endswith(DATA_SUFFIXES):
        check.add(
            path, f"'{value}' is neither CSV nor Parquet (expected {', '.join(DATA_SUFFIXES)})"
        )
    return resolved


def _validate_split(check: _Checker, value: Any, dataset: str | None, needed: bool) -> dict:
    split = check.mapping(value, "data.split", SPLIT_KEYS)
    kind = split.get("kind", "random")
    if dataset is not None:
        allowed = DATASET_SPLITS.get(dataset, ("random",))
        if kind not in allowed:
            check.add(
                "data.split.kind", f"{dataset} splits by {' or '.join(allowed)}, got {kind!r}"
            )
        extra = [k for k in split if k != "kind"]
        if extra:
            check.add(
                f"data.split.{extra[0]}",
                f"{dataset} has its documented split (fractions and seed are fixed); "
                "only `kind` can be chosen",
            )
        return {"kind": kind}
    if kind not in ("random", "time"):
        check.add("data.split.kind", _unknown(kind, ("random", "time"), "split kind"))
    out = {"kind": kind, "valid": 0.1, "test": 0.1, "column": None, "seed": 2026}
    for key in ("valid", "test"):
        if key in split:
            out[key] = check.fraction(split[key], f"data.split.{key}")
    if out["valid"] is not None and out["test"] is not None and out["valid"] + out["test"] >= 1:
        check.add("data.split", "valid + test must leave rows for training (sum < 1)")
    if "seed" in split:
        out["seed"] = check.integer(split["seed"], "data.split.seed", minimum=0)
    if kind == "time":
        out["column"] = check.text(split.get("column"), "data.split.column")
    elif split.get("column") is not None:
        check.add("data.split.column", "only a time split reads a column")
    return out


def _feature_classes() -> dict[str, type]:
    from keras_recsys.features import Categorical, Crossed, Numeric, Sequence

    return {
        "categorical": Categorical,
        "numeric": Numeric,
        "bucketized": Numeric,
        "sequence": Sequence,
        "crossed": Crossed,
    }


def _arguments(function) -> list[str]:
    skip = {"self", "spec", "tasks"}
    return [
        p.name
        for p in inspect.signature(function).parameters.values()
        if p.name not in skip and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]


def _validate_features(check: _Checker, value: Any, data: dict) -> dict:
    out: dict[str, Any] = {"default_embedding_dim": 8, "list": "auto"}
    if isinstance(value, dict):
        section = check.mapping(value, "features", ("default_embedding_dim", "list"))
        if "default_embedding_dim" in section:
            out["default_embedding_dim"] = check.integer(
                section["default_embedding_dim"], "features.default_embedding_dim"
            )
        value = section.get("list", "auto")
        prefix = "features.list"
    else:
        prefix = "features"
    if value == "auto":
        if data["dataset"] is None and data["train"] is not None:
            check.add(
                prefix,
                "'auto' takes the documented columns of a bundled data set "
                f"({', '.join(DATASETS)}); for files, list the features",
            )
        return out
    if not isinstance(value, list) or not value:
        check.add(prefix, f"expected 'auto' or a non-empty list of features, got {value!r}")
        return out
    classes = _feature_classes()
    features = []
    names = set()
    for i, entry in enumerate(value):
        path = f"{prefix}[{i}]"
        if not isinstance(entry, dict):
            check.add(path, f"expected a mapping with `kind` and `name`, got {entry!r}")
            continue
        kind = entry.get("kind")
        if kind not in FEATURE_KINDS:
            check.add(f"{path}.kind", _unknown(kind, FEATURE_KINDS, "feature kind"))
            continue
        arguments = _arguments(classes[kind].__init__)
        name = check.text(entry.get("name"), f"{path}.name")
        if name in names:
            check.add(f"{path}.name", f"feature '{name}' is listed twice")
        names.add(name)
        for key in entry:
            if key != "kind" and key not in arguments:
                check.add(
                    f"{path}.{key}",
                    _unknown(key, arguments, f"argument of a {kind} feature"),
                )
        if kind == "bucketized" and entry.get("buckets") is None:
            check.add(f"{path}.buckets", "a bucketized feature needs `buckets` (an integer >= 2)")
        if kind == "numeric" and entry.get("buckets") is not None:
            check.add(f"{path}.buckets", "use kind: bucketized for a bucketized numeric feature")
        features.append({k: v for k, v in entry.items()})
    out["list"] = features
    return out


def _validate_tasks(check: _Checker, value: Any, data: dict) -> list[dict]:
    if value is None:
        if data["dataset"] in DATASET_TASKS:
            return [dict(t) for t in DATASET_TASKS[data["dataset"]]]
        check.add("tasks", "missing: list the tasks, e.g. [{name: click, kind: binary}]")
        return []
    if not isinstance(value, list) or not value:
        check.add("tasks", f"expected a non-empty list of tasks, got {value!r}")
        return []
    tasks = []
    for i, entry in enumerate(value):
        path = f"tasks[{i}]"
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, dict):
            check.add(path, f"expected a task name or mapping, got {entry!r}")
            continue
        check.mapping(entry, path, TASK_KEYS)
        check.text(entry.get("name"), f"{path}.name")
        kind = entry.get("kind", "binary")
        if kind not in ("binary", "regression", "multiclass"):
            check.add(
                f"{path}.kind", _unknown(kind, ("binary", "regression", "multiclass"), "task kind")
            )
        if "weight" in entry:
            check.number(entry["weight"], f"{path}.weight")
        tasks.append(dict(entry))
    return tasks


def model_classes() -> dict[str, type]:
    """{class name: class} of every model in `keras_recsys.models`."""
    import keras_recsys.models as zoo

    return {name: getattr(zoo, name) for name in zoo.__all__ if name != "RecModel"}


def pointwise_model_names() -> list[str]:
    """The models `keras-recsys train` builds: the ranking and multi-task zoo."""
    from keras_recsys.models import RecModel

    return sorted(
        n for n, c in model_classes().items() if isinstance(c, type) and issubclass(c, RecModel)
    )


def model_arguments(cls: type) -> list[str]:
    """The keyword arguments a model builder accepts, its base classes' included.

    Builders pass `**kwargs` up to `RecModel` and on to `keras.Model`, whose
    only config-worthy argument is `name`.
    """
    import keras

    names: list[str] = []
    for klass in cls.__mro__:
        if klass is keras.Model or "__init__" not in vars(klass):
            if klass is keras.Model:
                break
            continue
        for name in _arguments(klass.__init__):
            if name not in names:
                names.append(name)
        parameters = inspect.signature(klass.__init__).parameters.values()
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break
    names.append("name")
    return names


def _normalized(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "").replace("&", "and")


def _validate_model(check: _Checker, value: Any) -> dict:
    section = check.mapping(value, "model", None)
    if value is None:
        check.add("model", "missing: e.g. {name: DCN, hidden_units: [256, 128]}")
        return {}
    name = section.get("name")
    classes = model_classes()
    trainable = pointwise_model_names()
    by_key = {_normalized(n): n for n in classes}
    by_key.setdefault("wideanddeep", "WideAndDeep")
    by_key.setdefault("widedeep", "WideAndDeep")
    resolved = by_key.get(_normalized(name)) if isinstance(name, str) else None
    if resolved is None:
        check.add("model.name", _unknown(name, trainable, "model"))
        return {}
    if resolved not in trainable:
        check.add(
            "model.name",
            f"{resolved} is a retrieval / next-item model: `keras-recsys train` trains "
            f"pointwise ranking and multi-task models ({', '.join(trainable)}). Train "
            f"{resolved} from Python on sequence data (kr.datasets.leave_one_out, "
            "kr.evaluation.evaluate_full_ranking; see recipes/beauty_sequential.py and "
            "recipes/movielens_two_tower.py)",
        )
        return {}
    accepted = model_arguments(classes[resolved])
    arguments = {k: v for k, v in section.items() if k != "name"}
    for key in arguments:
        if key not in accepted:
            check.add(f"model.{key}", _unknown(key, accepted, f"argument of {resolved}"))
    return {"name": resolved, "arguments": arguments}


def _validate_training(check: _Checker, value: Any, data: dict, tasks: list[dict]) -> dict:
    section = check.mapping(value, "training", TRAINING_KEYS)
    out = copy.deepcopy(TRAINING_DEFAULTS)
    for key in ("epochs", "batch_size", "eval_batch_size"):
        if key in section:
            out[key] = check.integer(section[key], f"training.{key}")
    if "learning_rate" in section:
        out["learning_rate"] = check.number(section["learning_rate"], "training.learning_rate")
    if "seed" in section:
        out["seed"] = check.integer(section["seed"], "training.seed", minimum=0)
    if "optimizer" in section:
        optimizer = section["optimizer"]
        if not isinstance(optimizer, str) or optimizer.lower() not in OPTIMIZERS:
            check.add("training.optimizer", _unknown(optimizer, OPTIMIZERS, "optimizer"))
        else:
            out["optimizer"] = optimizer.lower()
    if "early_stopping" in section:
        stopping = section["early_stopping"]
        if stopping in (False, None):
            out["early_stopping"] = None
        else:
            stopping = check.mapping(stopping, "training.early_stopping", EARLY_STOPPING_KEYS)
            merged = {"metric": "auc", "patience": 2, **stopping}
            check.text(merged["metric"], "training.early_stopping.metric")
            check.integer(merged["patience"], "training.early_stopping.patience", minimum=0)
            if "min_delta" in merged:
                check.number(
                    merged["min_delta"], "training.early_stopping.min_delta", positive=False
                )
            names = [t.get("name") for t in tasks]
            for task in merged.get("tasks") or []:
                if task not in names:
                    check.add("training.early_stopping.tasks", _unknown(task, names, "task"))
            for task in merged.get("weights") or {}:
                if task not in names:
                    check.add("training.early_stopping.weights", _unknown(task, names, "task"))
            out["early_stopping"] = merged
    return out


# ----------------------------------------------------------------- building
def _read_frame(path: str, text_columns: list[str]) -> pd.DataFrame:
    """A CSV or Parquet file; categorical and sequence columns of a CSV read as text.

    Text such as "NA" is a real category value, so in those columns only an
    empty cell is missing (as `kr.data.from_csv` reads them).
    """
    if path.lower().endswith((".parquet", ".pq")):
        return pd.read_parquet(path)
    sep = "\t" if path.lower().endswith(".tsv") else ","
    header = pd.read_csv(path, nrows=0, sep=sep).columns
    text = [c for c in text_columns if c in header]
    return pd.read_csv(
        path,
        sep=sep,
        dtype={c: str for c in text},
        keep_default_na=False,
        na_values={c: ([""] if c in text else _MISSING_MARKERS) for c in header},
    )


_MISSING_MARKERS = ["", "#N/A", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]


def _text_columns(features: dict) -> list[str]:
    if features["list"] == "auto":
        return []
    return [
        f.get("column") or f["name"]
        for f in features["list"]
        if f["kind"] in ("categorical", "sequence")
    ]


def load_data(config: dict) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(train, valid, test) DataFrames of a validated config."""
    import keras_recsys as kr

    data = config["data"]
    if data["dataset"] == "census_income":
        train, valid, test = kr.datasets.census_income(data["dataset_path"])
    elif data["dataset"] == "movielens_100k":
        kind = (data["split"] or {}).get("kind", "random")
        train, valid, test = kr.datasets.movielens_100k(data["dataset_path"], split=kind)
    else:
        text = _text_columns(config["features"])
        train = _read_frame(data["train"], text)
        valid = _read_frame(data["valid"], text) if data["valid"] else None
        test = _read_frame(data["test"], text) if data["test"] else None
        if valid is None or test is None:
            train, carved_valid, carved_test = split_frame(train, data["split"])
            valid = carved_valid if valid is None else valid
            test = carved_test if test is None else test
    if data["max_rows"]:
        train, valid, test = (part.head(data["max_rows"]) for part in (train, valid, test))
    for part, frame in (("train", train), ("valid", valid), ("test", test)):
        if len(frame) == 0:
            raise ValueError(f"data: the {part} part has no rows")
    group = data["group_column"]
    if group is not None and group not in test.columns:
        raise KeyError(
            f"data.group_column: column '{group}' is not in the test data; it has "
            f"{', '.join(map(str, test.columns[:30]))}"
        )
    return train, valid, test


def split_frame(df: pd.DataFrame, split: dict) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(train, valid, test) of one frame: a seeded random permutation, or by time.

    A time split sorts by `split["column"]` (stably, so ties keep file
    order) and gives the oldest rows to train and the newest to test.
    """
    n = len(df)
    if split["kind"] == "time":
        column = split["column"]
        if column not in df.columns:
            raise KeyError(f"data.split.column: column '{column}' is not in the training file")
        order = np.argsort(df[column].to_numpy(), kind="stable")
    else:
        order = np.random.default_rng(split["seed"]).permutation(n)
    test_start = n - int(round(split["test"] * n))
    valid_start = test_start - int(round(split["valid"] * n))
    parts = (order[:valid_start], order[valid_start:test_start], order[test_start:])
    return tuple(df.iloc[p].reset_index(drop=True) for p in parts)


def build_spec(config: dict, train: pd.DataFrame):
    """The FeatureSpec of the config, fitted on `train`."""
    import keras_recsys as kr

    features = config["features"]
    dim = features["default_embedding_dim"]
    if features["list"] == "auto":
        if config["data"]["dataset"] == "census_income":
            spec = kr.datasets.census_feature_spec(embedding_dim=dim)
        else:
            spec = kr.datasets.movielens_feature_spec(embedding_dim=dim)
    else:
        classes = _feature_classes()
        built = []
        for i, entry in enumerate(features["list"]):
            arguments = {k: v for k, v in entry.items() if k != "kind"}
            try:
                built.append(classes[entry["kind"]](**arguments))
            except (TypeError, ValueError) as error:
                raise ValueError(f"features[{i}] ({entry['name']}): {error}") from error
        spec = kr.FeatureSpec(built, default_embedding_dim=dim)
    return spec.adapt(train)


def build_tasks(config: dict) -> list:
    """The `kr.Task`s of the config; a task's refusal names its entry."""
    import keras_recsys as kr

    tasks = []
    for i, entry in enumerate(config["tasks"]):
        try:
            tasks.append(kr.Task(**entry))
        except (TypeError, ValueError) as error:
            raise ValueError(f"tasks[{i}]: {error}") from error
    return tasks


def build_model(config: dict, spec, tasks):
    """The model of the config; a constructor's refusal names the `model` section."""
    cls = model_classes()[config["model"]["name"]]
    arguments = config["model"]["arguments"]
    try:
        return cls(spec, tasks, **arguments)
    except (TypeError, ValueError) as error:
        raise ValueError(f"model: {cls.__name__}({_shown(arguments)}) failed: {error}") from error


def _shown(arguments: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in arguments.items())


def build_optimizer(config: dict):
    import keras

    training = config["training"]
    cls = getattr(keras.optimizers, OPTIMIZERS[training["optimizer"]])
    return cls(learning_rate=training["learning_rate"])
