// Native kernels for a decoding step, as TensorFlow custom ops: its recurrent cell's gates
// (ZooGruCell), its additive attention (ZooAdditiveAttention) and its output rows
// (ZooLogSoftmax, ZooTopK, and the two fused, ZooLogSoftmaxTopK). Every decoding
// step normalizes [N, V] logits and beam search then takes the best few tokens of each
// row; TF's CPU kernels make several passes over the [N, V] tensor for each
// (log_softmax: max, subtract, exp, sum, log, subtract; top_k about 2 ns per element
// even for k = 6), which at beam 5's 320 rows of a 5.6k vocabulary leave the caches
// every time. Here each row is handled whole while it sits in L1/L2, rows split between
// TF's intra-op threads. zoo.decoding and zoo.layers.attention use the ops outside XLA.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/util/work_sharder.h"
#include "vector_math.h"

namespace zoo {
namespace {

using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using tensorflow::errors::InvalidArgument;

// Runs `row_op(begin, end)` over [0, rows) on TF's intra-op threads; `cost` is the
// rough cycles per row the sharder splits by.
template <typename RowOp>
void ForRows(OpKernelContext* context, int64_t rows, int64_t cost, RowOp row_op) {
  auto* workers = context->device()->tensorflow_cpu_worker_threads();
  tensorflow::Shard(workers->num_threads, workers->workers, rows, cost, row_op);
}

// ---------------------------------------------------------------------------------------
// log_softmax of one row: out = (x - max) - log(sum(exp(x - max))), TF's formula. The
// row is read twice while it sits in L1/L2 (max, then the sum of exps) and written once.
// ---------------------------------------------------------------------------------------

float RowMax(const float* x, int n) {
  float best = -std::numeric_limits<float>::infinity();
  int j = 0;
#ifdef ZOO_WIDE
  Wide::V lanes = Wide::Set1(best);
  for (; j + Wide::kLanes <= n; j += Wide::kLanes) lanes = Wide::Max(lanes, Wide::Load(x + j));
  best = Wide::Largest(lanes);
#endif
  for (; j < n; ++j) best = std::max(best, x[j]);
  return best;
}

// The lanes' partial sums, then the tail, added in double: a single float running
// sum over thousands of terms drifts by more than TF's (vectorized) sum does.
float RowSumExp(const float* x, int n, float shift) {
  double sum = 0.0;
  int j = 0;
#ifdef ZOO_WIDE
  Wide::V lanes = Wide::Set1(0.0f);
  for (; j + Wide::kLanes <= n; j += Wide::kLanes) {
    lanes = Wide::Add(lanes, Wide::Exp(Wide::Sub(Wide::Load(x + j), Wide::Set1(shift))));
  }
  sum = Wide::Sum(lanes);
#endif
  for (; j < n; ++j) sum += std::exp(x[j] - shift);
  return static_cast<float>(sum);
}

void LogSoftmaxRow(const float* x, int n, float* out) {
  const float shift = RowMax(x, n);
  const float log_sum = std::log(RowSumExp(x, n, shift));
  for (int j = 0; j < n; ++j) out[j] = (x[j] - shift) - log_sum;
}

class LogSoftmaxOp : public OpKernel {
 public:
  explicit LogSoftmaxOp(OpKernelConstruction* context) : OpKernel(context) {}

  void Compute(OpKernelContext* context) override {
    const Tensor& logits = context->input(0);
    OP_REQUIRES(context, logits.dims() == 2,
                InvalidArgument("logits must be [rows, classes], got shape ",
                                logits.shape().DebugString()));
    Tensor* output = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, logits.shape(), &output));
    const int64_t rows = logits.dim_size(0);
    const int n = static_cast<int>(logits.dim_size(1));
    if (rows == 0 || n == 0) return;
    const float* x = logits.flat<float>().data();
    float* out = output->flat<float>().data();
    ForRows(context, rows, 8 * n, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) LogSoftmaxRow(x + r * n, n, out + r * n);
    });
  }
};

// ---------------------------------------------------------------------------------------
// The k largest entries of a row, largest first, as tf.math.top_k gives them: of equal
// values the lower index comes first. One pass keeps the k best in a sorted list; an
// entry enters only if it beats the k-th best strictly (a later equal one ranks after
// it), which the vector code tests 16 (AVX-512) or 8 (AVX2) entries at a time. Rows
// hold no NaN (log-probabilities).
// ---------------------------------------------------------------------------------------

// `Row` gives entry j (At) and the vector of entries from j (Lanes): a row of a tensor,
// or a row of logits log-softmaxed on the fly.
template <typename Row>
void TopKRow(const Row& row, int n, int k, float* values, int32_t* indices) {
  int count = 0;
  auto insert = [&](float value, int index) {  // `value` ranks among the k best
    int at = std::min(count, k - 1);
    while (at > 0 && values[at - 1] < value) {
      values[at] = values[at - 1];
      indices[at] = indices[at - 1];
      --at;
    }
    values[at] = value;
    indices[at] = index;
    count = std::min(count + 1, k);
  };
  int j = 0;
  for (; j < k; ++j) insert(row.At(j), j);
#ifdef ZOO_WIDE
  for (; j + Wide::kLanes <= n; j += Wide::kLanes) {
    unsigned above = Wide::Greater(row.Lanes(j), Wide::Set1(values[k - 1]));
    while (above) {
      const int lane = __builtin_ctz(above);
      above &= above - 1;
      const float value = row.At(j + lane);
      if (value > values[k - 1]) insert(value, j + lane);
    }
  }
#endif
  for (; j < n; ++j) {
    const float value = row.At(j);
    if (value > values[k - 1]) insert(value, j);
  }
}

struct PlainRow {
  const float* x;
  float At(int j) const { return x[j]; }
#ifdef ZOO_WIDE
  Wide::V Lanes(int j) const { return Wide::Load(x + j); }
#endif
};

// The log-softmax of a row of logits, entry by entry, as LogSoftmaxRow writes it.
struct LogSoftmaxedRow {
  const float* x;
  float shift, log_sum;
  float At(int j) const { return (x[j] - shift) - log_sum; }
#ifdef ZOO_WIDE
  Wide::V Lanes(int j) const {
    return Wide::Sub(Wide::Sub(Wide::Load(x + j), Wide::Set1(shift)), Wide::Set1(log_sum));
  }
#endif
};

// The ops that take the top k of each row of input 0: the attr k, the input's checks,
// and outputs 0 and 1 (values, indices), [rows, k] each.
class RowsTopKOp : public OpKernel {
 public:
  explicit RowsTopKOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("k", &k_));
  }

 protected:
  // Checks input 0 and allocates the two outputs; on failure the context's status says
  // why and the caller returns.
  void Start(OpKernelContext* context, Tensor** values, Tensor** indices) {
    const Tensor& input = context->input(0);
    OP_REQUIRES(context, input.dims() == 2,
                InvalidArgument("input must be [rows, columns], got shape ",
                                input.shape().DebugString()));
    OP_REQUIRES(context, input.dim_size(1) >= k_,
                InvalidArgument("input must have at least k = ", k_, " columns, got ",
                                input.dim_size(1)));
    const TensorShape top({input.dim_size(0), k_});
    OP_REQUIRES_OK(context, context->allocate_output(0, top, values));
    OP_REQUIRES_OK(context, context->allocate_output(1, top, indices));
  }

  int k_;
};

class TopKOp : public RowsTopKOp {
 public:
  using RowsTopKOp::RowsTopKOp;

  void Compute(OpKernelContext* context) override {
    Tensor *values = nullptr, *indices = nullptr;
    Start(context, &values, &indices);
    if (!context->status().ok()) return;
    const Tensor& input = context->input(0);
    const int64_t rows = input.dim_size(0);
    const int n = static_cast<int>(input.dim_size(1));
    const float* x = input.flat<float>().data();
    float* top = values->flat<float>().data();
    int32_t* top_indices = indices->flat<int32_t>().data();
    ForRows(context, rows, 2 * n, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        TopKRow(PlainRow{x + r * n}, n, k_, top + r * k_, top_indices + r * k_);
      }
    });
  }
};

// ---------------------------------------------------------------------------------------
// The top k of log_softmax(logits) without writing the [N, V] log-probabilities: the row
// is read for its max, its sum of exps and its top k while it sits in L1/L2. Gives
// ZooLogSoftmax's values exactly, and each row's shift (max) and log_sum, from which
// any column's log-probability is (logit - shift) - log_sum, as ZooLogSoftmax has it.
// ---------------------------------------------------------------------------------------

class LogSoftmaxTopKOp : public RowsTopKOp {
 public:
  using RowsTopKOp::RowsTopKOp;

  void Compute(OpKernelContext* context) override {
    Tensor *values = nullptr, *indices = nullptr, *shifts = nullptr, *log_sums = nullptr;
    Start(context, &values, &indices);
    if (!context->status().ok()) return;
    const Tensor& logits = context->input(0);
    const int64_t rows = logits.dim_size(0);
    const int n = static_cast<int>(logits.dim_size(1));
    OP_REQUIRES_OK(context, context->allocate_output(2, TensorShape({rows}), &shifts));
    OP_REQUIRES_OK(context, context->allocate_output(3, TensorShape({rows}), &log_sums));
    const float* x = logits.flat<float>().data();
    float* top = values->flat<float>().data();
    int32_t* top_indices = indices->flat<int32_t>().data();
    float* shift = shifts->flat<float>().data();
    float* log_sum = log_sums->flat<float>().data();
    ForRows(context, rows, 10 * n, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const float* row = x + r * n;
        shift[r] = RowMax(row, n);
        log_sum[r] = std::log(RowSumExp(row, n, shift[r]));
        TopKRow(LogSoftmaxedRow{row, shift[r], log_sum[r]}, n, k_, top + r * k_,
                top_indices + r * k_);
      }
    });
  }
};

// ---------------------------------------------------------------------------------------
// One decoding step of additive (Bahdanau) attention, per query row r of source
// b = r / rows_per_source (beam search's hypotheses of one sentence share its source):
//   score_j = v . tanh(q + k_j)  over the source steps j of b,
//   a = softmax over the unmasked steps (0 on masked ones; all 0 if none is unmasked),
//   context = sum_j a_j h_j.
// TF materializes the [N, S, U] sum and its tanh, then reads them back for the scores;
// here each key is read once and the scores, weights and context stay in registers and
// L1. The scores' softmax is TF's (max subtracted), as zoo.layers.attention computes it.
// ---------------------------------------------------------------------------------------

float AdditiveScore(const float* q, const float* key, const float* v, int units) {
  float score = 0.0f;
  int u = 0;
#ifdef ZOO_WIDE
  Wide::V lanes = Wide::Set1(0.0f);
  for (; u + Wide::kLanes <= units; u += Wide::kLanes) {
    const Wide::V hidden = Wide::Tanh(Wide::Add(Wide::Load(q + u), Wide::Load(key + u)));
    lanes = Wide::Fma(Wide::Load(v + u), hidden, lanes);
  }
  score = Wide::Sum(lanes);
#endif
  for (; u < units; ++u) score += v[u] * std::tanh(q[u] + key[u]);
  return score;
}

struct AttentionRows {
  const float *query, *keys, *v, *values;
  const bool* mask;  // nullptr: every step is real
  int steps, units, width;
  int64_t rows_per_source;
  float *context, *weights;

  void Row(int64_t r) const {
    const int64_t b = r / rows_per_source;
    float* w = weights + r * steps;
    float* c = context + r * width;
    const bool* real = mask == nullptr ? nullptr : mask + b * steps;
    float best = -std::numeric_limits<float>::infinity();
    for (int j = 0; j < steps; ++j) {
      if (real != nullptr && !real[j]) continue;
      w[j] = AdditiveScore(query + r * units, keys + (b * steps + j) * units, v, units);
      best = std::max(best, w[j]);
    }
    float sum = 0.0f;
    for (int j = 0; j < steps; ++j) {
      const bool kept = real == nullptr || real[j];
      w[j] = kept ? std::exp(w[j] - best) : 0.0f;
      sum += w[j];
    }
    std::fill(c, c + width, 0.0f);
    if (sum == 0.0f) return;  // no real step: all weights 0, as masked_softmax gives
    for (int j = 0; j < steps; ++j) {
      w[j] /= sum;
      if (w[j] == 0.0f) continue;
      const float a = w[j];
      const float* h = values + (b * steps + j) * width;
      for (int d = 0; d < width; ++d) c[d] += a * h[d];
    }
  }
};

class AdditiveAttentionOp : public OpKernel {
 public:
  explicit AdditiveAttentionOp(OpKernelConstruction* context) : OpKernel(context) {}

  void Compute(OpKernelContext* context) override {
    const Tensor &query = context->input(0), &keys = context->input(1),
                 &v = context->input(2), &mask = context->input(3),
                 &values = context->input(4);
    OP_REQUIRES(context, query.dims() == 2 && keys.dims() == 3 && values.dims() == 3,
                InvalidArgument("expected query [N, U], keys [B, S, U], values [B, S, D]; got ",
                                query.shape().DebugString(), ", ", keys.shape().DebugString(),
                                ", ", values.shape().DebugString()));
    const int64_t rows = query.dim_size(0), sources = keys.dim_size(0);
    const int units = static_cast<int>(query.dim_size(1));
    const int steps = static_cast<int>(keys.dim_size(1));
    const int width = static_cast<int>(values.dim_size(2));
    OP_REQUIRES(context, keys.dim_size(2) == units && values.dim_size(0) == sources &&
                             values.dim_size(1) == steps && v.NumElements() == units &&
                             (sources == 0 ? rows == 0 : rows % sources == 0),
                InvalidArgument("shapes do not match (N must be a multiple of B): query ",
                                query.shape().DebugString(), ", keys ",
                                keys.shape().DebugString(), ", v ", v.shape().DebugString(),
                                ", values ", values.shape().DebugString()));
    const bool masked = mask.NumElements() > 0;
    OP_REQUIRES(context, !masked || (mask.dims() == 2 && mask.dim_size(0) == sources &&
                                     mask.dim_size(1) == steps),
                InvalidArgument("mask must be [B, S] (or empty), got ",
                                mask.shape().DebugString()));
    Tensor *context_out = nullptr, *weights_out = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, TensorShape({rows, width}), &context_out));
    OP_REQUIRES_OK(context, context->allocate_output(1, TensorShape({rows, steps}), &weights_out));
    if (rows == 0) return;
    const AttentionRows attention{query.flat<float>().data(), keys.flat<float>().data(),
                                  v.flat<float>().data(), values.flat<float>().data(),
                                  masked ? mask.flat<bool>().data() : nullptr,
                                  steps, units, width, rows / sources,
                                  context_out->flat<float>().data(),
                                  weights_out->flat<float>().data()};
    ForRows(context, rows, static_cast<int64_t>(steps) * (24 * units + 2 * width),
            [&](int64_t begin, int64_t end) {
              for (int64_t r = begin; r < end; ++r) attention.Row(r);
            });
  }
};

// ---------------------------------------------------------------------------------------
// One GRU step's gates (keras.layers.GRUCell, reset_after) from its two products with
// their biases, x W + b_x and h U + b_h: z, r = sigmoid(x_zr + hu_zr); h~ = tanh(x_h + r
// hu_h); h' = z h + (1 - z) h~. TF runs these as a dozen element-wise ops, each a pass
// over [N, U] (about 0.55 ms of a 1.8 ms GRUCell call at beam 5's 320 rows); here each
// row in one pass, rows split between TF's intra-op threads.
// ---------------------------------------------------------------------------------------

void GruGatesRow(const float* x, const float* hu, const float* h, int units, float* out) {
  const float *xz = x, *xr = x + units, *xh = x + 2 * units;
  const float *uz = hu, *ur = hu + units, *uh = hu + 2 * units;
  ForEachBlock(
      units,
      [&](auto isa, int j) {
        using I = decltype(isa);
        const auto z = I::Sigmoid(I::Add(I::Load(xz + j), I::Load(uz + j)));
        const auto r = I::Sigmoid(I::Add(I::Load(xr + j), I::Load(ur + j)));
        const auto candidate = I::Tanh(I::Fma(r, I::Load(uh + j), I::Load(xh + j)));
        // z h + (1 - z) h~ = h~ + z (h - h~)
        I::Store(out + j, I::Fma(z, I::Sub(I::Load(h + j), candidate), candidate));
      },
      [&](int j) {
        const float z = Sigmoid(xz[j] + uz[j]), r = Sigmoid(xr[j] + ur[j]);
        const float candidate = std::tanh(xh[j] + r * uh[j]);
        out[j] = z * h[j] + (1.0f - z) * candidate;
      });
}

class GruCellOp : public OpKernel {
 public:
  explicit GruCellOp(OpKernelConstruction* context) : OpKernel(context) {}

  void Compute(OpKernelContext* context) override {
    const Tensor &x = context->input(0), &hu = context->input(1), &h = context->input(2);
    OP_REQUIRES(context, h.dims() == 2 && x.dims() == 2 && hu.dims() == 2,
                InvalidArgument("expected x_projected and h_projected [N, 3U], h [N, U]; got ",
                                x.shape().DebugString(), ", ", hu.shape().DebugString(),
                                ", ", h.shape().DebugString()));
    const int64_t rows = h.dim_size(0);
    const int units = static_cast<int>(h.dim_size(1));
    OP_REQUIRES(context, x.dim_size(0) == rows && hu.dim_size(0) == rows &&
                             x.dim_size(1) == 3 * units && hu.dim_size(1) == 3 * units,
                InvalidArgument("shapes do not match: x_projected ", x.shape().DebugString(),
                                ", h_projected ", hu.shape().DebugString(), ", h ",
                                h.shape().DebugString()));
    Tensor* output = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, h.shape(), &output));
    if (rows == 0 || units == 0) return;
    const float *xs = x.flat<float>().data(), *hus = hu.flat<float>().data(),
                *hs = h.flat<float>().data();
    float* out = output->flat<float>().data();
    ForRows(context, rows, 40 * units, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        GruGatesRow(xs + r * 3 * units, hus + r * 3 * units, hs + r * units, units,
                    out + r * units);
      }
    });
  }
};

// Outputs 0 and 1 of the top-k ops: [N, k] for a [N, V] input 0.
tensorflow::Status TopKShapes(tensorflow::shape_inference::InferenceContext* c) {
  tensorflow::shape_inference::ShapeHandle input;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 2, &input));
  int k;
  TF_RETURN_IF_ERROR(c->GetAttr("k", &k));
  auto top = c->MakeShape({c->Dim(input, 0), k});
  c->set_output(0, top);
  c->set_output(1, top);
  return tensorflow::OkStatus();
}

REGISTER_OP("ZooLogSoftmax")
    .Input("logits: float")  // [N, V]
    .Output("log_probs: float")
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      tensorflow::shape_inference::ShapeHandle logits;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 2, &logits));
      c->set_output(0, logits);
      return tensorflow::OkStatus();
    });

REGISTER_OP("ZooTopK")
    .Input("input: float")  // [N, V]
    .Attr("k: int >= 1")
    .Output("values: float")   // [N, k]
    .Output("indices: int32")  // [N, k]
    .SetShapeFn(TopKShapes);

REGISTER_OP("ZooLogSoftmaxTopK")
    .Input("logits: float")  // [N, V]
    .Attr("k: int >= 1")
    .Output("values: float")    // [N, k], the k largest log-probabilities, largest first
    .Output("indices: int32")   // [N, k]
    .Output("shifts: float")    // [N], each row's largest logit
    .Output("log_sums: float")  // [N], log(sum(exp(logits - shift)))
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      TF_RETURN_IF_ERROR(TopKShapes(c));
      c->set_output(2, c->Vector(c->Dim(c->input(0), 0)));
      c->set_output(3, c->Vector(c->Dim(c->input(0), 0)));
      return tensorflow::OkStatus();
    });

REGISTER_OP("ZooGruCell")
    .Input("x_projected: float")  // [N, 3U]: x W + b_x, gates z, r, h~ (Keras order)
    .Input("h_projected: float")  // [N, 3U]: h U + b_h
    .Input("h: float")            // [N, U]
    .Output("new_h: float")       // [N, U]
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      tensorflow::shape_inference::ShapeHandle h;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 2, &h));
      c->set_output(0, h);
      return tensorflow::OkStatus();
    });

REGISTER_OP("ZooAdditiveAttention")
    .Input("query: float")         // [N, U], the projected query W_q s; N = B * rows per source
    .Input("keys: float")          // [B, S, U]
    .Input("score_kernel: float")  // [U], v
    .Input("mask: bool")           // [B, S], true on real steps; or empty
    .Input("values: float")        // [B, S, D]
    .Output("context: float")      // [N, D]
    .Output("weights: float")      // [N, S]
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      tensorflow::shape_inference::ShapeHandle query, keys, values;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 2, &query));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 3, &keys));
      TF_RETURN_IF_ERROR(c->WithRank(c->input(4), 3, &values));
      c->set_output(0, c->MakeShape({c->Dim(query, 0), c->Dim(values, 2)}));
      c->set_output(1, c->MakeShape({c->Dim(query, 0), c->Dim(keys, 1)}));
      return tensorflow::OkStatus();
    });

REGISTER_KERNEL_BUILDER(Name("ZooLogSoftmax").Device(tensorflow::DEVICE_CPU), LogSoftmaxOp);
REGISTER_KERNEL_BUILDER(Name("ZooTopK").Device(tensorflow::DEVICE_CPU), TopKOp);
REGISTER_KERNEL_BUILDER(Name("ZooLogSoftmaxTopK").Device(tensorflow::DEVICE_CPU),
                        LogSoftmaxTopKOp);
REGISTER_KERNEL_BUILDER(Name("ZooAdditiveAttention").Device(tensorflow::DEVICE_CPU),
                        AdditiveAttentionOp);
REGISTER_KERNEL_BUILDER(Name("ZooGruCell").Device(tensorflow::DEVICE_CPU), GruCellOp);

}  // namespace
}  // namespace zoo
