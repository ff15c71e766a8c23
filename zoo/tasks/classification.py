"""Text classification: Kim's text-CNN and (bi)LSTM/GRU classifiers, end to end.

Both models take raw strings and return class probabilities; the vocabulary
and class names live inside the saved model.

>>> import zoo
>>> clf = zoo.load("textcnn-trec")
>>> clf.classify(["How far is it from Denver to Aspen ?"])
[('NUM', 0.98)]
"""

import keras
import numpy as np
import tensorflow as tf

from zoo import registry
from zoo.layers import MaskedGlobalPooling, WordIds, build_vocabulary, parallel_convolutions
from zoo.layers import recurrent_stack
from zoo.tracing import traced_call

KIM_VARIANTS = ("rand", "static", "non-static", "multichannel")


class TextClassifier(keras.Model):
    """Base for end-to-end classifiers: strings [B] -> probabilities [B, num_classes].

    Subclasses build the functional graph in `__init__` (KerasHub style) and
    return their constructor arguments from `get_config`.
    """

    def set_pretrained_embeddings(self, matrix):
        """Initialize every embedding channel with `matrix` [vocabulary_size, embedding_dim]."""
        matrix = np.asarray(matrix, dtype="float32")
        for layer in self.layers:
            if isinstance(layer, keras.layers.Embedding):
                layer.set_weights([matrix])

    def classify(self, texts, batch_size=64):
        """[(label, probability)] for each text."""
        probabilities = self.predict_proba(texts, batch_size)
        best = probabilities.argmax(axis=-1)
        return [(self.class_names[i], float(p[i])) for i, p in zip(best, probabilities)]

    def predict_proba(self, texts, batch_size=64):
        texts = _as_text_list(texts)
        call = traced_call(self, tf.TensorSpec([None], tf.string))
        batches = [tf.constant(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]
        outputs = [call(batch).numpy() for batch in batches]
        return np.concatenate(outputs) if outputs else np.zeros((0, len(self.class_names)))

    def predict(self, x, batch_size=64, **kwargs):
        """Probabilities for a list of strings (Keras' `predict` for anything else)."""
        if isinstance(x, str) or (isinstance(x, (list, tuple)) and all(isinstance(t, str) for t in x)):
            return self.predict_proba(x, batch_size)
        return super().predict(x, batch_size=batch_size, **kwargs)


def _as_text_list(texts):
    if isinstance(texts, str):
        texts = [texts]
    if not all(isinstance(t, str) for t in texts):
        raise TypeError("Expected a string or a list of strings.")
    return list(texts)


def _text_input():
    return keras.Input(shape=(), dtype="string", name="text")


@keras.saving.register_keras_serializable(package="zoo")
class TextCNN(TextClassifier):
    """Kim (2014): embedding -> Conv1D widths (3,4,5) x 100 -> max-over-time -> dropout -> softmax.

    Variants: "rand" (embeddings learned from scratch), "static" (pretrained,
    frozen), "non-static" (pretrained, fine-tuned), "multichannel" (both; each
    filter sees both channels). Pretrained vectors are set after construction
    with `set_pretrained_embeddings`; the saved model keeps the learned values.
    """

    def __init__(self, vocabulary, class_names, variant="rand", embedding_dim=300,
                 filter_widths=(3, 4, 5), num_filters=100, dropout=0.5, max_length=None,
                 **kwargs):
        if variant not in KIM_VARIANTS:
            raise ValueError(f"variant must be one of {KIM_VARIANTS}, got {variant!r}")
        words = WordIds(vocabulary, max_length=max_length, separate_punctuation=True,
                        min_length=max(filter_widths), name="word_ids")
        inputs = _text_input()
        ids = words(inputs)
        channels = [keras.layers.Embedding(words.vocabulary_size, embedding_dim,
                                           trainable=variant != "static", name="embedding")(ids)]
        if variant == "multichannel":
            channels.append(keras.layers.Embedding(words.vocabulary_size, embedding_dim,
                                                   trainable=False, name="static_embedding")(ids))
        features = parallel_convolutions(channels, tuple(filter_widths), num_filters)
        features = keras.layers.Dropout(dropout, name="dropout")(features)
        outputs = keras.layers.Dense(len(class_names), activation="softmax", name="classes",
                                     kernel_constraint=keras.constraints.MaxNorm(3.0),
                                     dtype="float32")(features)  # float32 under mixed precision
        super().__init__(inputs, outputs, **kwargs)
        self.vocabulary = list(vocabulary)
        self.class_names = list(class_names)
        self.variant = variant
        self.embedding_dim = embedding_dim
        self.filter_widths = tuple(filter_widths)
        self.num_filters = num_filters
        self.dropout_rate = dropout
        self.max_length = max_length

    def get_config(self):
        return dict(name=self.name, vocabulary=self.vocabulary, class_names=self.class_names,
                    variant=self.variant, embedding_dim=self.embedding_dim,
                    filter_widths=list(self.filter_widths), num_filters=self.num_filters,
                    dropout=self.dropout_rate, max_length=self.max_length)


@keras.saving.register_keras_serializable(package="zoo")
class RNNClassifier(TextClassifier):
    """Embedding -> stacked (bi)LSTM/GRU (cuDNN-eligible) -> masked pooling -> softmax.

    `pooling` is "max" (max over time of the top layer's outputs), "mean", or
    "last" (the final state of each direction's last unmasked step).
    """

    def __init__(self, vocabulary, class_names, cell="lstm", units=128, num_layers=1,
                 bidirectional=True, embedding_dim=128, dropout=0.3, pooling="max",
                 max_length=None, **kwargs):
        words = WordIds(vocabulary, max_length=max_length, separate_punctuation=True,
                        name="word_ids")
        inputs = _text_input()
        x = keras.layers.Embedding(words.vocabulary_size, embedding_dim, mask_zero=True,
                                   name="embedding")(words(inputs))
        x = recurrent_stack(x, units, num_layers, cell, bidirectional, dropout,
                            return_sequences=True, name="encoder")
        x = MaskedGlobalPooling(pooling, name="pool")(x)
        x = keras.layers.Dropout(dropout, name="dropout")(x)
        outputs = keras.layers.Dense(len(class_names), activation="softmax", name="classes",
                                     dtype="float32")(x)
        super().__init__(inputs, outputs, **kwargs)
        self.vocabulary = list(vocabulary)
        self.class_names = list(class_names)
        self.cell = cell
        self.units = units
        self.num_layers = num_layers
        self.bidirectional = bidirectional
        self.embedding_dim = embedding_dim
        self.dropout_rate = dropout
        self.pooling = pooling
        self.max_length = max_length

    def get_config(self):
        return dict(name=self.name, vocabulary=self.vocabulary, class_names=self.class_names,
                    cell=self.cell, units=self.units, num_layers=self.num_layers,
                    bidirectional=self.bidirectional, embedding_dim=self.embedding_dim,
                    dropout=self.dropout_rate, pooling=self.pooling, max_length=self.max_length)


_DEMO_VOCAB = ["a", "good", "bad", "film", "movie", "great", "boring"]


@registry.register_architecture(
    "text-cnn", "classification", "Kim (2014) CNN for sentences (rand/static/non-static/multichannel)",
    demo_kwargs=dict(vocabulary=_DEMO_VOCAB, class_names=["negative", "positive"], embedding_dim=16,
                     num_filters=8),
    search_space={"model.num_filters": [50, 100, 200], "model.dropout": (0.2, 0.6, 0.1),
                  "model.filter_widths": [[3, 4, 5], [2, 3, 4], [3, 5, 7]],
                  "learning_rate": (1e-4, 3e-3, "log")})
def build_text_cnn(vocabulary=(), class_names=None, num_classes=None, **kwargs):
    return TextCNN(list(vocabulary), _class_names(class_names, num_classes), **kwargs)


@registry.register_architecture(
    "rnn-classifier", "classification", "Embedding + stacked BiLSTM/BiGRU + pooling classifier",
    demo_kwargs=dict(vocabulary=_DEMO_VOCAB, class_names=["negative", "positive"], units=8,
                     embedding_dim=8),
    search_space={"model.units": [32, 64, 128, 256], "model.num_layers": (1, 2),
                  "model.dropout": (0.0, 0.5, 0.1), "model.cell": ["lstm", "gru"],
                  "model.embedding_dim": [64, 128, 300], "learning_rate": (1e-4, 3e-3, "log")})
def build_rnn_classifier(vocabulary=(), class_names=None, num_classes=None, **kwargs):
    return RNNClassifier(list(vocabulary), _class_names(class_names, num_classes), **kwargs)


def _class_names(class_names, num_classes):
    if class_names is not None:
        return list(class_names)
    if not num_classes or num_classes < 2:
        raise ValueError("Give class_names or num_classes >= 2.")
    return [str(i) for i in range(num_classes)]


# --------------------------------------------------------------------------------------
# Data, training and evaluation
# --------------------------------------------------------------------------------------


def load_split(dataset, split):
    """(texts, label ids, class names) of a classification dataset split."""
    from zoo import data

    rows = data.load_examples(dataset, split)
    class_names = data.builder(dataset).info.features["label"].names
    return [r["text"] for r in rows], [int(r["label"]) for r in rows], class_names


def text_batches(texts, labels, batch_size, shuffle, seed=0):
    from zoo.data.pipeline import text_batches as batches

    return batches(texts, labels, batch_size=batch_size, shuffle=shuffle, seed=seed)


def evaluate(model, dataset, split="test"):
    texts, labels, _ = load_split(dataset, split)
    return evaluate_texts(model, texts, labels)


def evaluate_texts(model, texts, labels):
    predictions = model.predict_proba(texts, batch_size=256).argmax(axis=-1)
    return {"accuracy": round(100.0 * float(np.mean(predictions == np.asarray(labels))), 2),
            "examples": len(texts)}


def _validation_split(texts, labels, fraction, seed):
    order = np.random.default_rng(seed).permutation(len(texts))
    cut = int(len(texts) * (1 - fraction))
    pick = lambda idx: ([texts[i] for i in idx], [labels[i] for i in idx])  # noqa: E731
    return pick(order[:cut]), pick(order[cut:])


def _training_data(config, smoke):
    """(train texts, labels), (validation texts, labels), class names, where validation came from."""
    dataset = config["dataset"]
    texts, labels, class_names = load_split(dataset, "train")
    if config.get("validation_split"):
        (texts, labels), (val_texts, val_labels) = _validation_split(
            texts, labels, config["validation_split"], config.get("seed", 0))
        source = f"{int(100 * config['validation_split'])}% of train held out"
    else:
        val_texts, val_labels, _ = load_split(dataset, "validation")
        source = "official validation split"
    if smoke:  # a small real subset: enough to see learning, fast enough for tests
        texts, labels = texts[:1000], labels[:1000]
        val_texts, val_labels = val_texts[:300], val_labels[:300]
    return (texts, labels), (val_texts, val_labels), class_names, source


def compile_classifier(model, learning_rate=1e-3, clipnorm=None):
    model.compile(optimizer=keras.optimizers.Adam(learning_rate, clipnorm=clipnorm),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def fit_classifier(model, train_data, val_data, config, run_dir):
    """The shared fit loop on bucketed string batches; early stopping on validation accuracy."""
    from zoo.training import fit

    seed = config.get("seed", 0)
    return fit(model, text_batches(*train_data, config.get("batch_size", 50), True, seed),
               text_batches(*val_data, 256, False), epochs=config.get("epochs", 10),
               run_dir=run_dir, monitor="val_accuracy", mode="max",
               patience=config.get("patience", 3))


def _word_vectors():
    """The zoo's skip-gram vectors, training them first (recipes/word2vec_zoo.py) if absent."""
    import subprocess
    import sys

    from zoo import embeddings

    try:
        return embeddings.load_word_vectors()
    except FileNotFoundError:
        recipe = registry.REPO_ROOT / "recipes" / "word2vec_zoo.py"
        subprocess.run([sys.executable, str(recipe)], check=True)
        return embeddings.load_word_vectors()


def train(config, run_dir, smoke=False):
    """Train the model a recipe CONFIG describes; evaluate on the official test split."""
    from zoo.training import TrainResult, best_epoch_metrics

    train_data, val_data, class_names, val_source = _training_data(config, smoke)
    vocabulary = build_vocabulary((t.split() for t in train_data[0]),
                                  min_count=config.get("min_count", 1),
                                  max_size=config.get("max_vocabulary"))
    model = registry.get_architecture(config["architecture"]).build(
        vocabulary=vocabulary, class_names=class_names, **config.get("model", {}))
    if config.get("word_vectors") and not smoke:
        from zoo import embeddings

        model.set_pretrained_embeddings(embeddings.embedding_matrix(
            vocabulary, _word_vectors(), seed=config.get("seed", 0)))
    compile_classifier(model, config.get("learning_rate", 1e-3), config.get("clipnorm"))
    history = fit_classifier(model, train_data, val_data, config, run_dir)
    # Smoke runs score the validation subset: the test split is for real runs only.
    metrics = evaluate_texts(model, *val_data) if smoke else evaluate(model, config["dataset"])
    return TrainResult(
        model=model, metrics=metrics,
        data=f"{config['dataset']}: train ({len(train_data[0])} examples), validation: "
             f"{val_source}, metrics on the official test split",
        extra={"vocabulary_size": len(vocabulary) + 2},
        validation=best_epoch_metrics(history, "val_accuracy", "max"))


# --------------------------------------------------------------------------------------
# Fine-tuning a pretrained classifier on a user's CSV/TSV
# --------------------------------------------------------------------------------------


def read_labelled_file(path, class_names):
    """(texts, label ids) from a CSV/TSV with `text` and `label` columns (or the first two).

    Labels may be class names or integer ids; an unknown label is an error that
    lists the model's classes.
    """
    import csv

    delimiter = "\t" if str(path).endswith((".tsv", ".tab")) else ","
    with open(path, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.reader(f, delimiter=delimiter) if r]
    if not rows:
        raise ValueError(f"{path}: no rows")
    header = [h.strip().lower() for h in rows[0]]
    text_col, label_col = (header.index("text"), header.index("label")) if {
        "text", "label"} <= set(header) else (0, 1)
    body = rows[1:] if {"text", "label"} <= set(header) else rows
    index = {name: i for i, name in enumerate(class_names)}
    texts, labels = [], []
    for line, row in enumerate(body, start=2 if body is not rows else 1):
        raw = row[label_col].strip()
        if raw in index:
            labels.append(index[raw])
        elif raw.isdigit() and int(raw) < len(class_names):
            labels.append(int(raw))
        else:
            raise ValueError(f"{path}:{line}: label {raw!r} is not one of {class_names}")
        texts.append(row[text_col])
    return texts, labels


def extend_vocabulary(model, texts, min_count=2):
    """A copy of `model` whose vocabulary also has the new words of `texts` (>= min_count).

    Known words keep their trained vectors; new words start from small random ones.
    """
    known = set(model.vocabulary)
    new_words = [w for w in build_vocabulary((t.split() for t in texts), min_count=min_count)
                 if w not in known]
    if not new_words:
        return model
    config = model.get_config()
    config["vocabulary"] = list(model.vocabulary) + new_words
    bigger = type(model).from_config(config)
    for old, new in zip(model.layers, bigger.layers):
        weights = old.get_weights()
        if isinstance(old, keras.layers.Embedding):
            extra = np.random.default_rng(0).uniform(-0.05, 0.05, (len(new_words), weights[0].shape[1]))
            weights = [np.concatenate([weights[0], extra.astype("float32")])]
        new.set_weights(weights)
    return bigger


def fine_tune(model, data_path, run_dir, epochs=3, learning_rate=1e-4, holdout=0.2,
              extend=False, freeze_encoder=False, seed=0):
    """Fine-tune a pretrained classifier on a labelled file; returns (model, metrics).

    A `holdout` fraction of the file is kept aside and scored before and after.
    """
    texts, labels = read_labelled_file(data_path, model.class_names)
    (train_texts, train_labels), (held_texts, held_labels) = _validation_split(
        texts, labels, holdout, seed)
    before = evaluate_texts(model, held_texts, held_labels)["accuracy"]
    if extend:
        model = extend_vocabulary(model, train_texts)
    if freeze_encoder:
        for layer in model.layers[:-1]:
            layer.trainable = False
    compile_classifier(model, learning_rate)
    config = dict(epochs=epochs, batch_size=32, seed=seed, patience=None)
    fit_classifier(model, (train_texts, train_labels), (held_texts, held_labels), config, run_dir)
    after = evaluate_texts(model, held_texts, held_labels)["accuracy"]
    return model, {"holdout_accuracy_before": before, "holdout_accuracy": after,
                   "train_examples": len(train_texts), "holdout_examples": len(held_texts)}


def render(model, inputs, top_k=3, **_):
    lines = []
    for text, probabilities in zip(inputs, model.predict_proba(inputs)):
        ranked = np.argsort(-probabilities)[:top_k]
        scores = ", ".join(f"{model.class_names[i]} {probabilities[i]:.3f}" for i in ranked)
        lines.append(f"{text!r}\n  -> {scores}")
    return lines


EXAMPLES = {
    "trec": ["How far is it from Denver to Aspen ?", "Who wrote Hamlet ?",
             "What does NASA stand for ?"],
    "default": ["a gorgeous , witty , seductive movie .", "the plot is nothing but boilerplate .",
                "I expected more, but the acting saved it."],
}


def examples(spec=None):
    return EXAMPLES.get(getattr(spec, "dataset", None), EXAMPLES["default"])


registry.register_task(registry.TaskHandler(
    name="classification", evaluate=lambda model, spec, split="test": evaluate(model, spec.dataset, split),
    render=render, examples=examples, train=train, fine_tune=fine_tune))


for _name, _arch, _dataset, _summary in (
    ("textcnn-trec", "text-cnn", "trec", "Kim CNN-non-static, TREC question type (6 classes)"),
    ("textcnn-sst2", "text-cnn", "sst2", "Kim CNN-non-static, SST-2 binary sentiment"),
    ("sentiment-bilstm-sst2", "rnn-classifier", "sst2", "BiLSTM + max pooling, SST-2 sentiment"),
    ("sentiment-bilstm-imdb", "rnn-classifier", "imdb", "BiLSTM + max pooling, IMDB reviews"),
):
    registry.register_pretrained(registry.ModelSpec(
        name=_name, architecture=_arch, task="classification", dataset=_dataset,
        recipe=f"recipes/{_name.replace('-', '_')}.py", metric="accuracy", summary=_summary))
