"""Sequence tagging: (Bi)LSTM/GRU taggers with a softmax or CRF head, end to end.

One architecture covers slot filling with joint intent detection (ATIS,
SNIPS), named-entity recognition (CoNLL-2003) and part-of-speech tagging (UD).
The model takes raw strings, splits them on whitespace (so tags align with the
user's own tokens), and returns tags, entity spans and, for slot models, the
intent. Vocabularies, tag and intent names live inside the saved model.

>>> import zoo
>>> tagger = zoo.load("slots-bilstm-crf-atis")
>>> result = tagger.tag(["show flights from boston to taipei"])[0]
>>> result["intent"], result["entities"][0]["type"], result["entities"][0]["text"]
('atis_flight', 'fromloc.city_name', 'boston')
"""

import collections
import dataclasses

import keras
import keras_tuner
import numpy as np
import tensorflow as tf

from zoo import registry
from zoo.layers import (
    CRF,
    CharacterEncoder,
    CharIds,
    LetterTrigramEmbedding,
    MaskedGlobalPooling,
    SplitWords,
    WordDropout,
    WordIds,
    build_character_vocabulary,
    build_vocabulary,
    recurrent_stack,
)
from zoo.layers.crf import crf_loss
from zoo.layers.text import ensure_one_step, split_words
from zoo.metrics import extract_spans, iob1_to_bio, sentence_accuracy, span_f1, token_accuracy

UNK_LABEL = "[UNK]"  # tags / intents unseen in training (ATIS test has both)
HEADS = ("crf", "softmax")
CHAR_ENCODERS = (None, "cnn", "lstm")
TAG_SCHEMES = ("BIO", None)  # BIO tags have entity spans; None: plain tags (POS)
_NEVER = -1e4  # the UNK label's potential at prediction time: it is never predicted


def label_vocabulary(labels):
    """`[UNK_LABEL]` followed by the distinct labels, most frequent first.

    >>> label_vocabulary(["O", "B-city", "O"])
    ['[UNK]', 'O', 'B-city']
    """
    counts = collections.Counter(labels)
    return [UNK_LABEL, *sorted(counts, key=lambda label: (-counts[label], label))]


def token_mask(texts):
    """Raw strings [B] -> bool [B, T]: the tagger's real tokens (step 0 always on)."""
    tokens = split_words(texts, lowercase=False)
    return ensure_one_step(tf.cast(tf.not_equal(tokens, ""), tf.int32)) > 0


@keras.saving.register_keras_serializable(package="zoo")
class RNNTagger(keras.Model):
    """Raw strings [B] -> per-token tag potentials [B, T, num_tags] (+ intent probabilities).

    Word embedding (+ character CNN or BiLSTM features, + letter-trigram
    hashing) -> stacked (bi)LSTM/GRU (`recurrent_stack`, cuDNN-eligible) ->
    dense potentials. With `head="crf"` the potentials feed a linear-chain
    CRF (trained by `crf_loss`, decoded by Viterbi); with `"softmax"` each
    token takes its arg-max. With `intent_names`, a second head pools the
    encoder over the real tokens and classifies the sentence (joint slot
    filling and intent detection).

    Outputs are a dict: `potentials` (float logits) and, with an intent head,
    `intent` (probabilities). `tag()` turns them into readable results.

    Words are looked up lowercased by default while the character features
    see the original case, which is what NER needs (capitals mark names);
    `word_dropout` replaces training words by OOV so rare and unseen words
    are handled through their characters.

    Example:

    ```python
    tagger = RNNTagger(vocabulary=["show", "flights", "boston"],
                       tag_names=["[UNK]", "O", "B-city"], intent_names=["[UNK]", "flight"],
                       characters=list("abcdefghijklmnopqrstuvwxyz"), units=32)
    tagger.tag(["show flights to Boston"])  # untrained: shapes only
    ```

    Args:
        vocabulary: words (without padding/OOV), e.g. from `build_vocabulary`.
        tag_names: tag per potential index; index 0 should be `UNK_LABEL`.
        intent_names: intent per class (index 0 `UNK_LABEL`), or None: no intent head.
        characters: character vocabulary for `char_encoder`.
        head: "crf" or "softmax".
        cell, units, num_layers, bidirectional: the recurrent encoder.
        embedding_dim: word embedding size.
        lowercase: lowercase words before the lookup (characters keep case).
        word_dropout: training-time probability of replacing a word by OOV.
        char_encoder: None (or "none"), "cnn" (Ma & Hovy 2016) or "lstm" (Lample et al. 2016).
        char_embedding_dim, char_filters, char_kernel_size, char_units,
            max_word_length: the character encoder.
        char_dropout: dropout on character embeddings (Ma & Hovy 2016 use 0.5).
        trigram_buckets: > 0 adds letter-trigram word hashing with this many buckets.
        trigram_dim: its vector size.
        dropout: on the word features, between recurrent layers and before the heads.
        intent_pooling: "max", "mean" or "last" over the encoder's real steps, or a
            list of them (their results are concatenated).
        intent_loss_weight: weight of the intent cross-entropy in the joint loss.
        tag_scheme: "BIO" (entity spans are extracted) or None (plain tags, POS).
    """

    def __init__(self, vocabulary, tag_names, intent_names=None, characters=None, head="crf",
                 cell="lstm", units=128, num_layers=1, bidirectional=True, embedding_dim=100,
                 lowercase=True, word_dropout=0.0, char_encoder="cnn", char_embedding_dim=30,
                 char_filters=30, char_kernel_size=3, char_units=25, char_dropout=0.0,
                 max_word_length=20, trigram_buckets=0, trigram_dim=64, dropout=0.5, intent_pooling="max",
                 intent_loss_weight=1.0, tag_scheme="BIO", **kwargs):
        char_encoder = None if char_encoder == "none" else char_encoder  # tuner/CLI spelling
        _check_choice("head", head, HEADS)
        _check_choice("char_encoder", char_encoder, CHAR_ENCODERS)
        _check_choice("tag_scheme", tag_scheme, TAG_SCHEMES)
        if char_encoder and characters is None:
            raise ValueError("char_encoder needs a `characters` vocabulary "
                             "(see zoo.layers.build_character_vocabulary).")
        texts = keras.Input(shape=(), dtype="string", name="text")
        features = _word_features(
            texts, vocabulary, embedding_dim, lowercase, word_dropout, characters, char_encoder,
            dict(embedding_dim=char_embedding_dim, filters=char_filters,
                 kernel_size=char_kernel_size, units=char_units, dropout=char_dropout),
            max_word_length, trigram_buckets, trigram_dim)
        features = keras.layers.Dropout(dropout, name="feature_dropout")(features)
        encoded = recurrent_stack(features, units, num_layers, cell, bidirectional,
                                  dropout if num_layers > 1 else 0.0, name="encoder")
        outputs = {"potentials": keras.layers.Dense(len(tag_names), name="potentials")(
            keras.layers.Dropout(dropout, name="encoder_dropout")(encoded))}
        if intent_names:
            outputs["intent"] = _intent_head(encoded, intent_names, intent_pooling, dropout)
        super().__init__(texts, outputs, **kwargs)
        # Outside the graph: training uses its transitions through `crf_loss`, and
        # Viterbi runs only when tagging (never inside fit's forward pass).
        self.crf = CRF(len(tag_names), name="crf") if head == "crf" else None
        self.vocabulary = list(vocabulary)
        self.tag_names = list(tag_names)
        self.intent_names = list(intent_names) if intent_names else None
        self.characters = list(characters) if characters is not None else None
        self.head = head
        self.cell = cell
        self.units = units
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.embedding_dim = embedding_dim
        self.lowercase = lowercase
        self.word_dropout = word_dropout
        self.char_encoder = char_encoder
        self.char_embedding_dim = char_embedding_dim
        self.char_filters = char_filters
        self.char_kernel_size = char_kernel_size
        self.char_units = char_units
        self.char_dropout = char_dropout
        self.max_word_length = max_word_length
        self.trigram_buckets = trigram_buckets
        self.trigram_dim = trigram_dim
        self.dropout_rate = dropout
        self.intent_pooling = intent_pooling if isinstance(intent_pooling, str) else list(
            intent_pooling)
        self.intent_loss_weight = intent_loss_weight
        self.tag_scheme = tag_scheme

    def get_config(self):
        return dict(
            name=self.name, vocabulary=self.vocabulary, tag_names=self.tag_names,
            intent_names=self.intent_names, characters=self.characters, head=self.head,
            cell=self.cell, units=self.units, num_layers=self.num_layers,
            bidirectional=self.bidirectional, embedding_dim=self.embedding_dim,
            lowercase=self.lowercase, word_dropout=self.word_dropout,
            char_encoder=self.char_encoder, char_embedding_dim=self.char_embedding_dim,
            char_filters=self.char_filters, char_kernel_size=self.char_kernel_size,
            char_units=self.char_units, char_dropout=self.char_dropout,
            max_word_length=self.max_word_length,
            trigram_buckets=self.trigram_buckets, trigram_dim=self.trigram_dim,
            dropout=self.dropout_rate, intent_pooling=self.intent_pooling,
            intent_loss_weight=self.intent_loss_weight, tag_scheme=self.tag_scheme)

    # ---- training ------------------------------------------------------------------

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Tag loss (CRF negative log-likelihood or token cross-entropy) + intent loss.

        `x` are the raw strings (the real-token mask comes from them, so label
        padding may hold any value); `y` is `{"tags": [B, T], "intent": [B]}`
        or just the tags.
        """
        gold = y if isinstance(y, dict) else {"tags": y}
        potentials = y_pred["potentials"]
        mask = token_mask(x)
        gold_tags = _fit_length(tf.cast(gold["tags"], tf.int32), tf.shape(potentials)[1])
        if self.crf is not None:
            loss = crf_loss(potentials, gold_tags, mask, self.crf, sample_weight)
        else:
            loss = _masked_token_cross_entropy(gold_tags, potentials, mask)
        if self.intent_names and "intent" in gold:
            intent_loss = keras.losses.sparse_categorical_crossentropy(gold["intent"],
                                                                       y_pred["intent"])
            loss = loss + self.intent_loss_weight * tf.reduce_mean(intent_loss)
        for extra in self.losses:  # regularizers, if any
            loss = loss + tf.cast(extra, loss.dtype)
        return loss

    # ---- inference -----------------------------------------------------------------

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)], reduce_retracing=True)
    def decode_strings(self, texts):
        """Strings [B] -> tokens [B, T], lengths [B], tag ids [B, T] (+ intent probabilities)."""
        tokens = split_words(texts, lowercase=False)
        lengths = tf.reduce_sum(tf.cast(tf.not_equal(tokens, ""), tf.int32), axis=1)
        outputs = self(texts, training=False)
        potentials = _suppress_unk(tf.cast(outputs["potentials"], tf.float32), self.tag_names,
                                   _NEVER)
        mask = token_mask(texts)
        if self.crf is not None:
            # One padded step more: Viterbi's scan cannot stack zero steps of unknown
            # batch size (a batch of one-word texts); a padded step changes no path.
            steps = tf.shape(potentials)[1]
            tag_ids, _ = self.crf.decode(tf.pad(potentials, [[0, 0], [0, 1], [0, 0]]),
                                         tf.pad(mask, [[0, 0], [0, 1]]))
            tag_ids = tag_ids[:, :steps]
        else:
            tag_ids = tf.where(mask, tf.argmax(potentials, axis=-1, output_type=tf.int32), 0)
        decoded = {"tokens": tokens, "lengths": lengths, "tag_ids": tag_ids}
        if self.intent_names:
            decoded["intent"] = _suppress_unk(outputs["intent"], self.intent_names, 0.0)
        return decoded

    def tag(self, texts, batch_size=128):
        """Tag each text; one dict per text.

        Keys: `tokens` (the whitespace tokens of the text, as written),
        `tags` (one per token), `entities` (for BIO taggers: dicts with
        `type`, `start`, `end` (exclusive token index) and `text`), and for
        joint slot models `intent` and `intent_probability`.

        >>> tagger.tag("fly to boston")[0]["tags"]        # doctest: +SKIP
        ['O', 'O', 'B-toloc.city_name']
        """
        texts = _as_text_list(texts)
        results = [None] * len(texts)
        # Similar lengths in a batch: little padding in the recurrent loop.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i].split()))
        for start in range(0, len(order), batch_size):
            indices = order[start : start + batch_size]
            decoded = self.decode_strings(tf.constant([texts[i] for i in indices]))
            decoded = {key: value.numpy() for key, value in decoded.items()}
            for row, index in enumerate(indices):
                results[index] = self._result(decoded, row)
        return results

    def _result(self, decoded, row):
        length = int(decoded["lengths"][row])
        tokens = [t.decode("utf-8") for t in decoded["tokens"][row, :length]]
        tags = [self.tag_names[i] for i in decoded["tag_ids"][row, :length]]
        result = {"tokens": tokens, "tags": tags, "entities": self._entities(tokens, tags)}
        if self.intent_names:
            probabilities = decoded["intent"][row]
            best = int(probabilities.argmax())
            result["intent"] = self.intent_names[best]
            result["intent_probability"] = float(probabilities[best])
        return result

    def _entities(self, tokens, tags):
        if self.tag_scheme is None:
            return []
        return [dict(type=kind, start=start, end=end, text=" ".join(tokens[start:end]))
                for kind, start, end in extract_spans(tags)]

    def serving_function(self):
        """For `zoo export`: strings -> tokens, tag strings ("" at padding), lengths (+ intent)."""
        tag_names = tf.constant(self.tag_names)

        def serve(texts):
            decoded = self.decode_strings(texts)
            tags = tf.gather(tag_names, decoded["tag_ids"])
            served = {"tokens": decoded["tokens"], "lengths": decoded["lengths"],
                      "tags": tf.where(tf.equal(decoded["tokens"], ""), "", tags)}
            if self.intent_names:
                best = tf.argmax(decoded["intent"], axis=-1)
                served["intent"] = tf.gather(tf.constant(self.intent_names), best)
            return served

        return serve, [tf.TensorSpec([None], tf.string, name="text")]


def _suppress_unk(scores, names, fill):
    """Set the UNK label's column of `scores` [..., len(names)] to `fill`.

    UNK stands for labels unseen in training (so the loss stays defined on
    validation data); it is never an answer.
    """
    if names[0] != UNK_LABEL:
        return scores
    is_unk = tf.one_hot(0, len(names), on_value=True, off_value=False)
    return tf.where(is_unk, tf.cast(fill, scores.dtype), scores)


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _word_features(texts, vocabulary, embedding_dim, lowercase, word_dropout, characters,
                   char_encoder, char_options, max_word_length, trigram_buckets, trigram_dim):
    """Per-token feature vectors [B, T, D], masked at padding (functional graph)."""
    words = WordIds(vocabulary, lowercase=lowercase, name="word_ids")
    ids = WordDropout(word_dropout, name="word_dropout")(words(texts))
    features = [keras.layers.Embedding(words.vocabulary_size, embedding_dim, mask_zero=True,
                                       name="word_embedding")(ids)]
    if char_encoder or trigram_buckets:
        tokens = SplitWords(lowercase=False, name="tokens")(texts)
    if char_encoder:
        char_ids = CharIds(characters, max_word_length, name="char_ids")(tokens)
        encoder = CharacterEncoder(len(characters) + 2, kind=char_encoder, name="char_encoder",
                                   **char_options)
        features.append(encoder(char_ids))
    if trigram_buckets:
        features.append(LetterTrigramEmbedding(trigram_buckets, trigram_dim,
                                               name="letter_trigrams")(tokens))
    if len(features) == 1:
        return features[0]
    return keras.layers.Concatenate(name="word_features")(features)


def _intent_head(encoded, intent_names, pooling, dropout):
    """Pool the encoder over real tokens (one or several modes, concatenated) -> softmax."""
    modes = [pooling] if isinstance(pooling, str) else list(pooling)
    pooled = [MaskedGlobalPooling(mode, name=f"intent_{mode}_pooling")(encoded) for mode in modes]
    x = pooled[0] if len(pooled) == 1 else keras.layers.Concatenate(name="intent_features")(pooled)
    x = keras.layers.Dropout(dropout, name="intent_dropout")(x)
    return keras.layers.Dense(len(intent_names), activation="softmax", name="intent")(x)


def _fit_length(tags, length):
    """Crop or pad (with 0) gold tags [B, L] to the model's T steps."""
    tags = tags[:, :length]
    return tf.pad(tags, [[0, 0], [0, length - tf.shape(tags)[1]]])


def _masked_token_cross_entropy(tags, logits, mask):
    losses = keras.losses.sparse_categorical_crossentropy(tags, logits, from_logits=True)
    weights = tf.cast(mask, losses.dtype)
    return tf.reduce_sum(losses * weights) / tf.maximum(tf.reduce_sum(weights), 1.0)


def _as_text_list(texts):
    if isinstance(texts, str):
        texts = [texts]
    if not all(isinstance(t, str) for t in texts):
        raise TypeError("Expected a string or a list of strings.")
    return list(texts)


# `zoo tune` / `TaggerHyperModel` search space (zoo.tuning shorthand: list = choice,
# (low, high[, step]) = range, (low, high, "log") = log-uniform).
SEARCH_SPACE = {
    "model.units": [64, 128, 256],
    "model.num_layers": (1, 2),
    "model.dropout": (0.1, 0.5, 0.1),
    "model.embedding_dim": [50, 100, 200],
    "model.char_encoder": ["none", "cnn", "lstm"],
    "learning_rate": (1e-4, 3e-3, "log"),
}

_DEMO_VOCAB = ["show", "flights", "from", "boston", "to", "denver"]
_DEMO_TAGS = [UNK_LABEL, "O", "B-fromloc", "B-toloc", "I-toloc"]


@registry.register_architecture(
    "rnn-tagger", "tagging",
    "Word (+char CNN/BiLSTM, +letter trigrams) -> stacked BiLSTM/BiGRU -> softmax or CRF "
    "(+ joint intent head)",
    demo_kwargs=dict(vocabulary=_DEMO_VOCAB, tag_names=_DEMO_TAGS,
                     intent_names=[UNK_LABEL, "flight"], characters=list("abcdefghijklmnoprstw"),
                     char_encoder="lstm", char_units=4, units=8, embedding_dim=8),
    search_space=SEARCH_SPACE)
def build_rnn_tagger(vocabulary=(), tag_names=None, **kwargs):
    if not tag_names:
        raise ValueError("Give tag_names (e.g. label_vocabulary(training tags)).")
    return RNNTagger(list(vocabulary), list(tag_names), **kwargs)


# --------------------------------------------------------------------------------------
# Data: sentences are dicts {"tokens": [...], "tags": [...] (BIO or plain), "intent": str|None}
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TaggingData:
    """Which fields of a `zoo.data` dataset a tagger learns, and how its tags are written."""

    tags: str  # one tag per token
    intent: str = None  # one label per sentence (joint slot filling), or None
    scheme: str = "BIO"  # "BIO", "IOB1" (converted to BIO on loading) or None (plain tags)
    validation: str = "validation"


DATASETS = {
    "atis": TaggingData("slots", intent="intent"),
    "snips": TaggingData("slots", intent="intent"),
    "conll2003": TaggingData("ner", scheme="IOB1", validation="dev"),
    "ud_english_lines": TaggingData("upos", scheme=None, validation="dev"),
}


def _sentence(tokens, tags, intent=None, scheme="BIO"):
    if len(tokens) != len(tags):
        raise ValueError(f"{len(tokens)} tokens but {len(tags)} tags: {' '.join(tokens)[:80]}")
    tags = iob1_to_bio(tags) if scheme == "IOB1" else list(tags)
    return {"tokens": list(tokens), "tags": tags, "intent": intent}


def load_split(dataset, split, tag_field=None):
    """Sentences of a zoo dataset split; IOB1 tags come back as BIO (same conlleval chunks).

    >>> load_split("atis", "test")[0]["tags"][:4]        # doctest: +SKIP
    ['O', 'O', 'O', 'O']
    """
    from zoo import data

    if dataset not in DATASETS:
        raise KeyError(f"No tagging layout for dataset {dataset!r}; known: {sorted(DATASETS)}")
    layout = DATASETS[dataset]
    return [_sentence(row["tokens"], row[tag_field or layout.tags],
                      row[layout.intent] if layout.intent else None, layout.scheme)
            for row in data.load_examples(dataset, split)]


def read_conll(path, token_column=0, tag_column=-1, scheme="BIO"):
    """Sentences from a CoNLL-style file: one token per line, blank lines between sentences.

    Columns are whitespace-separated; `-DOCSTART-` lines and `#` comments are
    skipped. `scheme="IOB1"` converts the tags to BIO; None keeps them as is.

    >>> sentences = read_conll("my_ner.conll")           # doctest: +SKIP
    >>> sentences[0]["tokens"], sentences[0]["tags"]     # doctest: +SKIP
    (['John', 'lives', 'in', 'Paris'], ['B-PER', 'O', 'O', 'B-LOC'])
    """
    sentences, rows = [], []

    def flush():
        if rows:
            sentences.append(_sentence([r[token_column] for r in rows],
                                       [r[tag_column] for r in rows], scheme=scheme))
            rows.clear()

    with open(path, encoding="utf-8") as lines:
        for line in lines:
            if not line.strip():
                flush()
            elif not line.startswith(("#", "-DOCSTART-")):
                rows.append(line.split())
    flush()
    return sentences


def vocabularies(sentences, lowercase=True, min_count=1):
    """Constructor vocabularies of an `RNNTagger` from training sentences."""
    token_lists = [s["tokens"] for s in sentences]
    intents = [s["intent"] for s in sentences if s.get("intent") is not None]
    return dict(
        vocabulary=build_vocabulary(token_lists, min_count=min_count, lowercase=lowercase),
        characters=build_character_vocabulary(token_lists),
        tag_names=label_vocabulary(tag for s in sentences for tag in s["tags"]),
        intent_names=label_vocabulary(intents) if intents else None,
    )


def tag_batches(sentences, model, batch_size, shuffle=False, seed=0):
    """`(texts, {"tags", "intent"})` batches bucketed by length; unknown labels -> UNK (0)."""
    from zoo.data.pipeline import text_batches

    tag_ids = {tag: i for i, tag in enumerate(model.tag_names)}
    labels = {"tags": [[tag_ids.get(t, 0) for t in s["tags"]] for s in sentences]}
    if model.intent_names and all(s.get("intent") is not None for s in sentences):
        intent_ids = {intent: i for i, intent in enumerate(model.intent_names)}
        labels["intent"] = [intent_ids.get(s["intent"], 0) for s in sentences]
    texts = [" ".join(s["tokens"]) for s in sentences]
    return text_batches(texts, labels, batch_size=batch_size, shuffle=shuffle, seed=seed)


# --------------------------------------------------------------------------------------
# Evaluation, training, the task handler
# --------------------------------------------------------------------------------------


def score(model, sentences, batch_size=256):
    """Metrics of `model` on sentences, in percent (conlleval rules for spans).

    Span taggers: `f1`, `precision`, `recall`; every tagger: `token_accuracy`
    and `sentence_accuracy` (all tags right, and the intent for joint
    models: the "semantic frame accuracy"); joint models: `intent_accuracy`.
    """
    predictions = model.tag([" ".join(s["tokens"]) for s in sentences], batch_size=batch_size)
    gold = [s["tags"] for s in sentences]
    predicted = [p["tags"] for p in predictions]
    metrics = {}
    if model.tag_scheme:
        spans = span_f1(gold, predicted)
        metrics.update(f1=spans["f1"], precision=spans["precision"], recall=spans["recall"])
    metrics["token_accuracy"] = 100 * token_accuracy(gold, predicted)
    if model.intent_names:
        true_intents = [s["intent"] for s in sentences]
        predicted_intents = [p["intent"] for p in predictions]
        metrics["intent_accuracy"] = 100 * float(np.mean(
            [t == p for t, p in zip(true_intents, predicted_intents)])) if sentences else 0.0
        metrics["sentence_accuracy"] = 100 * sentence_accuracy(
            gold, predicted, true_intents, predicted_intents)
    else:
        metrics["sentence_accuracy"] = 100 * sentence_accuracy(gold, predicted)
    metrics = {key: round(value, 2) for key, value in metrics.items()}
    metrics["examples"] = len(sentences)
    return metrics


def headline_score(metrics):
    """One number to early-stop on: span F1 (averaged with intent accuracy), else token accuracy."""
    main = metrics.get("f1", metrics["token_accuracy"])
    if "intent_accuracy" in metrics:
        return (main + metrics["intent_accuracy"]) / 2
    return main


class ValidationScores(keras.callbacks.Callback):
    """Adds the validation metrics of `score` (as `val_f1`, ...) and `val_score` to the logs.

    Place it before `EarlyStopping` (as `zoo.training.fit` does with its
    `callbacks`) so early stopping can monitor `val_score`.
    """

    def __init__(self, sentences):
        super().__init__()
        self.sentences = sentences

    def on_epoch_end(self, epoch, logs=None):
        metrics = score(self.model, self.sentences)
        metrics.pop("examples")
        if logs is not None:
            logs.update({f"val_{key}": value for key, value in metrics.items()})
            logs["val_score"] = headline_score(metrics)
        print(f"epoch {epoch + 1} validation: "
              + ", ".join(f"{key} {value:.2f}" for key, value in metrics.items()), flush=True)


def evaluate(model, dataset, split="test"):
    return score(model, load_split(dataset, split))


def _training_data(config, smoke):
    """(train, validation, test) sentences and a description for the card."""
    files = config.get("data_files")
    if files:  # a user's own CoNLL files: {"train": path, "validation": path, "test": path}
        columns = config.get("token_column", 0), config.get("tag_column", -1)
        splits = [read_conll(files[split], *columns, config.get("tag_scheme", "BIO"))
                  if split in files else None for split in ("train", "validation", "test")]
        description = f"CoNLL files {files}"
    else:
        dataset = config["dataset"]
        layout = DATASETS[dataset]
        field = config.get("tag_field")
        splits = [load_split(dataset, split, field) for split in ("train", layout.validation)]
        splits.append(None if smoke else load_split(dataset, "test", field))
        description = (f"{dataset}: train ({len(splits[0])} sentences), early stopping on "
                       f"'{layout.validation}' ({len(splits[1])}), metrics on the official test split")
    train_set, val_set, test_set = splits
    if smoke:  # a small real subset: enough to see learning, fast enough for tests
        train_set, val_set, test_set = train_set[:600], val_set[:200], None
    if test_set is None:
        description += " (metrics on the validation subset: no test split used)"
    return train_set, val_set, test_set or val_set, description


def build_for_data(config, train_set):
    """An `RNNTagger` for a recipe CONFIG with vocabularies from the training sentences."""
    model_kwargs = dict(config.get("model", {}))
    data_scheme = (config.get("tag_scheme", "BIO") if config.get("data_files")
                   else DATASETS[config["dataset"]].scheme)
    model_kwargs["tag_scheme"] = "BIO" if data_scheme else None  # IOB1 is loaded as BIO
    vocab = vocabularies(train_set, lowercase=model_kwargs.get("lowercase", True),
                         min_count=config.get("min_count", 1))
    if model_kwargs.get("char_encoder", "cnn") in (None, "none"):
        vocab["characters"] = None
    return registry.get_architecture(config.get("architecture", "rnn-tagger")).build(
        **vocab, **model_kwargs)


def learning_rate_schedule(config, steps_per_epoch):
    """`learning_rate`, times `learning_rate_decay` per epoch when the recipe sets one.

    A schedule, not a callback: it lives in the optimizer's step counter, so
    a resumed run continues with the right rate.
    """
    rate = config.get("learning_rate", 1e-3)
    decay = config.get("learning_rate_decay")
    if not decay:
        return rate
    return keras.optimizers.schedules.ExponentialDecay(rate, steps_per_epoch, decay)


def train(config, run_dir, smoke=False):
    """Train the tagger a recipe CONFIG describes; evaluate on the official test split."""
    from zoo.training import TrainResult, best_epoch_metrics, fit

    train_set, val_set, test_set, description = _training_data(config, smoke)
    model = build_for_data(config, train_set)
    batch_size = config.get("batch_size", 32)
    model.compile(optimizer=keras.optimizers.Adam(
        learning_rate_schedule(config, steps_per_epoch=-(-len(train_set) // batch_size)),
        clipnorm=config.get("clipnorm", 5.0)))
    seed = config.get("seed", 0)
    history = fit(
        model, tag_batches(train_set, model, batch_size, shuffle=True, seed=seed),
        tag_batches(val_set, model, 256), epochs=config.get("epochs", 30), run_dir=run_dir, monitor="val_score", mode="max",
        patience=config.get("patience", 5), callbacks=[ValidationScores(val_set)])
    validation = best_epoch_metrics(history, "val_score", "max")
    return TrainResult(
        model=model, metrics=score(model, test_set), data=description,
        extra={"vocabulary_size": len(model.vocabulary) + 2, "num_tags": len(model.tag_names),
               "epochs_run": len(history.history.get("val_score", [])),
               "validation": {k: round(v, 2) for k, v in validation.items()}},
        validation=validation)


# --------------------------------------------------------------------------------------
# Hyperparameter search
# --------------------------------------------------------------------------------------


class TaggerHyperModel(keras_tuner.HyperModel):
    """keras-tuner HyperModel of `RNNTagger` over `SEARCH_SPACE`: units, layers, dropout,
    embedding size, character features (none / CNN / BiLSTM) and learning rate.

    Vocabularies come from the training sentences; `fixed` holds constructor
    arguments that are not searched (head, cell, intent weight, ...). With
    `validation_sentences`, each trial's `fit` adds `ValidationScores`, so a
    tuner can maximize `val_f1` (or `val_score`, `val_token_accuracy`).

    ```python
    hypermodel = TaggerHyperModel(train_sentences, val_sentences, fixed={"head": "crf"})
    tuner = keras_tuner.RandomSearch(hypermodel, keras_tuner.Objective("val_f1", "max"),
                                     max_trials=10)
    batches = lambda s: tag_batches(s, hypermodel.reference_model, 32)
    tuner.search(batches(train_sentences), validation_data=batches(val_sentences), epochs=10)
    ```
    """

    def __init__(self, train_sentences, validation_sentences=None, fixed=None,
                 search_space=None, name="rnn_tagger", tunable=True):
        super().__init__(name=name, tunable=tunable)
        self.fixed = dict(fixed or {})
        self.search_space = dict(search_space or SEARCH_SPACE)
        self.vocabularies = vocabularies(train_sentences,
                                         lowercase=self.fixed.get("lowercase", True))
        self.validation_sentences = validation_sentences

    @property
    def reference_model(self):
        """A tiny model with the search's vocabularies, e.g. to build `tag_batches`."""
        return RNNTagger(**self.vocabularies, units=4, embedding_dim=4, char_encoder=None)

    def build(self, hp):
        from zoo.tuning import apply_hyperparameters

        config = apply_hyperparameters({"model": self.fixed, "learning_rate": 1e-3},
                                       self.search_space, hp)
        model = RNNTagger(**self.vocabularies, **config["model"])
        model.compile(optimizer=keras.optimizers.Adam(config["learning_rate"], clipnorm=5.0))
        return model

    def fit(self, hp, model, *args, callbacks=None, **kwargs):
        callbacks = list(callbacks or [])
        if self.validation_sentences:
            callbacks.insert(0, ValidationScores(self.validation_sentences))
        return model.fit(*args, callbacks=callbacks, **kwargs)


# --------------------------------------------------------------------------------------
# Fine-tuning a pretrained tagger on a user's CoNLL file
# --------------------------------------------------------------------------------------


def extend_vocabulary(model, sentences, min_count=2):
    """A copy of `model` that also knows the new words of `sentences` (seen >= min_count).

    Every weight is kept; the new words' embedding rows start small and random.
    """
    known = set(model.vocabulary)
    new_words = [w for w in build_vocabulary((s["tokens"] for s in sentences), min_count,
                                             lowercase=model.lowercase) if w not in known]
    if not new_words:
        return model
    bigger = RNNTagger.from_config({**model.get_config(), "vocabulary": model.vocabulary + new_words})
    for layer in model.layers:
        weights = layer.get_weights()
        if layer.name == "word_embedding":
            extra = np.random.default_rng(0).uniform(-0.05, 0.05, (len(new_words), weights[0].shape[1]))
            weights = [np.concatenate([weights[0], extra.astype(weights[0].dtype)])]
        bigger.get_layer(layer.name).set_weights(weights)
    if model.crf is not None:
        bigger.crf.set_weights(model.crf.get_weights())
    return bigger


def fine_tune(model, data_path, run_dir, epochs=3, learning_rate=1e-4, holdout=0.2,
              extend=False, freeze_encoder=False, seed=0):
    """Fine-tune a pretrained tagger on a CoNLL file (token first, tag last); (model, metrics).

    Tags must be among the model's tags (IOB1 files are read as BIO for span
    taggers). A `holdout` fraction of the sentences is scored before and after.
    `zoo train --from ner-bilstm-crf-conll03 --data my_ner.conll` runs this.
    """
    from zoo.training import fit, holdout_split

    sentences = read_conll(data_path, scheme="IOB1" if model.tag_scheme else None)
    unknown = sorted({t for s in sentences for t in s["tags"]} - set(model.tag_names))
    if unknown:
        raise ValueError(f"{data_path}: tags {unknown[:10]} are not tags of this model; "
                         f"it knows {model.tag_names[1:]}")
    train_set, held_out = holdout_split(sentences, holdout, seed)
    key = "f1" if model.tag_scheme else "token_accuracy"
    before = score(model, held_out)[key]
    if extend:
        model = extend_vocabulary(model, train_set)
    if freeze_encoder:  # only the tag potentials (and CRF transitions) learn
        for layer in model.layers:
            layer.trainable = layer.name == "potentials"
    model.compile(optimizer=keras.optimizers.Adam(learning_rate, clipnorm=5.0))
    fit(model, tag_batches(train_set, model, 32, shuffle=True, seed=seed),
        tag_batches(held_out, model, 256), epochs=epochs, run_dir=run_dir)
    return model, {f"holdout_{key}_before": before, f"holdout_{key}": score(model, held_out)[key],
                   "train_sentences": len(train_set), "holdout_sentences": len(held_out)}


# --------------------------------------------------------------------------------------
# Printing, examples, registration
# --------------------------------------------------------------------------------------


def render(model, inputs, **_):
    """Readable lines for `zoo predict`: intent, token/TAG pairs, then the entities."""
    lines = []
    for text, result in zip(inputs, model.tag(inputs)):
        lines.append(repr(text))
        if "intent" in result:
            lines.append(f"  intent: {result['intent']} ({result['intent_probability']:.3f})")
        pairs = " ".join(f"{token}/{tag}" for token, tag in zip(result["tokens"], result["tags"]))
        lines.append(f"  tags: {pairs or '(no tokens)'}")
        for entity in result["entities"]:
            lines.append(f"    {entity['type']:28} {entity['text']!r}  "
                         f"[tokens {entity['start']}:{entity['end']}]")
    return lines


EXAMPLES = {
    "atis": ["show flights from boston to taipei",
             "what is the cheapest fare from denver to pittsburgh on delta tomorrow morning",
             "which airlines fly into atlanta"],
    "snips": ["play the last album by radiohead on spotify", "will it rain in paris tomorrow",
              "book a table for four at a sushi place in brooklyn tonight"],
    "conll2003": ["U.N. official Ekeus heads for Baghdad .",
                  "Angela Merkel met Emmanuel Macron in Berlin on Monday .",
                  "Shares of Apple Inc. fell 3 percent on Wall Street ."],
    "ud_english_lines": ["Click the Save button to keep your changes .",
                         "She had never seen such a beautiful garden ."],
}


def examples(spec=None):
    return EXAMPLES.get(getattr(spec, "dataset", None), EXAMPLES["atis"])


registry.register_task(registry.TaskHandler(
    name="tagging", evaluate=lambda model, spec, split="test": evaluate(model, spec.dataset, split),
    render=render, examples=examples, train=train, fine_tune=fine_tune))

for _name, _dataset, _metric, _summary in (
    ("slots-bilstm-crf-atis", "atis", "f1",
     "BiLSTM-CRF + char CNN, joint slot filling (BIO) and intent detection, ATIS"),
    ("slots-bilstm-crf-snips", "snips", "f1",
     "BiLSTM-CRF + char CNN, joint slot filling (BIO) and intent detection, SNIPS"),
    ("ner-bilstm-crf-conll03", "conll2003", "f1",
     "BiLSTM-CRF + char CNN (Ma & Hovy 2016), NER on CoNLL-2003, no external embeddings"),
    ("pos-bilstm-ud-lines", "ud_english_lines", "token_accuracy",
     "BiLSTM + char CNN, universal POS tags (UPOS) on UD English-LinES"),
):
    registry.register_pretrained(registry.ModelSpec(
        name=_name, architecture="rnn-tagger", task="tagging", dataset=_dataset,
        recipe=f"recipes/{_name.replace('-', '_')}.py",
        metric=_metric, summary=_summary))
