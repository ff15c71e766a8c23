// Native LSTM / GRU loops on a CPU, as TensorFlow custom ops (ZooLstmSequence,
// ZooGruSequence, ZooLstmBackward, ZooGruBackward).
//
// A recurrent step multiplies [x_t | h] by the kernels: at batch 64 a small matrix
// product that XLA's dot runs at about 70% of this machine's matmul peak, at batch 1 a
// vector-matrix product that XLA and TF run on one core, streaming the whole recurrent
// kernel (1 MB at U=256, LSTM) from the shared L3 cache every step. Here the gate
// columns are split between threads (as many as TF's intra-op threads, the caller and
// `Helper`s): each thread packs its slice of the kernels (which also loads it into that
// core's own L2; inference reuses the packing while the kernels are unchanged), then
// every step multiplies only its slice, updates its own units, and meets the other
// threads before the next step.
// - Batches: a register-blocked kernel (`BatchProduct`) computes x_t @ W next to h @ U
//   inside the step.
// - Tiny batches (hoist_inputs): each thread first computes x @ W + b of every step
//   for its columns with the same kernel, as one [T * B, F] product; the steps then
//   run `VectorMatrix`, which streams the recurrent slice at the L2's bandwidth.
// With keep_all the ops also keep what the backward pass needs, so training runs its
// forward pass here, and ZooLstmBackward / ZooGruBackward run its backward loop.
//
// All compute what zoo.layers.fast_recurrent's XLA loops compute (Keras gate order; GRU
// with reset_after=True), to float32 round-off. Built on first use by
// zoo/layers/native/__init__.py.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "vector_math.h"

namespace zoo {
namespace {

using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using tensorflow::errors::InvalidArgument;

// Float buffers on 64-byte (cache-line) boundaries: the packed kernel panels and the
// products are read and written a 512-bit vector at a time, and on Intel cores a
// vector that straddles two cache lines costs two loads (on a Xeon, aligned panels ran
// the step product at 177-182 GFLOP/s against 161-163, benchmarks/product_kernel.cc).
template <typename T>
struct CacheLineAllocator {
  using value_type = T;
  static constexpr std::align_val_t kAlignment{64};
  CacheLineAllocator() = default;
  template <typename U>
  CacheLineAllocator(const CacheLineAllocator<U>&) {}
  T* allocate(size_t n) { return static_cast<T*>(::operator new(n * sizeof(T), kAlignment)); }
  void deallocate(T* p, size_t) { ::operator delete(p, kAlignment); }
  template <typename U>
  bool operator==(const CacheLineAllocator<U>&) const { return true; }
  template <typename U>
  bool operator!=(const CacheLineAllocator<U>&) const { return false; }
};
using Floats = std::vector<float, CacheLineAllocator<float>>;

// out[0:L] = h[0:K] @ M[K, L], with M packed in panels of kPanel columns: panel c holds
// rows 0..K-1 of columns [c, c + width) contiguously (width = min(kPanel, L - c)), so the
// loop over K streams memory instead of striding across rows (1.4x faster in a probe).
// ---------------------------------------------------------------------------------------

constexpr int kPanel = 64;

void VectorMatrix(const float* h, const float* packed, int K, int L, float* out) {
  for (int c = 0; c < L; c += kPanel) {
    const int width = std::min(kPanel, L - c);
    const float* panel = packed + static_cast<size_t>(c) * K;
    int q = 0;
#ifdef ZOO_AVX2
    if (width == kPanel) {  // eight independent accumulators keep both FMA pipes busy
      __m256 acc[8];
      for (int a = 0; a < 8; ++a) acc[a] = _mm256_setzero_ps();
      for (int k = 0; k < K; ++k) {
        const __m256 hk = _mm256_broadcast_ss(h + k);
        const float* row = panel + static_cast<size_t>(k) * kPanel;
        for (int a = 0; a < 8; ++a)
          acc[a] = _mm256_fmadd_ps(hk, _mm256_loadu_ps(row + 8 * a), acc[a]);
      }
      for (int a = 0; a < 8; ++a) _mm256_storeu_ps(out + c + 8 * a, acc[a]);
      continue;
    }
    for (; q + 8 <= width; q += 8) {
      __m256 acc = _mm256_setzero_ps();
      for (int k = 0; k < K; ++k)
        acc = _mm256_fmadd_ps(_mm256_broadcast_ss(h + k),
                              _mm256_loadu_ps(panel + static_cast<size_t>(k) * width + q), acc);
      _mm256_storeu_ps(out + c + q, acc);
    }
#endif
    for (; q < width; ++q) {
      float acc = 0.0f;
      for (int k = 0; k < K; ++k) acc += h[k] * panel[static_cast<size_t>(k) * width + q];
      out[c + q] = acc;
    }
  }
}

// ---------------------------------------------------------------------------------------
// C[rows, NR] = sum over two segments of A_s[rows, K_s] @ B_s[K_s, NR] (one panel): the
// register-blocked kernel of the batched step. Each of up to kMaxRows rows keeps its NR
// outputs in registers for the whole K loop, so every B element loaded from cache feeds
// `rows` FMAs (at MR = 14, 28 accumulators: the step runs near the FMA peak).
// ---------------------------------------------------------------------------------------

#if defined(__AVX512F__)
using GemmIsa = Avx512;
constexpr int kLanes = 16, kMaxRows = 14;
#elif defined(ZOO_AVX2)
using GemmIsa = Avx2;
constexpr int kLanes = 8, kMaxRows = 6;
#else
constexpr int kLanes = 8, kMaxRows = 4;
#endif
constexpr int kGemmPanel = 2 * kLanes;  // NR: columns per packed panel

struct Segment {  // A [rows, k] (row stride lda) times a packed [k, NR] panel
  const float* a;
  int lda, k;
  const float* panel;
};

template <int MR>
void PanelProduct(const Segment* segments, int count, float* c, int ldc) {
#if defined(__AVX512F__) || defined(ZOO_AVX2)
  using I = GemmIsa;
  typename I::V acc[MR][2];
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = I::Set1(0.0f);
  for (int s = 0; s < count; ++s) {
    const Segment& seg = segments[s];
    for (int k = 0; k < seg.k; ++k) {
      const auto b0 = I::Load(seg.panel + k * kGemmPanel);
      const auto b1 = I::Load(seg.panel + k * kGemmPanel + kLanes);
      for (int r = 0; r < MR; ++r) {
        const auto a = I::Set1(seg.a[static_cast<size_t>(r) * seg.lda + k]);
        acc[r][0] = I::Fma(a, b0, acc[r][0]);
        acc[r][1] = I::Fma(a, b1, acc[r][1]);
      }
    }
  }
  for (int r = 0; r < MR; ++r) {
    I::Store(c + static_cast<size_t>(r) * ldc, acc[r][0]);
    I::Store(c + static_cast<size_t>(r) * ldc + kLanes, acc[r][1]);
  }
#else
  for (int r = 0; r < MR; ++r)
    for (int q = 0; q < kGemmPanel; ++q) {
      float acc = 0.0f;
      for (int s = 0; s < count; ++s)
        for (int k = 0; k < segments[s].k; ++k)
          acc += segments[s].a[static_cast<size_t>(r) * segments[s].lda + k] *
                 segments[s].panel[k * kGemmPanel + q];
      c[static_cast<size_t>(r) * ldc + q] = acc;
    }
#endif
}

template <int MR>
void PanelProductRows(int rows, const Segment* segments, int count, float* c, int ldc) {
  if constexpr (MR > 1) {
    if (rows < MR) return PanelProductRows<MR - 1>(rows, segments, count, c, ldc);
  }
  PanelProduct<MR>(segments, count, c, ldc);
}

// One factor of a batched product: A [rows, k] (row stride lda) and B [k, panels * NR]
// packed by `PackSlice` with padding.
struct Operand {
  const float* a;
  int lda, k;
  const float* packed;
};

// C[rows, panels * NR] = sum of the operands' A @ B (one or two): row blocks of up to
// kMaxRows inside, panels outside, so each panel is reused from cache by every row block.
void BatchProduct(int rows, std::initializer_list<Operand> operands, int panels, float* c) {
  const int ldc = panels * kGemmPanel;
  for (int p = 0; p < panels; ++p) {
    for (int r = 0; r < rows; r += kMaxRows) {
      Segment segments[2];
      int count = 0;
      for (const Operand& operand : operands)
        segments[count++] = {operand.a + static_cast<size_t>(r) * operand.lda, operand.lda,
                             operand.k,
                             operand.packed + static_cast<size_t>(p) * operand.k * kGemmPanel};
      PanelProductRows<kMaxRows>(std::min(kMaxRows, rows - r), segments, count,
                                 c + static_cast<size_t>(r) * ldc + p * kGemmPanel, ldc);
    }
  }
}

// ---------------------------------------------------------------------------------------
// Threads. The units are split into one slice per thread. Every step, each participant
// claims slices of that step (its own first, so each slice stays in one core's L2),
// computes them, and waits for the step's other slices. A participant that finds no
// slice left only waits for slices being computed, never for a thread to start, so the
// caller finishes alone if the helpers are busy or asleep: no deadlock, and a
// descheduled helper costs one slice, not a stalled barrier.
// ---------------------------------------------------------------------------------------

// Spins briefly (a step takes microseconds), then yields the core, which matters when
// other threads compete for the same cores.
template <typename Done>
void WaitUntil(Done done) {
  for (int spins = 0; !done(); ++spins) {
    if (spins < 4096) {
#ifdef ZOO_AVX2
      _mm_pause();
#endif
    } else {
      std::this_thread::yield();
    }
  }
}

// One recurrence's progress: which step each slice was last claimed for, and how
// many (slice, step) pieces are done.
class StepClaims {
 public:
  StepClaims(int slices, int steps) : slices_(slices), steps_(steps), claimed_(slices) {
    for (auto& step : claimed_) step.store(-1, std::memory_order_relaxed);
  }

  // Runs work(slice, step) for every piece this participant claims, preferring `own`.
  template <typename Work>
  void Participate(int own, Work work) {
    for (int step = 0; step < steps_; ++step) {
      // Step `step` may start once every piece of the steps before it is done.
      WaitUntil([&] { return finished_.load(std::memory_order_acquire) >= step * slices_; });
      for (int k = 0; k < slices_; ++k) {
        const int slice = (own + k) % slices_;
        int previous = step - 1;
        if (claimed_[slice].compare_exchange_strong(previous, step, std::memory_order_acq_rel)) {
          work(slice, step);
          finished_.fetch_add(1, std::memory_order_acq_rel);
        }
      }
    }
    WaitUntil([&] { return Done(); });
  }

  bool Done() const { return finished_.load(std::memory_order_acquire) == steps_ * slices_; }

 private:
  const int slices_, steps_;
  std::vector<std::atomic<int>> claimed_;
  std::atomic<int> finished_{0};
};

// Native recurrences run one at a time: each one uses every core, and two of them (the
// directions of a Bidirectional layer, say) interleaving would only slow both down.
std::mutex& RecurrenceMutex() {
  static std::mutex mutex;
  return mutex;
}

int ThreadCount(OpKernelContext* context, int units) {
  const int pool = context->device()->tensorflow_cpu_worker_threads()->num_threads;
  // Slices of at least 32 units, so that the per-step hand-over between threads stays a
  // small part of a step (a guard for small layers, not a tuned value).
  return std::max(1, std::min(pool, units / 32));
}

// This thread's columns of a [rows, gates * units] kernel, the gate columns
// g * units + j for g < gates and j in [begin, end) in gate-major order, in panels of
// `panel` columns: `VectorMatrix`'s layout, or with `pad` `BatchProduct`'s, whose
// panels are all full (zero columns at the end).
Floats PackSlice(const float* kernel, int rows, int units, int gates, int begin, int end,
                 int panel, bool pad) {
  const int width = end - begin, columns = gates * width;
  const int stored = pad ? (columns + panel - 1) / panel * panel : columns;
  Floats packed(static_cast<size_t>(rows) * stored, 0.0f);
  for (int c = 0; c < columns; c += panel) {
    const int panel_width = std::min(panel, columns - c), stride = pad ? panel : panel_width;
    float* out = packed.data() + static_cast<size_t>(c) * rows;
    for (int k = 0; k < rows; ++k) {
      const float* row = kernel + static_cast<size_t>(k) * gates * units;
      for (int q = 0; q < panel_width;) {  // runs of columns that are contiguous in `row`
        const int column = c + q, gate = column / width, unit = column % width;
        const int run = std::min(panel_width - q, width - unit);
        std::memcpy(out + static_cast<size_t>(k) * stride + q,
                    row + gate * units + begin + unit, run * sizeof(float));
        q += run;
      }
    }
  }
  return packed;
}

// Slice i of `slices` holds units [begins[i], begins[i + 1]): whole 8-unit blocks, which
// keep every slice's columns vector-aligned.
std::vector<int> SliceBegins(int units, int slices) {
  std::vector<int> begins(slices + 1);
  const int blocks = (units + 7) / 8;
  for (int i = 0; i <= slices; ++i) begins[i] = std::min(units, blocks * i / slices * 8);
  return begins;
}

// The transposed kernel's columns for units [begin, end): rows k < gates * units of
// kernel^T ([gates * units, units]) in `BatchProduct`'s padded panels.
Floats PackTransposedSlice(const float* kernel, int units, int gates, int begin, int end) {
  const int rows = gates * units, width = end - begin;
  const int panels = (width + kGemmPanel - 1) / kGemmPanel;
  Floats packed(static_cast<size_t>(panels) * rows * kGemmPanel, 0.0f);
  for (int p = 0; p < panels; ++p)
    for (int q = 0; q < kGemmPanel && p * kGemmPanel + q < width; ++q) {
      const float* column = kernel + static_cast<size_t>(begin + p * kGemmPanel + q) * rows;
      float* out = packed.data() + static_cast<size_t>(p) * rows * kGemmPanel + q;
      for (int k = 0; k < rows; ++k) out[static_cast<size_t>(k) * kGemmPanel] = column[k];
    }
  return packed;
}

// A recurrent op's inputs, checked.
struct Sequence {
  int steps, batch, units, features;
  const float* inputs;        // [T, B, F], or [B, T, F] if batch_major
  const float* input_kernel;  // [F, gates * U]
  const float* bias;          // [gates * U]
  const float* kernel;        // [U, gates * U]
  const bool* mask;           // [T, B] or nullptr
  // Tiny batches: x @ W + b of every step is computed before the loop (each thread its
  // own columns, as one [T * B, F] product), and h @ U by `VectorMatrix` in the step.
  // Otherwise `BatchProduct` computes x_t @ W next to h @ U inside each step.
  bool hoist_inputs = false;
  bool batch_major = false;
  // Row (t, b) of the inputs, and of the [T * B, n] products of all steps.
  size_t InputRow(int t, int b) const {
    return batch_major ? static_cast<size_t>(b) * steps + t : static_cast<size_t>(t) * batch + b;
  }
};

// What a forward pass keeps besides the final states, each [T, B, n] or nullptr.
struct Kept {
  float *hs = nullptr, *cs = nullptr, *gates = nullptr;
};

// Checks the inputs (`inputs` [T, B, F], or [B, T, F] if batch_major) into `sequence`.
tensorflow::Status CheckInputs(const Tensor& inputs, const Tensor& input_kernel,
                               const Tensor& bias, const Tensor& kernel, const Tensor& h0,
                               const Tensor& mask, int gates, bool batch_major,
                               Sequence* sequence) {
  if (inputs.dims() != 3 || input_kernel.dims() != 2 || bias.dims() != 1 || kernel.dims() != 2 ||
      h0.dims() != 2)
    return InvalidArgument("expected inputs [T, B, F] (batch_major: [B, T, F]), kernel "
                           "[F, gates*U], bias [gates*U], recurrent_kernel [U, gates*U], "
                           "state [B, U]");
  const int steps = inputs.dim_size(batch_major ? 1 : 0);
  const int batch = inputs.dim_size(batch_major ? 0 : 1), units = h0.dim_size(1);
  if (input_kernel.dim_size(0) != inputs.dim_size(2) ||
      input_kernel.dim_size(1) != gates * units || bias.dim_size(0) != gates * units ||
      kernel.dim_size(0) != units || kernel.dim_size(1) != gates * units ||
      batch != h0.dim_size(0))
    return InvalidArgument("inconsistent recurrent shapes: inputs ", inputs.shape().DebugString(),
                           batch_major ? " (batch_major)" : "", ", kernel ",
                           input_kernel.shape().DebugString(), ", bias ",
                           bias.shape().DebugString(), ", recurrent_kernel ",
                           kernel.shape().DebugString(), ", state ", h0.shape().DebugString());
  if (mask.NumElements() > 0 &&
      (mask.dims() != 2 || mask.dim_size(0) != steps || mask.dim_size(1) != batch))
    return InvalidArgument("mask must be [T, B] or empty, got ", mask.shape().DebugString());
  *sequence = {steps, batch, units, static_cast<int>(inputs.dim_size(2)),
               inputs.flat<float>().data(), input_kernel.flat<float>().data(),
               bias.flat<float>().data(), kernel.flat<float>().data(),
               mask.NumElements() > 0 ? mask.flat<bool>().data() : nullptr};
  sequence->batch_major = batch_major;
  return tensorflow::OkStatus();
}

// Each slice's packed kernels: W's columns (`packed_inputs`) and U's (`packed`). An
// inference op keeps its last call's and reuses them while it is called with the same
// kernel tensors: packing took about 35 us of a 400 us batch-1 LSTM call in a probe.
// Holding the tensors makes that safe. TF updates a variable's buffer in place only when
// no other tensor shares it (assignments, optimizer updates and XLA copy it otherwise),
// so a held buffer never changes, and no other tensor can be allocated at its address.
struct PackedKernels {
  Tensor input_kernel, kernel;  // held: the tensors last packed from (unset: none)
  bool hoisted = false;
  std::vector<Floats> packed_inputs, packed;  // per slice

  // Whether packed_* hold these tensors' columns in this layout; else clears them.
  bool Reusable(const Tensor& new_input_kernel, const Tensor& new_kernel, int slices,
                bool new_hoisted) {
    if (hoisted == new_hoisted && static_cast<int>(packed.size()) == slices &&
        SameBuffer(input_kernel, new_input_kernel) && SameBuffer(kernel, new_kernel))
      return true;
    input_kernel = kernel = Tensor();
    hoisted = new_hoisted;
    packed_inputs.assign(slices, {});
    packed.assign(slices, {});
    return false;
  }

  static bool SameBuffer(const Tensor& held, const Tensor& other) {
    return held.IsInitialized() && held.shape() == other.shape() &&
           held.flat<float>().data() == other.flat<float>().data();
  }
};

// The loop both cells share. `Cell` has kGates, kSeparateInput and
//   Update(const float* x, int x_stride, const float* hu, int j0, int width, int units,
//          float* h, float* c, float* gates)
// which turns step t's input projection of this row's units [j0, j0 + width) (gate g of
// unit j0 + j at x[g * x_stride + j]) and this slice's h @ U columns hu ([gates, width])
// into the new h (and c) of those units, and writes the activated gates (and whatever
// else a backward pass needs) to `gates` (a [kept gates * U] row) if not null.
// Hoisted, x is the precomputed x @ W + b. Otherwise cells without kSeparateInput get
// x_t @ W + h @ U in hu and the bias as x; the others (the GRU, whose h~ needs h @ U
// alone) get x_t @ W + b as x.
template <typename Cell>
struct Recurrence {
  Sequence seq;
  Cell cell;
  float *h, *c;                  // final states (in: initial states)
  Kept kept;
  Floats h_other;                // h is double-buffered: step t reads one, writes the other
  std::vector<int> begin;        // slice i holds units [begin[i], begin[i + 1])
  // per slice: packed U and W columns (PackedKernels'), packed by Prepare unless ready
  std::vector<Floats>&packed, &packed_inputs;
  const bool packed_ready;
  // per slice: h @ U (+ x_t @ W) products, and x @ W + b products (hoisted: of every
  // step; else of this step, with kSeparateInput)
  std::vector<Floats> products, input_products;
  // per slice, batch-major and not hoisted: x_t's rows gathered contiguously. They are
  // T * F apart in the inputs, which at T * F a multiple of 1024 puts all the rows the
  // kernel reads at once in one L1 set (11% slower LSTM T=200 inference in a probe).
  std::vector<Floats> step_inputs;
  StepClaims claims;

  Recurrence(const Sequence& s, const Cell& cell, float* h, float* c, const Kept& kept,
             int slices, PackedKernels& kernels, bool packed_ready)
      : seq(s), cell(cell), h(h), c(c), kept(kept),
        h_other(h, h + static_cast<size_t>(s.batch) * s.units),
        begin(SliceBegins(s.units, slices)), packed(kernels.packed),
        packed_inputs(kernels.packed_inputs), packed_ready(packed_ready), products(slices),
        input_products(slices), step_inputs(slices), claims(slices, s.steps) {}

  // Packs this slice's columns (unless packed_ready); hoisted, also computes
  // x @ W + b of every step for them. `stride`: the row stride of BatchProduct's results
  // (whole panels).
  void Prepare(int slice, int j0, int width, int stride) {
    const int gates = Cell::kGates;
    if (!packed_ready) {
      packed_inputs[slice] = PackSlice(seq.input_kernel, seq.features, seq.units, gates, j0,
                                       j0 + width, kGemmPanel, true);
      packed[slice] = seq.hoist_inputs
          ? PackSlice(seq.kernel, seq.units, seq.units, gates, j0, j0 + width, kPanel, false)
          : PackSlice(seq.kernel, seq.units, seq.units, gates, j0, j0 + width, kGemmPanel,
                      true);
    }
    if (seq.hoist_inputs) {
      products[slice].resize(gates * width);
      ProjectAllSteps(slice, j0, width, stride);
      return;
    }
    products[slice].resize(static_cast<size_t>(seq.batch) * stride);
    if (Cell::kSeparateInput) input_products[slice].resize(products[slice].size());
  }

  // x @ W + b of every step ([T * B, stride]) for this slice's columns.
  void ProjectAllSteps(int slice, int j0, int width, int stride) {
    const int rows = seq.steps * seq.batch;
    auto& projected = input_products[slice];
    projected.resize(static_cast<size_t>(rows) * stride);
    BatchProduct(rows, {{seq.inputs, seq.features, seq.features, packed_inputs[slice].data()}},
                 stride / kGemmPanel, projected.data());
    for (int r = 0; r < rows; ++r) AddBias(j0, width, projected.data() + r * stride);
  }

  // row[g * width + j] += b[g * U + j0 + j]
  void AddBias(int j0, int width, float* row) const {
    for (int g = 0; g < Cell::kGates; ++g)
      for (int j = 0; j < width; ++j) row[g * width + j] += seq.bias[g * seq.units + j0 + j];
  }

  // This step's products of all rows: [x_t | h] @ [W; U], or x_t @ W and h @ U.
  void BatchProducts(int slice, int t, int panels, const float* current) {
    const float* x_t = seq.inputs + seq.InputRow(t, 0) * seq.features;
    if (seq.batch_major) {
      auto& rows = step_inputs[slice];
      rows.resize(static_cast<size_t>(seq.batch) * seq.features);
      for (int b = 0; b < seq.batch; ++b)
        std::memcpy(rows.data() + static_cast<size_t>(b) * seq.features,
                    x_t + static_cast<size_t>(b) * seq.steps * seq.features,
                    seq.features * sizeof(float));
      x_t = rows.data();
    }
    const Operand x{x_t, seq.features, seq.features, packed_inputs[slice].data()};
    const Operand h{current, seq.units, seq.units, packed[slice].data()};
    if (Cell::kSeparateInput) {
      BatchProduct(seq.batch, {x}, panels, input_products[slice].data());
      BatchProduct(seq.batch, {h}, panels, products[slice].data());
    } else {
      BatchProduct(seq.batch, {x, h}, panels, products[slice].data());
    }
  }

  void Compute(int slice, int t) {
    const int j0 = begin[slice], width = begin[slice + 1] - j0, gates = Cell::kGates;
    if (width == 0) return;
    const int panels = (gates * width + kGemmPanel - 1) / kGemmPanel;
    const int stride = panels * kGemmPanel;
    if (t == 0) Prepare(slice, j0, width, stride);  // by the first thread on it: its cache
    const float* current = t % 2 == 0 ? h : h_other.data();
    float* next = t % 2 == 0 ? h_other.data() : h;
    if (!seq.hoist_inputs) BatchProducts(slice, t, panels, current);
    for (int b = 0; b < seq.batch; ++b) {
      const float* h_row = current + static_cast<size_t>(b) * seq.units;
      float* next_row = next + static_cast<size_t>(b) * seq.units;
      float* c_row = c == nullptr ? nullptr : c + static_cast<size_t>(b) * seq.units;
      const size_t row = static_cast<size_t>(t) * seq.batch + b;  // of [T, B, ...] outputs
      std::memcpy(next_row + j0, h_row + j0, width * sizeof(float));
      const bool valid = seq.mask == nullptr || seq.mask[row];
      if (valid) {  // else the step keeps the previous state
        float* hu = products[slice].data();
        const float* x;  // gate g of unit j0 + j at x[g * x_stride + j]
        int x_stride = width;
        if (seq.hoist_inputs) {
          VectorMatrix(h_row, packed[slice].data(), seq.units, gates * width, hu);
          x = input_products[slice].data() + seq.InputRow(t, b) * stride;
        } else if (!Cell::kSeparateInput) {
          hu += b * stride;
          x = seq.bias + j0;
          x_stride = seq.units;
        } else {
          hu += b * stride;
          float* projected = input_products[slice].data() + b * stride;
          AddBias(j0, width, projected);
          x = projected;
        }
        cell.Update(x, x_stride, hu, j0, width, seq.units, next_row, c_row,
                    kept.gates == nullptr ? nullptr
                                          : kept.gates + row * Cell::kKeptGates * seq.units);
      }
      auto keep = [&](float* out, const float* from) {
        if (out != nullptr)
          std::memcpy(out + row * seq.units + j0, from + j0, width * sizeof(float));
      };
      keep(kept.hs, next_row);
      keep(kept.cs, c_row);
    }
  }
};

// A helper thread of the recurrences. After each part it runs, it stays awake for
// kAwake, spinning and yielding its core to any other runnable thread, so that
// back-to-back recurrences (a latency-bound caller, a decoder, a training step's forward
// and backward loops) find it running; then it sleeps until the next part is posted.
// The intra-op pool's threads fall asleep sooner: in a probe, a batch-1 LSTM call waited
// 40 us (median; 1.1 ms at the 99th percentile) for one to start, time in which the
// caller computed the helper's slices too.
class Helper {
 public:
  static constexpr auto kAwake = std::chrono::milliseconds(1);

  Helper() { std::thread([this] { Loop(); }).detach(); }  // never destroyed

  // Replaces a part not yet started: recurrences run one at a time and a caller returns
  // only when all its work is done, so such a part has nothing left to do.
  void Post(std::function<void()> part) {
    bool wake;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      part_ = std::move(part);
      posted_.store(true, std::memory_order_release);
      wake = sleeping_;
    }
    if (wake) wake_.notify_one();
  }

 private:
  void Loop() {
    for (;;) {
      WaitForPart();
      std::function<void()> part;
      {
        std::lock_guard<std::mutex> lock(mutex_);
        part.swap(part_);
        posted_.store(false, std::memory_order_relaxed);
      }
      if (part) part();
    }
  }

  void WaitForPart() {
    const auto until = std::chrono::steady_clock::now() + kAwake;
    WaitUntil([&] {
      return posted_.load(std::memory_order_acquire) || std::chrono::steady_clock::now() >= until;
    });
    std::unique_lock<std::mutex> lock(mutex_);
    sleeping_ = true;
    wake_.wait(lock, [this] { return posted_.load(std::memory_order_relaxed); });
    sleeping_ = false;
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::function<void()> part_;
  std::atomic<bool> posted_{false};
  bool sleeping_ = false;
};

// Helper `index`, created on first use. Called under RecurrenceMutex.
Helper& HelperAt(int index) {
  static auto* helpers = new std::vector<std::unique_ptr<Helper>>();  // never destroyed
  while (static_cast<int>(helpers->size()) <= index)
    helpers->push_back(std::make_unique<Helper>());
  return *(*helpers)[index];
}

// Runs state->Compute(slice, step) for every slice and step of state->claims on this
// thread and `threads` - 1 helpers. Helpers share ownership of the state, so one that
// starts after the caller returned finds the work done and touches nothing else.
// Called under RecurrenceMutex.
template <typename State>
void RunClaimed(const std::shared_ptr<State>& state, int threads) {
  for (int i = 1; i < threads; ++i) {
    HelperAt(i - 1).Post([state, i] {
      if (!state->claims.Done())
        state->claims.Participate(i, [&](int slice, int t) { state->Compute(slice, t); });
    });
  }
  state->claims.Participate(0, [&](int slice, int t) { state->Compute(slice, t); });
}

// Both sequence ops' inputs: (inputs, kernel, bias, recurrent_kernel, ...).
constexpr int kInputKernel = 1, kRecurrentKernel = 3;

// Runs the recurrence (`RunClaimed`); native recurrences run one at a time. `kernels`:
// the op's packed kernels, reused if they were packed from the same kernel tensors, and
// kept for the next call if `keep`.
template <typename Cell>
void RunRecurrence(OpKernelContext* context, const Sequence& seq, const Cell& cell,
                   float* h, float* c, const Kept& kept, PackedKernels& kernels, bool keep) {
  std::lock_guard<std::mutex> one_at_a_time(RecurrenceMutex());
  const int threads = ThreadCount(context, seq.units);
  const Tensor &input_kernel = context->input(kInputKernel),
               &kernel = context->input(kRecurrentKernel);
  const bool ready = kernels.Reusable(input_kernel, kernel, threads, seq.hoist_inputs);
  auto state = std::make_shared<Recurrence<Cell>>(seq, cell, h, c, kept, threads, kernels, ready);
  RunClaimed(state, threads);
  if (keep && seq.steps > 0) {  // every slice was packed at step 0
    kernels.input_kernel = input_kernel;
    kernels.kernel = kernel;
  }
  if (seq.steps % 2 == 1)  // the last step wrote the other buffer
    std::memcpy(h, state->h_other.data(), state->h_other.size() * sizeof(float));
}

// ---------------------------------------------------------------------------------------
// LSTM: gates i, f, c~, o; c = f c + i c~, h = o tanh(c).
// ---------------------------------------------------------------------------------------

struct LstmCell {
  static constexpr int kGates = 4, kKeptGates = 4;  // kept: activated i, f, c~, o
  static constexpr bool kSeparateInput = false;
  void Update(const float* x, int x_stride, const float* hu, int j0, int width, int units,
              float* h, float* c, float* gates) const {
    const float *xi = x, *xf = x + x_stride, *xg = x + 2 * x_stride, *xo = x + 3 * x_stride;
    const float *ui = hu, *uf = hu + width, *ug = hu + 2 * width, *uo = hu + 3 * width;
    float* hj = h + j0;
    float* cj = c + j0;
    float* kept[4] = {};  // where the activated i, f, c~, o of these units go, if kept
    if (gates != nullptr)
      for (int g = 0; g < 4; ++g) kept[g] = gates + g * units + j0;
    ForEachBlock(
        width,
        [&](auto isa, int j) {
          using I = decltype(isa);
          auto z = [&](const float* a, const float* b) { return I::Add(I::Load(a + j), I::Load(b + j)); };
          const auto i = I::Sigmoid(z(xi, ui)), f = I::Sigmoid(z(xf, uf)), g = I::Tanh(z(xg, ug)),
                     o = I::Sigmoid(z(xo, uo));
          const auto new_c = I::Fma(f, I::Load(cj + j), I::Mul(i, g));
          I::Store(cj + j, new_c);
          I::Store(hj + j, I::Mul(o, I::Tanh(new_c)));
          if (gates != nullptr) {
            I::Store(kept[0] + j, i);
            I::Store(kept[1] + j, f);
            I::Store(kept[2] + j, g);
            I::Store(kept[3] + j, o);
          }
        },
        [&](int j) {
          const float i = Sigmoid(xi[j] + ui[j]), f = Sigmoid(xf[j] + uf[j]),
                      g = std::tanh(xg[j] + ug[j]), o = Sigmoid(xo[j] + uo[j]);
          cj[j] = f * cj[j] + i * g;
          hj[j] = o * std::tanh(cj[j]);
          if (gates != nullptr) {
            kept[0][j] = i;
            kept[1][j] = f;
            kept[2][j] = g;
            kept[3][j] = o;
          }
        });
  }
};

// ---------------------------------------------------------------------------------------
// GRU (reset_after): hr = h @ U + b_r; z, r = sigmoid(x_zr + hr_zr);
// h~ = tanh(x_h + r * hr_h); h = z h + (1 - z) h~.
// ---------------------------------------------------------------------------------------

struct GruCell {
  static constexpr int kGates = 3, kKeptGates = 4;  // kept: z, r, h~ and hr's h~ block
  static constexpr bool kSeparateInput = true;
  const float* recurrent_bias;  // [3U]
  void Update(const float* x, int x_stride, const float* hu, int j0, int width, int units,
              float* h, float* /*c*/, float* gates) const {
    const float *xz = x, *xr = x + x_stride, *xh = x + 2 * x_stride;
    const float *bz = recurrent_bias + j0, *br = recurrent_bias + units + j0,
                *bh = recurrent_bias + 2 * units + j0;
    const float *uz = hu, *ur = hu + width, *uh = hu + 2 * width;
    float* hj = h + j0;
    float* kept[4] = {};
    if (gates != nullptr)
      for (int g = 0; g < 4; ++g) kept[g] = gates + g * units + j0;
    ForEachBlock(
        width,
        [&](auto isa, int j) {
          using I = decltype(isa);
          auto load = [&](const float* a) { return I::Load(a + j); };
          const auto z = I::Sigmoid(I::Add(load(xz), I::Add(load(uz), load(bz))));
          const auto r = I::Sigmoid(I::Add(load(xr), I::Add(load(ur), load(br))));
          const auto hr_h = I::Add(load(uh), load(bh));
          const auto candidate = I::Tanh(I::Fma(r, hr_h, load(xh)));
          // z h + (1 - z) h~ = h~ + z (h - h~)
          I::Store(hj + j, I::Fma(z, I::Sub(load(hj), candidate), candidate));
          if (gates != nullptr) {
            I::Store(kept[0] + j, z);
            I::Store(kept[1] + j, r);
            I::Store(kept[2] + j, candidate);
            I::Store(kept[3] + j, hr_h);
          }
        },
        [&](int j) {
          const float z = Sigmoid(xz[j] + uz[j] + bz[j]), r = Sigmoid(xr[j] + ur[j] + br[j]);
          const float hr_h = uh[j] + bh[j], candidate = std::tanh(xh[j] + r * hr_h);
          hj[j] = z * hj[j] + (1.0f - z) * candidate;
          if (gates != nullptr) {
            kept[0][j] = z;
            kept[1][j] = r;
            kept[2][j] = candidate;
            kept[3][j] = hr_h;
          }
        });
  }
};

// ---------------------------------------------------------------------------------------
// Backward loops.
// ---------------------------------------------------------------------------------------

// The backward loops for training (what zoo.layers.fast_recurrent's _lstm_backward and
// _gru_backward compute), from the values the forward pass kept: every step's gradient
// dz_t ([B, gates * U]) of the step's h @ U (+ x_t @ W + b for the LSTM) and the initial
// states' gradients. Slices are units, as in the forward loop. Phase s (0..T) first
// carries dh of its own units through step T - s, dz_{T-s} @ U^T (all of dz_{T-s} is
// ready: the previous phase is done), then computes the gate derivatives of step
// T - 1 - s for its own units: one meeting per step, as in the forward loop. `Grad` has
// kGates, Gates(t, b, j0, width, d_h, dz_row) (this row's derivatives from d_h, the
// step's full gradient of h), Masked(t, b, j0, width) (a masked row's other outputs) and
// Through(t, b, j0, width, product, dh) (dh for h_{t-1}: product = dz_t @ U^T, plus what
// reaches h_{t-1} directly; dh holds d_h on entry).
template <typename Grad>
struct BackwardLoop {
  int steps, batch, units;
  Grad grad;
  const float* kernel;  // [U, gates * U]
  const float* d_hs;    // [T, B, U]: upstream gradient of every step's h
  const bool* mask;     // [T, B] or nullptr
  float *dz, *dh;       // out: [T, B, gates * U]; dh0 (zeros in)
  std::vector<int> begin;
  std::vector<Floats> packed, products;
  // The product reads 14 rows of dz_t at once. At a row stride that is a multiple of
  // 4 KB (the LSTM's 4U at U = 256) they all fall in one L1 set: 89 GFLOP/s on one core
  // in a probe, 115 with rows padded by kRowPad floats (the LSTM backward loop at T=50
  // ran 1.34-1.38x faster side by side). Such rows are copied to `padded` for the
  // product, two steps of them: a thread may write step t - 1's while another still
  // reads step t's.
  static constexpr int kRowPad = 16;
  const bool pad_rows;
  const int padded_stride;
  Floats padded;
  StepClaims claims;

  BackwardLoop(int steps, int batch, int units, const Grad& grad, int slices)
      : steps(steps), batch(batch), units(units), grad(grad),
        begin(SliceBegins(units, slices)), packed(slices), products(slices),
        pad_rows(Grad::kGates * units % 1024 == 0),
        padded_stride(Grad::kGates * units + kRowPad),
        padded(pad_rows ? 2 * static_cast<size_t>(batch) * padded_stride : 0),
        claims(slices, steps + 1) {}

  float* PaddedRow(int t, int b) {
    return padded.data() + (static_cast<size_t>(t % 2) * batch + b) * padded_stride;
  }

  bool Valid(int t, int b) const {
    return mask == nullptr || mask[static_cast<size_t>(t) * batch + b];
  }

  void Compute(int slice, int phase) {
    const int j0 = begin[slice], width = begin[slice + 1] - j0, gates = Grad::kGates;
    if (width == 0) return;
    const int panels = (width + kGemmPanel - 1) / kGemmPanel, stride = panels * kGemmPanel;
    if (phase == 0) {
      packed[slice] = PackTransposedSlice(kernel, units, gates, j0, j0 + width);
      products[slice].resize(static_cast<size_t>(batch) * stride);
    }
    if (phase > 0) {  // dh through step t, into h_{t-1}
      const int t = steps - phase;
      const Operand dz_t = pad_rows ? Operand{PaddedRow(t, 0), padded_stride, gates * units,
                                              packed[slice].data()}
                                    : Operand{dz + static_cast<size_t>(t) * batch * gates * units,
                                              gates * units, gates * units, packed[slice].data()};
      BatchProduct(batch, {dz_t}, panels, products[slice].data());
      for (int b = 0; b < batch; ++b)
        if (Valid(t, b))  // a masked step passed dh through unchanged
          grad.Through(t, b, j0, width, products[slice].data() + static_cast<size_t>(b) * stride,
                       dh + static_cast<size_t>(b) * units + j0);
    }
    if (phase < steps) GateGradients(steps - 1 - phase, j0, width);
  }

  void GateGradients(int t, int j0, int width) {
    const int gates = Grad::kGates;
    for (int b = 0; b < batch; ++b) {
      const size_t row = static_cast<size_t>(t) * batch + b;
      float* d_h = dh + static_cast<size_t>(b) * units + j0;
      const float* upstream = d_hs + row * units + j0;
      for (int j = 0; j < width; ++j) d_h[j] += upstream[j];
      float* dz_row = dz + row * gates * units + j0;
      if (Valid(t, b)) {
        grad.Gates(t, b, j0, width, d_h, dz_row);
      } else {
        for (int g = 0; g < gates; ++g) std::fill_n(dz_row + g * units, width, 0.0f);
        grad.Masked(t, b, j0, width);
      }
      if (!pad_rows) continue;
      float* padded_row = PaddedRow(t, b) + j0;
      for (int g = 0; g < gates; ++g)
        std::memcpy(padded_row + g * units, dz_row + g * units, width * sizeof(float));
    }
  }
};

// The LSTM's gate derivatives (dz = d of the pre-activations i, f, c~, o), from the kept
// activated gates and cell states; dc is carried here.
struct LstmGrad {
  static constexpr int kGates = 4;
  int batch, units;
  const float *c0, *cs, *gates;  // [B, U], [T, B, U], [T, B, 4U]
  float* dc;                     // [B, U]: d_c_last in, dc0 out

  void Gates(int t, int b, int j0, int width, const float* d_h, float* dz) const {
    const size_t row = static_cast<size_t>(t) * batch + b, state = static_cast<size_t>(b) * units;
    const float* g_row = gates + row * 4 * units + j0;
    const float *gi = g_row, *gf = g_row + units, *gg = g_row + 2 * units, *go = g_row + 3 * units;
    const float* c = cs + row * units + j0;
    const float* c_prev = (t > 0 ? cs + (row - batch) * units : c0 + state) + j0;
    float* dc_j = dc + state + j0;
    float *dzi = dz, *dzf = dz + units, *dzg = dz + 2 * units, *dzo = dz + 3 * units;
    ForEachBlock(
        width,
        [&](auto isa, int j) {
          using I = decltype(isa);
          const auto one = I::Set1(1.0f), dh = I::Load(d_h + j);
          const auto i = I::Load(gi + j), f = I::Load(gf + j), g = I::Load(gg + j),
                     o = I::Load(go + j), tanh_c = I::Tanh(I::Load(c + j));
          const auto step_dc =
              I::Fma(I::Mul(dh, o), I::Fnma(tanh_c, tanh_c, one), I::Load(dc_j + j));
          I::Store(dzi + j, I::Mul(I::Mul(step_dc, g), I::Mul(i, I::Sub(one, i))));
          I::Store(dzf + j,
                   I::Mul(I::Mul(step_dc, I::Load(c_prev + j)), I::Mul(f, I::Sub(one, f))));
          I::Store(dzg + j, I::Mul(I::Mul(step_dc, i), I::Fnma(g, g, one)));
          I::Store(dzo + j, I::Mul(I::Mul(dh, tanh_c), I::Mul(o, I::Sub(one, o))));
          I::Store(dc_j + j, I::Mul(step_dc, f));
        },
        [&](int j) {
          const float i = gi[j], f = gf[j], g = gg[j], o = go[j], tanh_c = std::tanh(c[j]);
          const float step_dc = dc_j[j] + d_h[j] * o * (1.0f - tanh_c * tanh_c);
          dzi[j] = step_dc * g * i * (1.0f - i);
          dzf[j] = step_dc * c_prev[j] * f * (1.0f - f);
          dzg[j] = step_dc * i * (1.0f - g * g);
          dzo[j] = d_h[j] * tanh_c * o * (1.0f - o);
          dc_j[j] = step_dc * f;
        });
  }
  void Masked(int, int, int, int) const {}  // dc passes through
  void Through(int, int, int, int width, const float* product, float* dh) const {
    std::memcpy(dh, product, width * sizeof(float));
  }
};

// The GRU's (reset_after): from the kept z, r, h~ and hr's h~ block, dz = the gradient of
// hr = h @ U + b_r ([d z_pre, d r_pre, d h~_pre * r]) and d_xw, that of x @ W + b
// ([d z_pre, d r_pre, d h~_pre]); h_{t-1} also gets dh * z directly.
struct GruGrad {
  static constexpr int kGates = 3;
  int batch, units;
  const float *h0, *hs, *gates;  // [B, U], [T, B, U], [T, B, 4U]
  float* d_xw;                   // out: [T, B, 3U]

  void Gates(int t, int b, int j0, int width, const float* d_h, float* dz) const {
    const size_t row = static_cast<size_t>(t) * batch + b;
    const float* g_row = gates + row * 4 * units + j0;
    const float *gz = g_row, *gr = g_row + units, *gh = g_row + 2 * units,
                *ghr = g_row + 3 * units;
    const float* h_prev =
        (t > 0 ? hs + (row - batch) * units : h0 + static_cast<size_t>(b) * units) + j0;
    float* dx = d_xw + row * 3 * units + j0;
    ForEachBlock(
        width,
        [&](auto isa, int j) {
          using I = decltype(isa);
          const auto one = I::Set1(1.0f), dh = I::Load(d_h + j);
          const auto z = I::Load(gz + j), r = I::Load(gr + j), hh = I::Load(gh + j);
          const auto d_zpre =
              I::Mul(I::Mul(dh, I::Sub(I::Load(h_prev + j), hh)), I::Mul(z, I::Sub(one, z)));
          const auto d_hpre = I::Mul(I::Mul(dh, I::Sub(one, z)), I::Fnma(hh, hh, one));
          const auto d_rpre =
              I::Mul(I::Mul(d_hpre, I::Load(ghr + j)), I::Mul(r, I::Sub(one, r)));
          I::Store(dz + j, d_zpre);
          I::Store(dz + units + j, d_rpre);
          I::Store(dz + 2 * units + j, I::Mul(d_hpre, r));
          I::Store(dx + j, d_zpre);
          I::Store(dx + units + j, d_rpre);
          I::Store(dx + 2 * units + j, d_hpre);
        },
        [&](int j) {
          const float z = gz[j], r = gr[j], hh = gh[j];
          const float d_zpre = d_h[j] * (h_prev[j] - hh) * z * (1.0f - z);
          const float d_hpre = d_h[j] * (1.0f - z) * (1.0f - hh * hh);
          const float d_rpre = d_hpre * ghr[j] * r * (1.0f - r);
          dz[j] = d_zpre;
          dz[units + j] = d_rpre;
          dz[2 * units + j] = d_hpre * r;
          dx[j] = d_zpre;
          dx[units + j] = d_rpre;
          dx[2 * units + j] = d_hpre;
        });
  }
  void Masked(int t, int b, int j0, int width) const {
    float* dx = d_xw + (static_cast<size_t>(t) * batch + b) * 3 * units + j0;
    for (int g = 0; g < 3; ++g) std::fill_n(dx + g * units, width, 0.0f);
  }
  void Through(int t, int b, int j0, int width, const float* product, float* dh) const {
    const float* z = gates + (static_cast<size_t>(t) * batch + b) * 4 * units + j0;
    for (int j = 0; j < width; ++j) dh[j] = product[j] + dh[j] * z[j];
  }
};

// ---------------------------------------------------------------------------------------
// The ops.
// ---------------------------------------------------------------------------------------

// Output `index` of `shape`; nullptr if it could not be allocated (the status says why).
float* AllocateOutput(OpKernelContext* context, int index, const TensorShape& shape) {
  Tensor* out = nullptr;
  auto status = context->allocate_output(index, shape, &out);
  if (!status.ok()) return context->SetStatus(status), nullptr;
  return out->flat<float>().data();
}

// The ops, for inference and, with keep_all, for a training forward pass (every step's
// h, and c and the activated gates as the XLA loops of zoo.layers.fast_recurrent keep
// them).
class SequenceOp : public OpKernel {
 public:
  explicit SequenceOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("return_sequences", &return_sequences_));
    OP_REQUIRES_OK(context, context->GetAttr("keep_all", &keep_all_));
    OP_REQUIRES_OK(context, context->GetAttr("hoist_inputs", &hoist_inputs_));
    OP_REQUIRES_OK(context, context->GetAttr("batch_major", &batch_major_));
  }

  // Run inline on the executor's thread: the op schedules its own helper threads, and
  // a hop to another inter-op thread first only adds a wake-up to the latency.
  bool IsExpensive() override { return false; }

 protected:
  // Output `index`, [steps, batch, width]; nullptr if it has no steps or could not be
  // allocated (then the status says why). The loop writes every h and c; the gates of
  // masked steps are never computed, so `zeros` fills them first.
  float* Output(OpKernelContext* context, int index, int steps, int batch, int width,
                bool zeros = false) {
    float* out = AllocateOutput(context, index, TensorShape({steps, batch, width}));
    if (out == nullptr) return nullptr;
    if (zeros) std::fill_n(out, static_cast<size_t>(steps) * batch * width, 0.0f);
    return steps > 0 ? out : nullptr;
  }

  // Output `index`, a state initialized from `initial`.
  float* State(OpKernelContext* context, int index, const Tensor& initial) {
    float* out = AllocateOutput(context, index, initial.shape());
    if (out != nullptr)
      std::memcpy(out, initial.flat<float>().data(), initial.NumElements() * sizeof(float));
    return out;
  }

  int OutputSteps(const Sequence& seq) const {
    return return_sequences_ || keep_all_ ? seq.steps : 0;
  }
  int KeptSteps(const Sequence& seq) const { return keep_all_ ? seq.steps : 0; }

  bool return_sequences_ = true, keep_all_ = false, hoist_inputs_ = false, batch_major_ = false;
  // Inference reuses them while the kernels are the same tensors; training's kernels
  // change every step, and holding them would make each update copy them.
  PackedKernels kernels_;  // guarded by RecurrenceMutex
};

class LstmSequenceOp : public SequenceOp {
 public:
  using SequenceOp::SequenceOp;
  void Compute(OpKernelContext* context) override {
    const Tensor &inputs = context->input(0), &kernel = context->input(1),
                 &bias = context->input(2), &recurrent_kernel = context->input(3),
                 &h0 = context->input(4), &c0 = context->input(5), &mask = context->input(6);
    Sequence seq;
    OP_REQUIRES_OK(context, CheckInputs(inputs, kernel, bias, recurrent_kernel, h0, mask,
                                        LstmCell::kGates, batch_major_, &seq));
    seq.hoist_inputs = hoist_inputs_;
    OP_REQUIRES(context, c0.shape() == h0.shape(),
                InvalidArgument("h0 and c0 must have one shape"));
    Kept kept;
    kept.hs = Output(context, 0, OutputSteps(seq), seq.batch, seq.units);
    float* h = State(context, 1, h0);
    float* c = State(context, 2, c0);
    kept.cs = Output(context, 3, KeptSteps(seq), seq.batch, seq.units);
    kept.gates = Output(context, 4, KeptSteps(seq), seq.batch, LstmCell::kKeptGates * seq.units,
                        seq.mask != nullptr);
    if (!context->status().ok()) return;
    RunRecurrence(context, seq, LstmCell{}, h, c, kept, kernels_, !keep_all_);
  }
};

class GruSequenceOp : public SequenceOp {
 public:
  using SequenceOp::SequenceOp;
  void Compute(OpKernelContext* context) override {
    const Tensor &inputs = context->input(0), &kernel = context->input(1),
                 &input_bias = context->input(2), &recurrent_kernel = context->input(3),
                 &recurrent_bias = context->input(4), &h0 = context->input(5),
                 &mask = context->input(6);
    Sequence seq;
    OP_REQUIRES_OK(context, CheckInputs(inputs, kernel, input_bias, recurrent_kernel, h0, mask,
                                        GruCell::kGates, batch_major_, &seq));
    seq.hoist_inputs = hoist_inputs_;
    OP_REQUIRES(context, recurrent_bias.shape() == input_bias.shape(),
                InvalidArgument("recurrent_bias must be [3U], got ",
                                recurrent_bias.shape().DebugString()));
    Kept kept;
    kept.hs = Output(context, 0, OutputSteps(seq), seq.batch, seq.units);
    float* h = State(context, 1, h0);
    kept.gates = Output(context, 2, KeptSteps(seq), seq.batch, GruCell::kKeptGates * seq.units,
                        seq.mask != nullptr);
    if (!context->status().ok()) return;
    RunRecurrence(context, seq, GruCell{recurrent_bias.flat<float>().data()}, h, nullptr, kept,
                  kernels_, !keep_all_);
  }
};

// The backward ops' shared inputs: recurrent_kernel [U, gates * U], an initial state
// [B, U], the kept states [T, B, U] and gates [T, B, 4U], d_hs [T, B, U] and the mask.
tensorflow::Status CheckBackwardInputs(const Tensor& kernel, const Tensor& state0,
                                       const Tensor& states, const Tensor& gates,
                                       const Tensor& d_hs, const Tensor& mask, int kernel_gates) {
  if (kernel.dims() != 2 || state0.dims() != 2 || states.dims() != 3 || gates.dims() != 3 ||
      d_hs.dims() != 3)
    return InvalidArgument("expected recurrent_kernel [U, gates*U], initial state [B, U], kept "
                           "states [T, B, U], kept gates [T, B, 4U], d_hs [T, B, U]");
  const int64_t steps = states.dim_size(0), batch = states.dim_size(1),
                units = states.dim_size(2);
  if (kernel.shape() != TensorShape({units, kernel_gates * units}) ||
      state0.shape() != TensorShape({batch, units}) || d_hs.shape() != states.shape() ||
      gates.shape() != TensorShape({steps, batch, 4 * units}))
    return InvalidArgument("inconsistent recurrent shapes: states ", states.shape().DebugString(),
                           ", gates ", gates.shape().DebugString(), ", recurrent_kernel ",
                           kernel.shape().DebugString(), ", initial state ",
                           state0.shape().DebugString(), ", d_hs ", d_hs.shape().DebugString());
  if (mask.NumElements() > 0 &&
      (mask.dims() != 2 || mask.dim_size(0) != steps || mask.dim_size(1) != batch))
    return InvalidArgument("mask must be [T, B] or empty, got ", mask.shape().DebugString());
  return tensorflow::OkStatus();
}

class BackwardOp : public OpKernel {
 public:
  using OpKernel::OpKernel;
  bool IsExpensive() override { return false; }  // as SequenceOp

 protected:
  // Runs the loop: `dz` [T, B, gates * U] and the carried dh (out: dh0) from d_hs.
  template <typename Grad>
  void Run(OpKernelContext* context, const Grad& grad, const Tensor& kernel, const Tensor& d_hs,
           const Tensor& mask, float* dz, float* dh) {
    const int steps = d_hs.dim_size(0), batch = d_hs.dim_size(1), units = d_hs.dim_size(2);
    std::fill_n(dh, static_cast<size_t>(batch) * units, 0.0f);
    std::lock_guard<std::mutex> one_at_a_time(RecurrenceMutex());
    const int threads = ThreadCount(context, units);
    auto state = std::make_shared<BackwardLoop<Grad>>(steps, batch, units, grad, threads);
    state->kernel = kernel.flat<float>().data();
    state->d_hs = d_hs.flat<float>().data();
    state->mask = mask.NumElements() > 0 ? mask.flat<bool>().data() : nullptr;
    state->dz = dz;
    state->dh = dh;
    RunClaimed(state, threads);
  }
};

class LstmBackwardOp : public BackwardOp {
 public:
  using BackwardOp::BackwardOp;
  void Compute(OpKernelContext* context) override {
    const Tensor &kernel = context->input(0), &c0 = context->input(1), &cs = context->input(2),
                 &gates = context->input(3), &d_hs = context->input(4),
                 &d_c_last = context->input(5), &mask = context->input(6);
    OP_REQUIRES_OK(context, CheckBackwardInputs(kernel, c0, cs, gates, d_hs, mask, 4));
    OP_REQUIRES(context, d_c_last.shape() == c0.shape(),
                InvalidArgument("d_c_last must be [B, U] like c0"));
    float* dz = AllocateOutput(context, 0, gates.shape());
    float* dh0 = AllocateOutput(context, 1, c0.shape());
    float* dc0 = AllocateOutput(context, 2, c0.shape());
    if (!context->status().ok()) return;
    std::memcpy(dc0, d_c_last.flat<float>().data(), d_c_last.NumElements() * sizeof(float));
    const LstmGrad grad{static_cast<int>(cs.dim_size(1)), static_cast<int>(cs.dim_size(2)),
                        c0.flat<float>().data(), cs.flat<float>().data(),
                        gates.flat<float>().data(), dc0};
    Run(context, grad, kernel, d_hs, mask, dz, dh0);
  }
};

class GruBackwardOp : public BackwardOp {
 public:
  using BackwardOp::BackwardOp;
  void Compute(OpKernelContext* context) override {
    const Tensor &kernel = context->input(0), &h0 = context->input(1), &hs = context->input(2),
                 &gates = context->input(3), &d_hs = context->input(4), &mask = context->input(5);
    OP_REQUIRES_OK(context, CheckBackwardInputs(kernel, h0, hs, gates, d_hs, mask, 3));
    const TensorShape shape({hs.dim_size(0), hs.dim_size(1), 3 * hs.dim_size(2)});
    float* d_recurrent = AllocateOutput(context, 0, shape);
    float* d_xw = AllocateOutput(context, 1, shape);
    float* dh0 = AllocateOutput(context, 2, h0.shape());
    if (!context->status().ok()) return;
    const GruGrad grad{static_cast<int>(hs.dim_size(1)), static_cast<int>(hs.dim_size(2)),
                       h0.flat<float>().data(), hs.flat<float>().data(),
                       gates.flat<float>().data(), d_xw};
    Run(context, grad, kernel, d_hs, mask, d_recurrent, dh0);
  }
};

}  // namespace

// Shapes of the ops' outputs: hs, the states, then kept [T, B, n * U] values.
tensorflow::Status SequenceShapes(tensorflow::shape_inference::InferenceContext* c,
                                  int state_input, int states, std::vector<int> kept_units) {
  bool return_sequences, keep_all, batch_major;
  TF_RETURN_IF_ERROR(c->GetAttr("return_sequences", &return_sequences));
  TF_RETURN_IF_ERROR(c->GetAttr("keep_all", &keep_all));
  TF_RETURN_IF_ERROR(c->GetAttr("batch_major", &batch_major));
  auto state = c->input(state_input);
  auto steps = c->Dim(c->input(0), batch_major ? 1 : 0), none = c->MakeDim(0);
  auto batch = c->Dim(state, 0), units = c->Dim(state, 1);
  c->set_output(0, c->MakeShape({return_sequences || keep_all ? steps : none, batch, units}));
  for (int i = 1; i <= states; ++i) c->set_output(i, state);
  for (size_t i = 0; i < kept_units.size(); ++i) {
    tensorflow::shape_inference::DimensionHandle width;
    TF_RETURN_IF_ERROR(c->Multiply(units, kept_units[i], &width));
    c->set_output(states + 1 + i, c->MakeShape({keep_all ? steps : none, batch, width}));
  }
  return tensorflow::OkStatus();
}

REGISTER_OP("ZooLstmSequence")
    .Input("inputs: float")            // [T, B, F] ([B, T, F] if batch_major)
    .Input("kernel: float")            // [F, 4U]
    .Input("bias: float")              // [4U]
    .Input("recurrent_kernel: float")  // [U, 4U]
    .Input("h0: float")                // [B, U]
    .Input("c0: float")                // [B, U]
    .Input("mask: bool")               // [T, B]; empty: every step is valid
    .Attr("return_sequences: bool = true")
    .Attr("keep_all: bool = false")
    .Attr("hoist_inputs: bool = false")  // for tiny batches: x @ W + b of all steps first
    .Attr("batch_major: bool = false")   // inputs [B, T, F]; outputs stay [T, B, ...]
    .Output("hs: float")     // [T, B, U]; [0, B, U] without return_sequences or keep_all
    .Output("h: float")
    .Output("c: float")
    .Output("cs: float")     // [T, B, U] with keep_all, else [0, B, U]
    .Output("gates: float")  // [T, B, 4U]: activated i, f, c~, o with keep_all, else [0, B, 4U]
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      return SequenceShapes(c, 4, 2, {1, 4});
    });

REGISTER_OP("ZooGruSequence")
    .Input("inputs: float")            // [T, B, F] ([B, T, F] if batch_major)
    .Input("kernel: float")            // [F, 3U]
    .Input("input_bias: float")        // [3U]
    .Input("recurrent_kernel: float")  // [U, 3U]
    .Input("recurrent_bias: float")    // [3U]
    .Input("h0: float")                // [B, U]
    .Input("mask: bool")               // [T, B]; empty: every step is valid
    .Attr("return_sequences: bool = true")
    .Attr("keep_all: bool = false")
    .Attr("hoist_inputs: bool = false")  // for tiny batches: x @ W + b of all steps first
    .Attr("batch_major: bool = false")   // inputs [B, T, F]; outputs stay [T, B, ...]
    .Output("hs: float")     // [T, B, U]; [0, B, U] without return_sequences or keep_all
    .Output("h: float")
    .Output("gates: float")  // [T, B, 4U]: z, r, h~, (h @ U + b)'s h~ block with keep_all
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      return SequenceShapes(c, 5, 1, {4});
    });

REGISTER_OP("ZooLstmBackward")
    .Input("recurrent_kernel: float")  // [U, 4U]
    .Input("c0: float")                // [B, U]
    .Input("cs: float")                // [T, B, U]: every step's c, as ZooLstmSequence keeps it
    .Input("gates: float")             // [T, B, 4U]: activated i, f, c~, o
    .Input("d_hs: float")              // [T, B, U]: upstream gradient of every step's h
    .Input("d_c_last: float")          // [B, U]
    .Input("mask: bool")               // [T, B]; empty: every step is valid
    .Output("dz: float")               // [T, B, 4U]: gradient of x_t @ W + h @ U + b
    .Output("dh0: float")
    .Output("dc0: float")
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      c->set_output(0, c->input(3));
      c->set_output(1, c->input(1));
      c->set_output(2, c->input(1));
      return tensorflow::OkStatus();
    });

REGISTER_OP("ZooGruBackward")
    .Input("recurrent_kernel: float")  // [U, 3U]
    .Input("h0: float")                // [B, U]
    .Input("hs: float")                // [T, B, U]: every step's h
    .Input("gates: float")             // [T, B, 4U]: z, r, h~, hr's h~ block (ZooGruSequence)
    .Input("d_hs: float")              // [T, B, U]: upstream gradient of every step's h
    .Input("mask: bool")               // [T, B]; empty: every step is valid
    .Output("d_recurrent: float")      // [T, B, 3U]: gradient of h @ U + b_r
    .Output("d_xw: float")             // [T, B, 3U]: gradient of x_t @ W + b
    .Output("dh0: float")
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      auto kept = c->input(2);
      tensorflow::shape_inference::DimensionHandle width;
      TF_RETURN_IF_ERROR(c->Multiply(c->Dim(kept, 2), 3, &width));
      auto shape = c->MakeShape({c->Dim(kept, 0), c->Dim(kept, 1), width});
      c->set_output(0, shape);
      c->set_output(1, shape);
      c->set_output(2, c->input(1));
      return tensorflow::OkStatus();
    });

REGISTER_KERNEL_BUILDER(Name("ZooLstmSequence").Device(tensorflow::DEVICE_CPU), LstmSequenceOp);
REGISTER_KERNEL_BUILDER(Name("ZooGruSequence").Device(tensorflow::DEVICE_CPU), GruSequenceOp);
REGISTER_KERNEL_BUILDER(Name("ZooLstmBackward").Device(tensorflow::DEVICE_CPU), LstmBackwardOp);
REGISTER_KERNEL_BUILDER(Name("ZooGruBackward").Device(tensorflow::DEVICE_CPU), GruBackwardOp);

}  // namespace zoo
