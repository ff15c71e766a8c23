"""Machine translation: a GRU encoder-decoder with attention, raw text in, raw text out.

    source text -> ReversibleTokenizer -> Embedding -> BiGRU encoder  h_1..h_S
    target prefix -> Embedding -> GRU decoder (teacher forcing)      s_1..s_T
    c_t = sum_j a_tj h_j,   a_t = softmax_j score(s_t, h_j)           (attention)
    h~_t = W_c [s_t; c_t] + b_c,   p(y_t | y_<t, x) = softmax(W_o h~_t)

Attention is computed *after* the decoder RNN (Luong et al. 2015), so both
RNNs stay stock cuDNN-eligible `keras.layers.GRU`s; `attention` picks the
score: "multiplicative" (Luong "general", s^T W h) or "additive" (Bahdanau,
v^T tanh(W_q s + W_k h)). The decoder starts from tanh(W_b mean_j h_j).

Two choices differ from Luong's paper, both because Adam, unlike their SGD,
pushes every weight of a layer the same way early in training:
* h~_t is linear, not tanh: with tanh, 63% of its units sat beyond +-0.99
  after 300 steps of a copy task and the loss stayed at the unigram entropy.
* Embeddings start N(0, 1), not Keras' uniform(+-0.05): inputs that small let
  the decoder GRU settle on a constant, source-independent output.

Decoding is `zoo.decoding` (greedy, or beam search with the GNMT length
penalty) in TF ops, so the same graph runs in `translate`, in a
`tf.function` and inside an exported SavedModel. A predicted out-of-vocabulary
token is replaced by the source token it attends to most (Luong et al. 2015,
"Addressing the rare word problem"), which copies names and numbers.

>>> import zoo
>>> mt = zoo.load("translate-gru-attention-multi30k-en-de")
>>> mt.translate(["A dog runs on the beach."], beam_size=5)
['Ein Hund rennt am Strand.']
"""

import time
from pathlib import Path

import keras
import keras_tuner
import tensorflow as tf

from zoo import registry
from zoo.decoding import output_log_probs
from zoo.layers import (
    AdditiveAttention,
    MaskedGlobalPooling,
    MultiplicativeAttention,
    ReversibleTokenizer,
    build_vocabulary,
    recurrent_stack,
    rnn_layer,
)
from zoo.layers.fast_recurrent import gru_cell_step
from zoo.layers.reversible import END_ID, OOV_ID, PAD_ID, START_ID, join_tokens, reversible_split
from zoo.layers.text import ensure_one_step
from zoo.tracing import traced

ATTENTION_TYPES = ("multiplicative", "additive")
# N(0, 1), as a config so each Embedding gets its own initializer (see the docstring).
_EMBEDDING_INIT = {"class_name": "RandomNormal", "config": {"stddev": 1.0}}
# Ids the decoder must never produce: padding and the start token.
_NEVER_GENERATED = (PAD_ID, START_ID)
# Beam search's stopping rule for `translate` (see `zoo.decoding.beam_search`). On
# both shipped translators the heuristic rule gave the same 1000 test translations
# as the exact one, 1.22x-1.24x faster (`python -m benchmarks.beam_stopping`).
# `translate` keeps only the best hypothesis, so beam search settles only that one
# (`n_best=1`): against settling all five, beam 5 was 1.10x-1.14x faster and 997 of
# the 1000 test translations of each translator stayed the same (BLEU en-de 37.21 ->
# 37.20, de-en 39.49 -> 39.49; `python -m benchmarks.translate_revisions --base f459c97`).
BEAM_STOPPING = "heuristic"


def _attention_layer(kind, units):
    if kind == "multiplicative":
        return MultiplicativeAttention(use_scale=True, name="attention")
    if kind == "additive":
        return AdditiveAttention(units, name="attention")
    raise ValueError(f"attention must be one of {ATTENTION_TYPES}, got {kind!r}")


@keras.saving.register_keras_serializable(package="zoo")
class Seq2Seq(keras.Model):
    """Bidirectional-GRU encoder, GRU decoder, attention; trained by teacher forcing.

    Inputs `{"source": strings [B], "target": strings [B]}`; output: logits
    `[B, T + 1, target_vocabulary_size]` for the target tokens followed by the
    end token (the decoder reads the start token followed by the target).
    Train it on labels from `target_labels`; translate with `translate`.

    Args:
        source_vocabulary, target_vocabulary: token lists (`ReversibleTokenizer`).
        embedding_dim: size of both embeddings.
        units: GRU size (each encoder direction and the decoder).
        encoder_layers, decoder_layers: stacked GRU layers.
        attention: "multiplicative" (Luong) or "additive" (Bahdanau).
        dropout: on embeddings, between layers and before the output layer.
        max_source_length: source tokens kept (longer inputs are truncated).
        max_output_length: most generated tokens, end included (fixed, for export).
        length_penalty: GNMT alpha used by beam search.

    Example:

    ```python
    model = Seq2Seq(["▁a", "▁dog"], ["▁ein", "▁Hund"], embedding_dim=8, units=8)
    logits = model({"source": tf.constant(["a dog"]), "target": tf.constant(["ein Hund"])})
    # logits: [1, 3, 6]: "▁ein", "▁Hund", [END] over 4 special ids + 2 target words
    model.translate(["a dog"], beam_size=5)      # -> ["..."] (untrained)
    ```
    """

    def __init__(self, source_vocabulary, target_vocabulary, embedding_dim=256, units=256,
                 encoder_layers=1, decoder_layers=1, attention="multiplicative", dropout=0.3,
                 max_source_length=100, max_output_length=80, length_penalty=0.6, **kwargs):
        source_tokenizer = ReversibleTokenizer(source_vocabulary, max_source_length,
                                               name="source_tokenizer")
        target_tokenizer = ReversibleTokenizer(target_vocabulary, name="target_tokenizer")
        attention_layer = _attention_layer(attention, units)
        source = keras.Input(shape=(), dtype="string", name="source")
        target = keras.Input(shape=(), dtype="string", name="target")

        source_ids = source_tokenizer(source)
        x = keras.layers.Embedding(source_tokenizer.vocabulary_size, embedding_dim,
                                   embeddings_initializer=_EMBEDDING_INIT, mask_zero=True,
                                   name="source_embedding")(source_ids)
        encoded = recurrent_stack(x, units, encoder_layers, "gru", bidirectional=True,
                                  dropout=dropout, name="encoder")
        summary = MaskedGlobalPooling("mean", name="encoder_mean")(encoded)

        y = keras.layers.Embedding(target_tokenizer.vocabulary_size, embedding_dim,
                                   embeddings_initializer=_EMBEDDING_INIT, mask_zero=True,
                                   name="target_embedding")(
            target_tokenizer(target, add_start=True))
        for depth in range(decoder_layers):
            state = keras.layers.Dense(units, activation="tanh", name=f"bridge_{depth}")(summary)
            y = keras.layers.Dropout(dropout, name=f"decoder_dropout_{depth}")(y)
            y = rnn_layer("gru", units, name=f"decoder_gru_{depth}")(y, initial_state=state)
        source_mask = keras.ops.not_equal(source_ids, PAD_ID)
        context, _ = attention_layer(y, encoded, mask=source_mask)
        # An op, not a Concatenate layer: the context carries the source mask, which a
        # merge layer would try to combine with the target mask. The loss masks padding.
        attentional = keras.layers.Dense(units, name="attentional")(
            keras.ops.concatenate([y, context], axis=-1))
        attentional = keras.layers.Dropout(dropout, name="output_dropout")(attentional)
        logits = keras.layers.Dense(target_tokenizer.vocabulary_size, name="logits",
                                    dtype="float32")(attentional)
        super().__init__({"source": source, "target": target}, logits, **kwargs)

        self.source_tokenizer = source_tokenizer
        self.target_tokenizer = target_tokenizer
        self.source_vocabulary = list(source_vocabulary)
        self.target_vocabulary = list(target_vocabulary)
        self.embedding_dim = embedding_dim
        self.units = units
        self.encoder_layers = encoder_layers
        self.decoder_layers = decoder_layers
        self.attention = attention
        self.dropout_rate = dropout
        self.max_source_length = max_source_length
        self.max_output_length = max_output_length
        self.length_penalty = length_penalty

    def get_config(self):
        return dict(name=self.name, source_vocabulary=self.source_vocabulary,
                    target_vocabulary=self.target_vocabulary, embedding_dim=self.embedding_dim,
                    units=self.units, encoder_layers=self.encoder_layers,
                    decoder_layers=self.decoder_layers, attention=self.attention,
                    dropout=self.dropout_rate, max_source_length=self.max_source_length,
                    max_output_length=self.max_output_length, length_penalty=self.length_penalty)

    # -- Training targets and attention under teacher forcing ---------------------------

    def target_labels(self, targets):
        """Target strings [B] -> label ids [B, T + 1]: the tokens, then the end id."""
        return self.target_tokenizer(targets, add_end=True)

    def attention_weights(self, sources, targets):
        """Teacher-forced attention `[B, T + 1, S]`: rows sum to 1, 0 on source padding."""
        probe = keras.Model(self.inputs, self.get_layer("attention").output[1])
        return probe({"source": tf.constant(sources), "target": tf.constant(targets)},
                     training=False)

    # -- Inference: encoder once, decoder one step at a time --------------------------

    def _encode(self, source_ids):
        """Source ids [B, S] -> (encoder outputs [B, S, 2H], mask [B, S], decoder states)."""
        mask = tf.not_equal(source_ids, PAD_ID)
        x = self.get_layer("source_embedding")(source_ids)
        for depth in range(self.encoder_layers):
            x = self.get_layer(f"encoder_bigru_{depth}")(x, mask=mask, training=False)
        summary = self.get_layer("encoder_mean")(x, mask=mask)
        states = tuple(self.get_layer(f"bridge_{depth}")(summary)
                       for depth in range(self.decoder_layers))
        return x, mask, states

    def _decoder_inputs(self, source_ids):
        """(source, initial decoder states): what `_step_function`'s decoder starts from."""
        encoded, mask, states = self._encode(source_ids)
        keys = self.get_layer("attention").precompute_keys(encoded)
        return {"encoded": encoded, "mask": mask, "keys": keys}, states

    def _step_function(self, attention_weights=True):
        """A `zoo.decoding` step_fn: (ids [N], states, source) -> (log-probs, states, extras).

        `source` holds the encoder's `encoded` outputs, their `mask` and the
        attention `keys`, one row per sentence, whose `N // B` hypotheses are
        consecutive rows of `ids` (`decode_graph` passes them as the decoders'
        untiled `constants`, so they can drop finished sentences).

        The extras record, for every generated token, the attention weights over
        the source (`{"attention": [N, S]}`, for plots) or only the most attended
        source position (`{"alignment": [N]}`, all that unknown-word replacement
        needs): beam search reorders its record at every step, and the weights
        cost it about 9% of its time at 64 sentences per call.
        """
        embeddings = self.get_layer("target_embedding").embeddings
        cells = [self.get_layer(f"decoder_gru_{d}").cell for d in range(self.decoder_layers)]
        attention = self.get_layer("attention")
        attentional = self.get_layer("attentional")
        logits_layer = self.get_layer("logits")

        def step_fn(token_ids, states, source):
            with tf.name_scope("decoder_step"):  # its ops apart from the search's in profiles
                return step(token_ids, states, source)

        def step(token_ids, states, source):
            y = tf.gather(embeddings, token_ids)  # a lookup without a Keras mask attached
            new_states = []
            for cell, state in zip(cells, states):
                y = gru_cell_step(cell, y, state)
                new_states.append(y)
            context, weights = attention(y, source["encoded"], mask=source["mask"],
                                         keys=source["keys"])
            log_probs = output_log_probs(logits_layer, attentional(tf.concat([y, context], -1)),
                                         _NEVER_GENERATED)
            extras = ({"attention": weights} if attention_weights else
                      {"alignment": tf.argmax(weights, axis=-1, output_type=tf.int32)})
            return log_probs, tuple(new_states), extras

        return step_fn

    def decode_graph(self, texts, beam_size=5, max_length=None, attention=True,
                     stopping=BEAM_STOPPING):
        """Translate a string tensor [B] in TF ops (traceable, exportable).

        Returns a dict: `translations` [B] strings, `source_tokens` [B, S],
        `target_tokens` [B, L] (after OOV replacement, "" after the end),
        `scores` [B] and, with `attention`, `attention` [B, L, S] of the best
        hypothesis (without it decoding records only the alignment; faster).
        `stopping` is beam search's rule for when a sentence is done
        (`zoo.decoding.beam_search`).
        """
        from zoo.decoding import beam_search, greedy_search

        max_length = max_length or self.max_output_length
        source_tokens = self.source_tokenizer.tokenize(texts)
        source_ids = ensure_one_step(self.source_tokenizer.tokens_to_ids(source_tokens), OOV_ID)
        source, states = self._decoder_inputs(source_ids)
        start_ids = tf.fill([tf.shape(source_ids)[0]], START_ID)
        step_fn = self._step_function(attention)
        if beam_size == 1:
            result = greedy_search(step_fn, states, start_ids, END_ID, max_length, pad_id=PAD_ID,
                                   constants=source)
            best = lambda x: x
        else:
            result = beam_search(step_fn, states, start_ids, END_ID, beam_size, max_length,
                                 length_penalty=self.length_penalty, pad_id=PAD_ID,
                                 constants=source, stopping=stopping, tile_constants=False,
                                 n_best=1)
            best = lambda x: x[:, 0]
        tokens, extras = best(result["tokens"]), tf.nest.map_structure(best, result["extras"])
        alignment = (tf.argmax(extras["attention"], axis=-1, output_type=tf.int32)
                     if attention else extras["alignment"])
        words = self._replace_unknown(tokens, alignment, source_tokens)
        outputs = {"translations": join_tokens(words), "source_tokens": source_tokens,
                   "target_tokens": words, "scores": best(result["scores"])}
        if attention:
            outputs["attention"] = extras["attention"]
        return outputs

    def _replace_unknown(self, tokens, alignment, source_tokens):
        """Target ids [B, L] -> tokens, an OOV id becoming its aligned source token.

        `alignment` [B, L]: the most attended source position of each target token.
        """
        words = self.target_tokenizer.ids_to_tokens(tokens)
        aligned = tf.gather(source_tokens, alignment, batch_dims=1)
        return tf.where(tf.equal(tokens, OOV_ID), aligned, words)

    def _translate_function(self, beam_size, max_length, attention, stopping):
        def build():
            return tf.function(
                lambda texts: self.decode_graph(texts, beam_size, max_length, attention, stopping),
                input_signature=[tf.TensorSpec([None], tf.string)],
                # No Python control flow to convert; and autograph would re-read the
                # source file, which breaks a long run whose source was edited meanwhile.
                autograph=False)

        return traced(self, ("translate", beam_size, max_length, attention, stopping), build)

    def translate(self, texts, beam_size=5, batch_size=64, max_length=None, details=False,
                  stopping=BEAM_STOPPING):
        """Translate raw strings; returns strings (a str for a str).

        `beam_size=1` is greedy search. With `details=True`, returns the dicts
        of `decode_graph` per text (tokens and attention for plotting).
        `stopping="exact"` runs beam search until no longer hypothesis could
        still win (see `BEAM_STOPPING` for the default).

        Texts are batched by length (results come back in input order): a batch
        decodes until its longest output ends, so sentences of similar length
        waste fewer steps and less source padding.
        """
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        function = self._translate_function(int(beam_size), max_length or self.max_output_length,
                                            bool(details), stopping)
        outputs = [None] * len(texts)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i].split()))
        for start in range(0, len(texts), batch_size):
            batch = order[start : start + batch_size]
            result = function(tf.constant([texts[i] for i in batch], tf.string))
            rows = (_unbatch(result) if details else
                    [t.decode("utf-8") for t in result["translations"].numpy()])
            for i, row in zip(batch, rows):
                outputs[i] = row
        return outputs[0] if single else outputs

    def serving_function(self, beam_size=5):
        """(function, input_signature) for `zoo export`: strings [B] -> translations [B].

        Beam search with a fixed `max_output_length` runs inside the graph.
        """
        def serve(texts):
            result = self.decode_graph(texts, beam_size, self.max_output_length, attention=False)
            return {"translations": result["translations"]}

        return serve, [tf.TensorSpec([None], tf.string, name="texts")]


def _unbatch(result):
    """One dict per sentence, padding trimmed: translation, tokens, attention."""
    rows = []
    for i, translation in enumerate(result["translations"].numpy()):
        source = [t.decode() for t in result["source_tokens"][i].numpy() if t]
        target = [t.decode() for t in result["target_tokens"][i].numpy()]
        length = next((n for n in range(len(target), 0, -1) if target[n - 1]), 0)
        rows.append(dict(translation=translation.decode("utf-8"), source_tokens=source,
                         target_tokens=target[:length], score=float(result["scores"][i]),
                         attention=result["attention"][i].numpy()[:length, : len(source)]))
    return rows


# --------------------------------------------------------------------------------------
# Loss, BLEU-based model selection and the hypermodel
# --------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="zoo")
class SequenceCrossEntropy(keras.losses.Loss):
    """Token-mean cross-entropy with label smoothing, padding (label 0) ignored.

        loss = sum_t m_t [ (1 - eps) (-log p(y_t)) + eps * mean_v (-log p(v)) ] / sum_t m_t

    with m_t = [y_t != 0] over all tokens of the batch (Szegedy et al. 2016
    smoothing towards the uniform distribution).
    """

    def __init__(self, label_smoothing=0.0, name="sequence_cross_entropy", reduction="sum",
                 **kwargs):
        # "sum" of per-token losses already divided by the batch's token count = token mean.
        super().__init__(name=name, reduction=reduction, **kwargs)
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        y_true = tf.cast(y_true, tf.int32)
        log_probs = tf.nn.log_softmax(tf.cast(y_pred, tf.float32))
        nll = -tf.gather(log_probs, y_true, batch_dims=2)
        loss = (1.0 - self.label_smoothing) * nll - self.label_smoothing * tf.reduce_mean(
            log_probs, axis=-1)
        real = tf.cast(tf.not_equal(y_true, PAD_ID), tf.float32)
        return loss * real / tf.maximum(tf.reduce_sum(real), 1.0)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


class ValidationBleu(keras.callbacks.Callback):
    """Adds `val_bleu` (greedy, cased, sacrebleu) to the epoch logs for model selection."""

    def __init__(self, sources, references, beam_size=1):
        super().__init__()
        self.sources, self.references, self.beam_size = sources, references, beam_size

    def on_epoch_end(self, epoch, logs=None):
        from zoo.metrics import corpus_bleu

        hypotheses = self.model.translate(self.sources, beam_size=self.beam_size, batch_size=256)
        bleu = corpus_bleu(hypotheses, self.references)["bleu"]
        if logs is not None:
            logs["val_bleu"] = bleu
        print(f"epoch {epoch + 1}: val_bleu {bleu:.2f}  e.g. {hypotheses[0]!r}", flush=True)


def compile_model(model, learning_rate=1e-3, label_smoothing=0.1, clipnorm=1.0):
    model.compile(optimizer=keras.optimizers.Adam(learning_rate, clipnorm=clipnorm),
                  loss=SequenceCrossEntropy(label_smoothing))
    return model


class Seq2SeqHyperModel(keras_tuner.HyperModel):
    """keras-tuner search over units, layers, attention, dropout and learning rate.

    ```python
    hypermodel = Seq2SeqHyperModel(source_vocabulary, target_vocabulary)
    tuner = keras_tuner.RandomSearch(hypermodel, "val_loss", max_trials=4)
    tuner.search(train_batches, validation_data=val_batches, epochs=3)
    ```
    Batches come from `translation_batches(model, ...)` of any model with the
    same vocabularies (labels depend only on the target vocabulary).
    """

    def __init__(self, source_vocabulary, target_vocabulary, **fixed):
        super().__init__(name="seq2seq")
        self.source_vocabulary, self.target_vocabulary = source_vocabulary, target_vocabulary
        self.fixed = fixed

    def build(self, hp):
        model = Seq2Seq(
            self.source_vocabulary, self.target_vocabulary,
            units=hp.Choice("units", [128, 256, 512]),
            encoder_layers=hp.Int("encoder_layers", 1, 2),
            decoder_layers=hp.Int("decoder_layers", 1, 2),
            attention=hp.Choice("attention", list(ATTENTION_TYPES)),
            dropout=hp.Float("dropout", 0.1, 0.5, step=0.1), **self.fixed)
        return compile_model(model, hp.Float("learning_rate", 3e-4, 3e-3, sampling="log"))


# --------------------------------------------------------------------------------------
# Architecture and data
# --------------------------------------------------------------------------------------

_DEMO_SOURCE = ["▁a", "▁dog", "▁runs", "."]
_DEMO_TARGET = ["▁ein", "▁Hund", "▁läuft", "."]


@registry.register_architecture(
    "seq2seq-gru-attention", "translation",
    "BiGRU encoder + GRU decoder with Luong/Bahdanau attention, beam search",
    demo_kwargs=dict(source_vocabulary=_DEMO_SOURCE, target_vocabulary=_DEMO_TARGET,
                     embedding_dim=8, units=8, max_output_length=8),
    search_space={"model.units": [128, 256, 512], "model.encoder_layers": (1, 2),
                  "model.attention": list(ATTENTION_TYPES), "model.dropout": (0.1, 0.5, 0.1),
                  "learning_rate": (3e-4, 3e-3, "log")})
def build_seq2seq(source_vocabulary=(), target_vocabulary=(), **kwargs):
    return Seq2Seq(list(source_vocabulary), list(target_vocabulary), **kwargs)


def load_pairs(dataset, split, source_language, target_language):
    """(sources, targets) raw strings of a parallel corpus split."""
    from zoo import data

    rows = data.load_examples(dataset, split)
    return [r[source_language] for r in rows], [r[target_language] for r in rows]


def token_vocabulary(texts, min_count=2, max_size=None):
    """Cased reversible tokens seen at least `min_count` times, most frequent first."""
    tokens = reversible_split(tf.constant(list(texts) or [""], tf.string)).to_list()
    return build_vocabulary(([t.decode("utf-8") for t in row] for row in tokens),
                            min_count=min_count, max_size=max_size, lowercase=False)


def translation_batches(model, sources, targets, batch_size, shuffle, seed=0):
    """`({"source", "target"}, labels)` batches, bucketed by source length."""
    from zoo.data.pipeline import text_batches

    batches = text_batches(sources, targets, batch_size=batch_size, shuffle=shuffle, seed=seed)
    labels = model.target_tokenizer
    return batches.map(lambda s, t: ({"source": s, "target": t},
                                     labels.call(t, add_end=True)),
                       num_parallel_calls=tf.data.AUTOTUNE)


def bleu_scores(model, sources, references, beam_size):
    """Cased and lowercased sacreBLEU of `translate(sources)`, with decoding speed."""
    from zoo.metrics import corpus_bleu

    started = time.perf_counter()
    hypotheses = model.translate(sources, beam_size=beam_size, batch_size=200)
    seconds = time.perf_counter() - started
    return dict(bleu=round(corpus_bleu(hypotheses, references)["bleu"], 2),
                bleu_lowercase=round(corpus_bleu(hypotheses, references, lowercase=True)["bleu"], 2),
                sentences_per_second=round(len(sources) / seconds, 1)), hypotheses


def evaluate(model, dataset, languages, split="test", beam_sizes=(1, 5)):
    """BLEU (cased, lowercased) and speed for greedy and beam search on a split.

    Headline keys are beam 5's (`bleu`, `bleu_lowercase`); greedy's carry `greedy_`.
    """
    sources, references = load_pairs(dataset, split, *languages)
    metrics = {"examples": len(sources)}
    for beam_size in beam_sizes:
        scores, _ = bleu_scores(model, sources, references, beam_size)
        prefix = "greedy_" if beam_size == 1 else ("" if beam_size == 5 else f"beam{beam_size}_")
        metrics.update({prefix + k: v for k, v in scores.items()})
    return metrics


def _split_name(split):
    return {"test": "test", "validation": "validation", "val": "validation"}.get(split, split)


def train(config, run_dir, smoke=False):
    """Train the model a recipe CONFIG describes; evaluate on the official test split."""
    from zoo.training import TrainResult, best_epoch_metrics, fit, reduce_lr_callbacks

    dataset, languages = config["dataset"], tuple(config["languages"])
    sources, targets = load_pairs(dataset, "train", *languages)
    val_sources, val_targets = load_pairs(dataset, "validation", *languages)
    if smoke:  # a small real subset: enough to see learning, fast enough for tests
        sources, targets = sources[:600], targets[:600]
        val_sources, val_targets = sources[:64], targets[:64]
    min_count = config.get("min_count", 2)
    model = registry.get_architecture(config["architecture"]).build(
        source_vocabulary=token_vocabulary(sources, min_count, config.get("max_vocabulary")),
        target_vocabulary=token_vocabulary(targets, min_count, config.get("max_vocabulary")),
        **config.get("model", {}))
    compile_model(model, config.get("learning_rate", 1e-3), config.get("label_smoothing", 0.1),
                  config.get("clipnorm", 1.0))
    bleu_subset = config.get("val_bleu_examples", len(val_sources))
    history = fit(
        model,
        translation_batches(model, sources, targets, config.get("batch_size", 64), True,
                            config.get("seed", 0)),
        translation_batches(model, val_sources, val_targets, 256, False),
        epochs=config.get("epochs", 10), run_dir=run_dir, monitor="val_bleu", mode="max",
        patience=config.get("patience", 3),
        callbacks=[ValidationBleu(val_sources[:bleu_subset], val_targets[:bleu_subset]),
                   *reduce_lr_callbacks(config, "val_bleu"),
                   *([TimeBudget(config["max_train_minutes"])] if config.get("max_train_minutes")
                     else [])])

    if smoke:
        scores, _ = bleu_scores(model, val_sources, val_targets, 1)
        metrics = {"greedy_" + k: v for k, v in scores.items()}
    else:
        metrics = evaluate(model, dataset, languages, "test")
    losses = history.history.get("loss", [])
    return TrainResult(
        model=_inference_copy(model), metrics=metrics,
        data=f"{dataset} {'->'.join(languages)}: train ({len(sources)} pairs), model selected "
             f"on validation BLEU ({bleu_subset} pairs, greedy), metrics on test_2016_flickr "
             f"(sacreBLEU 13a, detokenized; cased and lowercased)",
        extra={"source_vocabulary_size": model.source_tokenizer.vocabulary_size,
               "target_vocabulary_size": model.target_tokenizer.vocabulary_size,
               "parameters": model.count_params(), "epochs_run": len(losses),
               "train_loss_history": [round(float(v), 4) for v in losses]},
        validation=best_epoch_metrics(history, "val_bleu", "max"))


def _inference_copy(model):
    """The trained weights in a fresh, uncompiled model: the saved file then holds no
    Adam slots (they would triple its size)."""
    copy = Seq2Seq.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    return copy


class TimeBudget(keras.callbacks.Callback):
    """Stop before an epoch that would end after `minutes` (CPU runs on a deadline).

    The epoch estimate is the longest epoch so far; early stopping still
    restores the best epoch's weights when training ends.
    """

    def __init__(self, minutes):
        super().__init__()
        self.seconds = 60.0 * minutes
        self.longest_epoch = 0.0

    def on_train_begin(self, logs=None):
        self.started = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        now = time.perf_counter()
        self.longest_epoch = max(self.longest_epoch, now - self.epoch_started)
        if now - self.started + self.longest_epoch > self.seconds:
            print(f"time budget of {self.seconds / 60:.0f} min reached after epoch {epoch + 1}")
            self.model.stop_training = True


# --------------------------------------------------------------------------------------
# Fine-tuning a pretrained translator on a user's parallel text
# --------------------------------------------------------------------------------------

FINE_TUNE_BEAM_SIZE = 5  # the beam of the headline BLEU


def _read_lines(path):
    import gzip

    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return f.read().splitlines()


def read_parallel_data(data):
    """(sources, targets) from `SRC_FILE,TGT_FILE` or from one TSV file of `source<TAB>target`.

    The two files are line-aligned, one sentence per line (line i of one translates
    line i of the other), plain or gzipped; e.g. `train.en,train.de`. Blank pairs are
    skipped. Missing files, different line counts, a line blank on one side only and
    a TSV line without a tab are errors that name the file and line.
    """
    paths = [Path(data)] if Path(data).is_file() else [Path(p) for p in str(data).split(",")]
    if len(paths) > 2:
        raise ValueError(f"Translation data: give SRC_FILE,TGT_FILE or one TSV file, got {data!r}")
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"Translation data file not found: {path}")
    if len(paths) == 2:
        sources, targets = (_read_lines(path) for path in paths)
        if len(sources) != len(targets):
            raise ValueError(f"{paths[0]} has {len(sources)} lines but {paths[1]} has "
                             f"{len(targets)}: line i of one must translate line i of the other")
        where = f"{paths[0]} / {paths[1]}"
    else:
        sources, targets, where = [], [], str(paths[0])
        for number, line in enumerate(_read_lines(paths[0]), start=1):
            if line.strip() and "\t" not in line:
                raise ValueError(f"{paths[0]}:{number}: expected source<TAB>target")
            source, _, target = line.partition("\t")
            sources.append(source)
            targets.append(target)
    return _paired(sources, targets, where)


def _paired(sources, targets, where):
    pairs = []
    for number, (source, target) in enumerate(zip(sources, targets), start=1):
        if bool(source.strip()) != bool(target.strip()):
            raise ValueError(f"{where}, line {number}: one side is blank, the other is not "
                             "(are the files aligned?)")
        if source.strip():
            pairs.append((source.strip(), target.strip()))
    if len(pairs) < 2:
        raise ValueError(f"{where}: need at least 2 sentence pairs, found {len(pairs)}")
    return [s for s, _ in pairs], [t for _, t in pairs]


def extend_vocabulary(model, sources, targets, min_count=2):
    """A copy of `model` that also knows the new tokens of `sources` and `targets`.

    Tokens seen at least `min_count` times are appended to each vocabulary; the
    embeddings and the output layer keep their trained rows (see
    `zoo.training.copy_weights_growing_vocabulary`).
    """
    from zoo.training import copy_weights_growing_vocabulary

    def new_tokens(texts, known):
        known = set(known)
        return [t for t in token_vocabulary(texts, min_count) if t not in known]

    new_source = new_tokens(sources, model.source_vocabulary)
    new_target = new_tokens(targets, model.target_vocabulary)
    if not new_source and not new_target:
        return model
    bigger = Seq2Seq.from_config({**model.get_config(),
                                  "source_vocabulary": model.source_vocabulary + new_source,
                                  "target_vocabulary": model.target_vocabulary + new_target})
    copy_weights_growing_vocabulary(model, bigger,
                                    {"source_embedding", "target_embedding", "logits"})
    return bigger


def fine_tune(model, data_path, run_dir, epochs=3, learning_rate=1e-4, holdout=0.2,
              extend=False, freeze_encoder=False, seed=0):
    """Fine-tune a pretrained translator on parallel text; returns (model, metrics).

    `data_path` is `SRC_FILE,TGT_FILE` or a TSV file (see `read_parallel_data`).
    A `holdout` fraction of the pairs is translated (beam 5) and scored with cased
    BLEU before and after. `extend` adds tokens seen twice or more in the training
    part; `freeze_encoder` keeps the source embedding and encoder fixed, so only
    the decoder side adapts.
    `zoo train --from translate-gru-attention-multi30k-en-de --data mine.en,mine.de`
    runs this.
    """
    from zoo.training import fit, holdout_split

    pairs = list(zip(*read_parallel_data(data_path)))
    train_pairs, held_pairs = holdout_split(pairs, holdout, seed)
    sources, targets = (list(side) for side in zip(*train_pairs))
    held_sources, held_targets = (list(side) for side in zip(*held_pairs))
    before, _ = bleu_scores(model, held_sources, held_targets, FINE_TUNE_BEAM_SIZE)
    if extend:
        model = extend_vocabulary(model, sources, targets)
    if freeze_encoder:
        for layer in model.layers:
            layer.trainable = not (layer.name == "source_embedding"
                                   or layer.name.startswith("encoder_"))
    compile_model(model, learning_rate)
    fit(model, translation_batches(model, sources, targets, 32, True, seed),
        translation_batches(model, held_sources, held_targets, 256, False), epochs=epochs,
        run_dir=run_dir)
    after, _ = bleu_scores(model, held_sources, held_targets, FINE_TUNE_BEAM_SIZE)
    return model, {"holdout_bleu_before": before["bleu"], "holdout_bleu": after["bleu"],
                   "train_pairs": len(sources), "holdout_pairs": len(held_sources)}


# --------------------------------------------------------------------------------------
# Rendering, examples and registration
# --------------------------------------------------------------------------------------


def plot_attention(row, path):
    """Save the attention heatmap of one `translate(..., details=True)` row as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    weights = row["attention"]
    figure, axes = plt.subplots(figsize=(1 + 0.45 * max(len(row["source_tokens"]), 4),
                                         1 + 0.4 * max(len(row["target_tokens"]), 4)))
    axes.imshow(weights, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    axes.set_xticks(range(len(row["source_tokens"])), row["source_tokens"], rotation=60,
                    ha="right")
    target_labels = [t or "[END]" for t in row["target_tokens"]]
    axes.set_yticks(range(len(target_labels)), target_labels)
    axes.set_xlabel("source")
    axes.set_ylabel("translation")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def render(model, inputs, beam_size=5, plot=None, **_):
    rows = model.translate(list(inputs), beam_size=beam_size, details=True)
    lines = [f"{text!r}\n  -> {row['translation']}" for text, row in zip(inputs, rows)]
    if plot and rows:
        plot_attention(rows[0], plot)
        lines.append(f"attention of the first input saved to {plot}")
    return lines


EXAMPLES = {
    ("en", "de"): ["A man rides a bike.", "Two dogs are playing in the snow.",
                   "A little girl in a pink dress is climbing stairs."],
    ("de", "en"): ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee.",
                   "Ein kleines Mädchen in einem rosa Kleid klettert eine Treppe hinauf."],
}
_LANGUAGES = {}


def languages(spec=None):
    """(source, target) language codes of a registered translator; ("en", "de") otherwise."""
    return _LANGUAGES.get(getattr(spec, "name", None), ("en", "de"))


def examples(spec=None):
    return EXAMPLES[languages(spec)]


def _evaluate_spec(model, spec, split="test"):
    return evaluate(model, spec.dataset, _LANGUAGES[spec.name], _split_name(split))


registry.register_task(registry.TaskHandler(
    name="translation", evaluate=_evaluate_spec, render=render, examples=examples, train=train,
    fine_tune=fine_tune))

for _source, _target in (("en", "de"), ("de", "en")):
    _name = f"translate-gru-attention-multi30k-{_source}-{_target}"
    _LANGUAGES[_name] = (_source, _target)
    registry.register_pretrained(registry.ModelSpec(
        name=_name, architecture="seq2seq-gru-attention", task="translation", dataset="multi30k",
        recipe=f"recipes/{_name.replace('-', '_')}.py", metric="bleu",
        summary=f"BiGRU + attention, Multi30k {_source}->{_target} (BLEU, beam 5, cased)"))
