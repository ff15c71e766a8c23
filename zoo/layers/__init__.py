"""Reusable Keras layers. Every layer is registered as a `zoo>` serializable."""

from zoo.layers.recurrent import (  # noqa: F401
    CELL_TYPES,
    CoupledLSTMCell,
    ElmanCell,
    JordanCell,
    LayerNormLSTMCell,
    PeepholeLSTMCell,
    cudnn_ineligibility,
    iter_recurrent_layers,
    recurrent_stack,
    rnn_layer,
)
from zoo.layers.text import (  # noqa: F401
    CharacterEncoder,
    CharIds,
    LetterTrigramEmbedding,
    SplitWords,
    WordDropout,
    WordIds,
    build_character_vocabulary,
    build_vocabulary,
    letter_trigrams,
)
from zoo.layers.conv import parallel_convolutions  # noqa: F401
from zoo.layers.pooling import MaskedGlobalPooling  # noqa: F401
from zoo.layers.crf import CRF  # noqa: F401
from zoo.layers.attention import AdditiveAttention, MultiplicativeAttention  # noqa: F401
from zoo.layers.reversible import ReversibleTokenizer, join_tokens, reversible_split  # noqa: F401
