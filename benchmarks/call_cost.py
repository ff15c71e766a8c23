"""Where a batch-64 fast LSTM inference call spends its time outside the recurrence.

`python -m benchmarks.call_cost [--steps 1,5,50] [--repetitions 9] [--intra-op-threads N]`

For each sequence length T (batch 64, 128 inputs, 256 units, as in
`benchmarks.recurrent`), times side by side (`benchmarks.timing.interleaved`):

* `native op, eager`: the native LSTM op alone, called eagerly: the recurrence
  plus the least a call can cost;
* `native op, tf.function`: the same op as the only node of a graph function;
* `fast model, tf.function`: the benchmark's many-to-one model with the fast
  kernels, as `benchmarks.recurrent` times it;
* `torch` (unless `--no-torch`): nn.LSTM + Linear, `inference_mode`.

The difference between the first two is TF's cost of calling a graph function
around that op. A second table shows what that cost depends on: a trivial
graph function (`x + 1` on a [64, 10] tensor) timed right after a pause of
about the T=50 call's length (sleeping, or the native op running eagerly)
and back to back. `--intra-op-threads 1` runs the native op's recurrence on
one thread (it uses as many as TF's intra-op setting allows), which shows how
its two slices scale.
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", default="1,5,50", help="sequence lengths T")
    parser.add_argument("--repetitions", type=int, default=9)
    parser.add_argument("--min-seconds", type=float, default=0.3, help="duration of one timing")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch peer")
    parser.add_argument("--intra-op-threads", type=int, default=0,
                        help="TF's intra-op threads (0: TF's default, one per core)")
    return parser.parse_args(argv)


def native_op(steps, sizes):
    """(fast model, op, x): the benchmark's fast LSTM model, a call of its native op
    on the model's weights and a random batch `x` ([batch, steps, inputs], NumPy)."""
    import tensorflow as tf

    from benchmarks import recurrent
    from zoo.layers import fast_recurrent, native

    ops = native.ops()
    if ops is None:
        raise SystemExit(f"the native kernels are unavailable: {native.unavailable_reason()}")
    x, _ = recurrent._data(sizes.batch, steps, sizes)
    inputs = tf.constant(x)
    fast = fast_recurrent.fast_cpu_model(recurrent.stock_model("lstm", steps, sizes))
    cell = fast.get_layer("lstm").cell
    kernel, bias, recurrent_kernel = (tf.convert_to_tensor(v) for v in
                                      (cell.kernel, cell.bias, cell.recurrent_kernel))
    zeros = tf.zeros([sizes.batch, sizes.units])

    def op():  # the final h, as the fast layer runs the op at inference
        return fast_recurrent._native_lstm_forward(
            ops, inputs, kernel, bias, None, zeros, zeros, recurrent_kernel, keep="last",
            hoist=False, batch_major=True)[0]

    return fast, op, x


def candidates(steps, with_torch=True):
    """{name: callable} for one sequence length, all from one set of weights."""
    import tensorflow as tf

    from benchmarks import recurrent

    sizes = recurrent.Sizes()
    fast, op, x = native_op(steps, sizes)
    graph_op = tf.function(op)
    runs = {"native op, eager": lambda: op().numpy(),
            "native op, tf.function": lambda: graph_op().numpy(),
            "fast model, tf.function": recurrent.keras_inference(fast, tf.constant(x), False)}
    if with_torch:
        import torch

        torch.set_flush_denormal(True)
        runs["torch"] = recurrent.torch_inference(recurrent.torch_model("lstm", sizes),
                                                  torch.from_numpy(x))
    return runs


def after_pause(pause_seconds=0.013, calls=100):
    """{what ran before: median ms of a trivial graph-function call right after it}."""
    import statistics
    import time

    import numpy as np
    import tensorflow as tf

    from benchmarks.recurrent import Sizes

    small = tf.constant(np.ones((64, 10), np.float32))
    trivial = tf.function(lambda: small + 1.0)
    _, op, _ = native_op(50, Sizes())
    before = {"nothing (back to back)": lambda: None,
              f"sleep {pause_seconds * 1e3:.0f} ms": lambda: time.sleep(pause_seconds),
              "the native op, T=50 (eager)": lambda: op().numpy()}
    for run in [trivial, *before.values()]:  # warm up
        run()
    medians = {}
    for name, run in before.items():
        seconds = []
        for _ in range(calls):
            run()
            start = time.perf_counter()
            trivial().numpy()
            seconds.append(time.perf_counter() - start)
        medians[name] = statistics.median(seconds) * 1e3
    return medians


def main(argv=None):
    from benchmarks.timing import interleaved

    args = parse_args(argv)
    if args.intra_op_threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(args.intra_op_threads)
    threads = args.intra_op_threads or "default"
    print(f"batch 64, LSTM 128 -> 256, median ms per call (interleaved), TF intra-op threads: "
          f"{threads}")
    for steps in (int(s) for s in args.steps.split(",")):
        timings = interleaved(candidates(steps, not args.no_torch), args.repetitions,
                              args.min_seconds)
        ms = {name: t["seconds"] * 1e3 for name, t in timings.items()}
        print(f"\nT={steps}")
        for name, value in ms.items():
            print(f"  {name:26s} {value:8.3f}")
        call_cost = ms["native op, tf.function"] - ms["native op, eager"]
        print(f"  graph-function call cost beyond eager: {call_cost:.3f} ms "
              f"({100 * call_cost / ms['native op, eager']:.1f}% of the eager op)")
    print("\ntrivial graph function, median ms per call, right after:")
    for name, value in after_pause().items():
        print(f"  {name:30s} {value:6.3f}")


if __name__ == "__main__":
    main()
