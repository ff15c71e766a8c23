"""Text-CNN block (Kim 2014): parallel filter widths + max-over-time pooling."""

import keras


def parallel_convolutions(channels, widths=(3, 4, 5), filters=100, name="conv"):
    """Apply one Conv1D per width to every channel, add over channels, max-pool over time.

        c_i = relu(w . x_{i:i+h-1} + b)        for each filter of width h
        c^  = max_i c_i                         (max-over-time pooling)

    `channels` is a list of [B, T, D] tensors (Kim's multichannel model has
    two: static and fine-tuned embeddings); each filter is applied to every
    channel with the *same* weights and the results are added, as in the
    paper. Inputs must have T >= max(widths) (`WordIds(min_length=...)`).
    Returns [B, len(widths) * filters].
    """
    pooled = []
    for width in widths:
        conv = keras.layers.Conv1D(filters, width, name=f"{name}_w{width}")
        maps = [conv(c) for c in channels]
        summed = maps[0] if len(maps) == 1 else keras.layers.Add(name=f"{name}_w{width}_sum")(maps)
        activated = keras.layers.Activation("relu", name=f"{name}_w{width}_relu")(summed)
        pooled.append(keras.layers.GlobalMaxPooling1D(name=f"{name}_w{width}_pool")(activated))
    if len(pooled) == 1:
        return pooled[0]
    return keras.layers.Concatenate(name=f"{name}_features")(pooled)
