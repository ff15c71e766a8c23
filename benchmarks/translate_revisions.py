"""`translate` on two revisions of the zoo: the same translations? how much faster?

    .venv/bin/python -m benchmarks.translate_revisions --base REV [--model NAME]
        [--sentences 1000] [--processes 2]

Checks out `--base` (any git revision) into a temporary worktree and runs a
child process per revision and round, alternating (base, this tree, base, ...),
so that both see the same machine state. Each child loads the pretrained
translator with that revision's code, translates the first `--sentences`
test sentences with beam 5 and greedy search (`translate`'s batches of 64),
three timed calls of each after a warm-up, and reports its translations and
median seconds. Prints the medians, the speed-up and how many translations
agree with the base revision's, for each search.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
SEARCHES = {"beam 5": 5, "greedy": 1}


def child(model_name, sentences):
    """In a child process: {search: {"seconds": [...], "translations": [...]}}."""
    import zoo
    from zoo import registry
    from zoo.tasks import translation

    spec = registry.get_pretrained(model_name)
    sources, _ = translation.load_pairs(spec.dataset, "test", *translation.languages(spec))
    sources = sources[:sentences]
    model = zoo.load(model_name)
    results = {"zoo": zoo.__file__}
    for name, beam_size in SEARCHES.items():
        model.translate(sources[:64], beam_size=beam_size)  # trace
        results[name] = {"seconds": []}
    for _ in range(3):
        for name, beam_size in SEARCHES.items():
            start = time.perf_counter()
            results[name]["translations"] = model.translate(sources, beam_size=beam_size)
            results[name]["seconds"].append(time.perf_counter() - start)
    return results


def run_in(tree, args):
    """Runs `child` with the zoo of `tree` (a checkout); returns its results.

    This file runs as a script, so `import zoo` finds `tree`'s package (first
    on PYTHONPATH), whatever the revision's own benchmarks hold.
    """
    with tempfile.NamedTemporaryFile(suffix=".json") as output:
        command = [sys.executable, __file__, "--child", output.name, "--model", args.model,
                   "--sentences", str(args.sentences)]
        environment = {**os.environ, "PYTHONPATH": str(tree), "TF_CPP_MIN_LOG_LEVEL": "2"}
        subprocess.run(command, cwd=tree, env=environment, check=True)
        results = json.loads(Path(output.name).read_text())
    if not Path(results["zoo"]).resolve().is_relative_to(Path(tree).resolve()):
        raise RuntimeError(f"the child ran {results['zoo']}, not the zoo of {tree}")
    return results


def parse_args(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="translate-gru-attention-multi30k-en-de")
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--base", help="the git revision to compare with")
    parser.add_argument("--processes", type=int, default=2, help="child processes per revision")
    parser.add_argument("--child", metavar="JSON", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.child and not args.base:
        parser.error("--base REV is required")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        Path(args.child).write_text(json.dumps(child(args.model, args.sentences)))
        return
    with tempfile.TemporaryDirectory() as scratch:
        base_tree = Path(scratch) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", str(base_tree), args.base],
                       cwd=REPOSITORY, check=True, capture_output=True)
        try:
            runs = {"base": [], "this tree": []}
            for _ in range(args.processes):
                runs["base"].append(run_in(base_tree, args))
                runs["this tree"].append(run_in(REPOSITORY, args))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base_tree)],
                           cwd=REPOSITORY, check=True)
    print(f"{args.model}, {args.sentences} test sentences, base {args.base} "
          f"({args.processes} processes x 3 calls per revision, median s):")
    for search in SEARCHES:
        median = {tree: statistics.median(s for result in results
                                          for s in result[search]["seconds"])
                  for tree, results in runs.items()}
        base_output = runs["base"][0][search]["translations"]
        same = sum(a == b for a, b in
                   zip(base_output, runs["this tree"][0][search]["translations"]))
        print(f"  {search:7s} base {median['base']:.3f} s, this tree {median['this tree']:.3f} s "
              f"({median['base'] / median['this tree']:.2f}x); "
              f"{same} of {len(base_output)} translations the same")


if __name__ == "__main__":
    main()
