"""Tests for zoo/metrics.py; expected numbers are worked out by hand in comments."""

import math
import random

import keras
import numpy as np
import pytest

from zoo.metrics import (
    Perplexity,
    accuracy,
    bleu_1_to_4,
    corpus_bleu,
    extract_spans,
    iob1_to_bio,
    perplexity,
    sentence_accuracy,
    span_f1,
    token_accuracy,
)

# --- extract_spans -------------------------------------------------------------


@pytest.mark.parametrize(
    "tags, spans",
    [
        (["B-PER", "I-PER", "O", "B-LOC"], [("PER", 0, 2), ("LOC", 3, 4)]),
        # A chunk running to the end of the sentence is closed.
        (["O", "B-LOC", "I-LOC"], [("LOC", 1, 3)]),
        # Stray I- after O, or at the start, opens a chunk (conlleval).
        (["O", "I-PER", "I-PER", "O"], [("PER", 1, 3)]),
        (["I-PER", "I-PER"], [("PER", 0, 2)]),
        # A type switch ends one chunk and starts another, B- or I- alike.
        (["B-PER", "I-LOC", "I-PER"], [("PER", 0, 1), ("LOC", 1, 2), ("PER", 2, 3)]),
        # B- always starts a chunk, even right after a same-type chunk.
        (["B-LOC", "B-LOC", "I-LOC"], [("LOC", 0, 1), ("LOC", 1, 3)]),
        (["O", "O"], []),
        ([], []),
        # Types may contain dots and underscores (ATIS slots).
        (["B-fromloc.city_name", "I-fromloc.city_name"], [("fromloc.city_name", 0, 2)]),
        ([b"B-PER", b"O"], [("PER", 0, 1)]),  # bytes, as tf.data yields them
    ],
)
def test_extract_spans_bio(tags, spans):
    assert extract_spans(tags, "BIO") == spans


def test_extract_spans_iob1_adjacent_entities():
    # IOB1 (CoNLL-2003): I- opens a chunk; B- only splits two adjacent
    # same-type chunks: "I-PER I-PER B-PER" is two persons, 0..2 and 2..3.
    tags = ["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-ORG"]
    expected = [("PER", 0, 2), ("PER", 2, 3), ("LOC", 4, 5), ("ORG", 5, 6)]
    assert extract_spans(tags, "IOB1") == expected
    assert iob1_to_bio(tags) == ["B-PER", "I-PER", "B-PER", "O", "B-LOC", "B-ORG"]
    assert extract_spans(iob1_to_bio(tags), "BIO") == expected


def test_bad_tags_and_schemes_are_refused():
    with pytest.raises(ValueError, match="Bad tag 'X-PER'"):
        extract_spans(["O", "X-PER"])
    with pytest.raises(ValueError, match="Bad tag 'B-'"):
        extract_spans(["B-"])
    with pytest.raises(ValueError, match="scheme"):
        extract_spans(["O"], scheme="BILOU")


# --- span_f1 ---------------------------------------------------------------------


def test_span_f1_bio_hand_computed():
    true = [
        ["B-PER", "I-PER", "O", "B-LOC", "I-LOC", "O", "B-ORG"],
        ["B-MISC", "I-MISC", "O"],
        ["B-LOC"],
    ]
    pred = [
        ["B-PER", "I-PER", "O", "B-LOC", "O", "O", "B-PER"],
        ["B-MISC", "I-MISC", "O"],
        ["O"],
    ]
    # true chunks: PER 0-2, LOC 3-5, ORG 6-7 | MISC 0-2 | LOC 0-1   -> 5
    # pred chunks: PER 0-2, LOC 3-4, PER 6-7 | MISC 0-2             -> 4
    # correct:     PER 0-2 | MISC 0-2                                -> 2
    # P = 2/4 = 50, R = 2/5 = 40, F1 = 2*50*40/90 = 44.444...
    scores = span_f1(true, pred)
    assert scores["precision"] == pytest.approx(50.0)
    assert scores["recall"] == pytest.approx(40.0)
    assert scores["f1"] == pytest.approx(400 / 9)
    assert (scores["num_true"], scores["num_pred"], scores["num_correct"]) == (5, 4, 2)
    per_type = scores["per_type"]
    # PER: 1 true, 2 predicted, 1 correct -> P 50, R 100, F1 66.67.
    assert per_type["PER"] == pytest.approx(
        {"precision": 50.0, "recall": 100.0, "f1": 200 / 3, "support": 1}
    )
    # LOC: 2 true, 1 predicted (wrong end), 0 correct.
    assert per_type["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 2}
    # ORG: never predicted -> precision 0 (conlleval), recall 0.
    assert per_type["ORG"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert per_type["MISC"] == {"precision": 100.0, "recall": 100.0, "f1": 100.0, "support": 1}


def test_span_f1_broken_i_tags():
    true = [["B-PER", "I-PER", "O", "B-LOC", "I-LOC"]]
    pred = [["I-PER", "I-PER", "O", "B-LOC", "I-ORG"]]
    # pred chunks: PER 0-2 (stray I- opens it, so it matches), LOC 3-4, ORG 4-5
    # true chunks: PER 0-2, LOC 3-5. correct = 1.
    # P = 1/3, R = 1/2, F1 = 2*(1/6)/(5/6) = 0.4.
    scores = span_f1(true, pred)
    assert scores["precision"] == pytest.approx(100 / 3)
    assert scores["recall"] == pytest.approx(50.0)
    assert scores["f1"] == pytest.approx(40.0)
    # ORG only predicted: support 0, listed anyway.
    assert scores["per_type"]["ORG"]["support"] == 0


def test_span_f1_iob1_hand_computed():
    true = [["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-LOC", "O", "I-ORG"]]
    pred = [["I-PER", "I-PER", "I-PER", "O", "I-LOC", "O", "O", "I-ORG"]]
    # true: PER 0-2, PER 2-3 (B- splits), LOC 4-6, ORG 7-8   -> 4
    # pred: PER 0-3, LOC 4-5, ORG 7-8                        -> 3
    # correct: ORG -> 1. P = 1/3, R = 1/4, F1 = 2/7 = 28.571...
    scores = span_f1(true, pred, scheme="IOB1")
    assert scores["precision"] == pytest.approx(100 / 3)
    assert scores["recall"] == pytest.approx(25.0)
    assert scores["f1"] == pytest.approx(200 / 7)
    assert scores["per_type"]["PER"]["support"] == 2
    assert scores["per_type"]["PER"]["f1"] == 0.0
    # Converting to BIO first gives the same scores.
    converted = span_f1(
        [iob1_to_bio(s) for s in true], [iob1_to_bio(s) for s in pred], scheme="BIO"
    )
    assert converted == scores


@pytest.mark.parametrize("sequences", [[["O", "O"]], [], [[]]])
def test_span_f1_without_chunks_is_zero(sequences):
    # conlleval prints 0.00 for precision, recall and F1 when there are no chunks.
    scores = span_f1(sequences, sequences)
    assert (scores["precision"], scores["recall"], scores["f1"]) == (0.0, 0.0, 0.0)
    assert scores["per_type"] == {}


def test_span_f1_refuses_misaligned_input():
    with pytest.raises(ValueError, match="2 true sequences but 1"):
        span_f1([["O"], ["O"]], [["O"]])
    with pytest.raises(ValueError, match="Sequence 0 has 2 true tags but 1"):
        span_f1([["O", "O"]], [["O"]])


# An independent rendering of conlleval's streaming count (its main loop,
# endOfChunk and startOfChunk rule lists, sentence boundary as "O"), to
# cross-check the span-set implementation on random, often ill-formed, tags.


def _conlleval_split(tag):
    return ("O", "") if tag == "O" else tuple(tag.split("-", 1))


def _conlleval_end(prev_tag, tag, prev_type, type_):
    end = (prev_tag, tag) in {("B", "B"), ("B", "O"), ("I", "B"), ("I", "O")}
    return end or (prev_tag != "O" and prev_type != type_)


def _conlleval_start(prev_tag, tag, prev_type, type_):
    start = (prev_tag, tag) in {("B", "B"), ("I", "B"), ("O", "B"), ("O", "I")}
    return start or (tag != "O" and prev_type != type_)


def _conlleval_counts(true_seqs, pred_seqs):
    correct_chunks = found_correct = found_guessed = 0
    for true_tags, pred_tags in zip(true_seqs, pred_seqs):
        last_c, last_g = ("O", ""), ("O", "")
        in_correct = False
        for c_tag, g_tag in [*zip(true_tags, pred_tags), ("O", "O")]:
            c, g = _conlleval_split(c_tag), _conlleval_split(g_tag)
            end_c = _conlleval_end(last_c[0], c[0], last_c[1], c[1])
            end_g = _conlleval_end(last_g[0], g[0], last_g[1], g[1])
            if in_correct:
                if end_c and end_g and last_g[1] == last_c[1]:
                    in_correct = False
                    correct_chunks += 1
                elif end_c != end_g or g[1] != c[1]:
                    in_correct = False
            start_c = _conlleval_start(last_c[0], c[0], last_c[1], c[1])
            start_g = _conlleval_start(last_g[0], g[0], last_g[1], g[1])
            if start_c and start_g and g[1] == c[1]:
                in_correct = True
            found_correct += start_c
            found_guessed += start_g
            last_c, last_g = c, g
    return found_correct, found_guessed, correct_chunks


def test_span_f1_counts_match_conlleval_streaming_algorithm():
    rng = random.Random(0)
    vocabulary = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    for _ in range(200):
        lengths = [rng.randint(0, 7) for _ in range(3)]
        true = [[rng.choice(vocabulary) for _ in range(n)] for n in lengths]
        pred = [[rng.choice(vocabulary) for _ in range(n)] for n in lengths]
        scores = span_f1(true, pred)
        counts = (scores["num_true"], scores["num_pred"], scores["num_correct"])
        assert counts == _conlleval_counts(true, pred), (true, pred)


# --- accuracies ----------------------------------------------------------------


def test_token_and_sentence_accuracy():
    true = [["O", "B-X", "I-X"], ["O"], ["B-Y"]]
    pred = [["O", "B-X", "O"], ["O"], ["B-Y"]]
    # 4 of 5 tokens right; sentences 2 and 3 fully right.
    assert token_accuracy(true, pred) == pytest.approx(4 / 5)
    assert sentence_accuracy(true, pred) == pytest.approx(2 / 3)
    # With intents: sentence 3 has the wrong intent, so only sentence 2 counts.
    intents = ["flight", "fare", "airline"]
    predicted_intents = ["flight", "fare", "flight"]
    assert sentence_accuracy(true, pred, intents, predicted_intents) == pytest.approx(1 / 3)
    assert accuracy(intents, predicted_intents) == pytest.approx(2 / 3)


def test_accuracies_on_empty_and_bad_input():
    assert accuracy([], []) == 0.0
    assert token_accuracy([], []) == 0.0
    assert sentence_accuracy([], []) == 0.0
    with pytest.raises(ValueError):
        accuracy([1, 2], [1])
    with pytest.raises(ValueError, match="both"):
        sentence_accuracy([["O"]], [["O"]], true_intents=["a"])


# --- perplexity ------------------------------------------------------------------


def test_perplexity_function():
    assert perplexity(0.0) == 1.0
    assert perplexity(math.log(7.0)) == pytest.approx(7.0)
    assert perplexity(1e6) == float("inf")


def hand_made_lm_batch():
    """Two sequences of 2 steps over a 4-word vocabulary, one padded step.

    Probabilities of the gold tokens: 0.5, 0.6, (padding), 0.25, so
    mean CE = (ln 2 + ln(1/0.6) + ln 4) / 3 and
    perplexity = (2 * (1/0.6) * 4) ** (1/3) = (40/3) ** (1/3) = 2.3713.
    """
    probs = np.array(
        [
            [[0.1, 0.5, 0.2, 0.2], [0.1, 0.2, 0.6, 0.1]],
            [[0.25, 0.25, 0.25, 0.25], [0.7, 0.1, 0.1, 0.1]],
        ],
        dtype="float32",
    )
    labels = np.array([[1, 2], [3, 0]], dtype="int32")  # 0 = padding
    return labels, np.log(probs), probs


EXPECTED_PERPLEXITY = (40 / 3) ** (1 / 3)


def test_perplexity_metric_hand_computed_and_streaming():
    labels, logits, probs = hand_made_lm_batch()
    metric = Perplexity()
    metric.update_state(labels, logits)
    assert float(metric.result()) == pytest.approx(EXPECTED_PERPLEXITY, rel=1e-5)
    mean_ce = (math.log(2) + math.log(1 / 0.6) + math.log(4)) / 3
    assert float(metric.result()) == pytest.approx(perplexity(mean_ce), rel=1e-5)

    # Row by row gives the same: counts, not batch means, are accumulated.
    metric.reset_state()
    assert float(metric.result()) == 0.0
    for row in range(2):
        metric.update_state(labels[row : row + 1], logits[row : row + 1])
    assert float(metric.result()) == pytest.approx(EXPECTED_PERPLEXITY, rel=1e-5)

    from_probs = Perplexity(from_logits=False)
    from_probs.update_state(labels, probs)
    assert float(from_probs.result()) == pytest.approx(EXPECTED_PERPLEXITY, rel=1e-5)


def test_perplexity_metric_sample_weight_and_no_mask():
    labels, logits, _ = hand_made_lm_batch()
    # Weight 0 on the second sequence: only 0.5 and 0.6 remain.
    metric = Perplexity()
    metric.update_state(labels, logits, sample_weight=np.array([1.0, 0.0]))
    assert float(metric.result()) == pytest.approx((2 / 0.6) ** 0.5, rel=1e-5)
    # mask_token_id=None counts the padded step too (probability 0.7).
    metric = Perplexity(mask_token_id=None)
    metric.update_state(labels, logits)
    assert float(metric.result()) == pytest.approx((40 / 3 / 0.7) ** 0.25, rel=1e-5)


def test_perplexity_metric_in_compiled_model_and_serialization():
    labels, logits, _ = hand_made_lm_batch()
    inputs = keras.Input((2, 4))
    model = keras.Model(inputs, keras.layers.Identity()(inputs))
    model.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[Perplexity(name="ppl")],
    )
    results = model.evaluate(logits, labels, batch_size=1, verbose=0, return_dict=True)
    assert results["ppl"] == pytest.approx(EXPECTED_PERPLEXITY, rel=1e-5)

    metric = Perplexity(from_logits=False, mask_token_id=3, name="lm_ppl")
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert isinstance(restored, Perplexity)
    assert restored.get_config() == metric.get_config()


# --- BLEU ------------------------------------------------------------------------


def test_bleu_identical_and_disjoint():
    hypotheses = ["a man rides a horse on the beach .", "two dogs play in the snow ."]
    assert corpus_bleu(hypotheses, [[h] for h in hypotheses])["bleu"] == pytest.approx(100.0)
    disjoint = corpus_bleu(["w x y z"], [["a b c d"]])
    assert disjoint["bleu"] == 0.0
    assert disjoint["precisions"] == [0.0, 0.0, 0.0, 0.0]


def test_bleu_multi_reference_hand_computed():
    hypotheses = ["a cat sits on the mat"]
    references = [["the cat sat on the mat", "a cat is on a mat"]]
    # Clipped matches against either reference:
    #   1-grams a cat on the mat (not "sits")              5/6
    #   2-grams "a cat" "on the" "the mat"                 3/5
    #   3-grams "on the mat"                               1/4
    #   4-grams none                                       0/3
    # BP = 1 (both references have 6 tokens).
    # BLEU-1 = 5/6, BLEU-2 = sqrt(5/6 * 3/5) = sqrt(1/2),
    # BLEU-3 = (5/6 * 3/5 * 1/4) ** (1/3) = 1/2, BLEU-4 = 0 (no smoothing).
    scores = bleu_1_to_4(hypotheses, references)
    assert scores["bleu_1"] == pytest.approx(100 * 5 / 6)
    assert scores["bleu_2"] == pytest.approx(100 * math.sqrt(0.5))
    assert scores["bleu_3"] == pytest.approx(50.0)
    assert scores["bleu_4"] == 0.0

    details = corpus_bleu(hypotheses, references)
    assert details["precisions"][:3] == pytest.approx([100 * 5 / 6, 60.0, 25.0])
    assert details["bp"] == 1.0
    assert "nrefs:2" in details["signature"]
    # Each reference alone matches less than both together.
    for single in references[0]:
        assert corpus_bleu(hypotheses, [single])["bleu"] < details["bleu"]


def test_bleu_variable_references_and_case():
    # Hypothesis 1 has one reference, hypothesis 2 has two.
    scores = corpus_bleu(
        ["The cat sat .", "a dog"], [["the cat sat ."], ["the dog", "a dog"]], lowercase=True
    )
    assert scores["bleu"] == pytest.approx(100.0)
    cased = corpus_bleu(["The cat sat ."], ["the cat sat ."])
    assert cased["precisions"][0] == pytest.approx(75.0)  # "The" != "the"


def test_bleu_refuses_bad_input():
    with pytest.raises(ValueError, match="2 hypotheses but 1"):
        corpus_bleu(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="at least one reference"):
        corpus_bleu(["a"], [[]])
    with pytest.raises(ValueError, match="at least one hypothesis"):
        corpus_bleu([], [])
