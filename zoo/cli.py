"""The `zoo` command line: list, info, predict, evaluate, train, tune, export, demo.

    zoo list [--task TASK] [--json]
    zoo info NAME
    zoo predict NAME INPUT... [--plot out.png]
    zoo evaluate NAME [--split test] [--json]
    zoo train RECIPE [--smoke] [--epochs N] [--output DIR]
    zoo train --from NAME|FOLDER --data FILE [--epochs N] [--extend-vocabulary]
    zoo tune RECIPE --max-trials N
    zoo tune --from NAME|FOLDER --data FILE --max-trials N
    zoo export NAME [--format saved_model] [--output DIR]
    zoo demo
"""

import argparse
import json
import sys


def _zoo():
    import zoo  # imports TensorFlow: only once a command needs it

    return zoo


def cmd_list(args):
    zoo = _zoo()
    rows = zoo.list_models(task=args.task)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'name':44} {'task':15} {'dataset':18} metric")
    for row in rows:
        value = "not trained" if row["value"] is None else f"{row['metric']} {row['value']}"
        print(f"{row['name']:44} {row['task']:15} {row['dataset']:18} {value}")
    print("\nArchitectures (zoo.create):")
    for arch in zoo.list_architectures(task=args.task):
        print(f"  {arch['name']:28} {arch['task']:15} {arch['summary']}")
    return 0


def cmd_info(args):
    _zoo()
    from zoo import registry
    from zoo.saving import read_card

    spec = registry.get_pretrained(args.name)
    info = dict(name=spec.name, task=spec.task, architecture=spec.architecture,
                dataset=spec.dataset, recipe=spec.recipe, summary=spec.summary,
                trained=spec.is_trained)
    if spec.is_trained:
        card = read_card(spec.directory)
        card.pop("config", None)
        info["card"] = card
    print(json.dumps(info, indent=2))
    return 0


def _handler_and_model(name):
    zoo = _zoo()
    from zoo import registry

    spec = registry.get_pretrained(name)
    return spec, registry.get_task(spec.task), zoo.load(name)


def cmd_predict(args):
    spec, handler, model = _handler_and_model(args.name)
    for line in handler.render(model, args.inputs, plot=args.plot):
        print(line)
    return 0


def cmd_evaluate(args):
    spec, handler, model = _handler_and_model(args.name)
    metrics = handler.evaluate(model, spec, args.split)
    if args.json:
        print(json.dumps(metrics))
    else:
        for key, value in metrics.items():
            print(f"{key:24} {value}")
    return 0


def cmd_train(args, rest):
    _zoo()
    from zoo.training import run_recipe_file

    if args.recipe is None:
        print("zoo train: give a RECIPE, or --from NAME --data FILE to fine-tune", file=sys.stderr)
        return 2
    run_recipe_file(args.recipe, rest)
    return 0


def cmd_tune(args, rest):
    _zoo()
    try:
        from zoo import tuning
    except ImportError:
        print("zoo tune: tuning is not available in this version yet.", file=sys.stderr)
        return 2
    return tuning.main([args.recipe, *rest])


def cmd_export(args):
    spec, handler, model = _handler_and_model(args.name)
    from zoo.export import export

    path = export(model, args.output or f"exports/{args.name}", args.format)
    print(f"Exported {args.name} to {path}")
    return 0


def cmd_demo(args):
    zoo = _zoo()
    from zoo import registry

    trained = registry.pretrained(trained_only=True)
    for spec in trained:
        handler = registry.get_task(spec.task)
        print(f"\n=== {spec.name}  ({spec.task}, {spec.dataset}) ===")
        for line in handler.render(zoo.load(spec.name), handler.examples(spec)):
            print(line)
    covered = {s.architecture for s in trained}
    for arch in registry.architectures():
        if arch.name in covered:
            continue
        handler = registry.get_task(arch.task)
        print(f"\n=== architecture {arch.name} (untrained weights: shapes only) ===")
        model = arch.build(**arch.demo_kwargs)
        print(f"  {model.count_params():,} parameters")
        for line in handler.render(model, handler.examples(None)):
            print(line)
    if not trained:
        print("\nNo pretrained models yet: train one with `zoo train RECIPE`.")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="zoo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("list", help="pretrained models and architectures")
    p.add_argument("--task")
    p.add_argument("--json", action="store_true")
    sub.add_parser("info", help="a model's card").add_argument("name")
    p = sub.add_parser("predict", help="run a pretrained model on inputs")
    p.add_argument("name")
    p.add_argument("inputs", nargs="+")
    p.add_argument("--plot", help="save a picture (attention, forecast) to this PNG")
    p = sub.add_parser("evaluate", help="metrics on the official test split")
    p.add_argument("name")
    p.add_argument("--split", default="test")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p = sub.add_parser("train", help="run a recipe, or fine-tune: train --from NAME --data FILE")
    p.add_argument("recipe", nargs="?")
    p = sub.add_parser("tune", help="keras-tuner search over a recipe's hyperparameters, or "
                       "fine-tuning settings: tune --from NAME --data FILE")
    p.add_argument("recipe")
    p = sub.add_parser("export", help="export a pretrained model for serving")
    p.add_argument("name")
    p.add_argument("--format", default="saved_model", choices=["saved_model"])
    p.add_argument("--output")
    sub.add_parser("demo", help="run every pretrained model on shipped examples")
    return parser


def _error_message(error):
    return error.args[0] if isinstance(error, KeyError) and error.args else error


def fine_tune_command(command, rest):
    """`zoo train --from ...` and `zoo tune --from ...`: no recipe positional to parse."""
    _zoo()
    from zoo import training, tuning

    try:
        if command == "train":
            training.run_fine_tune(rest)
            return 0
        return tuning.main(rest)
    except (KeyError, FileNotFoundError, ValueError) as error:
        print(f"zoo {command}: {_error_message(error)}", file=sys.stderr)
        return 1


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] in (["train"], ["tune"]) and "--from" in argv:
        return fine_tune_command(argv[0], argv[1:])
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and args.command not in ("train", "tune"):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    commands = dict(list=cmd_list, info=cmd_info, predict=cmd_predict, evaluate=cmd_evaluate,
                    export=cmd_export, demo=cmd_demo)
    try:
        if args.command in ("train", "tune"):
            return {"train": cmd_train, "tune": cmd_tune}[args.command](args, rest)
        return commands[args.command](args)
    except (KeyError, FileNotFoundError, ValueError) as error:
        print(f"zoo {args.command}: {_error_message(error)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
