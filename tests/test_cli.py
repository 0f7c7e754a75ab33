"""The `keras-recsys` command: config-driven training, evaluate / predict / describe.

The example configs of recipes/configs/ run end to end on small slices
(`--set data.max_rows=... --set training.epochs=1`); the commands that read
an export are checked against the training run's own metrics, and every
foreseeable mistake must end in a one-line message and exit code 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

import keras_recsys as kr
from keras_recsys import cli, cli_config
from keras_recsys.datasets.movielens import cache_dir
from tests.conftest import requires_tensorflow_backend

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "recipes", "configs")
CENSUS = os.path.join(CONFIGS, "census_dcn.yaml")
MOVIELENS = os.path.join(CONFIGS, "movielens_deepfm.yaml")
ROWS = 2000
FAST = [f"data.max_rows={ROWS}", "training.epochs=1", "model.hidden_units=[32]"]


def _sets(overrides: list[str]) -> list[str]:
    return [arg for value in overrides for arg in ("--set", value)]


def _run(capfd, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capfd.readouterr()
    return code, out, err


def test_help_does_not_import_tensorflow():
    """`--help` and building the parser load neither TensorFlow nor Keras."""
    child = textwrap.dedent(
        """
        import contextlib, io, sys
        import keras_recsys_cli as cli
        cli.build_parser()
        for argv in (["--help"], ["train", "--help"], ["evaluate", "--help"]):
            with contextlib.redirect_stdout(io.StringIO()) as text, contextlib.suppress(SystemExit):
                cli.main(argv)
            assert "usage: keras-recsys" in text.getvalue(), argv
        print(sorted(m for m in ("tensorflow", "keras", "jax", "torch") if m in sys.modules))
        """
    )
    env = dict(os.environ, KERAS_BACKEND="tensorflow")
    done = subprocess.run(
        [sys.executable, "-c", child], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


@pytest.fixture(scope="module")
def census_run(tmp_path_factory, census_splits):
    """The census example config, trained for one epoch on 2,000 rows."""
    output = tmp_path_factory.mktemp("census_run")
    code = cli.main(["train", CENSUS, *_sets(FAST), "--output", str(output)])
    assert code == 0
    _, _, test = census_splits  # what `data.max_rows` keeps: the first rows of each part
    test_csv = output / "test.csv"
    test.head(ROWS).to_csv(test_csv, index=False)
    return output, test_csv


@requires_tensorflow_backend
def test_train_census_config_writes_metrics_curves_logs_and_export(census_run):
    output, _ = census_run
    summary = json.loads((output / "metrics.json").read_text())
    assert summary["model"] == "DCN" and summary["epochs_run"] == 1
    assert summary["rows"] == {"train": ROWS, "valid": ROWS, "test": ROWS}
    for task in ("income", "marital"):
        metrics = summary["test"][task]
        assert metrics["count"] == ROWS
        for name in ("auc", "logloss", "ne"):
            assert type(metrics[name]) is float and 0 < metrics[name] < 5, (task, name)
    assert (output / "training_curves.png").stat().st_size > 10_000
    for part in ("train", "validation"):
        events = os.listdir(output / "logs" / part)
        assert any(name.startswith("events.out.tfevents") for name in events), part
    export = output / "saved_model" / "1"
    assert summary["export"] == str(export)
    assert (export / "saved_model.pb").is_file()
    contract = json.loads((export / "assets.extra" / "serving_contract.json").read_text())
    assert contract["model"]["name"] == "census_dcn"
    assert json.loads((output / "config.json").read_text())["training"]["epochs"] == 1


@requires_tensorflow_backend
def test_evaluate_predict_describe_on_the_export(census_run, capfd):
    output, test_csv = census_run
    trained = json.loads((output / "metrics.json").read_text())["test"]
    # Several batches (the last one shorter) through one concrete function.
    code, out, err = _run(capfd, "evaluate", str(output / "saved_model"), str(test_csv),
                          "--batch-size", "300", "--compact")  # fmt: skip
    assert code == 0, err
    assert "retracing" not in err.lower()
    served = json.loads(out)
    assert sorted(served) == ["income", "marital"]
    for task in served:
        assert served[task]["count"] == ROWS
        for name in ("auc", "logloss"):
            assert type(served[task][name]) is float
            assert served[task][name] == pytest.approx(trained[task][name], abs=1e-4)

    rows = pd.read_csv(test_csv, dtype=str, keep_default_na=False).head(7)
    rows.to_csv(output / "seven.csv", index=False)
    code, out, err = _run(capfd, "predict", str(output / "saved_model" / "1"),
                          str(output / "seven.csv"))  # fmt: skip
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 7 and all(0 <= line["income"] <= 1 for line in lines)

    code, out, err = _run(capfd, "describe", str(output / "saved_model" / "1"))
    assert code == 0, err
    assert "education: categorical, string; vocabulary_size 17" in out
    assert "oov rule:" in out and "income: float32 (B): probability that 'income' is 1" in out
    request = json.loads(out[out.index("{", out.index("example REST request")) :])
    assert request["signature_name"] == "serving_default"
    assert set(request["instances"][0]) == set(contract_inputs(output))


def contract_inputs(output) -> list[str]:
    path = output / "saved_model" / "1" / "assets.extra" / "serving_contract.json"
    return list(json.loads(path.read_text())["inputs"])


@requires_tensorflow_backend
@pytest.mark.parametrize(
    "command, change, expected",
    [
        ("evaluate", "no_file", "data file '{dir}/absent.csv' does not exist"),
        ("predict", "drop_age", "missing input column(s) 'age' (numeric, float32)"),
        ("predict", "bad_age", "line 4, column 'age' (input 'age', float32) holds 'abc'"),
        ("evaluate", "drop_label", "missing label column(s) 'income' (output 'income')"),
        ("evaluate", "bad_label", "Label column 'marital' of task 'marital' must be numeric"),
        ("describe", "not_export", "is not a SavedModel"),
    ],
)
def test_export_commands_fail_with_one_line(census_run, capfd, command, change, expected):
    output, test_csv = census_run
    rows = pd.read_csv(test_csv, dtype=str, keep_default_na=False).head(5)
    data = output / f"{change}.csv"
    if change == "drop_age":
        rows = rows.drop(columns=["age"])
    elif change == "bad_age":
        rows.loc[2, "age"] = "abc"
    elif change == "drop_label":
        rows = rows.drop(columns=["income"])
    elif change == "bad_label":
        rows.loc[1, "marital"] = "yes"
    rows.to_csv(data, index=False)
    if change == "no_file":
        data = output / "absent.csv"
    export = output / "saved_model" / "1"
    argv = [command, str(output / "logs" if change == "not_export" else export)]
    if command != "describe":
        argv.append(str(data))
    code, out, err = _run(capfd, *argv)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"keras-recsys {command}: error: ")
    assert expected.format(dir=output) in err


@requires_tensorflow_backend
def test_train_movielens_config(tmp_path, capfd):
    if not os.path.exists(os.path.join(cache_dir(), "ml-100k", "ml-100k.inter")):
        pytest.skip("MovieLens-100K is not in the cache (kr.datasets.movielens_100k fetches it)")
    code, out, err = _run(capfd, "train", MOVIELENS, *_sets(FAST), "--output", str(tmp_path))
    assert code == 0, err
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["model"] == "DeepFM"
    click = summary["test"]["click"]
    assert type(click["gauc"]) is float and 0 < click["gauc"] < 1
    assert click["gauc_groups"] > 10
    assert (tmp_path / "saved_model" / "1" / "saved_model.pb").is_file()
    assert "test metrics:" in out
    # A list column written by DataFrame.to_csv ("['Drama', 'Thriller']") would be one
    # unknown genre per row: predict names the input and its separator instead.
    _, _, test = kr.datasets.movielens_100k()
    rows = test.head(4).drop(columns=["click", "conversion"])
    rows.to_csv(tmp_path / "lists.csv", index=False)
    code, out, err = _run(
        capfd, "predict", str(tmp_path / "saved_model" / "1"), str(tmp_path / "lists.csv")
    )
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, err
    assert "'genres'" in err and "'|'" in err and "look like lists" in err
    rows["genres"] = ["|".join(g) for g in test.head(4)["genres"]]
    rows.to_csv(tmp_path / "joined.csv", index=False)
    code, out, err = _run(
        capfd, "predict", str(tmp_path / "saved_model" / "1"), str(tmp_path / "joined.csv")
    )
    assert code == 0 and len(out.strip().splitlines()) == 4, err


# ------------------------------------------------------------ bad configs
def _problems(overrides: list[str], path: str = CENSUS) -> str:
    with pytest.raises(cli_config.ConfigError) as caught:
        cli_config.validate(cli_config.load_config(path, overrides), path)
    return str(caught.value)


def test_unknown_model_lists_the_models():
    message = _problems(["model.name=DeepFN"])
    assert "model.name: unknown model 'DeepFN' (did you mean 'DeepFM'?)" in message
    assert "DeepFM" in message and "MMoE" in message and "WideAndDeep" in message


def test_misspelled_model_argument_lists_the_accepted_ones():
    message = _problems(["model.hidden_unit=[8]", "model.num_cross_layer=2"])
    assert "model.hidden_unit: unknown argument of DCN 'hidden_unit' (did you mean " in message
    assert "'hidden_units'" in message
    assert "model.num_cross_layer: unknown argument of DCN" in message
    # Arguments of the base class are accepted and listed too.
    assert "loss_weighting" in message


def test_missing_data_file_names_the_path(tmp_path):
    config = tmp_path / "files.yaml"
    config.write_text(
        "data: {train: nowhere/train.csv, test: also_missing.parquet}\n"
        "features: [{kind: categorical, name: user_id}]\n"
        "model: {name: DNN}\ntasks: [click]\n"
    )
    message = _problems([], str(config))
    assert "data.train: file 'nowhere/train.csv' does not exist" in message
    assert "data.test: file 'also_missing.parquet' does not exist" in message


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["model.name=SASRec"], "SASRec is a retrieval / next-item model"),
        (["training.epochs=0"], "training.epochs: expected an integer >= 1, got 0"),
        (["training.optimiser=adam"], "training.optimiser: unknown key 'optimiser' (did you mean"),
        (["training.optimizer=adamx"], "training.optimizer: unknown optimizer 'adamx'"),
        (["features.list.0={kind: categorical}"], "features.list[0].name: expected a non-empty"),
        (["tasks.0.kind=binray"], "tasks[0].kind: unknown task kind 'binray' (did you mean"),
        (["data.split.kind=time"], "census_income splits by random, got 'time'"),
    ],
)
def test_bad_values_name_their_key_path(overrides, expected):
    if overrides[0].startswith("features.list.0"):
        overrides = ["features.list=[{kind: categorical, name: age}]", *overrides]
    assert expected in _problems(overrides)


def test_bad_override_and_bad_config_exit_2_before_training(tmp_path, capfd):
    code, out, err = _run(capfd, "train", CENSUS, "--set", "training.epochs")
    assert code == 2 and "expected KEY.PATH=VALUE" in err and "Traceback" not in err
    code, out, err = _run(capfd, "train", CENSUS, "--set", "model.hidden_unit=[8]")
    assert code == 2 and "model.hidden_unit: unknown argument of DCN" in err
    code, out, err = _run(capfd, "train", str(tmp_path / "absent.yaml"))
    assert code == 2 and f"config file '{tmp_path / 'absent.yaml'}' does not exist" in err


def test_file_data_with_a_time_split(tmp_path):
    """A single CSV, split by time: the newest rows are the test part."""
    frame = pd.DataFrame(
        {
            "user_id": [f"u{i % 7}" for i in range(100)],
            "price": [float(i) for i in range(100)],
            "timestamp": list(range(100))[::-1],
            "click": [i % 2 for i in range(100)],
        }
    )
    frame.to_csv(tmp_path / "log.csv", index=False)
    config = tmp_path / "log.json"
    config.write_text(
        json.dumps(
            {
                "data": {
                    "train": "log.csv",  # beside the config
                    "split": {"kind": "time", "column": "timestamp", "valid": 0.1, "test": 0.2},
                    "group_column": "user_id",
                },
                "features": [
                    {"kind": "categorical", "name": "user_id", "embedding_dim": 4},
                    {"kind": "bucketized", "name": "price", "buckets": 4},
                ],
                "model": {"name": "dnn", "hidden_units": [8]},
                "tasks": [{"name": "click"}],
            }
        )
    )
    checked = cli_config.validate(
        cli_config.load_config(str(config)), str(config), base_dir=str(tmp_path)
    )
    assert checked["model"]["name"] == "DNN" and checked["name"] == "log"
    train, valid, test = cli_config.load_data(checked)
    assert (len(train), len(valid), len(test)) == (70, 10, 20)
    assert train["timestamp"].max() < valid["timestamp"].min()
    assert valid["timestamp"].max() < test["timestamp"].min()
    # Categorical columns are read as text, whatever their values look like.
    assert pd.api.types.is_string_dtype(test["user_id"])
    spec = cli_config.build_spec(checked, train)
    assert spec["price"].is_bucketized and spec.dtype_of("user_id") == "string"


def test_set_overrides_index_lists_and_parse_yaml():
    config = {"tasks": [{"name": "a"}, {"name": "b"}]}
    cli_config.apply_override(config, "tasks.1.weight=0.5")
    cli_config.apply_override(config, "model.hidden_units=[64, 32]")
    cli_config.apply_override(config, "training.early_stopping=false")
    assert config["tasks"][1] == {"name": "b", "weight": 0.5}
    assert config["model"] == {"hidden_units": [64, 32]}
    assert config["training"] == {"early_stopping": False}
    with pytest.raises(ValueError, match=r"'tasks.2' indexes a list of 2 items"):
        cli_config.apply_override(config, "tasks.2.weight=1")
