"""Tests of zoo.decoding on toy Markov models small enough to enumerate."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from zoo import decoding

END = 2  # end-of-sequence token of the random toy models


def random_model(vocab_size, seed):
    """A second-order Markov model: P(next | previous input, input).

    Its state holds the previous input, so a beam search that reorders states
    wrongly conditions on the wrong history and no longer matches enumeration.
    """
    rng = np.random.default_rng(seed)
    table = np.log(rng.dirichlet(np.full(vocab_size, 0.7), size=(vocab_size, vocab_size)))
    return table


def make_step_fn(table, record_inputs=False, forbid_end_input=False):
    table_tensor = tf.constant(table, tf.float32)

    def step_fn(token_ids, state):
        if forbid_end_input:
            tf.debugging.assert_none_equal(
                token_ids, END, message="a finished hypothesis was extended"
            )
        log_probs = tf.gather_nd(table_tensor, tf.stack([state["previous"], token_ids], 1))
        new_state = {"previous": token_ids}
        if record_inputs:
            return log_probs, new_state, {"input": tf.cast(token_ids, tf.float32)}
        return log_probs, new_state

    return step_fn


def penalized(log_prob, length, alpha):
    return log_prob / ((5.0 + length) / 6.0) ** alpha


def enumerate_hypotheses(table, previous, start, max_length, alpha, end_id=END):
    """Every hypothesis: ended ones up to max_length, and unended ones of max_length."""
    hypotheses = []
    vocab = range(table.shape[-1])
    for length in range(1, max_length + 1):
        for tokens in itertools.product(vocab, repeat=length):
            ends = tokens[-1] == end_id
            if end_id in tokens[:-1] or (not ends and length < max_length):
                continue
            inputs = (previous, start) + tokens
            log_prob = sum(table[inputs[i], inputs[i + 1], tokens[i]] for i in range(length))
            hypotheses.append((penalized(log_prob, length, alpha), list(tokens)))
    return sorted(hypotheses, key=lambda h: -h[0])


def padded(tokens, max_length, pad_id=0):
    return tokens + [pad_id] * (max_length - len(tokens))


def rescore(table, previous, start, tokens, length, alpha):
    inputs = [previous, start] + list(tokens[:length])
    log_prob = sum(table[inputs[i], inputs[i + 1], tokens[i]] for i in range(length))
    return penalized(log_prob, length, alpha)


def run_beam(table, previous, start, beam_size, max_length, alpha=0.0, stopping="exact",
             n_best=None, **step_kwargs):
    return decoding.beam_search(
        make_step_fn(table, **step_kwargs),
        {"previous": tf.constant(previous, tf.int32)},
        tf.constant(start, tf.int32),
        END,
        beam_size=beam_size,
        max_length=max_length,
        length_penalty=alpha,
        stopping=stopping,
        n_best=n_best,
    )


def run_greedy(table, previous, start, max_length):
    return decoding.greedy_search(
        make_step_fn(table),
        {"previous": tf.constant(previous, tf.int32)},
        tf.constant(start, tf.int32),
        END,
        max_length,
    )


PREVIOUS, START = [0, 1, 3], [1, 0, 3]  # three sentences with different contexts


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_beam_size_one_is_greedy(seed):
    table = random_model(5, seed)
    greedy = run_greedy(table, PREVIOUS, START, max_length=7)
    beam = run_beam(table, PREVIOUS, START, beam_size=1, max_length=7)
    np.testing.assert_array_equal(beam["tokens"][:, 0], greedy["tokens"])
    np.testing.assert_array_equal(beam["lengths"][:, 0], greedy["lengths"])
    np.testing.assert_array_equal(beam["scores"][:, 0], greedy["scores"])


@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
def test_exhaustive_beam_matches_enumeration(alpha):
    # With 3 tokens and 4 steps, 24 beams hold every hypothesis and every
    # step's candidates, so beam search must return the exact 24 best.
    # Ties (same transitions in another order) may come in either order, so
    # compare the scores, then check each hypothesis is distinct and scored right.
    table, max_length, beam_size = random_model(3, seed=4), 4, 24
    beam = run_beam(table, PREVIOUS[:2], START[:2], beam_size, max_length, alpha)
    for b in range(2):
        expected = enumerate_hypotheses(table, PREVIOUS[b], START[b], max_length, alpha)
        np.testing.assert_allclose(
            beam["scores"][b], [s for s, _ in expected[:beam_size]], atol=1e-5
        )
        tokens, lengths = beam["tokens"][b].numpy(), beam["lengths"][b].numpy()
        assert len({tuple(row[:n]) for row, n in zip(tokens, lengths)}) == beam_size
        enumerated = {tuple(t): s for s, t in expected}
        for row, length, score in zip(tokens, lengths, beam["scores"][b].numpy()):
            np.testing.assert_allclose(score, enumerated[tuple(row[:length])], atol=1e-5)
            assert not row[length:].any()


def test_beam_finds_the_best_sequence_where_greedy_does_not():
    # 0 = <s>, 1 = "a", 3 = "b", 2 = </s>. "a" is the likelier first word, but
    # nothing likely follows it; "b </s>" is the most probable sentence.
    probs = np.full((4, 4), 0.25)
    probs[0] = [0.01, 0.54, 0.01, 0.44]
    probs[1] = [0.01, 0.34, 0.32, 0.33]
    probs[3] = [0.01, 0.04, 0.90, 0.05]
    table = np.log(np.broadcast_to(probs, (4, 4, 4)))  # first order: ignore `previous`
    best_score, best_tokens = enumerate_hypotheses(table, 0, 0, 4, alpha=0.0)[0]
    assert best_tokens == [3, END]

    greedy = run_greedy(table, [0], [0], max_length=4)
    assert greedy["tokens"][0].numpy().tolist() != padded(best_tokens, 4)
    beam = run_beam(table, [0], [0], beam_size=2, max_length=4)
    assert beam["tokens"][0, 0].numpy().tolist() == padded(best_tokens, 4)
    np.testing.assert_allclose(beam["scores"][0, 0], best_score, atol=1e-6)


@pytest.mark.parametrize("stopping", ["exact", "heuristic"])
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_hypotheses_are_sorted_and_scored_by_penalized_log_prob(alpha, stopping):
    table = random_model(6, seed=5)
    beam = run_beam(table, PREVIOUS, START, beam_size=4, max_length=8, alpha=alpha,
                    stopping=stopping)
    scores = beam["scores"].numpy()
    assert np.all(np.diff(scores, axis=1) <= 0)
    for b, k in itertools.product(range(3), range(4)):
        expected = rescore(
            table,
            PREVIOUS[b],
            START[b],
            beam["tokens"][b, k].numpy(),
            int(beam["lengths"][b, k]),
            alpha,
        )
        np.testing.assert_allclose(scores[b, k], expected, atol=1e-5)
    np.testing.assert_allclose(
        beam["log_probs"], scores * ((5.0 + beam["lengths"].numpy()) / 6.0) ** alpha, atol=1e-5
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stopping_rules_agree_without_a_length_penalty(seed):
    # With alpha = 0 ending later never raises a score, so both bounds are the same.
    table = random_model(5, seed)
    exact = run_beam(table, PREVIOUS, START, beam_size=3, max_length=7)
    heuristic = run_beam(table, PREVIOUS, START, beam_size=3, max_length=7, stopping="heuristic")
    for key in ("tokens", "lengths", "scores"):
        np.testing.assert_array_equal(heuristic[key], exact[key])


def counting_step_fn(rows):
    """A model whose next-token distribution is `rows[n]` after n generated tokens."""
    table = tf.constant(np.log(rows), tf.float32)

    def step_fn(token_ids, state):
        length = state["length"]
        log_probs = tf.gather(table, tf.minimum(length, len(rows) - 1))
        return log_probs, {"length": length + 1}

    return step_fn


def test_heuristic_stopping_misses_a_longer_winner_that_exact_stopping_finds():
    # 0 = padding, 1 = "a", 2 = </s>. "</s>" alone is likelier than "a a a </s>",
    # but a strong length penalty (alpha = 2) ranks the longer one first. Once
    # "</s>" is in the pool, the heuristic rule bounds the live "a" as if it ended
    # next step and stops; the exact rule keeps it going to "a a a </s>".
    rows = [[1e-6, 0.4, 0.6], [1e-6, 0.999, 0.001], [1e-6, 0.999, 0.001], [1e-6, 0.001, 0.999]]
    step_fn, start = counting_step_fn(np.asarray(rows)), tf.constant([0])

    def best(stopping):
        result = decoding.beam_search(step_fn, {"length": tf.constant([0])}, start, END,
                                      beam_size=1, max_length=6, length_penalty=2.0,
                                      stopping=stopping)
        return result["tokens"][0, 0].numpy().tolist(), float(result["scores"][0, 0])

    (exact_tokens, exact_score), (heuristic_tokens, heuristic_score) = map(
        best, ["exact", "heuristic"])
    assert exact_tokens == padded([1, 1, 1, END], 6)
    assert heuristic_tokens == padded([END], 6)
    np.testing.assert_allclose(exact_score, np.log(0.4 * 0.999**3) / 1.5**2, rtol=1e-5)
    assert heuristic_score < exact_score


@pytest.mark.parametrize("n_best", [1, 2])
@pytest.mark.parametrize("alpha", [0.0, 0.6, 2.0])
def test_n_best_hypotheses_are_the_first_of_all_beams_under_exact_stopping(alpha, n_best):
    # Exact stopping settles the n best for good, so asking for fewer (and
    # stopping sooner) returns the first n of what the full pool would hold.
    table = random_model(6, seed=9)
    full = run_beam(table, PREVIOUS, START, 4, 8, alpha, record_inputs=True)
    best = run_beam(table, PREVIOUS, START, 4, 8, alpha, n_best=n_best, record_inputs=True)
    assert best["tokens"].shape == (3, n_best, 8)
    assert best["extras"]["input"].shape == (3, n_best, 8)
    for got, want in zip(tf.nest.flatten(best), tf.nest.flatten(full)):
        np.testing.assert_array_equal(got, want[:, :n_best])


def test_keeping_only_the_best_lets_a_sentence_stop_once_it_is_settled():
    # 0 = padding, 1 = "a", 2 = </s>. "</s>" (0.7) beats every hypothesis
    # starting with "a" (0.3) after one step; a pool of 2 must wait a step
    # more, for "a </s>" (0.15) to end.
    rows = [[1e-6, 0.3, 0.7]] + [[1e-6, 0.5, 0.5]] * 5
    calls = []
    step_fn = counting_step_fn(np.asarray(rows))

    def counted(token_ids, state):
        calls.append(1)
        return step_fn(token_ids, state)

    def search(n_best):
        calls.clear()
        result = decoding.beam_search(counted, {"length": tf.constant([0])}, tf.constant([0]),
                                      END, beam_size=2, max_length=6, n_best=n_best)
        return result, len(calls)

    (best, best_steps), (full, full_steps) = search(1), search(2)
    assert best["tokens"][0, 0].numpy().tolist() == padded([END], 6)
    np.testing.assert_array_equal(best["tokens"][:, 0], full["tokens"][:, 0])
    assert best_steps == 1 and full_steps == 2


def test_finished_hypotheses_are_never_extended():
    # step_fn asserts it is never fed the end token, even with more beams than
    # hypotheses; outputs hold nothing but padding after the end token.
    table, max_length = random_model(4, seed=6), 4
    beam = run_beam(table, PREVIOUS, START, 50, max_length, forbid_end_input=True)
    tokens, lengths = beam["tokens"].numpy(), beam["lengths"].numpy()
    for row, length in zip(tokens.reshape(-1, max_length), lengths.reshape(-1)):
        if length == 0:  # slot left empty: fewer hypotheses than beams
            assert not row.any()
            continue
        assert END not in row[: length - 1]
        assert row[length - 1] == END or length == max_length
        assert not row[length:].any()


def test_greedy_pads_after_end():
    table = random_model(5, seed=7)
    result = run_greedy(table, PREVIOUS, START, max_length=9)
    for row, length in zip(result["tokens"].numpy(), result["lengths"].numpy()):
        assert END not in row[: length - 1]
        assert row[length - 1] == END or length == 9
        assert not row[length:].any()


def test_extras_follow_the_returned_hypotheses():
    # Extras record each step's input, so along a correct path they equal the
    # start token followed by the hypothesis itself, then zeros.
    table, max_length = random_model(5, seed=8), 6
    beam = run_beam(table, PREVIOUS, START, 3, max_length, alpha=0.6, record_inputs=True)
    greedy = decoding.greedy_search(
        make_step_fn(table, record_inputs=True),
        {"previous": tf.constant(PREVIOUS)},
        tf.constant(START),
        END,
        max_length,
    )
    paths = [
        (beam["tokens"][b, k], beam["lengths"][b, k], beam["extras"]["input"][b, k], START[b])
        for b, k in itertools.product(range(3), range(3))
    ] + [
        (greedy["tokens"][b], greedy["lengths"][b], greedy["extras"]["input"][b], START[b])
        for b in range(3)
    ]
    for tokens, length, inputs, start in paths:
        expected = padded([start] + tokens.numpy().tolist()[: length - 1], max_length)
        np.testing.assert_array_equal(inputs, expected)


def decode_both(table):
    step_fn = make_step_fn(table)

    def decode(previous, start):
        state = {"previous": previous}
        return (
            decoding.beam_search(step_fn, state, start, END, 3, 7, length_penalty=0.6),
            decoding.greedy_search(step_fn, state, start, END, 7),
        )

    return decode


def assert_same_results(actual, expected):
    for got, want in zip(actual, expected):
        np.testing.assert_array_equal(got["tokens"], want["tokens"])
        np.testing.assert_array_equal(got["lengths"], want["lengths"])
        np.testing.assert_allclose(got["scores"], want["scores"], atol=1e-6)


def test_runs_in_tf_function_with_dynamic_batch():
    decode = decode_both(random_model(5, seed=9))
    compiled = tf.function(decode, input_signature=[tf.TensorSpec([None], tf.int32)] * 2)
    inputs = tf.constant(PREVIOUS), tf.constant(START)
    assert_same_results(compiled(*inputs), decode(*inputs))


def test_beam_search_compiles_with_xla():
    # Greedy search shares its loop with sampling, compiled in the sampling test.
    table = random_model(5, seed=9)
    beam = lambda: run_beam(table, PREVIOUS, START, 3, 7, alpha=0.6)
    assert_same_results([tf.function(beam, jit_compile=True)()], [beam()])


def test_exports_in_a_saved_model(tmp_path):
    table = random_model(5, seed=10)

    class Translator(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.int32)])
        def translate(self, start):
            state = {"previous": tf.zeros_like(start)}
            result = decoding.beam_search(make_step_fn(table), state, start, END, 2, 6)
            return {"tokens": result["tokens"][:, 0], "scores": result["scores"][:, 0]}

    tf.saved_model.save(Translator(), str(tmp_path))
    restored = tf.saved_model.load(str(tmp_path))
    start = tf.constant([0, 1, 3, 4])
    expected = Translator().translate(start)
    actual = restored.translate(start)
    np.testing.assert_array_equal(actual["tokens"], expected["tokens"])
    np.testing.assert_allclose(actual["scores"], expected["scores"])


# ---------------------------------------------------------------------------
# Sentences that are done leave the batch (decoders given `constants`)

BIAS_SENTENCES = 8


def biased_decoder(table, rows):
    """A step_fn of the toy model plus a per-sentence bias (its `constants`).

    The bias on the end token ranges from discouraging to favouring it, so
    sentences end at very different steps. `rows` counts the rows decoded.
    """
    def step_fn(token_ids, state, constants):
        rows.assign_add(tf.shape(token_ids)[0])
        logits = tf.gather_nd(table, tf.stack([state["previous"], token_ids], 1))
        log_probs = tf.nn.log_softmax(logits + constants["bias"])
        return log_probs, {"previous": token_ids}, {"input": tf.cast(token_ids, tf.float32)}

    bias = np.zeros((BIAS_SENTENCES, table.shape[-1]), np.float32)
    bias[:, END] = np.linspace(-4.0, 3.0, BIAS_SENTENCES)
    return step_fn, {"bias": tf.constant(bias)}


def decode_biased(search, table, rows, beam_size, as_constants, wrap=lambda f: f, n_best=None):
    """Decodes the biased toy model, its bias passed as `constants` or closed over."""
    step_fn, constants = biased_decoder(tf.constant(table, tf.float32), rows)
    rng = np.random.default_rng(3)
    previous = tf.constant(rng.integers(0, table.shape[-1], BIAS_SENTENCES), tf.int32)
    start = tf.constant(rng.integers(3, table.shape[-1], BIAS_SENTENCES), tf.int32)
    if search == "beam":
        tiled = decoding.tile_beams(constants, beam_size)
        decode = lambda **kw: decoding.beam_search(
            step_fn=kw.pop("step_fn"), initial_state={"previous": previous}, start_ids=start,
            end_id=END, beam_size=beam_size, max_length=14, length_penalty=0.6,
            n_best=n_best, **kw)
    else:
        tiled = constants
        decode = lambda **kw: decoding.greedy_search(
            step_fn=kw.pop("step_fn"), initial_state={"previous": previous}, start_ids=start,
            end_id=END, max_length=14, **kw)
    if as_constants:
        run = lambda: decode(step_fn=step_fn, constants=constants)
    else:
        run = lambda: decode(step_fn=lambda ids, state: step_fn(ids, state, tiled))
    rows.assign(0)
    result = wrap(run)()
    return result, int(rows.numpy())


def assert_same_hypotheses(got, want):
    assert sorted(got) == sorted(want)
    for key in ("tokens", "lengths"):
        np.testing.assert_array_equal(got[key], want[key])
    for key in set(want) - {"tokens", "lengths"}:
        # Float sums may round differently in a smaller batch.
        for a, b in zip(tf.nest.flatten(got[key]), tf.nest.flatten(want[key])):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("search, beam_size", [("greedy", 1), ("beam", 3), ("beam", 1)])
@pytest.mark.parametrize("mode", ["eager", "tf.function"])
def test_done_sentences_leave_the_batch_with_the_same_results(search, beam_size, mode):
    table = random_model(7, seed=0)
    rows = tf.Variable(0)
    wrap = (lambda f: f) if mode == "eager" else tf.function
    dropping, dropping_rows = decode_biased(search, table, rows, beam_size, True, wrap)
    keeping, keeping_rows = decode_biased(search, table, rows, beam_size, False, wrap)
    assert_same_hypotheses(dropping, keeping)
    lengths = dropping["lengths"].numpy().reshape(BIAS_SENTENCES, -1)[:, 0]
    assert lengths.min() <= 2 and lengths.max() == 14  # sentences end at different steps
    assert dropping_rows < 0.8 * keeping_rows  # ... and stop costing rows when they do


@pytest.mark.parametrize("mode", ["eager", "tf.function"])
def test_keeping_only_the_best_decodes_fewer_rows_for_the_same_best(mode):
    table = random_model(7, seed=0)
    rows = tf.Variable(0)
    wrap = (lambda f: f) if mode == "eager" else tf.function
    best, best_rows = decode_biased("beam", table, rows, 3, True, wrap, n_best=1)
    full, full_rows = decode_biased("beam", table, rows, 3, True, wrap)
    assert_same_hypotheses(best, tf.nest.map_structure(lambda x: x[:, :1], full))
    assert best_rows < full_rows


def test_done_sentences_stay_under_xla():
    table = random_model(7, seed=0)
    rows = tf.Variable(0)
    compiled = lambda f: tf.function(f, jit_compile=True)
    dropping, dropping_rows = decode_biased("beam", table, rows, 3, True, compiled)
    keeping, keeping_rows = decode_biased("beam", table, rows, 3, False)
    assert_same_hypotheses(dropping, keeping)
    # No sentence leaves; with constants only the first step is smaller (1 row, not 3).
    assert dropping_rows == keeping_rows - BIAS_SENTENCES * (3 - 1)


def per_sentence_decoder(table, rows):
    """`biased_decoder` reading its bias `[B, V]` untiled: rows of a sentence are consecutive."""
    step_fn, constants = biased_decoder(table, rows)

    def untiled_step_fn(token_ids, state, constants):
        per_sentence = tf.shape(token_ids)[0] // tf.shape(constants["bias"])[0]
        return step_fn(token_ids, state, {"bias": tf.repeat(constants["bias"], per_sentence, 0)})

    return untiled_step_fn, constants


@pytest.mark.parametrize("mode", ["eager", "tf.function", "xla"])
def test_untiled_constants_give_the_same_hypotheses(mode):
    table = tf.constant(random_model(7, seed=0), tf.float32)
    rows = tf.Variable(0)
    wrap = {"eager": lambda f: f, "tf.function": tf.function,
            "xla": lambda f: tf.function(f, jit_compile=True)}[mode]
    previous, start = tf.constant([0, 1, 3, 2] * 2), tf.constant([1, 0, 3, 4, 5, 6, 3, 4])

    def decode(step_fn, constants, tile_constants):
        return wrap(lambda: decoding.beam_search(
            step_fn, {"previous": previous}, start, END, 3, 14, length_penalty=0.6,
            constants=constants, tile_constants=tile_constants))()

    untiled = decode(*per_sentence_decoder(table, rows), tile_constants=False)
    tiled = decode(*biased_decoder(table, rows), tile_constants=True)
    assert_same_hypotheses(untiled, tiled)
    lengths = untiled["lengths"].numpy()[:, 0]
    assert lengths.min() <= 2 and lengths.max() == 14  # sentences leave at different steps


def test_dropping_sentences_with_a_dynamic_batch():
    table = tf.constant(random_model(7, seed=0), tf.float32)
    rows = tf.Variable(0)
    step_fn, constants = biased_decoder(table, rows)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.int32),
                                  tf.TensorSpec([None, 7], tf.float32)])
    def decode(previous, start, bias):
        return decoding.beam_search(step_fn, {"previous": previous}, start, END, 3, 14,
                                    length_penalty=0.6, constants={"bias": bias})

    previous, start = tf.constant([0, 1, 3] * 3), tf.constant([1, 0, 3, 4, 5, 6, 3, 4, 5])
    bias = tf.constant(np.linspace(-4.0, 3.0, 9 * 7).reshape(9, 7), tf.float32)
    whole = decode(previous, start, bias)
    for part in (slice(0, 1), slice(2, 7)):  # each sentence's hypotheses, whatever its batch
        alone = decode(previous[part], start[part], bias[part])
        assert_same_hypotheses(alone, tf.nest.map_structure(lambda x: x[part], whole))


def run_sample(table, **kwargs):
    return decoding.sample(
        make_step_fn(table),
        {"previous": tf.constant(PREVIOUS)},
        tf.constant(START),
        END,
        max_length=8,
        **kwargs,
    )


def test_sample_with_top_k_one_is_greedy():
    table = random_model(6, seed=11)
    greedy = run_greedy(table, PREVIOUS, START, max_length=8)
    sampled = run_sample(table, top_k=1, temperature=1.5)
    for key in ("tokens", "lengths", "scores"):
        np.testing.assert_array_equal(sampled[key], greedy[key])


def test_sample_is_reproducible_with_a_seed():
    table = random_model(6, seed=12)
    first, again = run_sample(table, seed=42), run_sample(table, seed=42)
    other = run_sample(table, seed=43)
    np.testing.assert_array_equal(first["tokens"], again["tokens"])
    assert not np.array_equal(first["tokens"], other["tokens"])
    compiled = tf.function(lambda: run_sample(table, seed=7, top_k=3), jit_compile=True)
    np.testing.assert_array_equal(compiled()["tokens"], compiled()["tokens"])


def test_sample_follows_the_model_distribution():
    probs = np.array([0.1, 0.6, 0.05, 0.25])
    table = np.log(np.broadcast_to(probs, (4, 4, 4)))
    rows = np.zeros([4000], np.int32)

    def first_tokens(**kwargs):
        result = decoding.sample(
            make_step_fn(table), {"previous": rows}, rows, END, max_length=1, seed=0, **kwargs
        )
        return result["tokens"][:, 0].numpy()

    frequencies = np.bincount(first_tokens(), minlength=4) / len(rows)
    np.testing.assert_allclose(frequencies, probs, atol=0.03)
    assert set(np.unique(first_tokens(top_k=2))) == {1, 3}
    assert set(np.unique(first_tokens(temperature=0.01))) == {1}


def test_rejects_bad_arguments():
    table = random_model(3, seed=13)
    with pytest.raises(ValueError, match="max_length"):
        run_greedy(table, [0], [0], max_length=0)
    with pytest.raises(ValueError, match="beam_size"):
        run_beam(table, [0], [0], beam_size=0, max_length=3)
    with pytest.raises(ValueError, match="stopping"):
        run_beam(table, [0], [0], beam_size=2, max_length=3, stopping="early")
    for n_best in (0, 3, 1.0):
        with pytest.raises(ValueError, match="n_best"):
            run_beam(table, [0], [0], beam_size=2, max_length=3, n_best=n_best)
    with pytest.raises(ValueError, match="temperature"):
        run_sample(table, temperature=0.0)


# --- the exact two-pass top_k of long rows ----------------------------------------


def _top_k_cases():
    rng = np.random.default_rng(0)
    normal = rng.standard_normal((7, 5633)).astype(np.float32)
    ties = rng.integers(0, 4, (5, 1000)).astype(np.float32)  # many equal maxima
    ties[:, 900] = 9.0  # a late chunk ranks first, and ties with earlier chunks after its max
    clustered = np.full((3, 2048), -5.0, np.float32)
    clustered[:, 64:72] = np.arange(8, dtype=np.float32)  # the k best in one chunk
    dead = normal[:, :800].copy()
    dead[:, ::2] = decoding._DEAD  # the beam's dead scores, and -inf
    dead[:, 1::7] = -np.inf
    return {"normal": (normal, 6), "ties": (ties, 6), "clustered": (clustered, 6),
            "dead": (dead, 6), "k=1": (normal, 1), "one chunk wide": (normal[:, :1024], 8)}


@pytest.mark.parametrize("case", list(_top_k_cases()))
def test_chunked_top_k_matches_tf_top_k(case):
    x, k = _top_k_cases()[case]
    assert x.shape[1] >= decoding._MIN_CHUNKED_RATIO * k * decoding._CHUNK  # the chunked path
    values, indices = decoding._top_k(tf.constant(x), k)
    expected_values, expected_indices = tf.math.top_k(x, k=k)
    np.testing.assert_array_equal(indices, expected_indices)
    np.testing.assert_array_equal(values, expected_values)


def test_chunked_top_k_in_compiled_functions_with_a_dynamic_batch():
    x = _top_k_cases()["normal"][0]
    spec = [tf.TensorSpec([None, x.shape[1]], tf.float32)]
    expected = tf.math.top_k(x, k=6).indices
    for jit_compile in (False, True):
        top = tf.function(lambda rows: decoding._top_k(rows, 6), input_signature=spec,
                          jit_compile=jit_compile)
        np.testing.assert_array_equal(top(x)[1], expected)


def test_beam_search_over_a_large_vocabulary_is_unchanged_by_the_chunked_top_k(monkeypatch):
    vocab_size = 1000  # > _MIN_CHUNKED_RATIO * (beam + 1) * _CHUNK: the chunked path
    rng = np.random.default_rng(3)
    table = tf.nn.log_softmax(tf.constant(rng.standard_normal((vocab_size, vocab_size)) * 3,
                                          tf.float32))

    def step_fn(token_ids, state):  # first order, with the end token likely after a few steps
        log_probs = tf.gather(table, token_ids) + tf.one_hot(END, vocab_size) * state["bonus"]
        return tf.nn.log_softmax(log_probs), {"bonus": state["bonus"] + 1.0}

    def search():
        return decoding.beam_search(step_fn, {"bonus": tf.zeros([4, 1])}, tf.constant([0, 1, 3, 4]),
                                    END, beam_size=5, max_length=12, length_penalty=0.6)

    chunked = search()
    monkeypatch.setattr(decoding, "_MIN_CHUNKED_RATIO", 10**9)  # every row takes tf.math.top_k
    plain = search()
    for key in ("tokens", "lengths", "scores"):
        np.testing.assert_array_equal(chunked[key], plain[key])


@pytest.mark.parametrize("native_kernels", [True, False])
@pytest.mark.parametrize("never_ids", [(), (0, 1)])
def test_output_log_probs_equal_the_dense_layer_with_banned_ids_masked(never_ids, native_kernels,
                                                                      monkeypatch):
    """Bit for bit, with the same log-softmax (the native kernel's, or TF's without it)."""
    import keras

    from zoo.layers import native

    if not native_kernels:
        monkeypatch.setattr(native, "ops_for", lambda *tensors: None)
    dense = keras.layers.Dense(7)
    features = tf.random.stateless_normal([5, 4], seed=[3, 4])
    dense.build(features.shape)
    dense.bias.assign(tf.random.stateless_normal([7], seed=[5, 6]))
    logits = dense(features).numpy()
    log_probs = decoding.output_log_probs(dense, features, never_ids).numpy()
    allowed = [i for i in range(7) if i not in never_ids]
    banned = np.zeros(7, np.float32)
    banned[list(never_ids)] = -1e9
    expected = decoding.log_softmax(tf.constant(logits + banned)).numpy()
    np.testing.assert_array_equal(log_probs[:, allowed], expected[:, allowed])  # bit for bit
    assert np.all(log_probs[:, list(never_ids)] < -1e8)
    np.testing.assert_allclose(np.exp(log_probs).sum(-1), 1.0, rtol=1e-6)
