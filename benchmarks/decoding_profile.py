"""Where `translate`'s work goes, greedy against beam 5: every TF op's thread time, by part.

Runs `translate` (in its batches of 64) on a translator's first test sentences
under TF's profiler, with greedy search and with beam 5 in turn (3 calls
each), and adds up the time of every op they ran, grouped into the parts of
the model (encoder, decoder GRU, attention, output projection, log-softmax,
the rest of the decoder's step function) and the search's own ops (top-k,
reordering beams, recording histories: everything else). Thread time is the
work done on both cores; wall times (with the profiler on) are printed too.
The last lines give beam 5's work over greedy's, and the same without any of
the search's own ops: what beam 5 would cost if its bookkeeping were free.

    .venv/bin/python -m benchmarks.decoding_profile [--model NAME] [--sentences 256]
        [--repetitions 3] [--plot PNG] [--search-ops N]
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import collections
import glob
import tempfile
import time

import tensorflow as tf

from benchmarks import models

# (part, substrings of the op's node name or type); the first match names an op's part.
# "attentional" (the layer after attention) is listed before "attention", which it contains.
PARTS = (
    ("encoder", ("encoder", "source_embedding")),
    ("output projection", ("logits",)),
    ("log-softmax + top-k", ("LogSoftmaxTopK",)),  # fused; before its "LogSoftmax"
    ("log-softmax", ("LogSoftmax",)),
    ("attentional layer", ("attentional",)),
    ("attention", ("attention", "key_projection")),
    ("decoder GRU", ("gru_cell",)),
    ("rest of the decoder step", ("decoder_step",)),  # embedding lookup, concat, argmax
    ("text processing", ("Regex", "StringSplit", "StringToHash", "Lookup", "ReduceJoin")),
)
SEARCH = "search's own ops"


def part_of(op_name):
    """The part an op belongs to, from its profiler name `node/path:OpType`."""
    for part, keys in PARTS:
        if any(key in op_name for key in keys):
            return part
    return SEARCH


def _is_op(event_name):
    """Op events are named `node:OpType`; the executor's own (`ExecutorState::Process`,
    `ParallelFor`) wrap them and would count their time twice."""
    return ":" in event_name and "::" not in event_name


def op_times(logdir):
    """{op name: milliseconds} summed over the compute threads of a profile in `logdir`."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    space = xplane_pb2.XSpace()
    (path,) = glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb"))
    with open(path, "rb") as file:
        space.ParseFromString(file.read())
    times = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if _is_op(name):
                    times[name] += event.duration_ps / 1e9
    return times


def by_part(times):
    """{part: milliseconds} of `op_times`' output, in `PARTS` order, the search's ops last."""
    parts = dict.fromkeys([part for part, _ in PARTS] + [SEARCH], 0.0)
    for name, milliseconds in times.items():
        parts[part_of(name)] += milliseconds
    return parts


def profiled(calls, repetitions):
    """{name: (thread ms by part, wall seconds, thread ms of each of the search's own ops)}
    of `calls` ({name: call}), summed over `repetitions` profiled calls of each, taken in
    turn (after two warm-ups each), so that the machine's drift hits all alike."""
    for call in calls.values():
        call(), call()
    totals = {name: (collections.Counter(), 0.0, collections.Counter()) for name in calls}
    for _ in range(repetitions):
        for name, call in calls.items():
            with tempfile.TemporaryDirectory() as logdir:
                tf.profiler.experimental.start(logdir)
                start = time.perf_counter()
                call()
                wall = time.perf_counter() - start
                tf.profiler.experimental.stop()
                times = op_times(logdir)
                parts, walls, search_ops = totals[name]
                parts.update(by_part(times))
                search_ops.update({op: ms for op, ms in times.items() if part_of(op) == SEARCH})
                totals[name] = parts, walls + wall, search_ops
    return totals


def plot(title, per_call, path):
    """Stacked bars of `per_call` ({search: {part: ms}}), with 2.5x greedy's total marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(9, 2.8))
    searches = list(per_call)
    for row, search in enumerate(searches):
        left = 0.0
        for index, (part, milliseconds) in enumerate(per_call[search].items()):
            axis.barh(row, milliseconds, left=left, color=plt.cm.tab10(index),
                      label=part if row == 0 else None)
            left += milliseconds
    target = 2.5 * sum(per_call[searches[0]].values())
    axis.axvline(target, color="red", linestyle="--", linewidth=1,
                 label=f"2.5x {searches[0]}'s total")
    axis.set_yticks(range(len(searches)), searches)
    axis.invert_yaxis()
    axis.set_xlabel("thread ms per call (both cores)")
    axis.set_title(title, fontsize=10)
    axis.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def main(argv=None):
    parser = models.translator_parser(__doc__.split("\n")[0], sentences=256)
    parser.add_argument("--repetitions", type=int, default=3)
    parser.add_argument("--plot", metavar="PNG", help="also draw the parts as stacked bars")
    parser.add_argument("--search-ops", type=int, default=0, metavar="N",
                        help="also list beam 5's N costliest ops of the search's own")
    args = parser.parse_args(argv)
    model, texts = models.translator_and_sources(args)
    calls = {"greedy": lambda: model.translate(texts, beam_size=1),
             "beam 5": lambda: model.translate(texts, beam_size=5)}
    results = profiled(calls, args.repetitions)
    (greedy, greedy_wall, _), (beam, beam_wall, beam_search_ops) = results.values()
    print(f"{args.model}, {len(texts)} sentences in batches of 64, {args.repetitions} calls "
          f"each; thread ms (both cores) per call:")
    print(f"  {'':24s} {'greedy':>9s} {'beam 5':>9s}  beam / greedy")
    per_call = lambda ms: ms / args.repetitions
    for part in greedy:
        ratio = f"{beam[part] / greedy[part]:6.2f}x" if greedy[part] else "      -"
        print(f"  {part:24s} {per_call(greedy[part]):9.1f} {per_call(beam[part]):9.1f}  {ratio}")
    greedy_work, beam_work = sum(greedy.values()), sum(beam.values())
    print(f"  {'all ops':24s} {per_call(greedy_work):9.1f} {per_call(beam_work):9.1f}  "
          f"{beam_work / greedy_work:6.2f}x")
    print(f"  {'wall ms, profiled':24s} {per_call(greedy_wall) * 1e3:9.1f} "
          f"{per_call(beam_wall) * 1e3:9.1f}  {beam_wall / greedy_wall:6.2f}x")
    without_search = beam_work - beam[SEARCH]
    print(f"beam 5 without the search's own ops over all of greedy's: "
          f"{without_search / greedy_work:.2f}x")
    for op, milliseconds in beam_search_ops.most_common(args.search_ops):
        print(f"  {per_call(milliseconds):7.1f}  {op}")
    if args.plot:
        per_search = {name: {part: per_call(ms) for part, ms in parts.items()}
                      for name, (parts, _, _) in results.items()}
        plot(f"{args.model}: translate's work on {len(texts)} test sentences, by part",
             per_search, args.plot)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
