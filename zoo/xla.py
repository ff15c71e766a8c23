"""Whether the code being traced will be XLA-compiled.

Custom ops cannot run inside XLA, and XLA needs static shapes, so code that
has a faster path of either kind checks this and falls back when it is true.
"""

import tensorflow as tf


def in_xla_context():
    """True while tracing inside a `jit_compile=True` function (or an XLA loop).

    TF has no public API for this; without its internal one, assume XLA (and
    take the path that compiles) rather than fail.
    """
    try:
        from tensorflow.python.ops import control_flow_util
    except ImportError:
        return True
    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())
