"""Native CPU kernels as C++ TensorFlow custom ops: LSTM / GRU loops, and a decoder's
GRU gates, attention, log-softmax and top-k.

At batch 1 a recurrent step is a vector-matrix product that XLA and TF run on
one core, streaming the whole recurrent kernel from the shared L3 cache every
step; at batch 64 it is a small matrix product that XLA's dot runs well below
the machine's matmul peak. `recurrent_loops.cc` splits the gate columns
between threads, so that each core keeps its slice of the kernels in its own
L2, and runs every step's product there (a register-blocked matrix kernel for
batches; for tiny ones each thread first projects the inputs of every step
onto its columns). `zoo.layers.fast_recurrent` uses the ops outside
XLA-compiled functions, for inference and for training's forward and
backward loops. `decoding_kernels.cc` runs a decoding step's GRU gates in one
pass over its two products (`zoo_gru_cell`, `fast_recurrent.gru_cell_step`), its additive
attention without materializing its `[N, S, units]` hidden layer, each
source read once for all of its hypotheses (`zoo_additive_attention`),
normalizes a decoder's `[N, V]` logits (`zoo_log_softmax`), takes the best
tokens of each row (`zoo_top_k`, what `tf.math.top_k` gives, ties included)
or both at once without writing the log-probabilities
(`zoo_log_softmax_top_k`), each row while it is in cache, rows split between
TF's intra-op threads; `zoo.layers.attention` and
`zoo.decoding` use them where `ops_for` allows.

The caller's thread runs one slice and the library's own helper threads the
others (as many threads in all as TF's intra-op setting allows). A helper
stays awake, spinning and yielding its core to other threads, for 1 ms after
each recurrence, so back-to-back calls do not wait for it to wake; then it
sleeps. Inference ops reuse each thread's packed copy of the kernels while
they are called with the same kernel tensors (a weight update makes new ones).

The library is compiled on first use with the system C++ compiler (`$CXX`,
default `g++`) against the installed TensorFlow's headers, about 10 s, and
cached under `$ZOO_CACHE_DIR/native` (default `~/.cache/zoo/native`), keyed by
the sources, the TensorFlow version and the compiler flags. The kernels have
AVX-512, AVX2 and scalar code; `ZOO_NATIVE_MARCH` (default `native`) picks the
CPU they are built for. Without a compiler,
or with `ZOO_NATIVE_KERNELS=0`, `ops()` returns None and the XLA loops (and
TF's own log-softmax and top-k) run instead; `unavailable_reason()` says why.

>>> from zoo.layers import native
>>> ops = native.ops()   # the loaded op library, or None  # doctest: +SKIP
"""

import contextlib
import functools
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import tensorflow as tf

from zoo.xla import in_xla_context

# Compiled together into one library; the header is shared.
SOURCES = tuple(Path(__file__).with_name(name) for name in ("recurrent_loops.cc",
                                                             "decoding_kernels.cc"))
HEADERS = (Path(__file__).with_name("vector_math.h"),)
SWITCH = "ZOO_NATIVE_KERNELS"  # "0" turns the native kernels off
# The CPU the library is built for (`-march=`): by default the machine that runs it;
# e.g. x86-64-v3 (AVX2) or x86-64 builds the kernels' narrower vector or scalar code.
TARGET = "ZOO_NATIVE_MARCH"
CXX_FLAGS = ["-std=c++17", "-O3", "-march=native", "-shared", "-fPIC", "-w"]
# On CPUs with AVX512-FP16 (Sapphire Rapids), -march=native makes TF's bundled Eigen
# compile its FP16 packet code, which g++ 12 rejects; the kernels use no FP16, so the
# flag is turned off wherever the compiler knows it.
OPTIONAL_FLAGS = ["-mno-avx512fp16"]

_log = logging.getLogger(__name__)
_reason = None


def unavailable_reason():
    """Why `ops()` returned None (None if it did not, or was not called yet)."""
    return _reason


@functools.cache
def compiler_flags(compiler, march="native"):
    """CXX_FLAGS (for CPU `march`) plus those of OPTIONAL_FLAGS that `compiler` accepts."""
    def accepted(flag):
        probe = subprocess.run([compiler, flag, "-x", "c++", "-E", "-"], input="",
                               capture_output=True, text=True, check=False)
        return probe.returncode == 0

    flags = [f"-march={march}" if flag == "-march=native" else flag for flag in CXX_FLAGS]
    return [*flags, *filter(accepted, OPTIONAL_FLAGS)]


def _target_flags(compiler):
    return compiler_flags(compiler, os.environ.get(TARGET, "native"))


def _library_path(compiler):
    from zoo.data.settings import cache_dir

    key = hashlib.sha256()
    for part in (*(path.read_bytes() for path in SOURCES + HEADERS), tf.__version__.encode(),
                 compiler.encode(), " ".join(_target_flags(compiler)).encode()):
        key.update(part)
    return cache_dir() / "native" / f"zoo_kernels-{key.hexdigest()[:16]}.so"


def _build(compiler, target):
    """Compiles SOURCES into `target` (atomically: concurrent builds cannot see half a file)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        partial = Path(scratch) / target.name
        command = [compiler, *_target_flags(compiler), *map(str, SOURCES), "-o", str(partial),
                   *tf.sysconfig.get_compile_flags(), *tf.sysconfig.get_link_flags()]
        _log.info("building the native kernels: %s", " ".join(command))
        print(f"zoo: building the native kernels (once, about 10 s) into {target}",
              file=sys.stderr, flush=True)
        result = subprocess.run(command, check=False, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"{compiler} failed (exit {result.returncode}):\n"
                               f"{result.stderr[-2000:]}")
        os.replace(partial, target)


_state = threading.local()


@contextlib.contextmanager
def left_out():
    """While inside, `ops()` returns None: graphs traced here use TF's own ops only.

    For graphs that must run where the zoo is not installed: `zoo.export`
    writes its SavedModels inside this.
    """
    _state.left_out = getattr(_state, "left_out", 0) + 1
    try:
        yield
    finally:
        _state.left_out -= 1


def ops_for(*tensors):
    """`ops()` where its kernels can take `tensors`, else None.

    They take float32 tensors outside XLA-compiled functions, on a machine
    without a GPU (where TF's GPU kernels serve instead).
    """
    if any(tensor.dtype != tf.float32 for tensor in tensors) or in_xla_context():
        return None
    if tf.config.list_logical_devices("GPU"):
        return None
    return ops()


def ops():
    """The op library (`zoo_lstm_sequence`, `zoo_gru_sequence`, `zoo_lstm_backward`,
    `zoo_gru_backward`, `zoo_gru_cell`, `zoo_additive_attention`, `zoo_log_softmax`, `zoo_top_k`,
    `zoo_log_softmax_top_k`), or None.

    None (with the reason in `unavailable_reason()`, logged once) when
    `ZOO_NATIVE_KERNELS=0`, when no C++ compiler is found, or when the build
    or the load fails: callers then run TF's ops (the XLA loops). None as well
    inside `left_out()`.
    """
    return None if getattr(_state, "left_out", 0) else _library()


@functools.cache
def _library():
    """The loaded library (built first if needed), or None; see `ops()`."""
    global _reason
    if os.environ.get(SWITCH, "1") == "0":
        _reason = f"{SWITCH}=0"
        return None
    compiler = shutil.which(os.environ.get("CXX", "g++"))
    if compiler is None:
        _reason = f"no C++ compiler ({os.environ.get('CXX', 'g++')}) on PATH"
        _log.warning("native kernels unavailable: %s", _reason)
        return None
    target = _library_path(compiler)
    try:
        if not target.exists():
            _build(compiler, target)
        return tf.load_op_library(str(target))
    except (OSError, RuntimeError, tf.errors.OpError) as error:
        _reason = f"build or load failed: {error}"
        _log.warning("native kernels unavailable: %s", _reason)
        return None
