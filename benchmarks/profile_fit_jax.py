"""Where a DeepFM training step's GPU time goes: the toolkit against plain JAX.

Traces, with `jax.profiler`, a few calls of (a) the toolkit's compiled
training function (fused tables, `steps_per_execution` steps fused, the
function `fit` calls) and (b) the plain-JAX epoch of `plain_jax.py`, reads
the Perfetto trace JSON it writes, and prints per side: device kernels per
training step, device busy time per step, and the kernels that take the
most time. A model step that launches many more kernels than plain JAX
for the same math is the next thing to fuse.

    KERAS_BACKEND=jax python benchmarks/profile_fit_jax.py --data .bench/criteo_131072.npz
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import sys
import tempfile

os.environ.setdefault("KERAS_BACKEND", "jax")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def kernel_events(trace_dir: str) -> list[dict]:
    """Complete events on device (GPU) tracks of the Perfetto trace."""
    paths = glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True)
    paths += glob.glob(os.path.join(trace_dir, "**", "perfetto_trace.json.gz"), recursive=True)
    if not paths:
        raise FileNotFoundError(f"no trace JSON under {trace_dir}")
    with gzip.open(paths[0]) as f:
        trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    gpu_pids = {
        e["pid"]
        for e in events
        if e.get("ph") == "M"
        and e.get("name") == "process_name"
        and "/device:GPU" in str(e.get("args", {}).get("name", ""))
    }
    return [e for e in events if e.get("ph") == "X" and e.get("pid") in gpu_pids]


def summarize(events: list[dict], steps: int, top: int) -> dict:
    by_name = collections.defaultdict(lambda: [0, 0.0])
    for e in events:
        entry = by_name[e["name"]]
        entry[0] += 1
        entry[1] += float(e.get("dur", 0))
    total = sum(v[1] for v in by_name.values())
    ranked = sorted(by_name.items(), key=lambda kv: -kv[1][1])[:top]
    return {
        "kernels_per_step": len(events) / steps,
        "busy_us_per_step": total / steps,
        "top": [
            {"kernel": name[:90], "per_step": count / steps, "us_per_step": us / steps}
            for name, (count, us) in ranked
        ],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=os.path.join(ROOT, ".bench", "criteo_131072.npz"))
    parser.add_argument("--batch-size", type=int, default=32_768)
    parser.add_argument("--steps-per-execution", type=int, default=8)
    parser.add_argument("--calls", type=int, default=2)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--out", default=None, help="write the summary JSON here")
    parser.add_argument(
        "--take-mode",
        default=None,
        help="experiment: the fused tables gather with jnp.take(mode=...) ('clip', 'fill', ...)",
    )
    args = parser.parse_args(argv)

    import jax

    import keras_recsys as kr
    from benchmarks import common, plain_jax
    from benchmarks.bench_fit_jax import toolkit_model

    data = common.load_synthetic(args.data)
    batch, steps = args.batch_size, args.steps_per_execution
    rows = batch * steps
    reps = -(-rows // data.num_rows)
    import numpy as np

    features = {k: np.tile(v, reps)[:rows] for k, v in data.features.items()}
    labels = np.tile(data.labels, (reps, 1))[:rows]
    results = {}

    if args.take_mode:
        import jax.numpy as jnp
        from keras import ops

        from keras_recsys.layers.fused_embedding import FusedEmbedding

        def lookup_stacked(self, pairs):
            offsets = jnp.asarray([self.offsets[table] for table, _ in pairs], jnp.int32)
            ids = jnp.stack([jnp.asarray(i, jnp.int32) for _, i in pairs], axis=1) + offsets
            rows = jnp.take(self.embeddings.value, ids, axis=0, mode=args.take_mode)
            return ops.cast(rows, self.compute_dtype)

        FusedEmbedding.lookup_stacked = lookup_stacked
    model = toolkit_model(data.spec, fused=True)
    model.compile(optimizer="adam", steps_per_execution=steps, metrics=[])
    dataset = kr.data.DeviceDataset(features, {"click": labels}, batch_size=batch, seed=0)
    model.fit(dataset, epochs=1, verbose=0)
    block = [dataset[i] for i in range(steps)]
    state = model._get_jax_state(
        trainable_variables=True,
        non_trainable_variables=True,
        optimizer_variables=True,
        metrics_variables=True,
    )
    logs, state = model.train_function(state, iter(block))
    jax.block_until_ready(logs)
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
            for _ in range(args.calls):
                logs, state = model.train_function(state, iter(block))
            jax.block_until_ready(logs)
        results["toolkit"] = summarize(kernel_events(trace_dir), args.calls * steps, args.top)

    hand_params = {
        "tables": jax.numpy.zeros((26 * data.input_dim, 16)) + 0.01,
        "linear": jax.numpy.zeros((26 * data.input_dim,)),
        "numeric_vectors": jax.numpy.full((13, 16), 0.01),
        "dense_kernel": jax.numpy.zeros((13, 1)),
        "dense_bias": jax.numpy.zeros((1,)),
        "mlp": [
            (jax.numpy.full((26 * 16 + 13 * 16 + 13, 256), 0.01), jax.numpy.zeros((256,))),
            (jax.numpy.full((256, 128), 0.01), jax.numpy.zeros((128,))),
        ],
        "head": (jax.numpy.full((128, 1), 0.01), jax.numpy.zeros((1,))),
    }
    device = plain_jax.device_data(
        features, labels, common.CATEGORICAL, common.NUMERIC, data.input_dim
    )
    epoch = plain_jax.make_epoch(batch, steps)
    opt = plain_jax.adam_init(hand_params)
    hand_params, opt, loss = epoch(hand_params, opt, device, jax.random.key(0))
    float(loss)
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
            for i in range(args.calls):
                hand_params, opt, loss = epoch(hand_params, opt, device, jax.random.key(i + 1))
            float(loss)
        results["plain_jax"] = summarize(kernel_events(trace_dir), args.calls * steps, args.top)

    for side, summary in results.items():
        print(
            f"\n== {side}: {summary['kernels_per_step']:.0f} kernels per step, "
            f"{summary['busy_us_per_step']:.0f} us of device time per step"
        )
        for row in summary["top"]:
            print(f"  {row['us_per_step']:8.1f} us  x{row['per_step']:5.1f}  {row['kernel']}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"settings": vars(args), **results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
