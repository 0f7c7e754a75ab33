"""The `keras-recsys` command line's entry point: argument parsing without TensorFlow.

`import keras_recsys` loads Keras and a backend (it registers every model
class for `keras.models.load_model`), so the parser lives outside the
package: `keras-recsys --help` and a bad argument answer at once, and a
command imports the toolkit only when it runs (`keras_recsys.cli`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import tempfile

DEMO_MODELS = ("dcn", "deepfm", "wide_deep")

# Lines TensorFlow's C++ libraries print on import whatever TF_CPP_MIN_LOG_LEVEL
# says: absl logs them before it is initialized, straight to stderr, and
# twice (two shared libraries each run the same start-up code).
_STARTUP_NOISE = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called"
    r"|port\.cc:\d+\] oneDNN custom operations are on"
    r"|cpu_feature_guard\.cc:\d+\]"
    r"|^To enable the following instructions: .*rebuild TensorFlow"
)


@contextlib.contextmanager
def _filtered_stderr(noise: re.Pattern):
    """Captures file descriptor 2 and replays it without the lines `noise` matches.

    Works at the descriptor level because the start-up lines come from C++,
    which Python's `sys.stderr` never sees.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode("utf-8", "replace").splitlines(keepends=True):
                if not noise.search(line):
                    sys.stderr.write(line)
            sys.stderr.flush()


# ------------------------------------------------------------------ parser
TRAIN_EPILOG = """\
config sections (YAML or JSON; examples in recipes/configs/):
  data:      dataset (census_income | movielens_100k) or train/valid/test files
             (CSV, Parquet); split {kind: random|time, valid, test, column, seed}
             carves missing parts out of train; group_column (gAUC); max_rows
  features:  auto (a bundled data set's documented columns) or a list of
             {kind: categorical|numeric|bucketized|sequence|crossed, name, ...};
             or {default_embedding_dim: 8, list: ...}
  model:     {name: DCN|DeepFM|WideAndDeep|DNN|MMoE|PLE|..., <its arguments>}
  tasks:     [{name, kind: binary|regression|multiclass, label, weight, ...}]
  training:  epochs, batch_size, eval_batch_size, learning_rate, optimizer
             (adam|adamw|sgd|rmsprop|adagrad), seed,
             early_stopping {metric, patience, min_delta, tasks, weights} or false
  output:    run directory (default runs/<name>)

writes OUTPUT/metrics.json, OUTPUT/training_curves.png, OUTPUT/logs
(TensorBoard), OUTPUT/saved_model/<version>/ and OUTPUT/config.json.
example: keras-recsys train recipes/configs/census_dcn.yaml --set training.epochs=1
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; imports nothing heavy."""
    parser = argparse.ArgumentParser(
        prog="keras-recsys",
        description="Recommender models on Keras 3: train from a config, evaluate, "
        "serve and inspect TF Serving exports.",
        epilog="Run `keras-recsys COMMAND --help` for a command's options.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    fit = commands.add_parser(
        "train",
        help="train, evaluate, plot and export the model a config describes",
        description="Train the model a YAML/JSON config describes, evaluate it on the test "
        "part, write metrics, curves and TensorBoard logs, and export it for TF Serving.",
        epilog=TRAIN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    fit.add_argument("config", help="the config file (.yaml, .yml or .json)")
    fit.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override a config value (VALUE is YAML), e.g. training.epochs=1 or "
        "data.max_rows=2000; repeatable",
    )
    fit.add_argument("--output", help="the run directory (overrides the config's `output`)")

    score = commands.add_parser(
        "evaluate",
        help="metrics of an export on labelled CSV rows",
        description="Run an export on the rows of a CSV file and compare its outputs with the "
        "label columns its serving contract names (AUC, log loss, NE for binary outputs; "
        "RMSE and MAE for regression; accuracy for multiclass). Prints JSON.",
    )
    score.add_argument("path", help="a SavedModel version directory (or its base directory)")
    score.add_argument("csv", help="rows with the export's input columns and label columns")
    score.add_argument("--group-column", help="also report gAUC over groups of this column")
    score.add_argument("--batch-size", type=int, default=8192)
    score.add_argument("--compact", action="store_true", help="one line of JSON")

    serve = commands.add_parser(
        "predict",
        help="run an export on raw CSV rows (JSON lines)",
        description="Run an export on the rows of a CSV file; prints one JSON object per row.",
    )
    serve.add_argument("path", help="a SavedModel version directory (or its base directory)")
    serve.add_argument("csv", help="rows with the export's input columns")
    serve.add_argument("--batch-size", type=int, default=8192)

    show = commands.add_parser(
        "describe",
        help="what an export takes and returns, with an example REST request",
        description="Print an export's serving contract (each input's kind, dtype, separator, "
        "vocabulary size and OOV rule; each output's meaning) and an example REST request.",
    )
    show.add_argument("path", help="a SavedModel version directory (or its base directory)")
    show.add_argument("--json", action="store_true", help="the contract and request as JSON")

    run = commands.add_parser("demo", help="census: train, evaluate, export, verify, plot")
    run.add_argument("--model", choices=DEMO_MODELS, default="dcn")
    run.add_argument("--epochs", type=int, default=8)
    run.add_argument("--batch-size", type=int, default=1024)
    run.add_argument("--learning-rate", type=float, default=1e-3)
    run.add_argument("--embedding-dim", type=int, default=8)
    run.add_argument("--seed", type=int, default=2026)
    run.add_argument("--output", default="saved_models")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parses the command line, then runs the command (`keras_recsys.cli.run`)."""
    args = build_parser().parse_args(argv)
    # Before TensorFlow loads (importing keras_recsys loads it): no INFO or
    # WARNING lines from its C++ runtime, and none of its start-up lines.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with _filtered_stderr(_STARTUP_NOISE):
        from keras_recsys.cli import run

    return run(args)
