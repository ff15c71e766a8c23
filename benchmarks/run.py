"""Run the benchmarks: `python -m benchmarks.run [--quick] [--output results.json]`.

Sections (all by default):

* peak       float32 matmul GFLOP/s (TF, TF's XLA dot and torch): the yardstick for
             "% of peak", measured at the start and (square product) again at the end;
* recurrent  LSTM/GRU training tokens/s, inference tokens/s (batch 64) and batch-1
             latency at T=50 and T=200: the zoo's stock layer, its faster CPU paths
             and the options they were chosen over, against torch nn.LSTM/nn.GRU;
* models     end-to-end throughput of every pretrained model in saved_models/,
             stock and with the fast kernels;
* threads    (only when asked) the same LSTM comparison in child processes with
             different TF/torch thread settings, alternated.

Every comparison is measured in one process, side by side, with interleaved
repetitions, and reported as medians and ratios (see benchmarks/timing.py).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SECTIONS = ("peak", "recurrent", "models")
MODES = ("training", "inference", "latency")
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results.json"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="seconds-long sanity run: tiny sizes, few repetitions")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON results file")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {SECTIONS + ('threads',)}")
    parser.add_argument("--cells", default="lstm,gru")
    parser.add_argument("--steps", default="50,200", help="sequence lengths T")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--impls", default="", help="comma-separated implementation names (all)")
    parser.add_argument("--models", default="", help="comma-separated pretrained names (all)")
    parser.add_argument("--repetitions", type=int, default=7)
    parser.add_argument("--min-seconds", type=float, default=0.3, help="duration of one timing")
    parser.add_argument("--model-items", type=int, default=256, help="inputs per model call")
    parser.add_argument("--model-repetitions", type=int, default=5)
    parser.add_argument("--intra-op-threads", type=int, default=0, help="0: library default")
    parser.add_argument("--inter-op-threads", type=int, default=0, help="0: library default")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch peer")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps = "10" if args.steps == "50,200" else args.steps
        args.repetitions, args.min_seconds, args.model_items = 3, 0.02, 16
        args.model_repetitions = 2
    return args


def configure_threads(args):
    """Thread pools must be sized before TF / torch run their first op."""
    import tensorflow as tf

    if args.intra_op_threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.intra_op_threads)
    if args.inter_op_threads:
        tf.config.threading.set_inter_op_parallelism_threads(args.inter_op_threads)
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            sys.exit("benchmarks: torch is not installed; `.venv/bin/pip install -e .[torch]` "
                     "(CPU build, torch==2.13.0) or pass --no-torch")

        if args.intra_op_threads:
            torch.set_num_threads(args.intra_op_threads)
        torch.set_flush_denormal(True)  # long sequences otherwise slow down on denormals


def machine_info():
    import keras
    import tensorflow as tf

    info = {"platform": platform.platform(), "python": platform.python_version(),
                "cpus": os.cpu_count(), "tensorflow": tf.__version__, "keras": keras.__version__,
                "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "load_average": os.getloadavg()}
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        info["cpu"] = next(line.split(":", 1)[1].strip() for line in lines
                           if line.startswith("model name"))
    except (OSError, StopIteration):
        info["cpu"] = platform.processor()
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        info["torch"] = None
    return info


# --------------------------------------------------------------------------------------
# Peak matmul
# --------------------------------------------------------------------------------------


# Products per timed call: one for the square "peak" shape; for the recurrent-step shapes
# a loop of STEP_PRODUCTS independent products (as in a 50-step sequence), so that the
# per-call dispatch cost (tens of microseconds in TF) does not swamp a sub-millisecond
# product.
STEP_PRODUCTS = 50


def peak_shapes(quick):
    """{label: (m, k, n, products per call)}."""
    size = 512 if quick else 2048
    return {f"square {size}": (size, size, size, 1),
            "recurrent step 64x256x1024": (64, 256, 1024, STEP_PRODUCTS),
            "recurrent step 1x256x1024": (1, 256, 1024, STEP_PRODUCTS)}


def _tf_products(a, b, jit_compile):
    """A callable computing the [m, k] x [k, n] product `len(a)` times, TF or XLA.

    The operands are arguments, not captured constants: TF may constant-fold a
    product of two constants when it traces the function, and then times nothing.
    The loop sums the products so that none can be dropped.
    """
    import tensorflow as tf

    @tf.function(jit_compile=jit_compile, autograph=False)
    def products(a, b):
        if a.shape[0] == 1:
            return tf.matmul(a[0], b)
        return tf.foldl(lambda total, x: total + tf.matmul(x, b), a,
                        initializer=tf.zeros([a.shape[1], b.shape[1]]))

    a, b = tf.constant(a), tf.constant(b)
    return lambda: products(a, b).numpy()


def _torch_products(a, b):
    import torch

    a, b = torch.from_numpy(a), torch.from_numpy(b)

    def products():
        total = torch.mm(a[0], b)
        for x in a[1:]:
            total += torch.mm(x, b)
        return total

    return products


def matmul_candidates(with_torch, shapes):
    """{(library, label): callable} computing float32 [m, k] x [k, n] products.

    "tf" is TF's own kernel (oneDNN), "tf XLA" the XLA dot that the fast
    recurrent kernels compile to, "torch" torch.mm.
    """
    import numpy as np

    runs = {}
    for label, (m, k, n, products) in shapes.items():
        a = np.random.default_rng(0).standard_normal((products, m, k), dtype=np.float32)
        b = np.random.default_rng(1).standard_normal((k, n), dtype=np.float32)
        runs[("tf", label)] = _tf_products(a, b, jit_compile=False)
        runs[("tf XLA", label)] = _tf_products(a, b, jit_compile=True)
        if with_torch:
            runs[("torch", label)] = _torch_products(a, b)
    return runs


def measure_peak(args, shapes=None):
    """Matmul GFLOP/s per library and shape; the peak is the best square product."""
    from benchmarks.timing import interleaved

    shapes = shapes or peak_shapes(args.quick)
    runs = matmul_candidates(not args.no_torch, shapes)
    timings = interleaved(runs, args.repetitions, args.min_seconds)
    rows = []
    for (library, label), timing in timings.items():
        m, k, n, products = shapes[label]
        seconds = timing["seconds"] / products
        rows.append({"library": library, "shape": label, "seconds": seconds,
                     "gflops": 2 * m * k * n / seconds / 1e9})
    peak = max(r["gflops"] for r in rows if r["shape"].startswith("square"))
    return {"peak_gflops": peak, "matmuls": rows}


def remeasure_peak(args, peak):
    """The square product again at the end of the run: the peak is the best of both.

    The machine's speed drifts over a long run (benchmarks/README.md), and a
    peak measured only at the start can understate it.
    """
    square = {label: shape for label, shape in peak_shapes(args.quick).items()
              if label.startswith("square")}
    end = measure_peak(args, square)
    peak["matmuls_end"] = end["matmuls"]
    peak["peak_gflops_start"] = peak["peak_gflops"]
    peak["peak_gflops_end"] = end["peak_gflops"]
    peak["peak_gflops"] = max(peak["peak_gflops"], end["peak_gflops"])


# --------------------------------------------------------------------------------------
# Recurrent layers
# --------------------------------------------------------------------------------------


def _csv(text):
    return [item.strip() for item in text.split(",") if item.strip()]


# The square product timed as one more candidate of every recurrent comparison, so that
# "% peak" divides by a peak measured in the same minutes: this machine's speed drifts by
# 20-40% over a run (benchmarks/README.md), more than the margins the targets ask about.
PEAK_ALONGSIDE = "matmul peak (measured alongside)"


def _square_product(quick):
    (m, k, n, products), = [shape for label, shape in peak_shapes(quick).items()
                            if label.startswith("square")]
    runs = matmul_candidates(False, {"square": (m, k, n, products)})
    return runs[("tf", "square")], 2 * m * k * n / 1e9


def recurrent_comparison(cell, steps, mode, args, sizes, peak):
    """Rows (one per implementation) of one side-by-side comparison.

    With a run peak (the `peak` section), the square product runs alongside
    the implementations and each row's "pct_peak" divides by it ("pct_run_peak":
    by the run's best peak).
    """
    from benchmarks import recurrent
    from benchmarks.timing import interleaved

    runs = recurrent.candidates(cell, steps, mode, sizes, with_torch=not args.no_torch)
    wanted = _csv(args.impls)
    runs = {name: run for name, run in runs.items() if not wanted or name in wanted}
    if peak:
        runs[PEAK_ALONGSIDE], square_gflop = _square_product(args.quick)
    timings = interleaved(runs, args.repetitions, args.min_seconds)
    alongside = square_gflop / timings.pop(PEAK_ALONGSIDE)["seconds"] if peak else None
    batch = 1 if mode == "latency" else sizes.batch
    flops = recurrent.flops_per_token(cell, sizes, mode == "training")
    rows = []
    for name, timing in timings.items():
        tokens_per_s = batch * steps / timing["seconds"]
        gflops = flops * tokens_per_s / 1e9
        rows.append({"cell": cell, "steps": steps, "mode": mode, "batch": batch, "impl": name,
                     "seconds": timing["seconds"], "samples": timing["samples"],
                     "tokens_per_s": tokens_per_s, "gflops": gflops,
                     "peak_alongside_gflops": alongside,
                     "pct_peak": 100 * gflops / alongside if alongside else None,
                     "pct_run_peak": 100 * gflops / peak if peak else None})
    _add_ratios(rows, "torch", "vs_torch")
    _add_ratios(rows, "keras stock", "vs_stock")
    return rows


def _add_ratios(rows, reference, key):
    """Speed relative to `reference` (>1: faster), from median seconds per call."""
    base = next((r["seconds"] for r in rows if r["impl"] == reference), None)
    for row in rows:
        row[key] = base / row["seconds"] if base else None


def measure_recurrent(args, peak):
    from benchmarks.recurrent import Sizes

    sizes = Sizes(batch=8, inputs=16, units=32) if args.quick else Sizes()
    rows = []
    for cell in _csv(args.cells):
        for steps in [int(s) for s in _csv(args.steps)]:
            for mode in _csv(args.modes):
                print(f"[recurrent] {cell} T={steps} {mode} ...", flush=True)
                group = recurrent_comparison(cell, steps, mode, args, sizes, peak)
                print_recurrent(group)
                rows.extend(group)
    return {"sizes": vars(sizes), "rows": rows}


# --------------------------------------------------------------------------------------
# Pretrained models
# --------------------------------------------------------------------------------------


def model_comparison(spec, args):
    """Rows (workload x stock/fast) for one pretrained model, timed side by side."""
    from benchmarks import models
    from benchmarks.timing import interleaved

    runs, error = models.safe_candidates(spec, args.model_items)
    if not runs:
        return [{"model": spec.name, "task": spec.task, "error": error or "no public API to time"}]
    timings = interleaved({key: call for key, (call, _) in runs.items()}, args.model_repetitions,
                          args.min_seconds, warmup=1)
    rows = []
    for (label, variant), timing in timings.items():
        rows.append({"model": spec.name, "task": spec.task, "workload": label, "variant": variant,
                     "seconds": timing["seconds"],
                     "items_per_s": runs[(label, variant)][1] / timing["seconds"]})
    _add_costs(rows, models.COST_BASE)
    return rows


def _add_costs(rows, cost_base):
    """Cost per item relative to the stock model on the base workload (default: the same one).

    `cost_base` maps a workload to its base: for translation beam-5's cost reads
    as "x greedy" at the same batching.
    """
    for row in rows:
        workload = cost_base.get(row["workload"], row["workload"])
        base = next(r for r in rows if r["variant"] == "stock" and r["workload"] == workload)
        row["cost_vs_stock_base"] = base["items_per_s"] / row["items_per_s"]  # per item


def measure_models(args):
    from benchmarks import models

    specs = models.trained_specs(_csv(args.models))
    if not specs:
        return {"rows": [], "skipped": "no trained models in saved_models/"}
    rows = []
    for spec in specs:
        print(f"[models] {spec.name} ...", flush=True)
        group = model_comparison(spec, args)
        print_models(group)
        rows.extend(group)
    return {"items_per_call": args.model_items, "rows": rows}


# --------------------------------------------------------------------------------------
# Thread settings (child processes: TF's pools are fixed once created)
# --------------------------------------------------------------------------------------

THREAD_SETTINGS = {"default": (0, 0), "intra 2 / inter 1": (2, 1), "intra 1 / inter 1": (1, 1)}


def measure_threads(args):
    """Alternate child runs of the LSTM T=50 comparison under each thread setting."""
    results = {name: [] for name in THREAD_SETTINGS}
    rounds = 1 if args.quick else 2
    for _ in range(rounds):
        for name, (intra, inter) in THREAD_SETTINGS.items():
            print(f"[threads] {name} ...", flush=True)
            results[name].extend(_child_rows(args, intra, inter))
    return {name: _median_by_impl(rows) for name, rows in results.items()}


def _child_rows(args, intra, inter):
    out = Path(f"/tmp/zoo-bench-threads-{os.getpid()}.json")
    command = [sys.executable, "-m", "benchmarks.run", "--sections", "recurrent", "--cells", "lstm",
               "--steps", "10" if args.quick else "50", "--modes", "training,inference,latency",
               "--impls", "keras stock,zoo fast (default),zoo fast (no XLA),torch",
               "--output", str(out),
               "--intra-op-threads", str(intra), "--inter-op-threads", str(inter),
               "--repetitions", str(args.repetitions), "--min-seconds", str(args.min_seconds)]
    if args.quick:
        command.append("--quick")
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    rows = json.loads(out.read_text())["recurrent"]["rows"]
    out.unlink()
    return rows


def _median_by_impl(rows):
    import statistics

    keys = sorted({(r["mode"], r["impl"]) for r in rows})
    return [{"mode": mode, "impl": impl,
             "seconds": statistics.median(r["seconds"] for r in rows
                                          if (r["mode"], r["impl"]) == (mode, impl))}
            for mode, impl in keys]


# --------------------------------------------------------------------------------------
# Printing
# --------------------------------------------------------------------------------------


def _ratio(value):
    return "     -" if value is None else f"{value:5.2f}x"


def print_peak(peak):
    print("\nfloat32 matmul (GFLOP/s)")
    for row in peak["matmuls"]:
        print(f"  {row['library']:7s} {row['shape']:28s} {row['gflops']:8.1f}")
    print(f"  peak (best square): {peak['peak_gflops']:.1f} GFLOP/s")


def print_recurrent(rows):
    first = rows[0]
    unit = "ms/sequence" if first["mode"] == "latency" else "tokens/s"
    print(f"\n{first['cell'].upper()} T={first['steps']} {first['mode']} (batch {first['batch']})"
          f"{'':4s}{unit:>12s}  vs torch  vs stock  % peak")
    for row in sorted(rows, key=lambda r: r["seconds"]):
        value = (f"{row['seconds'] * 1e3:12.3f}" if row["mode"] == "latency"
                 else f"{row['tokens_per_s']:12,.0f}")
        pct = f"{row['pct_peak']:6.1f}" if row["pct_peak"] is not None else "     -"
        print(f"  {row['impl']:34s}{value}  {_ratio(row['vs_torch'])}    {_ratio(row['vs_stock'])}"
              f"   {pct}")


def print_models(rows):
    for row in rows:
        if "error" in row:
            print(f"  {row['model']}: skipped ({row['error']})")
            continue
        print(f"  {row['model']:40s} {row['workload']:15s} {row['variant']:9s}"
              f" {row['items_per_s']:10.1f} items/s  cost x{row['cost_vs_stock_base']:.2f}")


def print_threads(threads):
    print("\nthread settings (child processes, LSTM T=50, T=10 if --quick): median ms per call")
    impls = sorted({r["impl"] for rows in threads.values() for r in rows})
    for mode in MODES:
        print(f"  {mode:10s} {'':18s}" + "".join(f"{impl:>24s}" for impl in impls))
        for name, rows in threads.items():
            ms = {r["impl"]: r["seconds"] * 1e3 for r in rows if r["mode"] == mode}
            print(f"  {'':10s} {name:18s}" + "".join(f"{ms.get(i, float('nan')):24.2f}"
                                                      for i in impls))


# --------------------------------------------------------------------------------------


def main(argv=None):
    args = parse_args(argv)
    configure_threads(args)
    sections = _csv(args.sections)
    results = {"machine": machine_info(), "args": {k: str(v) for k, v in vars(args).items()}}
    print(f"machine: {results['machine']}", flush=True)
    peak = None
    if "peak" in sections:
        results["peak"] = measure_peak(args)
        print_peak(results["peak"])
        peak = results["peak"]["peak_gflops"]
    if "recurrent" in sections:
        results["recurrent"] = measure_recurrent(args, peak)
    if "models" in sections:
        results["models"] = measure_models(args)
    if "threads" in sections:
        results["threads"] = measure_threads(args)
        print_threads(results["threads"])
    if "peak" in sections and sections != ["peak"]:
        remeasure_peak(args, results["peak"])
        print(f"\npeak at the end: {results['peak']['peak_gflops_end']:.1f} GFLOP/s; "
              f"peak used for % of peak: {results['peak']['peak_gflops']:.1f}")
    results["machine"]["load_average_end"] = os.getloadavg()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=1))
    print(f"\nwrote {args.output}")


if __name__ == "__main__":
    main()
