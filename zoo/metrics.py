"""Evaluation metrics of the zoo: span F1, accuracies, perplexity and BLEU.

Units follow the tools the literature quotes: span precision/recall/F1 and
BLEU are percentages in [0, 100] (as printed by conlleval and sacrebleu);
accuracies are fractions in [0, 1] (as `keras.metrics.Accuracy`); perplexity
is a plain ratio >= 1.

* `span_f1`, `extract_spans`, `iob1_to_bio`: chunk-level scores with the rules
  of the CoNLL shared-task script `conlleval`.
* `token_accuracy`, `sentence_accuracy`, `accuracy`: exact-match rates.
* `perplexity` and the streaming Keras metric `Perplexity`.
* `corpus_bleu` and `bleu_1_to_4`: BLEU from sacrebleu.
"""

import collections
import math

import keras
import sacrebleu
from keras import ops

# ---------------------------------------------------------------------------
# Span (chunk) F1 with conlleval's rules.
# ---------------------------------------------------------------------------

SCHEMES = ("BIO", "IOB2", "IOB1")
_OUTSIDE = ("O", "")  # (prefix, type) of "O"; also the sentence boundary


def _as_str(tag):
    return tag.decode("utf-8") if isinstance(tag, bytes) else str(tag)


def _check_scheme(scheme):
    if scheme not in SCHEMES:
        raise ValueError(f"Unknown tagging scheme {scheme!r}; expected one of {SCHEMES}.")


def _split_tag(tag):
    """`"B-PER"` -> `("B", "PER")`, `"O"` -> `("O", "")`."""
    tag = _as_str(tag)
    if tag == "O":
        return _OUTSIDE
    prefix, _, chunk_type = tag.partition("-")
    if prefix not in ("B", "I") or not chunk_type:
        raise ValueError(f"Bad tag {tag!r}: expected 'O', 'B-<type>' or 'I-<type>'.")
    return prefix, chunk_type


def _chunk_ends(previous, current):
    """conlleval `endOfChunk`: does a chunk end just before `current`?"""
    (prev_prefix, prev_type), (prefix, chunk_type) = previous, current
    if prev_prefix in ("B", "I") and prefix in ("B", "O"):
        return True
    return prev_prefix != "O" and prev_type != chunk_type


def _chunk_starts(previous, current):
    """conlleval `startOfChunk`: does a chunk start at `current`?"""
    (prev_prefix, prev_type), (prefix, chunk_type) = previous, current
    if prefix == "B" or (prev_prefix == "O" and prefix == "I"):
        return True
    return prefix != "O" and prev_type != chunk_type


def extract_spans(tags, scheme="BIO"):
    """Chunks of one tag sequence as `(type, start, end_exclusive)` tuples.

    Chunk boundaries follow conlleval for both schemes: a chunk starts at
    every `B-X`, at an `I-X` after `O`, and at any tag whose type differs
    from the previous tag's; it continues through `I-X` after `B-X`/`I-X`.
    So a stray `I-X` (after `O` or another type) opens a new chunk, and in
    IOB1 a `B-X` splits two adjacent `X` entities. Because conlleval's rules
    accept both encodings, `scheme` only validates the name; IOB1 and its
    `iob1_to_bio` conversion yield the same spans.

    Example:

    >>> extract_spans(["B-PER", "I-PER", "O", "I-LOC", "B-LOC"])
    [('PER', 0, 2), ('LOC', 3, 4), ('LOC', 4, 5)]

    Args:
        tags: sequence of tag strings (or bytes), e.g. `["B-PER", "O"]`.
        scheme: `"BIO"` (alias `"IOB2"`) or `"IOB1"`.

    Returns:
        list of `(type, start, end_exclusive)` in order of appearance.
    """
    _check_scheme(scheme)
    spans = []
    previous, start = _OUTSIDE, None
    # A trailing "O" closes a chunk that runs to the end of the sentence.
    for position, current in enumerate([*map(_split_tag, tags), _OUTSIDE]):
        if start is not None and _chunk_ends(previous, current):
            spans.append((previous[1], start, position))
            start = None
        if _chunk_starts(previous, current):
            start = position
        previous = current
    return spans


def iob1_to_bio(tags):
    """Rewrites an IOB1 sequence as BIO (IOB2): every chunk starts with `B-`.

    An `I-X` that starts a chunk (under conlleval's rules) becomes `B-X`;
    all other tags are unchanged.

    >>> iob1_to_bio(["I-PER", "I-PER", "B-PER", "O", "I-LOC"])
    ['B-PER', 'I-PER', 'B-PER', 'O', 'B-LOC']
    """
    converted = []
    previous = _OUTSIDE
    for tag in map(_as_str, tags):
        current = _split_tag(tag)
        if current[0] == "I" and _chunk_starts(previous, current):
            tag = "B-" + current[1]
        converted.append(tag)
        previous = current
    return converted


def _percent(numerator, denominator):
    return 100.0 * numerator / denominator if denominator else 0.0


def _f1(precision, recall):
    total = precision + recall
    return 2.0 * precision * recall / total if total else 0.0


def _check_paired(true_seqs, pred_seqs):
    if len(true_seqs) != len(pred_seqs):
        raise ValueError(
            f"Got {len(true_seqs)} true sequences but {len(pred_seqs)} predicted ones."
        )
    for index, (true, pred) in enumerate(zip(true_seqs, pred_seqs)):
        if len(true) != len(pred):
            raise ValueError(
                f"Sequence {index} has {len(true)} true tags but {len(pred)} predicted."
            )


def span_f1(true_tag_seqs, pred_tag_seqs, scheme="BIO"):
    """Chunk precision, recall and F1 in percent, as conlleval computes them.

    A predicted chunk is correct when a true chunk has the same type, start
    and end. Over all sentences:

        precision = 100 * correct / predicted
        recall    = 100 * correct / true
        F1        = 2 * precision * recall / (precision + recall)

    each 0 when its denominator is 0 (so all-"O" input scores 0, as in
    conlleval). Per type the same, with `support` = number of true chunks;
    types that only occur in predictions are listed too.

    Example:

    >>> scores = span_f1([["B-PER", "I-PER", "O", "B-LOC"]],
    ...                  [["B-PER", "I-PER", "O", "B-ORG"]])
    >>> scores["precision"], scores["recall"], scores["f1"]
    (50.0, 50.0, 50.0)

    Args:
        true_tag_seqs: list of gold tag sequences.
        pred_tag_seqs: list of predicted tag sequences, same lengths.
        scheme: `"BIO"` (alias `"IOB2"`) or `"IOB1"`, see `extract_spans`.

    Returns:
        dict with `precision`, `recall`, `f1`, `num_true`, `num_pred`,
        `num_correct` and `per_type = {type: {precision, recall, f1, support}}`.
    """
    _check_scheme(scheme)
    _check_paired(true_tag_seqs, pred_tag_seqs)
    counts = {name: collections.Counter() for name in ("true", "pred", "correct")}
    for true_tags, pred_tags in zip(true_tag_seqs, pred_tag_seqs):
        true_spans = set(extract_spans(true_tags, scheme))
        pred_spans = set(extract_spans(pred_tags, scheme))
        counts["true"].update(span[0] for span in true_spans)
        counts["pred"].update(span[0] for span in pred_spans)
        counts["correct"].update(span[0] for span in true_spans & pred_spans)

    def scores(num_true, num_pred, num_correct):
        precision = _percent(num_correct, num_pred)
        recall = _percent(num_correct, num_true)
        return {"precision": precision, "recall": recall, "f1": _f1(precision, recall)}

    per_type = {}
    for chunk_type in sorted(counts["true"].keys() | counts["pred"].keys()):
        type_counts = [counts[name][chunk_type] for name in ("true", "pred", "correct")]
        per_type[chunk_type] = {**scores(*type_counts), "support": type_counts[0]}
    totals = [sum(counts[name].values()) for name in ("true", "pred", "correct")]
    return {
        **scores(*totals),
        "num_true": totals[0],
        "num_pred": totals[1],
        "num_correct": totals[2],
        "per_type": per_type,
    }


# ---------------------------------------------------------------------------
# Exact-match accuracies.
# ---------------------------------------------------------------------------


def accuracy(y_true, y_pred):
    """Fraction of positions where `y_true == y_pred` (e.g. intent labels).

    >>> accuracy(["flight", "fare", "flight"], ["flight", "flight", "flight"])
    0.6666666666666666

    Returns 0.0 for empty input.
    """
    y_true, y_pred = list(y_true), list(y_pred)
    if len(y_true) != len(y_pred):
        raise ValueError(f"Got {len(y_true)} true labels but {len(y_pred)} predicted.")
    if not y_true:
        return 0.0
    matches = sum(_as_str(t) == _as_str(p) for t, p in zip(y_true, y_pred))
    return matches / len(y_true)


def token_accuracy(true_seqs, pred_seqs):
    """Fraction of tokens, over all sequences, whose tag is right.

    >>> token_accuracy([["O", "B-X"], ["O"]], [["O", "O"], ["O"]])
    0.6666666666666666
    """
    _check_paired(true_seqs, pred_seqs)
    flat_true = [tag for seq in true_seqs for tag in seq]
    flat_pred = [tag for seq in pred_seqs for tag in seq]
    return accuracy(flat_true, flat_pred)


def sentence_accuracy(true_tag_seqs, pred_tag_seqs, true_intents=None, pred_intents=None):
    """Fraction of sentences whose tags are all right (and intent, if given).

    This is the "sentence-level semantic frame accuracy" of joint slot
    filling and intent detection (ATIS, SNIPS).

    >>> sentence_accuracy([["O", "B-X"], ["O"]], [["O", "B-X"], ["O"]],
    ...                   ["a", "b"], ["a", "c"])
    0.5
    """
    _check_paired(true_tag_seqs, pred_tag_seqs)
    if (true_intents is None) != (pred_intents is None):
        raise ValueError("Pass both `true_intents` and `pred_intents`, or neither.")
    if true_intents is None:
        true_intents = pred_intents = [None] * len(true_tag_seqs)
    if not len(true_intents) == len(pred_intents) == len(true_tag_seqs):
        raise ValueError("Need one true and one predicted intent per sentence.")
    frames_true = [
        (tuple(map(_as_str, tags)), _as_str(intent))
        for tags, intent in zip(true_tag_seqs, true_intents)
    ]
    frames_pred = [
        (tuple(map(_as_str, tags)), _as_str(intent))
        for tags, intent in zip(pred_tag_seqs, pred_intents)
    ]
    matches = sum(t == p for t, p in zip(frames_true, frames_pred))
    return matches / len(frames_true) if frames_true else 0.0


# ---------------------------------------------------------------------------
# Perplexity.
# ---------------------------------------------------------------------------


def perplexity(mean_cross_entropy_nats):
    """`exp(H)` for a mean per-token cross-entropy `H` in nats.

    >>> round(perplexity(math.log(50.0)), 6)
    50.0

    Returns `inf` when the exponential overflows.
    """
    try:
        return math.exp(float(mean_cross_entropy_nats))
    except OverflowError:
        return float("inf")


@keras.saving.register_keras_serializable(package="zoo")
class Perplexity(keras.metrics.Metric):
    """Streaming perplexity from sparse labels and next-token scores.

        perplexity = exp( sum_i w_i * CE_i / sum_i w_i ),
        CE_i = -log softmax(y_pred_i)[y_true_i]

    over all tokens `i` seen since the last reset, where `w_i` is 0 for
    tokens whose label is `mask_token_id` (padding) and otherwise the sample
    weight (1 when none is given). Accumulating summed cross-entropy and
    token counts, rather than averaging per-batch perplexities, makes the
    result independent of how the data are batched. Before any token is
    seen the result is 0.

    Example:

    ```python
    model.compile(optimizer="adam", loss=..., metrics=[Perplexity()])
    ```

    Args:
        from_logits: whether `y_pred` holds logits (True) or probabilities.
        mask_token_id: label id to ignore (padding), or None to count all.
        name: metric name.
        dtype: dtype of the accumulators.
    """

    def __init__(self, from_logits=True, mask_token_id=0, name="perplexity", dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.from_logits = from_logits
        self.mask_token_id = mask_token_id
        self.total_cross_entropy = self.add_variable(
            shape=(), initializer="zeros", dtype=self.dtype, name="total_cross_entropy"
        )
        self.total_weight = self.add_variable(
            shape=(), initializer="zeros", dtype=self.dtype, name="total_weight"
        )

    def _token_weights(self, y_true, cross_entropy, sample_weight):
        weights = ops.ones_like(cross_entropy)
        if self.mask_token_id is not None:
            weights = weights * ops.cast(ops.not_equal(y_true, self.mask_token_id), "float32")
        if sample_weight is not None:
            sample_weight = ops.cast(sample_weight, "float32")
            # Per-sequence weights [batch] broadcast over the time axis.
            while len(sample_weight.shape) < len(cross_entropy.shape):
                sample_weight = ops.expand_dims(sample_weight, -1)
            weights = weights * sample_weight
        return weights

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(y_true, "int32")
        y_pred = ops.cast(y_pred, "float32")
        cross_entropy = ops.sparse_categorical_crossentropy(
            y_true, y_pred, from_logits=self.from_logits
        )
        weights = self._token_weights(y_true, cross_entropy, sample_weight)
        # `where`, not a product: a masked token may have infinite loss.
        weighted = ops.where(weights > 0, cross_entropy * weights, 0.0)
        self.total_cross_entropy.assign_add(ops.cast(ops.sum(weighted), self.dtype))
        self.total_weight.assign_add(ops.cast(ops.sum(weights), self.dtype))

    def result(self):
        mean_cross_entropy = ops.divide_no_nan(self.total_cross_entropy, self.total_weight)
        return ops.where(self.total_weight > 0, ops.exp(mean_cross_entropy), 0.0)

    def get_config(self):
        config = super().get_config()
        config.update({"from_logits": self.from_logits, "mask_token_id": self.mask_token_id})
        return config


# ---------------------------------------------------------------------------
# BLEU (sacrebleu).
# ---------------------------------------------------------------------------


def _reference_streams(hypotheses, references_list):
    """Per-hypothesis references -> sacrebleu's per-stream layout.

    sacrebleu wants `streams[k][i]` = k-th reference of hypothesis `i`;
    `None` fills in where a hypothesis has fewer references than others.
    """
    if not hypotheses:
        raise ValueError("BLEU needs at least one hypothesis.")
    if len(hypotheses) != len(references_list):
        raise ValueError(
            f"Got {len(hypotheses)} hypotheses but {len(references_list)} reference sets."
        )
    per_hypothesis = [
        [refs] if isinstance(refs, (str, bytes)) else [ref for ref in refs if ref is not None]
        for refs in references_list
    ]
    if any(not refs for refs in per_hypothesis):
        raise ValueError("Every hypothesis needs at least one reference.")
    num_streams = max(map(len, per_hypothesis), default=1)
    return [
        [_as_str(refs[k]) if k < len(refs) else None for refs in per_hypothesis]
        for k in range(num_streams)
    ]


def corpus_bleu(
    hypotheses,
    references_list,
    lowercase=False,
    tokenize="13a",
    smooth_method="exp",
    max_ngram_order=4,
):
    """Corpus BLEU (percent) with sacrebleu, one or more references each.

        BLEU = BP * exp( (1/N) * sum_{n=1..N} log p_n ),
        BP   = min(1, exp(1 - r / c))

    with clipped n-gram precisions `p_n` against all references of each
    hypothesis, `c` the hypothesis length and `r` the closest reference
    length, summed over the corpus. Defaults are sacreBLEU's standard
    signature (13a tokenization, exp smoothing, case-sensitive). `force=True`
    is set because zoo models emit tokenized text; BLEU is computed on it
    as-is, without sacrebleu's "looks tokenized" warning.

    Example:

    >>> scores = corpus_bleu(["a dog runs ."], [["a dog runs .", "the dog is running ."]])
    >>> round(scores["bleu"], 2)
    100.0

    Args:
        hypotheses: list of system outputs (strings).
        references_list: for each hypothesis a reference string or a list of
            them (captioning has 5); the numbers may differ per hypothesis.
        lowercase: compute case-insensitive BLEU.
        tokenize: sacrebleu tokenizer name.
        smooth_method: `"exp"`, `"floor"`, `"add-k"` or `"none"`.
        max_ngram_order: `N`.

    Returns:
        dict with `bleu`, `precisions` (list, percent), `bp`, `sys_len`,
        `ref_len`, `ratio` and sacrebleu's `signature` string.
    """
    streams = _reference_streams(hypotheses, references_list)
    metric = sacrebleu.metrics.BLEU(
        lowercase=lowercase,
        tokenize=tokenize,
        smooth_method=smooth_method,
        max_ngram_order=max_ngram_order,
        force=True,
    )
    score = metric.corpus_score([_as_str(h) for h in hypotheses], streams)
    return {
        "bleu": score.score,
        "precisions": list(score.precisions),
        "bp": score.bp,
        "sys_len": score.sys_len,
        "ref_len": score.ref_len,
        "ratio": score.ratio,
        "signature": str(metric.get_signature()),
    }


def bleu_1_to_4(hypotheses, references_list, lowercase=True, tokenize="13a"):
    """Cumulative BLEU-1..4 (percent) as reported in captioning papers.

        BLEU-n = BP * exp( (1/n) * sum_{k=1..n} log p_k )

    i.e. corpus BLEU with `max_ngram_order=n` and uniform weights, computed
    by sacrebleu with: `lowercase=True`, `tokenize="13a"`,
    `smooth_method="none"` (a corpus with no matching k-gram scores 0, as
    in the COCO caption evaluation), multiple references per hypothesis,
    brevity penalty from the closest reference length (ties: the shorter).
    The COCO toolkit tokenizes with the PTB tokenizer and drops punctuation,
    so scores can differ from it by a fraction of a point.

    Returns:
        dict `{"bleu_1": ..., "bleu_2": ..., "bleu_3": ..., "bleu_4": ...}`.
    """
    return {
        f"bleu_{n}": corpus_bleu(
            hypotheses,
            references_list,
            lowercase=lowercase,
            tokenize=tokenize,
            smooth_method="none",
            max_ngram_order=n,
        )["bleu"]
        for n in range(1, 5)
    }
