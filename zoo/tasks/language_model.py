"""Word-level language modelling: an LSTM LM trained by truncated BPTT, end to end.

The model reads raw strings: the vocabulary lives inside it, unknown words
become PTB's `<unk>`, and every sentence ends with `<eos>`.

>>> import zoo
>>> lm = zoo.load("lm-lstm-ptb")
>>> lm.score(["the company said it expects higher earnings"])   # per-sentence perplexity
array([...], dtype=float32)
>>> lm.generate("the stock market", max_length=20, top_k=10, seed=1)
'the stock market ...'

Training follows Zaremba, Sutskever & Vinyals (2014): the training corpus is
one token stream, cut into `B` parallel streams; each step sees the next
`window` tokens of every stream, and the LSTM state is carried from one window
to the next (`stateful=True`, reset at the start of every epoch), so gradients
are truncated at window boundaries while the context is not.
"""

import keras
import numpy as np
import tensorflow as tf

from zoo import registry
from zoo.layers import WordIds, rnn_layer
from zoo.metrics import Perplexity, perplexity
from zoo.tracing import traced_call

EOS = "<eos>"
UNK = "<unk>"
PAD_ID, UNK_ID = 0, 1  # WordIds reserves 0 for padding and 1 for out-of-vocabulary words
# A PTB token that is a number: the corpus writes every number as "N".
_NUMBER = r"[0-9][0-9.,:/\-]*|n"


def normalize_text(texts):
    """Raw strings [B] -> ragged PTB-style tokens [B, None] (TF ops only).

    Mikolov's PTB is lowercased, has numbers written `N`, clitics split off
    ("did n't", "company 's") and no commas, quotes, brackets or sentence-final
    periods (abbreviations such as "mr." keep theirs). User text gets the same:

    "The company's sales didn't rise 5.5%, Mr. Lee said."
    -> the company 's sales did n't rise N % mr. lee said

    A sentence is one line: a period inside a text is kept (PTB has none).
    """
    text = tf.strings.lower(tf.convert_to_tensor(texts, tf.string), encoding="utf-8")
    text = tf.strings.regex_replace(text, r"[,;:!?\"()\[\]{}]|\.\s*$", " ")
    text = tf.strings.regex_replace(text, r"([0-9])%", r"\1 %")
    text = tf.strings.regex_replace(text, r"\$([0-9])", r"$ \1")
    text = tf.strings.regex_replace(text, r"n't\b", " n't")
    text = tf.strings.regex_replace(text, r"'(s|re|ve|ll|d|m)\b", r" '\1")
    tokens = tf.strings.split(text)
    return tf.ragged.map_flat_values(
        lambda flat: tf.where(tf.strings.regex_full_match(flat, _NUMBER), "N", flat), tokens)


@keras.saving.register_keras_serializable(package="zoo")
class LanguageModel(keras.Model):
    """Embedding -> stacked LSTM/GRU (cuDNN-eligible) -> logits over the vocabulary.

    Called on token ids `[B, T]` it returns next-token logits `[B, T, V]`:

        p(w_{t+1} | w_1..w_t) = softmax(W h_t + b),   h_t = LSTM(E w_t, h_{t-1})

    Dropout (Zaremba et al. 2014) sits on the non-recurrent connections only:
    after the embedding, between layers and before the softmax.

    Ids: 0 padding, 1 `<unk>` (any word outside the vocabulary), then the
    vocabulary. `score` and `generate` take raw strings.

    Args:
        vocabulary: word types; must hold `<eos>`. `<unk>` may be listed (it
            is dropped: id 1 stands for it).
        cell: "lstm" or "gru" (cuDNN), or a teaching cell such as "elman".
        units, num_layers: size of the recurrent stack.
        embedding_dim: word vector size (default `units`).
        dropout: rate on the non-recurrent connections.
        init_scale: if set, every weight starts uniform in [-s, s] (Zaremba);
            otherwise Keras' defaults.
        stateful_batch_size: build stateful layers for this fixed batch size
            (truncated-BPTT training). `stateless()` gives the twin that scores
            and generates at any batch size.
    """

    def __init__(self, vocabulary, cell="lstm", units=200, num_layers=2, embedding_dim=None,
                 dropout=0.0, init_scale=None, stateful_batch_size=None, **kwargs):
        vocabulary = [token for token in vocabulary if token != UNK]
        if EOS not in vocabulary:
            raise ValueError(f"The vocabulary must contain {EOS!r} (the end of a sentence).")
        stateful = stateful_batch_size is not None
        vocabulary_size = len(vocabulary) + 2
        inputs = keras.Input(batch_shape=(stateful_batch_size, None), dtype="int32",
                             name="token_ids")
        x = keras.layers.Embedding(vocabulary_size, embedding_dim or units, name="embedding")(inputs)
        for depth in range(num_layers):
            x = keras.layers.Dropout(dropout, name=f"dropout_{depth}")(x)
            # return_state: `generate` and streaming evaluation pass states explicitly.
            layer = rnn_layer(cell, units, return_sequences=True, return_state=True,
                              stateful=stateful, name=f"rnn_{depth}")
            x = layer(x)[0]
        x = keras.layers.Dropout(dropout, name=f"dropout_{num_layers}")(x)
        logits = keras.layers.Dense(vocabulary_size, name="logits")(x)
        super().__init__(inputs, logits, **kwargs)
        self.vocabulary = vocabulary
        self.cell = cell
        self.units = units
        self.num_layers = num_layers
        self.embedding_dim = embedding_dim
        self.dropout_rate = dropout
        self.init_scale = init_scale
        self.stateful_batch_size = stateful_batch_size
        self.id_to_token = np.array(["", UNK] + vocabulary, dtype=object)
        self.eos_id = 2 + vocabulary.index(EOS)
        self._words = WordIds(vocabulary, lowercase=False, name="word_ids")
        if init_scale:
            self._uniform_init(init_scale)

    def _uniform_init(self, scale):
        for weight in self.weights:  # seeded by keras.utils.set_random_seed
            weight.assign(keras.random.uniform(weight.shape, -scale, scale))

    def get_config(self):
        return dict(name=self.name, vocabulary=self.vocabulary, cell=self.cell, units=self.units,
                    num_layers=self.num_layers, embedding_dim=self.embedding_dim,
                    dropout=self.dropout_rate, init_scale=self.init_scale,
                    stateful_batch_size=self.stateful_batch_size)

    @property
    def vocabulary_size(self):
        return len(self.vocabulary) + 2

    @property
    def recurrent_layers(self):
        return [self.get_layer(f"rnn_{depth}") for depth in range(self.num_layers)]

    # -- State handling ---------------------------------------------------------------

    def reset_states(self):
        """Zero the carried state of every stateful layer (start of an epoch or a stream)."""
        for layer in self.recurrent_layers:
            layer.reset_state()

    def stateless(self):
        """The same model with stateless layers (any batch size), sharing no variables."""
        if self.stateful_batch_size is None:
            return self
        twin = LanguageModel.from_config({**self.get_config(), "stateful_batch_size": None})
        twin.set_weights(self.get_weights())  # the carried states are not weights
        return twin

    def initial_states(self, batch_size):
        """Zero states, one tuple per layer ((h, c) for an LSTM, (h,) otherwise)."""
        return tuple(tuple(layer.get_initial_state(batch_size)) for layer in self.recurrent_layers)

    def run(self, token_ids, states):
        """Logits `[B, T, V]` and the final states, from explicit initial `states`.

        Inference only (no dropout). This is how streams longer than one
        window are scored and how `generate` steps, without stateful layers.
        """
        if self.stateful_batch_size is not None:
            raise ValueError("Call `stateless()` first: stateful layers carry their own state.")
        x = self.get_layer("embedding")(token_ids)
        new_states = []
        for layer, state in zip(self.recurrent_layers, states):
            x, *state = layer(x, initial_state=list(state), training=False)
            new_states.append(tuple(state))
        return self.get_layer("logits")(x), tuple(new_states)

    # -- Text in, numbers out ------------------------------------------------------------

    def token_ids(self, tokens):
        """Ragged tokens -> ragged ids (`<unk>` for words outside the vocabulary)."""
        dense = tokens.to_tensor(default_value="")
        ids = self._words.tokens_to_ids(dense)
        return tf.RaggedTensor.from_tensor(ids, lengths=tokens.row_lengths())

    def encode(self, texts):
        """Raw strings -> ragged ids `[<eos>] + words + [<eos>]`.

        The leading `<eos>` stands for "a sentence starts here", as in the
        training stream where every sentence follows the previous one's `<eos>`.
        """
        ids = self.token_ids(normalize_text(_as_text_list(texts)))
        eos = tf.fill([ids.nrows(), 1], tf.constant(self.eos_id, tf.int32))
        return tf.concat([eos, ids, eos], axis=1)

    def decode(self, ids):
        """Ids -> a space-joined string (padding dropped)."""
        return " ".join(self.id_to_token[i] for i in np.asarray(ids) if i != PAD_ID)

    def score(self, texts, batch_size=64):
        """Perplexity of each sentence, `<eos>` included, as a float32 array.

            ppl(s) = exp( -1/(n+1) * sum_{t=1..n+1} log p(w_t | <eos>, w_1..w_{t-1}) )

        with `w_{n+1} = <eos>`. An empty string scores the end of a sentence
        right after a start.
        """
        texts = _as_text_list(texts)
        scores = [self._score_batch(texts[i : i + batch_size])
                  for i in range(0, len(texts), batch_size)]
        return np.concatenate(scores) if scores else np.zeros((0,), "float32")

    def _score_batch(self, texts):
        ids = self.encode(texts).to_tensor(default_value=PAD_ID)
        inputs, targets = ids[:, :-1], ids[:, 1:]
        logits = traced_call(self, tf.TensorSpec([None, None], inputs.dtype))(inputs)
        cross_entropy = keras.ops.sparse_categorical_crossentropy(targets, logits, from_logits=True)
        weights = tf.cast(targets != PAD_ID, tf.float32)
        mean = tf.reduce_sum(cross_entropy * weights, axis=1) / tf.reduce_sum(weights, axis=1)
        return tf.exp(mean).numpy()

    def generate(self, prompts, max_length=30, temperature=1.0, top_k=None, seed=None,
                 allow_unk=False):
        """Continue each prompt by sampling, until `<eos>` or `max_length` new words.

        Uses `zoo.decoding.sample`: each word is drawn from
        `softmax(logits / temperature)` restricted to the `top_k` most likely
        words (`top_k=1` is greedy and deterministic). `<unk>` is never
        produced unless `allow_unk`.

        Returns the prompt (normalized) followed by the generated words, a
        string for a string prompt and a list for a list.
        """
        from zoo.decoding import sample

        single = isinstance(prompts, str)
        top_k = None if top_k is None else min(top_k, self.vocabulary_size)
        outputs = []
        banned = [PAD_ID] + ([] if allow_unk else [UNK_ID])
        logit_bias = tf.tensor_scatter_nd_update(
            tf.zeros([self.vocabulary_size]), [[i] for i in banned], [-1e9] * len(banned))

        def step_fn(token_ids, states):
            logits, states = self.run(token_ids[:, None], states)
            return tf.nn.log_softmax(logits[:, 0] + logit_bias), states

        for prompt in _as_text_list(prompts):
            ids = self.encode([prompt])[0, :-1]  # the prompt is not a finished sentence
            states = self.initial_states(1)
            if ids.shape[0] > 1:
                _, states = self.run(ids[None, :-1], states)
            result = sample(step_fn, states, ids[-1:], self.eos_id, max_length,
                            temperature=temperature, top_k=top_k, seed=seed, pad_id=PAD_ID)
            new = result["tokens"][0, : int(result["lengths"][0])].numpy()
            new = new[new != self.eos_id]
            outputs.append(self.decode(np.concatenate([ids[1:].numpy(), new])))
        return outputs[0] if single else outputs


def _as_text_list(texts):
    if isinstance(texts, str):
        texts = [texts]
    texts = list(texts)
    if not all(isinstance(t, str) for t in texts):
        raise TypeError("Expected a string or a list of strings.")
    return texts


@registry.register_architecture(
    "lstm-lm", "language_model", "Word-level LSTM/GRU language model (Zaremba et al. 2014)",
    demo_kwargs=dict(vocabulary=["the", "market", "fell", "rose", "N", "%", EOS], units=8,
                     num_layers=2))
def build_language_model(vocabulary=(EOS,), **kwargs):
    return LanguageModel(list(vocabulary), **kwargs)


registry.register_pretrained(registry.ModelSpec(
    name="lm-lstm-ptb", architecture="lstm-lm", task="language_model", dataset="ptb",
    recipe="recipes/lm_lstm_ptb.py", metric="test_perplexity",
    summary="Zaremba et al. (2014) 'small' 2x200 LSTM on PTB, truncated BPTT over 35 steps"))


# --------------------------------------------------------------------------------------
# Truncated BPTT batching
# --------------------------------------------------------------------------------------


def bptt_streams(token_ids, batch_size):
    """Cut one token stream into `batch_size` contiguous streams `[batch_size, L]`.

    Stream `b` is `token_ids[b * L : (b + 1) * L]` with `L = N // batch_size`;
    the last `N mod batch_size` tokens are dropped.
    """
    token_ids = np.asarray(token_ids)
    length = len(token_ids) // batch_size
    if length < 2:
        raise ValueError(f"{len(token_ids)} tokens are too few for {batch_size} streams.")
    return token_ids[: batch_size * length].reshape(batch_size, length)


def bptt_batches(token_ids, batch_size, window, drop_remainder=True):
    """Truncated-BPTT batches: `[(inputs, targets)]`, each `[batch_size, window]`.

    Row `b` of batch `k` continues exactly where row `b` of batch `k - 1`
    stopped, so a stateful model that carries its state from batch to batch
    reads each stream without a gap:

        inputs_k[b, t]  = streams[b, k * window + t]
        targets_k[b, t] = streams[b, k * window + t + 1]

    >>> batches = bptt_batches(np.arange(20), batch_size=2, window=3)
    >>> [x.tolist() for x, _ in batches]
    [[[0, 1, 2], [10, 11, 12]], [[3, 4, 5], [13, 14, 15]], [[6, 7, 8], [16, 17, 18]]]

    With `drop_remainder=False` a last, shorter window covers every target.
    """
    streams = bptt_streams(token_ids, batch_size)
    num_targets = streams.shape[1] - 1
    stop = num_targets - num_targets % window if drop_remainder else num_targets
    return [(streams[:, start : min(start + window, stop)],
             streams[:, start + 1 : min(start + window, stop) + 1])
            for start in range(0, stop, window)]


def bptt_dataset(token_ids, batch_size, window):
    """`bptt_batches` as a `tf.data.Dataset` of ready batches, in order (never shuffled)."""
    inputs, targets = zip(*bptt_batches(token_ids, batch_size, window))
    return tf.data.Dataset.from_tensor_slices((np.stack(inputs), np.stack(targets)))


class ResetStatesEachEpoch(keras.callbacks.Callback):
    """Zero the carried LSTM state before every epoch and every validation pass."""

    def on_epoch_begin(self, epoch, logs=None):
        self.model.reset_states()

    def on_test_begin(self, logs=None):
        self.model.reset_states()


def zaremba_schedule(learning_rate, decay, decay_after):
    """lr(epoch) = lr * decay ** max(0, epoch + 1 - decay_after), epochs counted from 0."""
    return lambda epoch, _: learning_rate * decay ** max(0, epoch + 1 - decay_after)


def make_optimizer(config):
    """SGD or Adam with gradient clipping by global norm (`clipnorm` in the config).

        g <- g * min(1, clipnorm / ||g||_2),   ||g||_2 over all weights together
    """
    name = config.get("optimizer", "sgd")
    kwargs = dict(learning_rate=config.get("learning_rate", 1.0),
                  global_clipnorm=config.get("clipnorm"))
    if name == "sgd":
        return keras.optimizers.SGD(**kwargs)
    if name == "adam":
        return keras.optimizers.Adam(**kwargs)
    raise ValueError(f"optimizer must be 'sgd' or 'adam', got {name!r}")


# --------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------


def corpus_ids(model, tokens):
    """A token list (PTB split) -> the model's ids, as an int32 array."""
    index = {token: i for i, token in enumerate(model.id_to_token) if i != PAD_ID}
    return np.fromiter((index.get(t, UNK_ID) for t in tokens), dtype=np.int32, count=len(tokens))


def stream_perplexity(model, token_ids, batch_size=1, window=35):
    """Perplexity of a token stream, the state carried across windows:

        ppl = exp( -1/(N-1) * sum_{t=2..N} log p(w_t | w_1..w_{t-1}) )

    With `batch_size=1` (the default, as Zaremba et al. evaluate) every token
    is predicted from all of the stream before it; larger batches cut the
    stream into that many parts (faster, slightly less context).

    Returns `(perplexity, number of predicted tokens)`.
    """
    model = model.stateless()

    @tf.function(autograph=False)  # one graph per window shape: ~10x faster than eager
    def window_cross_entropy(inputs, targets, states):
        logits, states = model.run(inputs, states)
        cross_entropy = keras.ops.sparse_categorical_crossentropy(targets, logits, from_logits=True)
        return tf.reduce_sum(cross_entropy), states

    states = model.initial_states(batch_size)
    total, count = 0.0, 0
    for inputs, targets in bptt_batches(token_ids, batch_size, window, drop_remainder=False):
        summed, states = window_cross_entropy(tf.constant(inputs), tf.constant(targets), states)
        total += float(summed)
        count += targets.size
    return perplexity(total / count), count


def evaluate(model, split="test", batch_size=1, max_tokens=None):
    """Perplexity of the model on a PTB split (the whole split unless `max_tokens`)."""
    from zoo.data import ptb_tokens

    ids = corpus_ids(model, ptb_tokens(split))[:max_tokens]
    value, count = stream_perplexity(model, ids, batch_size=batch_size)
    name = {"validation": "validation", "valid": "validation"}.get(split, split)
    return {f"{name}_perplexity": round(value, 2), f"{name}_tokens": count}


# --------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------


def fit_language_model(config, run_dir, epochs=None):
    """Build the recipe's stateful LM and fit it by truncated BPTT on PTB.

    Returns `(stateless model, Keras history, train ids, validation ids)`.

    Zaremba et al. sum the loss over the window's steps (and average over
    streams); `sum_loss_over_window` gives Keras' per-token mean loss that
    scale (`loss_weights=window`), so their learning rate and clipping
    threshold carry over unchanged. `loss_scale` sets the factor directly
    (to compare windows at one per-token step size).
    """
    from zoo.data import ptb_tokens
    from zoo.data.builders.language_model import build_vocabulary
    from zoo.training import fit

    train_tokens = ptb_tokens("train")
    batch_size, window = config.get("batch_size", 20), config.get("window", 35)
    model = registry.get_architecture(config["architecture"]).build(
        vocabulary=build_vocabulary(train_tokens), stateful_batch_size=batch_size,
        **config.get("model", {}))
    train_ids = corpus_ids(model, train_tokens)[: config.get("train_tokens")]
    valid_ids = corpus_ids(model, ptb_tokens("validation"))[: config.get("validation_tokens")]

    loss_scale = config.get("loss_scale") or (window if config.get("sum_loss_over_window") else 1)
    model.compile(optimizer=make_optimizer(config),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  loss_weights=[float(loss_scale)],
                  metrics=[Perplexity(from_logits=True, mask_token_id=PAD_ID)])
    schedule = zaremba_schedule(config.get("learning_rate", 1.0), config.get("lr_decay", 1.0),
                                config.get("decay_after", 10**6))
    history = fit(model, bptt_dataset(train_ids, batch_size, window),
                  bptt_dataset(valid_ids, batch_size, window),
                  epochs=epochs or config.get("epochs", 13), run_dir=run_dir,
                  monitor="val_perplexity", mode="min", patience=config.get("patience"),
                  callbacks=[ResetStatesEachEpoch(),
                             keras.callbacks.LearningRateScheduler(schedule)])
    return model.stateless(), history, train_ids, valid_ids


def train(config, run_dir, smoke=False):
    """Truncated-BPTT training of the recipe's LM; evaluates on the PTB test split."""
    from zoo.training import TrainResult

    model, history, train_ids, valid_ids = fit_language_model(config, run_dir)
    eval_tokens = config.get("eval_tokens")  # None: the whole split
    metrics = {**evaluate(model, "test", max_tokens=eval_tokens),
               **evaluate(model, "validation", max_tokens=eval_tokens)}
    return TrainResult(
        model=model, metrics=metrics,
        data=(f"ptb (Mikolov): train stream of {len(train_ids):,} tokens, validation "
              f"{len(valid_ids):,} for model selection; perplexity on the official test split, "
              "state carried over the whole split (batch 1)"),
        extra={"published": config.get("published"),
               "epochs_run": len(history.history.get("loss", [])),
               "validation_perplexity_by_epoch": [
                   round(v, 2) for v in history.history.get("val_perplexity", [])]})


# --------------------------------------------------------------------------------------
# CLI rendering
# --------------------------------------------------------------------------------------


def render(model, inputs, max_length=20, top_k=10, seed=0, **_):
    lines = []
    for text, value in zip(inputs, model.score(inputs)):
        continuation = model.generate(text, max_length=max_length, top_k=top_k, seed=seed)
        lines.append(f"{text!r}\n  perplexity {value:.1f}\n  -> {continuation}")
    return lines


EXAMPLES = ["the company said it expects to report a loss", "the stock market",
            "in the first quarter"]


def examples(spec=None):
    return list(EXAMPLES)


registry.register_task(registry.TaskHandler(
    name="language_model",
    evaluate=lambda model, spec, split="test": evaluate(model, split),
    render=render, examples=examples, train=train))
