// Native kernels for a decoder's output rows, as TensorFlow custom ops (ZooLogSoftmax,
// ZooTopK). Every decoding step normalizes [N, V] logits and beam search then takes the
// best few tokens of each row; TF's CPU kernels make several passes over the [N, V]
// tensor for each (log_softmax: max, subtract, exp, sum, log, subtract; top_k about 2 ns
// per element even for k = 6), which at beam 5's 320 rows of a 5.6k vocabulary leave
// the caches every time. Here each row is handled whole while it sits in L1/L2, rows
// split between TF's intra-op threads. zoo.decoding uses the ops outside XLA.

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
#if defined(__AVX512F__)
  __m512 lanes = _mm512_set1_ps(best);
  int j = 0;
  for (; j + 16 <= n; j += 16) lanes = _mm512_max_ps(lanes, _mm512_loadu_ps(x + j));
  best = _mm512_reduce_max_ps(lanes);
  for (; j < n; ++j) best = std::max(best, x[j]);
#else
  for (int j = 0; j < n; ++j) best = std::max(best, x[j]);
#endif
  return best;
}

float RowSumExp(const float* x, int n, float shift) {
  float sum = 0.0f;
#if defined(__AVX512F__)
  using I = Avx512;
  __m512 lanes = _mm512_setzero_ps();
  int j = 0;
  for (; j + 16 <= n; j += 16) {
    lanes = _mm512_add_ps(lanes, Activations<I>::Exp(_mm512_sub_ps(_mm512_loadu_ps(x + j),
                                                                   _mm512_set1_ps(shift))));
  }
  sum = _mm512_reduce_add_ps(lanes);
  for (; j < n; ++j) sum += std::exp(x[j] - shift);
#else
  for (int j = 0; j < n; ++j) sum += std::exp(x[j] - shift);
#endif
  return sum;
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
// it), which AVX-512 tests 16 entries at a time. Rows hold no NaN (log-probabilities).
// ---------------------------------------------------------------------------------------

void TopKRow(const float* x, int n, int k, float* values, int32_t* indices) {
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
  for (; j < k; ++j) insert(x[j], j);
#if defined(__AVX512F__)
  for (; j + 16 <= n; j += 16) {
    __mmask16 above = _mm512_cmp_ps_mask(_mm512_loadu_ps(x + j),
                                         _mm512_set1_ps(values[k - 1]), _CMP_GT_OQ);
    while (above) {
      const int lane = __builtin_ctz(above);
      above &= above - 1;
      if (x[j + lane] > values[k - 1]) insert(x[j + lane], j + lane);
    }
  }
#endif
  for (; j < n; ++j) {
    if (x[j] > values[k - 1]) insert(x[j], j);
  }
}

class TopKOp : public OpKernel {
 public:
  explicit TopKOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("k", &k_));
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& input = context->input(0);
    OP_REQUIRES(context, input.dims() == 2,
                InvalidArgument("input must be [rows, columns], got shape ",
                                input.shape().DebugString()));
    const int64_t rows = input.dim_size(0);
    const int n = static_cast<int>(input.dim_size(1));
    OP_REQUIRES(context, n >= k_,
                InvalidArgument("input must have at least k = ", k_, " columns, got ", n));
    Tensor *values = nullptr, *indices = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, TensorShape({rows, k_}), &values));
    OP_REQUIRES_OK(context, context->allocate_output(1, TensorShape({rows, k_}), &indices));
    const float* x = input.flat<float>().data();
    float* top = values->flat<float>().data();
    int32_t* top_indices = indices->flat<int32_t>().data();
    ForRows(context, rows, 2 * n, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        TopKRow(x + r * n, n, k_, top + r * k_, top_indices + r * k_);
      }
    });
  }

 private:
  int k_;
};

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
    .SetShapeFn([](tensorflow::shape_inference::InferenceContext* c) {
      tensorflow::shape_inference::ShapeHandle input;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 2, &input));
      int k;
      TF_RETURN_IF_ERROR(c->GetAttr("k", &k));
      auto top = c->MakeShape({c->Dim(input, 0), k});
      c->set_output(0, top);
      c->set_output(1, top);
      return tensorflow::OkStatus();
    });

REGISTER_KERNEL_BUILDER(Name("ZooLogSoftmax").Device(tensorflow::DEVICE_CPU), LogSoftmaxOp);
REGISTER_KERNEL_BUILDER(Name("ZooTopK").Device(tensorflow::DEVICE_CPU), TopKOp);

}  // namespace
}  // namespace zoo
