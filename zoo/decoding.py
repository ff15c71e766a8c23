"""Greedy search, beam search and sampling, written in TensorFlow ops.

One decoding module serves every generating task (translation, captioning,
language modelling). Decoders run as a single `tf.while_loop`, so they trace
into a `tf.function`, compile with `jit_compile=True` and export inside a
SavedModel; there is no Python loop over time. Outside XLA, on a machine
without a GPU, the log-softmax of `output_log_probs` and the top-k of beam
search and top-k sampling run the zoo's native kernels (`zoo.layers.native`)
where they are built; in a traced function, greedy and beam search take the
best tokens of each row straight from the logits of `output_log_probs` in
one native pass, never writing the `[N, V]` log-probabilities.
`zoo.export` leaves the kernels out, so exported graphs hold TF's own ops
only.

A model plugs in through a *step function*:

    step_fn(token_ids, state[, constants]) -> (log_probs, new_state)
    step_fn(token_ids, state[, constants]) -> (log_probs, new_state, extras)

* `token_ids`: `[N]` int32, the previous token of each hypothesis.
* `state`: any nest of tensors with leading dimension `N` (RNN states, ...).
* `constants` (when the decoder is given `constants=`): a nest of tensors with
  leading dimension `N` that stay the same while decoding (encoder outputs,
  source masks, precomputed attention keys); with `beam_search(...,
  tile_constants=False)`, leading dimension `B`, one row per sentence, whose
  `N // B` hypotheses are consecutive rows of `token_ids` (the layers of
  `zoo.layers.attention` take such `[N, H]` step queries against `[B, ...]`
  sources).
* `log_probs`: `[N, V]` normalized log-probabilities (<= 0) of the next token.
* `extras` (optional): a nest of tensors with leading dimension `N`, e.g. the
  attention weights of this step. Decoders record them along each returned
  hypothesis as `[B, L, ...]` (greedy, sampling) or `[B, K, L, ...]` (beam).

`N` is the batch size `B` for greedy search and sampling and `B * beam_size`
for beam search, where the hypotheses of sentence `b` are rows
`b * beam_size ... (b + 1) * beam_size - 1` (with `constants`, beam search
runs the first step once per sentence, `N = B`: every beam starts from the
same state). Beam search tiles `initial_state`
(and `constants`) and reorders the state with a gather at every step;
`constants` are not reordered, as they are the same for every hypothesis of a
sentence. Pass per-sentence tensors as `constants` rather than closing over
them: then greedy and beam search drop the sentences that are done from the
batch, so that `N` shrinks as sentences end (outside XLA, which needs static
shapes), with the same results (benchmarks/README.md gives the speed-up).
`step_fn` is traced twice: the first step runs before the loop,
to learn the structure of `state` and `extras` that the loop variables must keep.

Outputs are dicts of tensors with a static time dimension `L = max_length`
(a Python int): `tokens` hold the generated tokens, the end token included,
then `pad_id`; `lengths` count the generated tokens, the end token included
(a hypothesis that never ends has length `max_length`).

Example, a GRU decoder with attention (`zoo.layers.attention`):

```python
def step_fn(token_ids, state, source):
    output, hidden = gru_cell(embedding(token_ids), state["hidden"])
    context, weights = attention(output, source["outputs"], mask=source["mask"],
                                 keys=source["keys"])
    logits = projection(keras.ops.concatenate([output, context], -1))
    return tf.nn.log_softmax(logits), {"hidden": hidden}, {"attention": weights}

source = {"outputs": encoder_outputs, "mask": source_mask,
          "keys": attention.precompute_keys(encoder_outputs)}   # once per source
result = greedy_search(step_fn, {"hidden": encoder_state}, start_ids, end_id,
                       max_length=50, constants=source)
result["tokens"], result["extras"]["attention"]          # [B, 50], [B, 50, Ts]

result = beam_search(step_fn, {"hidden": encoder_state}, start_ids, end_id,
                     beam_size=5, max_length=50, length_penalty=0.6, constants=source)
result["tokens"][:, 0], result["extras"]["attention"][:, 0]   # best hypotheses
```
"""

import numpy as np
import tensorflow as tf

from zoo.xla import in_xla_context

__all__ = ["beam_search", "gnmt_length_penalty", "greedy_search", "log_softmax",
           "output_log_probs", "sample", "tile_beams"]

# Score of a hypothesis that does not exist: beams beyond the first at step 0,
# beams with nothing left to extend, unused slots of the finished pool. Finite
# (unlike -inf) so that arithmetic on it never yields NaN.
_DEAD = -1e30


def _is_alive(log_probs):
    return log_probs > _DEAD / 2


def tile_beams(structure, beam_size):
    """Repeats each `[B, ...]` tensor of a nest to `[B * beam_size, ...]`.

    Row `b * beam_size + k` is a copy of row `b`, the layout `beam_search`
    uses for the `N = B * beam_size` rows it passes to `step_fn`.
    """
    return tf.nest.map_structure(lambda x: tf.repeat(x, beam_size, axis=0), structure)


def gnmt_length_penalty(length, alpha):
    """GNMT length penalty lp(Y) = ((5 + |Y|) / 6) ** alpha (Wu et al., 2016)."""
    return tf.pow((5.0 + tf.cast(length, tf.float32)) / 6.0, alpha)


def output_log_probs(dense, features, never_ids=()):
    """Log-probabilities `[N, V]` from a `Dense` output layer, with `never_ids` ruled out.

    What a step function returns: `log_softmax(dense(features))` with the ids
    in `never_ids` (padding, the start token) at about -1e9. Their -1e9 is
    added to the layer's bias rather than to its `[N, V]` output, which gives
    the same log-probabilities for every other id (their bias gains an exact
    0) with one pass over the output fewer. The logits ops are named
    `logits/...`, which `benchmarks.decoding_profile` counts as the output
    projection.
    """
    never = np.zeros(dense.kernel.shape[-1], np.float32)
    never[list(never_ids)] = -1e9
    with tf.name_scope("logits"):
        logits = tf.nn.bias_add(tf.matmul(features, dense.kernel), dense.bias + never)
    return log_softmax(logits)


def _native_ops(x):
    """The native kernels (`zoo.layers.native`) if they can take `[N, V]` `x`, else None."""
    from zoo.layers import native

    return native.ops_for(x) if x.shape.rank == 2 else None


def log_softmax(logits):
    """`tf.nn.log_softmax` of `[N, V]` logits, by the native kernel where it can run.

    Each row is read twice while it is in cache and written once, against
    the several passes of TF's CPU kernel: 1.84 against 3.17 ms at beam 5's
    [320, 5633] (`python -m benchmarks.decoding_kernels`). The same formula,
    `(x - max) - log(sum(exp(x - max)))`, to about 2e-6.
    """
    ops = _native_ops(logits)
    if ops is None:
        return tf.nn.log_softmax(logits)
    log_probs = ops.zoo_log_softmax(logits)
    try:  # as Keras marks a softmax's logits: the decoders can then take
        log_probs._zoo_logits = logits  # their top k from the logits (`_native_top_k`)
    except AttributeError:  # eager tensors take no attributes
        pass
    return log_probs


def _native_top_k(log_probs, k, column=None):
    """`(values [N, k], ids [N, k], log_probs[:, column] [N] or None)` from the logits.

    Where `log_probs` came from the native `log_softmax` (in a traced
    function), one pass of `zoo_log_softmax_top_k` over the logits gives its
    top k, the same values and ids as `_top_k(log_probs, k)`, without writing
    the `[N, V]` log-probabilities, which graph functions then never compute.
    None where that cannot run.
    """
    logits = getattr(log_probs, "_zoo_logits", None)
    ops = None if logits is None else _native_ops(logits)
    if ops is None:
        return None
    values, ids, shifts, log_sums = ops.zoo_log_softmax_top_k(logits, k=k)
    # ZooLogSoftmax's formula, so the column's values are that op's.
    picked = None if column is None else (logits[:, column] - shifts) - log_sums
    return values, ids, picked


# ---------------------------------------------------------------------------
# Shared helpers


def _call_step(step_fn, token_ids, state, constants=None):
    """Calls `step_fn` (with `constants` if given): `(log_probs float32, new_state, extras)`."""
    outputs = step_fn(token_ids, state) if constants is None else step_fn(token_ids, state, constants)
    if len(outputs) == 2:
        (log_probs, new_state), extras = outputs, ()
    elif len(outputs) == 3:
        log_probs, new_state, extras = outputs
    else:
        raise ValueError(
            "`step_fn` must return (log_probs, new_state) or "
            f"(log_probs, new_state, extras); it returned {len(outputs)} values."
        )
    return tf.cast(log_probs, tf.float32), new_state, extras


def _static_or_dynamic_shape(x):
    """The shape of `x` as a list: Python ints where known, scalar tensors elsewhere."""
    dynamic = tf.shape(x)
    return [dim if dim is not None else dynamic[i] for i, dim in enumerate(x.shape)]


def _split_beams(x, beam_size):
    """`[B * K, ...]` -> `[B, K, ...]`."""
    return tf.reshape(x, [-1, beam_size] + _static_or_dynamic_shape(x)[1:])


def _empty_history(step_value, max_length):
    """Zeros `[N, max_length, ...]` to record the `[N, ...]` `step_value` of each step."""
    return tf.repeat(tf.expand_dims(tf.zeros_like(step_value), 1), max_length, axis=1)


def _write_step(history, step, value):
    """Writes `value` `[N, ...]` at time `step` of `history` `[N, L, ...]`.

    A `where` over the time axis rather than a scatter: it keeps static shapes
    and compiles with XLA; the cost is negligible next to a model step.
    """
    at_step = tf.equal(tf.range(tf.shape(history)[1]), step)
    at_step = tf.reshape(at_step, [1, -1] + [1] * (history.shape.rank - 2))
    return tf.where(at_step, tf.expand_dims(value, 1), history)


def _broadcast_rows(condition, x):
    """Reshapes a `[N]` condition to broadcast against `[N, ...]` `x`."""
    return tf.reshape(condition, [-1] + [1] * (x.shape.rank - 1))


def _check_max_length(max_length):
    if not isinstance(max_length, int) or max_length < 1:
        raise ValueError(f"`max_length` must be a Python int >= 1, got {max_length!r}.")


# ---------------------------------------------------------------------------
# Greedy search and sampling: one hypothesis per sentence


def _one_path_decode(step_fn, initial_state, start_ids, end_id, max_length, choose, pad_id,
                     constants=None, compact=False):
    """Decodes one hypothesis per row, taking `choose(log_probs, step)` at each step.

    `choose` returns the chosen ids `[N]` int32 and their log-probabilities `[N]`.

    With `compact` (which needs `constants`), rows that ended leave the batch.
    """
    _check_max_length(max_length)
    start_ids = tf.convert_to_tensor(start_ids, tf.int32)
    end_id = tf.convert_to_tensor(end_id, tf.int32)
    batch_size = _static_or_dynamic_shape(start_ids)[0]
    compact = compact and constants is not None and not in_xla_context()

    def update(outputs, loop):
        log_probs, new_state, extras = outputs
        step, finished = loop["step"], loop["finished"]
        chosen, chosen_log_prob = choose(log_probs, step)
        # Rows that already ended only receive padding and add nothing.
        now_finished = finished | tf.equal(chosen, end_id)
        record = lambda history, x: _write_step(
            history, step, tf.where(_broadcast_rows(finished, x), tf.zeros_like(x), x)
        )
        return {
            **loop,
            "step": step + 1,
            # Ended rows are fed the end token: any valid id would do.
            "ids": tf.where(now_finished, end_id, chosen),
            "state": new_state,
            "finished": now_finished,
            "lengths": loop["lengths"] + tf.cast(~finished, tf.int32),
            "log_probs": loop["log_probs"] + tf.where(finished, 0.0, chosen_log_prob),
            "tokens": _write_step(loop["tokens"], step, tf.where(finished, pad_id, chosen)),
            "extras": tf.nest.map_structure(record, loop["extras"], extras),
        }

    outcome = lambda loop: {key: loop[key] for key in ("tokens", "lengths", "log_probs", "extras")}

    # The first step runs before the loop: its outputs tell the structure and
    # shapes of `state` and `extras`, which the loop variables must keep.
    first_outputs = _call_step(step_fn, start_ids, initial_state, constants)
    loop = {
        "step": tf.constant(0),
        "ids": start_ids,
        "state": first_outputs[1],
        "finished": tf.zeros([batch_size], tf.bool),
        "lengths": tf.zeros([batch_size], tf.int32),
        "log_probs": tf.zeros([batch_size], tf.float32),
        "tokens": tf.fill([batch_size, max_length], tf.constant(pad_id, tf.int32)),
        "extras": tf.nest.map_structure(lambda x: _empty_history(x, max_length), first_outputs[2]),
    }
    if constants is not None:
        loop["constants"] = constants

    def keep_going(loop):
        return (loop["step"] < max_length) & ~tf.reduce_all(loop["finished"])

    def step(loop):
        return update(_call_step(step_fn, loop["ids"], loop["state"], loop.get("constants")), loop)

    leave = lambda loop: _without_done_sentences(loop, loop["finished"], outcome)
    final = _run_decoder(update(first_outputs, loop), keep_going, step, max_length, outcome,
                         leave if compact else None)
    result = {"tokens": final["tokens"], "lengths": final["lengths"], "scores": final["log_probs"]}
    if tf.nest.flatten(final["extras"]):
        result["extras"] = final["extras"]
    return result


def greedy_search(step_fn, initial_state, start_ids, end_id, max_length, pad_id=0,
                  constants=None):
    """Decodes by taking the most likely token at every step.

    Args:
        step_fn: `(token_ids [B], state) -> (log_probs [B, V], new_state[, extras])`,
            or `(token_ids, state, constants) -> ...` with `constants`.
            Rows that have ended are fed `end_id` until all rows end; what
            `step_fn` returns for them is ignored.
        initial_state: nest of `[B, ...]` tensors, the state before the first token.
        start_ids: `[B]` int32 tokens fed at the first step (e.g. `<s>`).
        end_id: the end-of-sequence token; a row stops after producing it.
        max_length: Python int, the most tokens generated per row (end token included).
        pad_id: the token written after the end.
        constants: optional nest of `[B, ...]` tensors passed to `step_fn` as
            its third argument, row for row with `token_ids`. With them,
            rows that have ended leave the batch (outside XLA): `step_fn`
            then runs on the rows still being decoded only, once a quarter
            of them have ended.

    Returns:
        A dict with `tokens` `[B, max_length]` int32, `lengths` `[B]` int32
        (end token included), `scores` `[B]` float32 (summed log-probabilities)
        and, when `step_fn` returns extras, `extras` (each `[B, max_length, ...]`,
        zeros after the end).
    """
    def choose(log_probs, step):
        best = _native_top_k(log_probs, 1)
        if best is not None:  # top_k's id of the largest, like argmax, is the lowest
            return best[1][:, 0], best[0][:, 0]
        chosen = tf.argmax(log_probs, axis=-1, output_type=tf.int32)
        return chosen, tf.gather(log_probs, chosen, batch_dims=1)

    return _one_path_decode(step_fn, initial_state, start_ids, end_id, max_length, choose, pad_id,
                            constants, compact=True)


def _as_stateless_seed(seed):
    """An int, a `[2]` tensor or None (draw one) -> a `[2]` int32 stateless seed."""
    if seed is None:
        return tf.random.uniform([2], maxval=tf.int32.max, dtype=tf.int32)
    seed = tf.convert_to_tensor(seed)
    if seed.shape.rank == 0:
        seed = tf.stack([seed, tf.zeros_like(seed)])
    return tf.cast(seed, tf.int32)


def sample(
    step_fn,
    initial_state,
    start_ids,
    end_id,
    max_length,
    temperature=1.0,
    top_k=None,
    seed=None,
    pad_id=0,
    constants=None,
):
    """Decodes by sampling each token from the (tempered, truncated) distribution.

    At each step the next token is drawn from `softmax(log_probs / temperature)`,
    restricted to the `top_k` most likely tokens when `top_k` is set
    (`top_k=1` is greedy search). Sampling is stateless: the same `seed` gives
    the same tokens, in eager mode, in a `tf.function` and under XLA.

    Args:
        step_fn, initial_state, start_ids, end_id, max_length, pad_id, constants:
            as in `greedy_search`, except that every row stays in the batch
            until all have ended (each row's draw depends on its position).
        temperature: positive float; below 1 sharpens, above 1 flattens.
        top_k: optional int, sample among the `top_k` most likely tokens only.
        seed: int or `[2]` int tensor for reproducible samples; `None` draws
            a fresh seed at each call.

    Returns:
        The dict of `greedy_search`; `scores` are the summed log-probabilities of
        the sampled tokens under the untempered, untruncated model.
    """
    if isinstance(temperature, (int, float)) and temperature <= 0:
        raise ValueError(f"`temperature` must be positive, got {temperature}.")
    if top_k is not None and top_k < 1:
        raise ValueError(f"`top_k` must be None or >= 1, got {top_k}.")
    seed = _as_stateless_seed(seed)

    def draw(log_probs, step):
        step_seed = tf.random.experimental.stateless_fold_in(seed, step)
        logits = log_probs / temperature
        if top_k is None:
            return tf.random.stateless_categorical(logits, 1, step_seed, dtype=tf.int32)[:, 0]
        top_logits, top_ids = _top_k(logits, top_k)
        picked = tf.random.stateless_categorical(top_logits, 1, step_seed, dtype=tf.int32)
        return tf.gather(top_ids, picked[:, 0], batch_dims=1)

    def choose(log_probs, step):
        chosen = draw(log_probs, step)
        return chosen, tf.gather(log_probs, chosen, batch_dims=1)

    return _one_path_decode(step_fn, initial_state, start_ids, end_id, max_length, choose, pad_id,
                            constants)


# Rows at least this many times longer than the candidates (k * _CHUNK) take `_top_k`'s
# two passes; shorter ones one `tf.math.top_k`.
_CHUNK = 32
_MIN_CHUNKED_RATIO = 4


def _top_k(x, k):
    """`tf.math.top_k(x, k)` of `[N, V]` rows: the same values and indices, faster for k << V.

    By the native kernel where it can run (`zoo_top_k`: one pass over each row,
    0.90 against 2.11 ms for the two passes below at [320, 5633], in
    `python -m benchmarks.decoding_kernels`); otherwise in TF ops. TF's CPU `top_k` costs about 2 ns per element even for a handful of
    results (3.5-5 ms for beam 5's [320, 5.6k] log-probabilities). This takes
    the maximum of each chunk of `_CHUNK` columns, keeps the k chunks whose
    maxima rank first, and runs `top_k` on their k * `_CHUNK` columns only:
    2.3x faster at that size in a probe. It is exact, ties included: an
    element outside those chunks has k chunk maxima ranked before it (larger,
    or equal and at a lower index), so it is not among the k best; and the
    candidates keep their columns' order, so `top_k`'s ties still go to the
    lower index.
    """
    ops = _native_ops(x)
    if ops is not None:
        return ops.zoo_top_k(x, k=k)
    columns = x.shape[-1]
    if columns is None or x.shape.rank != 2 or columns < _MIN_CHUNKED_RATIO * k * _CHUNK:
        return tf.math.top_k(x, k=k)
    chunks = -(-columns // _CHUNK)
    padding = chunks * _CHUNK - columns
    blocks = tf.reshape(tf.pad(x, [[0, 0], [0, padding]], constant_values=float("-inf")),
                        [-1, chunks, _CHUNK])
    _, best_chunks = tf.math.top_k(tf.reduce_max(blocks, axis=-1), k=k)
    best_chunks = tf.sort(best_chunks, axis=-1)  # candidates in column order
    candidates = tf.reshape(tf.gather(blocks, best_chunks, batch_dims=1), [-1, k * _CHUNK])
    values, positions = tf.math.top_k(candidates, k=k)
    chunk = tf.gather(best_chunks, positions // _CHUNK, batch_dims=1)
    return values, chunk * _CHUNK + positions % _CHUNK


# ---------------------------------------------------------------------------
# Beam search


def _gather_beams(x, flat_parents):
    """Reorders the `[B * K, ...]` rows of `x` to follow their parent beams."""
    return tf.gather(x, flat_parents)


def _top_finished(pool, candidates, size):
    """Keeps the `size` best of two pools of finished hypotheses (`[B, n]` and `[B, m]`).

    Each pool is a dict of `scores` `[B, n]` and other fields `[B, n, ...]`.
    `top_k` keeps the first of equal scores, so on ties `pool` (older,
    shorter hypotheses) wins over `candidates`.
    """
    merged = tf.nest.map_structure(lambda a, b: tf.concat([a, b], axis=1), pool, candidates)
    _, best = tf.math.top_k(merged["scores"], k=size)
    return tf.nest.map_structure(lambda x: tf.gather(x, best, batch_dims=1), merged)


_STOPPING_RULES = ("exact", "heuristic")


def beam_search(
    step_fn,
    initial_state,
    start_ids,
    end_id,
    beam_size,
    max_length,
    length_penalty=0.0,
    pad_id=0,
    constants=None,
    stopping="exact",
    tile_constants=True,
    n_best=None,
):
    """Decodes the `beam_size` best hypotheses of each sentence by beam search.

    Hypotheses are ranked by their length-penalized score (GNMT):

        score(Y) = log P(Y | X) / lp(Y),     lp(Y) = ((5 + |Y|) / 6) ** alpha

    with `alpha = length_penalty` (0 ranks by log-probability alone; larger
    values favour longer outputs). `|Y|` counts the end token.

    At each step every live hypothesis is extended by every token; the
    `beam_size` best extensions that do not end stay live, and each extension
    that ends moves to a pool of finished hypotheses, provided it ranks among
    the `beam_size` best extensions of that step (so `beam_size=1` is exactly
    greedy search when `alpha = 0`). The pool keeps the `n_best` best by
    penalized score (`beam_size` unless fewer are asked for). Finished
    hypotheses are never extended. A sentence is done when its pool is full
    and no live hypothesis can still beat its worst member; decoding stops
    when all sentences are done or at `max_length`. Hypotheses still live at
    `max_length` compete with the finished ones, so the result is the
    `n_best` best of all hypotheses found, best first. A caller that keeps
    only the best hypothesis (`n_best=1`) lets each sentence stop as soon as
    that one is settled rather than its `beam_size` best. `stopping` chooses
    how a live hypothesis is bounded:

    - `"exact"`: by its current log-probability over the largest `lp` it could
      reach by `max_length` (log-probabilities only decrease). Stopping then
      never changes the result, whatever `n_best`: its `n_best` hypotheses
      are the first `n_best` of `n_best=beam_size`.
    - `"heuristic"`: by its current log-probability over the `lp` of ending at
      the next step, the rule of Hugging Face Transformers' default
      (`early_stopping=False`). With `alpha > 0` a longer hypothesis that
      would have won can be missed, but sentences stop sooner: on the zoo's
      translators it gave the same 1000 test translations 1.22x-1.24x
      faster. With `alpha = 0` both rules are the same. Under this rule a
      smaller `n_best` can change the best hypothesis too (it stops sooner).

    With `constants`, sentences that are done leave the batch: `step_fn`
    then runs on the rows of the sentences still being decoded only (once a
    quarter of them are done), which gives the same hypotheses with less work
    when sentences finish at different steps. That needs every per-sentence
    tensor `step_fn` reads (encoder outputs, masks, attention keys) to come in
    through `constants` rather than a closure; it is skipped inside XLA,
    whose shapes are static.

    Args:
        step_fn: `(token_ids [N], state) -> (log_probs [N, V], new_state[, extras])`
            with `N = B * beam_size` (see the module docstring for the row layout and
            its first step), or `(token_ids, state, constants) -> ...` with `constants`.
            Rows that hold no hypothesis (more beams than hypotheses) are fed
            `pad_id`; `step_fn` is never fed the end token.
        initial_state: nest of `[B, ...]` tensors; tiled to `[B * beam_size, ...]`.
        start_ids: `[B]` int32 tokens fed at the first step.
        end_id: the end-of-sequence token.
        beam_size: Python int, the number of hypotheses kept per sentence.
        max_length: Python int, the most tokens per hypothesis (end token included).
        length_penalty: `alpha` of the GNMT length penalty.
        pad_id: the token written after the end.
        constants: optional nest of `[B, ...]` tensors that stay the same for
            the whole search; tiled like `initial_state` (unless
            `tile_constants=False`) and passed to `step_fn` as its third
            argument, rows matching `token_ids`.
        stopping: `"exact"` or `"heuristic"`: when a sentence is done (above).
        tile_constants: whether `step_fn` gets `constants` tiled to one row per
            hypothesis (`[N, ...]`). With False they stay `[B, ...]`, one row
            per sentence, and `step_fn` must read sentence `b`'s row for its
            rows `b * r ... (b + 1) * r - 1`, `r = N // B` (1 at the first
            step, `beam_size` after): no copies of the source per hypothesis
            to make, to read at every step, or to gather when sentences leave.
        n_best: Python int in `[1, beam_size]`, the hypotheses returned per
            sentence (default `beam_size`); a sentence is done once these are.

    Returns:
        A dict with, per sentence, the `n_best` (`R`) hypotheses sorted best first:
        `tokens` `[B, R, max_length]` int32, `lengths` `[B, R]` int32 (end token
        included), `scores` `[B, R]` float32 (penalized), `log_probs` `[B, R]`
        float32 (unpenalized) and, when `step_fn` returns extras, `extras`
        (each `[B, R, max_length, ...]`, recorded along each hypothesis' path).
        If fewer than `n_best` hypotheses exist (tiny vocabularies), the
        missing ones have score `-inf`, length 0 and only padding.

    Example:

    ```python
    result = beam_search(step_fn, {"hidden": encoder_state}, start_ids,
                         end_id=2, beam_size=5, max_length=50, length_penalty=0.6,
                         constants={"memory": encoder_outputs, "mask": source_mask})
    best_tokens = result["tokens"][:, 0]      # [B, 50]
    ```
    """
    _check_max_length(max_length)
    if not isinstance(beam_size, int) or beam_size < 1:
        raise ValueError(f"`beam_size` must be a Python int >= 1, got {beam_size!r}.")
    if stopping not in _STOPPING_RULES:
        raise ValueError(f"`stopping` must be one of {_STOPPING_RULES}, got {stopping!r}.")
    n_best = beam_size if n_best is None else n_best
    if not isinstance(n_best, int) or not 1 <= n_best <= beam_size:
        raise ValueError(f"`n_best` must be a Python int in [1, beam_size={beam_size}], "
                         f"got {n_best!r}.")
    start_ids = tf.convert_to_tensor(start_ids, tf.int32)
    end_id = tf.convert_to_tensor(end_id, tf.int32)
    pad_id = tf.constant(pad_id, tf.int32)
    k = beam_size
    compact = constants is not None and not in_xla_context()
    per_sentence = _PER_SENTENCE + (() if tile_constants else ("constants",))
    penalty = lambda length: gnmt_length_penalty(length, length_penalty)
    # The `lp` that bounds the best score of a hypothesis still live after `step` steps.
    bound_penalty = ((lambda step: tf.maximum(penalty(step + 1), penalty(max_length)))
                     if stopping == "exact" else (lambda step: penalty(step + 1)))

    def update(outputs, loop):
        log_probs, new_state, extras = outputs
        step = loop["step"]
        alive_log_probs = loop["alive_log_probs"]
        # Static when known, so loop variables keep one shape across iterations.
        batch_size = _static_or_dynamic_shape(alive_log_probs)[0]
        # The K best continuing extensions of a sentence are among the K best of each
        # beam, and those are among the K + 1 best tokens of the beam's row once the end
        # token is dropped. So one top_k pass over the [N, V] rows, then a top_k over
        # the [B, K * (K + 1)] candidates, instead of scoring all K * V extensions.
        per_row = k + 1 if log_probs.shape[-1] is None else min(k + 1, log_probs.shape[-1])
        fused = _native_top_k(log_probs, per_row, end_id)
        if fused is None:
            (row_log_probs, row_tokens), end_log_probs = (_top_k(log_probs, per_row),
                                                          log_probs[:, end_id])
        else:
            row_log_probs, row_tokens, end_log_probs = fused  # [N, K + 1], [N]
        ending = alive_log_probs + tf.reshape(end_log_probs, [batch_size, k])  # [B, K]
        row_log_probs = tf.where(tf.equal(row_tokens, end_id), _DEAD, row_log_probs)
        candidates = tf.expand_dims(alive_log_probs, 2) + tf.reshape(
            row_log_probs, [batch_size, k, per_row]
        )
        top_log_probs, top_ids = tf.math.top_k(tf.reshape(candidates, [batch_size, -1]), k=k)
        parents = top_ids // per_row
        tokens = tf.gather(tf.reshape(row_tokens, [batch_size, -1]), top_ids, batch_dims=1)
        # Beams with nothing left to extend (more beams than hypotheses) are fed
        # padding, so `step_fn` never sees the end token.
        tokens = tf.where(_is_alive(top_log_probs), tokens, pad_id)
        flat_parents = tf.reshape(parents + tf.expand_dims(tf.range(batch_size) * k, 1), [-1])

        # An ending extension is kept if it ranks among the K best extensions;
        # those are the union of the K best continuing and the K ending ones.
        kth_best = tf.math.top_k(tf.concat([top_log_probs, ending], 1), k=k).values[:, -1:]
        keep_ending = (ending >= kth_best) & _is_alive(ending)
        ended = {
            "scores": tf.where(keep_ending, ending / penalty(step + 1), _DEAD),
            "log_probs": ending,
            "lengths": tf.fill([batch_size, k], step + 1),
            "tokens": _split_beams(
                _write_step(loop["alive_tokens"], step, tf.fill([batch_size * k], end_id)), k
            ),
            "extras": tf.nest.map_structure(
                lambda history, x: _split_beams(_write_step(history, step, x), k),
                loop["alive_extras"],
                extras,
            ),
        }
        # Children inherit their parent's history, state and this step's extras.
        from_parents = lambda x: _gather_beams(x, flat_parents)
        flat_tokens = tf.reshape(tokens, [-1])
        return {
            **loop,
            "step": step + 1,
            "ids": flat_tokens,
            "state": tf.nest.map_structure(from_parents, new_state),
            "alive_log_probs": top_log_probs,
            "alive_tokens": _write_step(from_parents(loop["alive_tokens"]), step, flat_tokens),
            "alive_extras": tf.nest.map_structure(
                lambda history, x: _write_step(from_parents(history), step, from_parents(x)),
                loop["alive_extras"],
                extras,
            ),
            "finished": _top_finished(loop["finished"], ended, n_best),
        }

    def sentence_done(loop):
        """[B] bool: the `n_best` pool is full and no live hypothesis can beat it."""
        best_alive = tf.reduce_max(loop["alive_log_probs"], axis=1)
        best_reachable = tf.where(
            _is_alive(best_alive), best_alive / bound_penalty(loop["step"]), _DEAD
        )
        return loop["finished"]["scores"][:, -1] >= best_reachable

    def keep_going(loop):
        return (loop["step"] < max_length) & ~tf.reduce_all(sentence_done(loop))

    def step(loop):
        return update(_call_step(step_fn, loop["ids"], loop["state"], loop.get("constants")), loop)

    # Sentences that are done have their final hypotheses in their pool already.
    outcome = lambda loop: _best_hypotheses(loop, k, n_best, penalty)
    leave = lambda loop: _without_done_sentences(loop, sentence_done(loop), outcome, k,
                                                 per_sentence)

    # Only beam 0 of each sentence is live at first, so that the K copies of
    # the start do not fill the beam with K identical hypotheses. They all start
    # from the same state: with `constants` (then `step_fn` takes any number of
    # rows, as sentences leave the batch) the first step runs once per sentence
    # and its outputs are tiled; a closure may hold tensors tiled to B * K rows.
    batch_size = _static_or_dynamic_shape(start_ids)[0]
    first_beam_only = tf.concat([[0.0], tf.fill([k - 1], _DEAD)], 0)
    ids = tf.repeat(start_ids, k)
    if constants is None:
        first_outputs = _call_step(step_fn, ids, tile_beams(initial_state, k))
    else:
        first_outputs = tile_beams(_call_step(step_fn, start_ids, initial_state, constants), k)
        if tile_constants:
            constants = tile_beams(constants, k)
    extras_history = tf.nest.map_structure(
        lambda x: _empty_history(x, max_length), first_outputs[2]
    )
    loop = {
        "step": tf.constant(0),
        "ids": ids,
        "state": first_outputs[1],
        "alive_log_probs": tf.tile(first_beam_only[None], [batch_size, 1]),
        "alive_tokens": tf.fill([batch_size * k, max_length], pad_id),
        "alive_extras": extras_history,
        "finished": {
            "scores": tf.fill([batch_size, n_best], _DEAD),
            "log_probs": tf.fill([batch_size, n_best], _DEAD),
            "lengths": tf.zeros([batch_size, n_best], tf.int32),
            "tokens": tf.fill([batch_size, n_best, max_length], pad_id),
            "extras": tf.nest.map_structure(
                lambda h: _split_beams(h, k)[:, :n_best], extras_history
            ),
        },
    }
    if constants is not None:
        loop["constants"] = constants
    best = _run_decoder(update(first_outputs, loop), keep_going, step, max_length, outcome,
                        leave if compact else None)
    return _as_result(best, pad_id)


def _run_decoder(loop, keep_going, step, max_length, outcome, leave=None):
    """Runs a decoder's `tf.while_loop` from `loop`; returns `outcome(loop)` of every sentence.

    With `leave` (`loop -> loop` without the sentences that are done), the
    loop also holds which sentence each of its rows is ("sentences") and the
    outcomes of those that left ("results"), and `leave` follows every step.
    """
    if leave is not None:
        first = outcome(loop)
        count = _static_or_dynamic_shape(tf.nest.flatten(first)[0])[0]
        loop = leave({**loop, "sentences": tf.range(count), "results": first})
    (loop,) = tf.while_loop(
        keep_going,
        lambda loop: (step(loop) if leave is None else leave(step(loop)),),
        (loop,),
        shape_invariants=None if leave is None else (_any_batch_size(loop),),
        maximum_iterations=max_length - 1,
    )
    final = outcome(loop)
    return final if leave is None else _scatter_sentences(loop["results"], loop["sentences"], final)


# Sentences leave the batch once at least this fraction of those in it are done: each
# departure gathers every per-row tensor (encoder outputs included), so it waits for
# several sentences rather than paying that at almost every step.
_MIN_DONE_FRACTION = 0.25

# Loop entries with one row per sentence; the others hold one per hypothesis.
_PER_SENTENCE = ("sentences", "alive_log_probs", "finished")


def _without_done_sentences(loop, done, outcome, rows_per_sentence=1,
                            per_sentence=_PER_SENTENCE):
    """`loop` without its done sentences (once enough are done), their `outcome` saved.

    `loop["sentences"]` [A] says which sentence each one is, and `outcome(loop)`
    (a nest of `[A, ...]` tensors, computed only when sentences leave) is
    written to those rows of `loop["results"]` for the sentences that leave.
    Entries named in `per_sentence` have one row per sentence; the others
    (but "step") `rows_per_sentence` each.
    """
    count = tf.size(done)
    done_count = tf.reduce_sum(tf.cast(done, tf.int32))
    worth_it = (done_count > 0) & (done_count < count) & (
        tf.cast(done_count, tf.float32) >= _MIN_DONE_FRACTION * tf.cast(count, tf.float32)
    )

    def drop():
        kept = tf.cast(tf.where(~done)[:, 0], tf.int32)
        rows = tf.reshape(
            tf.expand_dims(kept * rows_per_sentence, 1) + tf.range(rows_per_sentence), [-1]
        )
        leaving = tf.where(done)
        smaller = {"step": loop["step"], "results": _scatter_sentences(
            loop["results"], tf.gather_nd(loop["sentences"], leaving),
            tf.nest.map_structure(lambda x: tf.gather_nd(x, leaving), outcome(loop)))}
        for key, value in loop.items():
            if key not in smaller:
                index = kept if key in per_sentence else rows
                smaller[key] = tf.nest.map_structure(lambda x: tf.gather(x, index), value)
        return smaller

    return tf.cond(worth_it, drop, lambda: loop)


def _scatter_sentences(results, sentences, values):
    """Writes `values` (a pool of `[D, ...]` tensors) to rows `sentences` [D] of `results`."""
    indices = tf.expand_dims(sentences, 1)
    return tf.nest.map_structure(
        lambda all_rows, x: tf.tensor_scatter_nd_update(all_rows, indices, x), results, values
    )


def _any_batch_size(loop):
    """Shape invariants of a compacting loop: its batch (and row) dimensions may shrink."""
    shrinking = {key: value for key, value in loop.items() if key not in ("step", "results")}
    relaxed = tf.nest.map_structure(
        lambda x: tf.TensorShape([None]).concatenate(x.shape[1:]), shrinking
    )
    return {**relaxed, "step": loop["step"].shape,
            "results": tf.nest.map_structure(lambda x: x.shape, loop["results"])}


def _best_hypotheses(loop, beam_size, n_best, penalty):
    """The pool of the `n_best` best finished and still-live hypotheses of each sentence."""
    alive_log_probs = loop["alive_log_probs"]
    unfinished = {
        "scores": tf.where(
            _is_alive(alive_log_probs), alive_log_probs / penalty(loop["step"]), _DEAD
        ),
        "log_probs": alive_log_probs,
        "lengths": tf.fill(tf.shape(alive_log_probs), loop["step"]),
        "tokens": _split_beams(loop["alive_tokens"], beam_size),
        "extras": tf.nest.map_structure(lambda h: _split_beams(h, beam_size), loop["alive_extras"]),
    }
    return _top_finished(loop["finished"], unfinished, n_best)


def _as_result(best, pad_id):
    """A pool of best hypotheses as `beam_search`'s result dict (missing ones marked)."""
    exists = _is_alive(best["scores"])
    result = {
        "tokens": tf.where(exists[:, :, None], best["tokens"], pad_id),
        "lengths": tf.where(exists, best["lengths"], 0),
        "scores": tf.where(exists, best["scores"], float("-inf")),
        "log_probs": tf.where(exists, best["log_probs"], float("-inf")),
    }
    if tf.nest.flatten(best["extras"]):
        result["extras"] = best["extras"]
    return result
