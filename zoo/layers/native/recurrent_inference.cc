// Inference-only LSTM / GRU loops for tiny batches on a CPU, as TensorFlow custom ops.
//
// Why: at batch 1 a recurrent step is a [1, U] x [U, nU] vector-matrix product. XLA and
// TF run it on one core, streaming the whole recurrent kernel (1 MB at U=256, LSTM) from
// the shared L3 cache every step. Here the gate columns are split between the worker
// threads: each thread packs its slice of the kernel once per call (which also loads it
// into that core's own L2), then every step multiplies only its slice, updates its own
// units, and meets the other threads at a spin barrier before the next step.
//
// The ops take the input projection x_t @ W + b precomputed for all steps (one big
// matmul, done by TF) and compute exactly what zoo.layers.fast_recurrent's XLA loops
// compute (Keras gate order; GRU with reset_after=True), to float32 round-off.
// Built on first use by zoo/layers/native/__init__.py; nothing here is needed for
// training, which keeps the XLA loops and their hand-written gradients.

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define ZOO_AVX2 1
#endif

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/platform/threadpool.h"

namespace zoo {
namespace {

using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using tensorflow::errors::InvalidArgument;

// ---------------------------------------------------------------------------------------
// Vectorized activations. exp follows the classic range reduction x = n ln2 + r with a
// degree-6 polynomial for e^r (relative error about 2 float32 ulp).
// ---------------------------------------------------------------------------------------

#ifdef ZOO_AVX2
inline __m256 Exp8(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
  __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                             _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  __m256i exponent = _mm256_slli_epi32(
      _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(exponent));
}

inline __m256 Sigmoid8(__m256 x) {
  const __m256 one = _mm256_set1_ps(1.0f);
  return _mm256_div_ps(one, _mm256_add_ps(one, Exp8(_mm256_sub_ps(_mm256_setzero_ps(), x))));
}

// tanh(x) = 1 - 2 / (e^{2x} + 1): exact at both tails, absolute error ~1e-7 near 0.
inline __m256 Tanh8(__m256 x) {
  const __m256 one = _mm256_set1_ps(1.0f);
  __m256 e = Exp8(_mm256_add_ps(x, x));
  return _mm256_sub_ps(one, _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, one)));
}
#endif

inline float Sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

// Applies `vector_op` to whole 8-float blocks and `scalar_op` to the rest.
template <typename VectorOp, typename ScalarOp>
inline void ForEachBlock(int n, VectorOp vector_op, ScalarOp scalar_op) {
  int j = 0;
#ifdef ZOO_AVX2
  for (; j + 8 <= n; j += 8) vector_op(j);
#endif
  for (; j < n; ++j) scalar_op(j);
}

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
// Threads. The units are split into one slice per thread. Every step, each participant
// claims slices of that step (its own first, so each slice stays in one core's L2),
// computes them, and waits for the step's other slices. A participant that finds no
// slice left only waits for slices being computed, never for a thread to start, so the
// caller finishes alone if the pool is busy: no deadlock, and a descheduled helper
// costs one slice, not a stalled barrier.
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

// This thread's columns of a [units, gates * units] kernel, the gate columns
// g * units + j for g < gates and j in [begin, end) in gate-major order, in
// `VectorMatrix`'s panel layout.
std::vector<float> PackSlice(const float* kernel, int units, int gates, int begin, int end) {
  const int width = end - begin, columns = gates * width;
  std::vector<float> packed(static_cast<size_t>(units) * columns);
  for (int c = 0; c < columns; c += kPanel) {
    const int panel_width = std::min(kPanel, columns - c);
    float* panel = packed.data() + static_cast<size_t>(c) * units;
    for (int k = 0; k < units; ++k) {
      const float* row = kernel + static_cast<size_t>(k) * gates * units;
      for (int q = 0; q < panel_width;) {  // runs of columns that are contiguous in `row`
        const int column = c + q, gate = column / width, unit = column % width;
        const int run = std::min(panel_width - q, width - unit);
        std::memcpy(panel + static_cast<size_t>(k) * panel_width + q,
                    row + gate * units + begin + unit, run * sizeof(float));
        q += run;
      }
    }
  }
  return packed;
}

// The inputs every recurrent op shares, checked.
struct Sequence {
  int steps, batch, units;
  const float* projected;   // [T, B, gates * U]
  const float* kernel;      // [U, gates * U]
  const bool* mask;         // [T, B] or nullptr
};

tensorflow::Status CheckInputs(const Tensor& projected, const Tensor& kernel, const Tensor& h0,
                               const Tensor& mask, int gates, Sequence* sequence) {
  if (projected.dims() != 3 || kernel.dims() != 2 || h0.dims() != 2)
    return InvalidArgument("expected projected [T, B, gates*U], kernel [U, gates*U], state [B, U]");
  const int units = h0.dim_size(1);
  if (kernel.dim_size(0) != units || kernel.dim_size(1) != gates * units ||
      projected.dim_size(2) != gates * units || projected.dim_size(1) != h0.dim_size(0))
    return InvalidArgument("inconsistent recurrent shapes: projected ",
                           projected.shape().DebugString(), ", kernel ",
                           kernel.shape().DebugString(), ", state ", h0.shape().DebugString());
  const bool masked = mask.NumElements() > 0;
  if (masked && (mask.dims() != 2 || mask.dim_size(0) != projected.dim_size(0) ||
                 mask.dim_size(1) != projected.dim_size(1)))
    return InvalidArgument("mask must be [T, B] or empty, got ", mask.shape().DebugString());
  *sequence = {static_cast<int>(projected.dim_size(0)), static_cast<int>(projected.dim_size(1)),
               units, projected.flat<float>().data(), kernel.flat<float>().data(),
               masked ? mask.flat<bool>().data() : nullptr};
  return tensorflow::OkStatus();
}

// The loop both cells share. `Cell` has kGates and
//   Update(const float* x, const float* hu, int j0, int width, int units, float* h, float* c)
// which turns step t's input projection x (this row, all gates), this slice's h @ U
// columns hu ([gates, width]) into the new h (and c) of units [j0, j0 + width).
template <typename Cell>
struct Recurrence {
  Sequence seq;
  Cell cell;
  float *h, *c, *hs;             // outputs: final states (in: initial states), every h
  std::vector<float> h_other;    // h is double-buffered: step t reads one, writes the other
  std::vector<int> begin;        // slice i holds units [begin[i], begin[i + 1])
  std::vector<std::vector<float>> packed, products;  // per slice: kernel columns, h @ U
  StepClaims claims;

  Recurrence(const Sequence& s, const Cell& cell, float* h, float* c, float* hs, int slices)
      : seq(s), cell(cell), h(h), c(c), hs(hs),
        h_other(h, h + static_cast<size_t>(s.batch) * s.units), begin(slices + 1),
        packed(slices), products(slices), claims(slices, s.steps) {
    const int blocks = (s.units + 7) / 8;  // whole 8-unit blocks keep columns vector-aligned
    for (int i = 0; i <= slices; ++i) begin[i] = std::min(s.units, blocks * i / slices * 8);
  }

  void Compute(int slice, int t) {
    const int j0 = begin[slice], width = begin[slice + 1] - j0, gates = Cell::kGates;
    if (width == 0) return;
    if (t == 0) {  // packed by the thread that first computes the slice: into its cache
      packed[slice] = PackSlice(seq.kernel, seq.units, gates, j0, j0 + width);
      products[slice].resize(static_cast<size_t>(gates) * width);
    }
    const float* current = t % 2 == 0 ? h : h_other.data();
    float* next = t % 2 == 0 ? h_other.data() : h;
    for (int b = 0; b < seq.batch; ++b) {
      const float* h_row = current + static_cast<size_t>(b) * seq.units;
      float* next_row = next + static_cast<size_t>(b) * seq.units;
      std::memcpy(next_row + j0, h_row + j0, width * sizeof(float));
      const bool valid = seq.mask == nullptr || seq.mask[static_cast<size_t>(t) * seq.batch + b];
      if (valid) {  // else the step keeps the previous state
        VectorMatrix(h_row, packed[slice].data(), seq.units, gates * width,
                     products[slice].data());
        const float* x =
            seq.projected + (static_cast<size_t>(t) * seq.batch + b) * gates * seq.units;
        cell.Update(x, products[slice].data(), j0, width, seq.units, next_row,
                    c == nullptr ? nullptr : c + static_cast<size_t>(b) * seq.units);
      }
      if (hs != nullptr)
        std::memcpy(hs + (static_cast<size_t>(t) * seq.batch + b) * seq.units + j0,
                    next_row + j0, width * sizeof(float));
    }
  }
};

// Runs the recurrence on this thread and up to ThreadCount - 1 helpers from the
// device's intra-op pool. Helpers share ownership of the state, so one that starts
// after the caller returned finds the work done and touches nothing else.
template <typename Cell>
void RunRecurrence(OpKernelContext* context, const Sequence& seq, const Cell& cell,
                   float* h, float* c, float* hs) {
  std::lock_guard<std::mutex> one_at_a_time(RecurrenceMutex());
  const int threads = ThreadCount(context, seq.units);
  auto state = std::make_shared<Recurrence<Cell>>(seq, cell, h, c, hs, threads);
  auto* pool = context->device()->tensorflow_cpu_worker_threads()->workers;
  for (int i = 1; i < threads; ++i) {
    pool->Schedule([state, i] {
      if (!state->claims.Done())
        state->claims.Participate(i, [&](int slice, int t) { state->Compute(slice, t); });
    });
  }
  state->claims.Participate(0, [&](int slice, int t) { state->Compute(slice, t); });
  if (seq.steps % 2 == 1)  // the last step wrote the other buffer
    std::memcpy(h, state->h_other.data(), state->h_other.size() * sizeof(float));
}

// ---------------------------------------------------------------------------------------
// LSTM: gates i, f, c~, o; c = f c + i c~, h = o tanh(c).
// ---------------------------------------------------------------------------------------

struct LstmCell {
  static constexpr int kGates = 4;
  void Update(const float* x, const float* hu, int j0, int width, int units, float* h,
              float* c) const {
    const float *xi = x + j0, *xf = x + units + j0, *xg = x + 2 * units + j0,
                *xo = x + 3 * units + j0;
    const float *ui = hu, *uf = hu + width, *ug = hu + 2 * width, *uo = hu + 3 * width;
    float* hj = h + j0;
    float* cj = c + j0;
    ForEachBlock(
        width,
        [&](int j) {
#ifdef ZOO_AVX2
          auto z = [&](const float* a, const float* b) {
            return _mm256_add_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(b + j));
          };
          __m256 i = Sigmoid8(z(xi, ui)), f = Sigmoid8(z(xf, uf)), g = Tanh8(z(xg, ug)),
                 o = Sigmoid8(z(xo, uo));
          __m256 new_c = _mm256_fmadd_ps(f, _mm256_loadu_ps(cj + j), _mm256_mul_ps(i, g));
          _mm256_storeu_ps(cj + j, new_c);
          _mm256_storeu_ps(hj + j, _mm256_mul_ps(o, Tanh8(new_c)));
#endif
        },
        [&](int j) {
          const float i = Sigmoid(xi[j] + ui[j]), f = Sigmoid(xf[j] + uf[j]),
                      g = std::tanh(xg[j] + ug[j]), o = Sigmoid(xo[j] + uo[j]);
          cj[j] = f * cj[j] + i * g;
          hj[j] = o * std::tanh(cj[j]);
        });
  }
};

// ---------------------------------------------------------------------------------------
// GRU (reset_after): hr = h @ U + b_r; z, r = sigmoid(x_zr + hr_zr);
// h~ = tanh(x_h + r * hr_h); h = z h + (1 - z) h~.
// ---------------------------------------------------------------------------------------

struct GruCell {
  static constexpr int kGates = 3;
  const float* recurrent_bias;  // [3U]
  void Update(const float* x, const float* hu, int j0, int width, int units, float* h,
              float*) const {
    const float *xz = x + j0, *xr = x + units + j0, *xh = x + 2 * units + j0;
    const float *bz = recurrent_bias + j0, *br = recurrent_bias + units + j0,
                *bh = recurrent_bias + 2 * units + j0;
    const float *uz = hu, *ur = hu + width, *uh = hu + 2 * width;
    float* hj = h + j0;
    ForEachBlock(
        width,
        [&](int j) {
#ifdef ZOO_AVX2
          auto load = [&](const float* a) { return _mm256_loadu_ps(a + j); };
          __m256 z = Sigmoid8(_mm256_add_ps(load(xz), _mm256_add_ps(load(uz), load(bz))));
          __m256 r = Sigmoid8(_mm256_add_ps(load(xr), _mm256_add_ps(load(ur), load(br))));
          __m256 candidate =
              Tanh8(_mm256_fmadd_ps(r, _mm256_add_ps(load(uh), load(bh)), load(xh)));
          // z h + (1 - z) h~ = h~ + z (h - h~)
          __m256 new_h = _mm256_fmadd_ps(z, _mm256_sub_ps(load(hj), candidate), candidate);
          _mm256_storeu_ps(hj + j, new_h);
#endif
        },
        [&](int j) {
          const float z = Sigmoid(xz[j] + uz[j] + bz[j]), r = Sigmoid(xr[j] + ur[j] + br[j]);
          const float candidate = std::tanh(xh[j] + r * (uh[j] + bh[j]));
          hj[j] = z * hj[j] + (1.0f - z) * candidate;
        });
  }
};

// ---------------------------------------------------------------------------------------
// The ops.
// ---------------------------------------------------------------------------------------

class RecurrentInferenceOp : public OpKernel {
 public:
  explicit RecurrentInferenceOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("return_sequences", &return_sequences_));
  }

  // Run inline on the executor's thread: the op schedules its own helper threads, and
  // a hop to another inter-op thread first only adds a wake-up to the latency.
  bool IsExpensive() override { return false; }

 protected:
  // hs ([T, B, U], or [0, B, U] without return_sequences) and the state outputs,
  // initialized from the initial states; nullptr entries where allocation failed.
  tensorflow::Status Allocate(OpKernelContext* context, const Sequence& seq,
                              const std::vector<const Tensor*>& initial, float** hs,
                              std::vector<float*>* states) {
    Tensor* out = nullptr;
    const int steps = return_sequences_ ? seq.steps : 0;
    TF_RETURN_IF_ERROR(
        context->allocate_output(0, TensorShape({steps, seq.batch, seq.units}), &out));
    *hs = return_sequences_ ? out->flat<float>().data() : nullptr;
    for (size_t i = 0; i < initial.size(); ++i) {
      TF_RETURN_IF_ERROR(context->allocate_output(i + 1, initial[i]->shape(), &out));
      std::memcpy(out->flat<float>().data(), initial[i]->flat<float>().data(),
                  initial[i]->NumElements() * sizeof(float));
      states->push_back(out->flat<float>().data());
    }
    return tensorflow::OkStatus();
  }

  bool return_sequences_ = true;
};

class LstmInferenceOp : public RecurrentInferenceOp {
 public:
  using RecurrentInferenceOp::RecurrentInferenceOp;
  void Compute(OpKernelContext* context) override {
    const Tensor &projected = context->input(0), &kernel = context->input(1),
                 &h0 = context->input(2), &c0 = context->input(3), &mask = context->input(4);
    Sequence seq;
    OP_REQUIRES_OK(context, CheckInputs(projected, kernel, h0, mask, LstmCell::kGates, &seq));
    OP_REQUIRES(context, c0.shape() == h0.shape(),
                InvalidArgument("h0 and c0 must have one shape"));
    float* hs = nullptr;
    std::vector<float*> states;
    OP_REQUIRES_OK(context, Allocate(context, seq, {&h0, &c0}, &hs, &states));
    RunRecurrence(context, seq, LstmCell{}, states[0], states[1], hs);
  }
};

class GruInferenceOp : public RecurrentInferenceOp {
 public:
  using RecurrentInferenceOp::RecurrentInferenceOp;
  void Compute(OpKernelContext* context) override {
    const Tensor &projected = context->input(0), &kernel = context->input(1),
                 &bias = context->input(2), &h0 = context->input(3), &mask = context->input(4);
    Sequence seq;
    OP_REQUIRES_OK(context, CheckInputs(projected, kernel, h0, mask, GruCell::kGates, &seq));
    OP_REQUIRES(context, bias.dims() == 1 && bias.dim_size(0) == 3 * seq.units,
                InvalidArgument("recurrent_bias must be [3U], got ", bias.shape().DebugString()));
    float* hs = nullptr;
    std::vector<float*> states;
    OP_REQUIRES_OK(context, Allocate(context, seq, {&h0}, &hs, &states));
    RunRecurrence(context, seq, GruCell{bias.flat<float>().data()}, states[0], nullptr, hs);
  }
};

tensorflow::Status SequenceShapes(tensorflow::shape_inference::InferenceContext* c,
                                  int state_input, int states) {
  auto state = c->input(state_input);
  auto projected = c->input(0);
  bool return_sequences;
  TF_RETURN_IF_ERROR(c->GetAttr("return_sequences", &return_sequences));
  auto steps = return_sequences ? c->Dim(projected, 0) : c->MakeDim(0);
  c->set_output(0, c->MakeShape({steps, c->Dim(state, 0), c->Dim(state, 1)}));
  for (int i = 1; i <= states; ++i) c->set_output(i, state);
  return tensorflow::OkStatus();
}

}  // namespace

REGISTER_OP("ZooLstmInference")
    .Input("projected: float")         // [T, B, 4U]: x_t @ W + b for every step
    .Input("recurrent_kernel: float")  // [U, 4U]
    .Input("h0: float")                // [B, U]
    .Input("c0: float")                // [B, U]
    .Input("mask: bool")               // [T, B]; empty: every step is valid
    .Attr("return_sequences: bool = true")
    .Output("hs: float")               // [T, B, U]; [0, B, U] without return_sequences
    .Output("h: float")
    .Output("c: float")
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      return SequenceShapes(c, 2, 2);
    });

REGISTER_OP("ZooGruInference")
    .Input("projected: float")         // [T, B, 3U]: x_t @ W + input bias
    .Input("recurrent_kernel: float")  // [U, 3U]
    .Input("recurrent_bias: float")    // [3U]
    .Input("h0: float")                // [B, U]
    .Input("mask: bool")               // [T, B]; empty: every step is valid
    .Attr("return_sequences: bool = true")
    .Output("hs: float")
    .Output("h: float")
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      return SequenceShapes(c, 3, 1);
    });

REGISTER_KERNEL_BUILDER(Name("ZooLstmInference").Device(tensorflow::DEVICE_CPU), LstmInferenceOp);
REGISTER_KERNEL_BUILDER(Name("ZooGruInference").Device(tensorflow::DEVICE_CPU), GruInferenceOp);

}  // namespace zoo
