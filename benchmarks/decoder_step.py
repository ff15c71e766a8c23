"""What one decoding step of a translator costs at greedy's and beam 5's row counts.

`translate` runs the decoder's `step_fn` once per step on every row still
decoding: one row per sentence for greedy search, five for beam 5. This
times, on the first sentences of the test split (64 by default, `translate`'s
batch), `step_fn` and its parts (the GRU cell, attention, the output
projection, log-softmax) each as one `tf.function` call, at 64 and at 320
rows; each part's time includes one call's overhead (a trivial call is listed):

    .venv/bin/python -m benchmarks.decoder_step [--model NAME] [--sentences 64]
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf

from benchmarks import models, timing
from zoo import decoding


def step_parts(model):
    """{name: (rows-inputs -> outputs)} for the step function and each of its parts."""
    cell = model.get_layer("decoder_gru_0").cell
    attention, attentional = model.get_layer("attention"), model.get_layer("attentional")
    logits = model.get_layer("logits")
    step_fn = model._step_function(attention_weights=False)
    return {
        "trivial call": lambda x: x["hidden"] + 1.0,
        "step_fn": lambda x: step_fn(x["ids"], x["states"], x["source"]),
        "GRU cell": lambda x: cell(x["embedded"], [x["states"][0]], training=False)[0],
        "attention": lambda x: attention(x["hidden"], x["source"]["encoded"],
                                         mask=x["source"]["mask"], keys=x["source"]["keys"]),
        "output projection": lambda x: logits(attentional(
            tf.concat([x["hidden"], x["context"]], -1))),
        "log-softmax": lambda x: tf.nn.log_softmax(x["logits"]),
    }


def step_inputs(model, source, states, beam_size):
    """The tensors one step reads, tiled to `beam_size` rows per sentence."""
    source, states = decoding.tile_beams((source, states), beam_size)
    rows = tf.shape(source["mask"])[0]
    ids = tf.fill([rows], 5)
    embedded = tf.gather(model.get_layer("target_embedding").embeddings, ids)
    hidden = tf.random.normal([rows, model.units])
    context = tf.random.normal([rows, source["encoded"].shape[-1]])
    return {"ids": ids, "states": states, "source": source, "embedded": embedded,
            "hidden": hidden, "context": context,
            "logits": tf.random.normal([rows, model.target_tokenizer.vocabulary_size])}


def main(argv=None):
    parser = models.translator_parser(__doc__.split("\n")[0], sentences=64)
    parser.add_argument("--repetitions", type=int, default=5)
    args = parser.parse_args(argv)
    model, texts = models.translator_and_sources(args)
    source, states = model._decoder_inputs(model.source_tokenizer(tf.constant(texts)))
    parts = {name: tf.function(part) for name, part in step_parts(model).items()}
    seconds = {}
    for beam_size in (1, 5):
        inputs = step_inputs(model, source, states, beam_size)
        timed = timing.interleaved({name: (lambda f=f: f(inputs)) for name, f in parts.items()},
                                   args.repetitions)
        seconds[beam_size] = {name: t["seconds"] for name, t in timed.items()}
    print(f"{args.model}, {args.sentences} sentences of up to "
          f"{source['mask'].shape[1]} source tokens, ms per call")
    print(f"  {'':18s} {'greedy rows':>12s} {'beam-5 rows':>12s}  ratio")
    for name in parts:
        greedy, beam = seconds[1][name] * 1e3, seconds[5][name] * 1e3
        print(f"  {name:18s} {greedy:12.2f} {beam:12.2f}  {beam / greedy:5.2f}x")


if __name__ == "__main__":
    main()
