"""Crash and resume: `keras.callbacks.BackupAndRestore` on a `kr.data` pipeline.

A training child process (TensorFlow backend, a small DCN on 2,000 census
rows, 16 steps per epoch, 4 epochs) is killed with SIGKILL in the middle of
its second epoch, then the same command is run again. What Keras 3 restores
(checked here, not assumed):

* the weights *and* the optimizer state of the last backup, bit for bit
  (Adam's moments and its iteration count);
* the epoch only: a backup taken mid-epoch (`save_freq=<steps>`) records
  `{"epoch": e, "batch": b}` but Keras reads back `epoch` alone, so the
  resumed run starts epoch e again from its first batch, and the batches
  that epoch had already trained on before the backup are trained on twice.

So a mid-epoch resume cannot equal the uninterrupted run; it equals exactly
(0.0 difference) the run that trains up to the backup and then repeats the
epoch from its start, which is what `test_step_backups_resume_mid_epoch`
checks. With `save_freq="epoch"` the backup sits on an epoch boundary and the
resumed run equals the uninterrupted run exactly
(`test_epoch_backups_resume_to_the_uninterrupted_weights`).

The pipeline here does not shuffle: `kr.data.from_pandas(shuffle=True,
seed=s)` draws each epoch's order from how many times the dataset has been
iterated *in this process*, so a process resumed at epoch e replays the order
of epoch 0, not the uninterrupted run's epoch e (equal weights would then need
the order to be a function of (seed, epoch)).

The reference runs are trained in this process, from the initial weights the
child saved, so they depend on neither the random seeds nor the child.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import requires_tensorflow_backend

pytestmark = requires_tensorflow_backend

ROWS = 2000
BATCH_SIZE = 128
STEPS_PER_EPOCH = -(-ROWS // BATCH_SIZE)  # 16, the last batch 80 rows
EPOCHS = 4
SAVE_FREQ = 5  # steps: backups after global steps 5, 10, ..., 25 (9th batch of epoch 1), ...
KILL_AFTER = 27  # global step: the 11th batch of epoch 1
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHILD_TIMEOUT = 300


# ------------------------------------------------------------ the training job
def _model(train):
    """A small DCN and its (unshuffled) pipeline; the same in the child and here."""
    import keras

    import keras_recsys as kr

    features = [kr.Categorical(c) for c in ("education", "class_worker", "sex", "major_occ_code")]
    features += [kr.Numeric(c, transform="log1p") for c in ("age", "weeks_worked")]
    spec = kr.FeatureSpec(features, default_embedding_dim=4).adapt(train)
    model = kr.models.DCN(spec, ["income"], num_cross_layers=1, projection_dim=4, hidden_units=(8,))
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    data = kr.data.from_pandas(train, model, batch_size=BATCH_SIZE, shuffle=False)
    return model, data


def _child(config: dict) -> None:
    """The training script: fit with backups; pause for the kill after a given step.

    `config`: `rows` (the training rows, pickled), `backups` ({directory:
    save_freq}), `log` (a JSON-lines file of what happened), `out` (final
    weights, .npz), `double` (BackupAndRestore's `double_checkpoint`), and
    for the first run `init` (where to save its initial weights) and
    `kill_after` (the global step to wait at for the kill).
    """
    import keras
    import pandas as pd

    keras.utils.set_random_seed(0)
    model, data = _model(pd.read_pickle(config["rows"]))

    def log(**event):
        with open(config["log"], "a") as f:
            f.write(json.dumps(event) + "\n")

    class Recorder(keras.callbacks.Callback):
        # After the BackupAndRestore callbacks in the list: it sees the
        # restored state at train begin, and a step's backup is on disk
        # before it announces that step.
        def on_train_begin(self, logs=None):
            log(event="begin", iterations=int(self.model.optimizer.iterations))

        def on_epoch_begin(self, epoch, logs=None):
            log(event="epoch", epoch=epoch, iterations=int(self.model.optimizer.iterations))

        def on_train_batch_end(self, batch, logs=None):
            if int(self.model.optimizer.iterations) == config.get("kill_after"):
                log(event="kill me", batch=batch)
                time.sleep(CHILD_TIMEOUT)  # the parent kills the process here

    if "init" in config:
        np.savez(config["init"], *_weights(model))
    callbacks = [
        keras.callbacks.BackupAndRestore(
            directory,
            save_freq=freq,
            delete_checkpoint=False,
            double_checkpoint=config.get("double", False),
        )
        for directory, freq in config["backups"].items()
    ]
    model.fit(data, epochs=EPOCHS, verbose=0, callbacks=[*callbacks, Recorder()])
    np.savez(config["out"], *[v.numpy() for v in model.weights])
    log(event="end", iterations=int(model.optimizer.iterations))


# ------------------------------------------------------------------ helpers
def _start(config: dict) -> subprocess.Popen:
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    # To a file, not a pipe: a child waiting to be killed never blocks on a full pipe.
    with open(config["log"] + ".stderr", "w") as stderr:
        return subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), json.dumps(config)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )


def _events(log: str) -> list[dict]:
    if not os.path.exists(log):
        return []
    with open(log) as f:
        return [json.loads(line) for line in f if line.endswith("\n")]


def _stderr(log: str) -> str:
    with open(log + ".stderr") as f:
        return f.read()[-4000:]


def _kill_when(process: subprocess.Popen, log: str, ready, delay: float = 0.0) -> None:
    """SIGKILLs `process` `delay` seconds after its log has an event for which
    `ready` is true (if it is still running then)."""
    deadline = time.monotonic() + CHILD_TIMEOUT
    while not any(ready(e) for e in _events(log)):
        if process.poll() is not None:
            raise AssertionError("The training child ended before the kill:\n" + _stderr(log))
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("The training child never reached the kill point.")
        time.sleep(0.05)
    time.sleep(delay)
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
        assert process.wait() == -signal.SIGKILL


def _finish(process: subprocess.Popen, log: str) -> None:
    try:
        process.wait(timeout=CHILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    assert process.returncode == 0, "The resumed run failed:\n" + _stderr(log)


def _weights(model) -> list[np.ndarray]:
    return [v.numpy() for v in model.weights]


def _load(path: str) -> list[np.ndarray]:
    """The arrays of an .npz written by `np.savez(path, *arrays)`, in order."""
    with np.load(path) as saved:
        return [saved[f"arr_{i}"] for i in range(len(saved.files))]


def _state(model) -> list[np.ndarray]:
    """Model weights and optimizer variables (Adam's moments, iteration count)."""
    return _weights(model) + [v.numpy() for v in model.optimizer.variables]


def _assert_equal(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    assert len(got) == len(want)
    for i, (a, b) in enumerate(zip(got, want)):
        np.testing.assert_array_equal(a, b, err_msg=f"variable {i}")


def _replay(model, data, backup_epoch: int, backup_step: int):
    """Trains as a run resumed from a backup taken after `backup_step` steps does.

    Up to the backup as the interrupted run did, then epochs `backup_epoch`
    (from its first batch) to the end, as Keras resumes. Returns the state
    at the backup; `model` ends with the final weights.
    """
    if backup_epoch:
        model.fit(data, epochs=backup_epoch, verbose=0)
    done_in_epoch = backup_step - backup_epoch * STEPS_PER_EPOCH
    if done_in_epoch:
        model.fit(data.take(done_in_epoch), epochs=1, verbose=0)
    at_backup = _state(model)
    model.fit(data, initial_epoch=backup_epoch, epochs=EPOCHS, verbose=0)
    return at_backup


# -------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def rows(census_splits, tmp_path_factory):
    """The first 2,000 census training rows, pickled for the children (which
    then need not parse the whole data set)."""
    path = str(tmp_path_factory.mktemp("rows") / "rows.pkl")
    census_splits[0].head(ROWS).to_pickle(path)
    return path


@pytest.fixture(scope="module")
def interrupted(rows, tmp_path_factory):
    """One run backing up two ways (every 5 steps; every epoch), SIGKILLed
    mid-epoch after step 27; then the same command resumed from each backup.

    Returns the paths and, per backup kind, the resumed run's events and the
    backup directory as the kill left it.
    """
    tmp = tmp_path_factory.mktemp("resume")
    steps, epochs = str(tmp / "backup_steps"), str(tmp / "backup_epochs")
    init, log = str(tmp / "init.npz"), str(tmp / "killed.jsonl")
    killed = _start(
        {
            "rows": rows,
            "backups": {steps: SAVE_FREQ, epochs: "epoch"},
            "log": log,
            "out": str(tmp / "never.npz"),
            "init": init,
            "kill_after": KILL_AFTER,
        }
    )
    _kill_when(killed, log, lambda e: e["event"] == "kill me")
    # The backups as the kill left them (the resumed runs overwrite them).
    left = {}
    for kind, directory in (("steps", steps), ("epochs", epochs)):
        left[kind] = str(tmp / f"left_by_kill_{kind}")
        shutil.copytree(directory, left[kind])
    resumed = {}
    for kind, directory, freq in (("steps", steps, SAVE_FREQ), ("epochs", epochs, "epoch")):
        config = {
            "rows": rows,
            "backups": {directory: freq},
            "log": str(tmp / f"resumed_{kind}.jsonl"),
            "out": str(tmp / f"resumed_{kind}.npz"),
        }
        _finish(_start(config), config["log"])
        resumed[kind] = {"events": _events(config["log"]), "weights": _load(config["out"])}
    return {"init": init, "killed": _events(log), "left": left, "resumed": resumed}


@pytest.fixture(scope="module")
def reference_model(rows):
    """The child's model and pipeline, built here (weights set per test)."""
    import pandas as pd

    return _model(pd.read_pickle(rows))


def _fresh(reference_model, init: str):
    import keras

    model, data = reference_model
    for variable, value in zip(model.weights, _load(init), strict=True):
        variable.assign(value)
    # A fresh optimizer, as a new process starts with (no moments, step 0).
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    return model, data


def test_step_backups_resume_mid_epoch(interrupted, reference_model):
    """save_freq=5 steps, killed after step 27 (epoch 1, batch 11): the restart
    starts at step 25, the last backup, in epoch 1 (not from scratch), and ends
    with exactly the weights of a run that repeats epoch 1 from its first batch
    after step 25; the backup the kill left loads and holds step 25's state."""
    killed_epochs = [e["epoch"] for e in interrupted["killed"] if e["event"] == "epoch"]
    assert killed_epochs == [0, 1]  # the kill came mid-epoch 1
    events = interrupted["resumed"]["steps"]["events"]
    assert events[0] == {"event": "begin", "iterations": 25}
    assert events[1] == {"event": "epoch", "epoch": 1, "iterations": 25}
    # Epoch 1 again in full, then epochs 2 and 3: 25 + 3 * 16 steps.
    assert events[-1] == {"event": "end", "iterations": 25 + 3 * STEPS_PER_EPOCH}

    left = interrupted["left"]["steps"]
    with open(os.path.join(left, "training_metadata.json")) as f:
        assert json.load(f) == {"epoch": 1, "batch": 8}  # step 25 = epoch 1, batch index 8

    model, data = _fresh(reference_model, interrupted["init"])
    at_backup = _replay(model, data, backup_epoch=1, backup_step=25)
    final = _weights(model)
    _assert_equal(interrupted["resumed"]["steps"]["weights"], final)
    model.load_weights(os.path.join(left, "latest.weights.h5"))
    _assert_equal(_state(model), at_backup)

    # The uninterrupted run trains 9 steps fewer: the resumed weights differ.
    model, data = _fresh(reference_model, interrupted["init"])
    model.fit(data, epochs=EPOCHS, verbose=0)
    assert any(not np.array_equal(a, b) for a, b in zip(_weights(model), final))


def test_epoch_backups_resume_to_the_uninterrupted_weights(interrupted, reference_model):
    """save_freq="epoch", the same kill: the restart starts at step 16 in epoch 1
    and ends with exactly the uninterrupted run's weights; the backup the kill
    left loads and holds the state after epoch 0."""
    events = interrupted["resumed"]["epochs"]["events"]
    assert events[0] == {"event": "begin", "iterations": STEPS_PER_EPOCH}
    assert events[1] == {"event": "epoch", "epoch": 1, "iterations": STEPS_PER_EPOCH}
    assert events[-1] == {"event": "end", "iterations": EPOCHS * STEPS_PER_EPOCH}

    left = interrupted["left"]["epochs"]
    with open(os.path.join(left, "training_metadata.json")) as f:
        assert json.load(f)["epoch"] == 1

    model, data = _fresh(reference_model, interrupted["init"])
    at_backup = _replay(model, data, backup_epoch=1, backup_step=STEPS_PER_EPOCH)
    _assert_equal(interrupted["resumed"]["epochs"]["weights"], _weights(model))
    model.load_weights(os.path.join(left, "latest.weights.h5"))
    _assert_equal(_state(model), at_backup)


@pytest.mark.slow
def test_kills_at_random_moments_always_resume(rows, tmp_path, reference_model):
    """Three SIGKILLs at random moments of one job (some may land inside a
    backup's write), `double_checkpoint=True`: every restart loads a backup
    (none is left unreadable) and the job ends with exactly the weights of
    its segments replayed: each run trains from the first batch of an epoch
    (all epochs are the same batches here) until the backup the next run
    restores."""
    backup = str(tmp_path / "backup")
    init = str(tmp_path / "init.npz")
    final = str(tmp_path / "final.npz")
    rng = random.Random(12)
    starts = []  # the optimizer step each run starts at
    for attempt in range(4):
        log = str(tmp_path / f"run{attempt}.jsonl")
        config = {"rows": rows, "backups": {backup: 3}, "log": log, "out": final, "double": True}
        if attempt == 0:
            config["init"] = init
        process = _start(config)
        if attempt < 3:
            # Once it trains (after any restore), kill it a random moment later.
            _kill_when(process, log, lambda e: e["event"] == "epoch", rng.uniform(0.0, 0.4))
        else:
            _finish(process, log)
        events = _events(log)
        assert events and events[0]["event"] == "begin", f"run {attempt} did not start"
        starts.append(events[0]["iterations"])
        if events[-1]["event"] == "end":
            break
    assert events[-1]["event"] == "end"
    steps = [b - a for a, b in zip(starts, [*starts[1:], events[-1]["iterations"]])]
    model, data = _fresh(reference_model, init)
    for count in steps:
        if count:
            model.fit(data.repeat().take(count), epochs=1, verbose=0)
    _assert_equal(_load(final), _weights(model))


if __name__ == "__main__":
    _child(json.loads(sys.argv[1]))
