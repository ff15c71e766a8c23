// The batched recurrent step's matrix product alone, on one core: the native kernels'
// `BatchProduct` (zoo/layers/native/recurrent_loops.cc, included) against other
// register-block shapes of the same loop, in GFLOP/s (and with its packed panels off
// their cache lines, as they were before they were aligned). Compare with fma_peak.cc's
// one-core ceiling.
//
//   g++ -std=c++17 -O3 -march=native -mno-avx512fp16 -w benchmarks/product_kernel.cc \
//     $(.venv/bin/python -c "import tensorflow as tf; print(' '.join(
//       tf.sysconfig.get_compile_flags() + tf.sysconfig.get_link_flags()))") \
//     -Wl,-rpath,$(.venv/bin/python -c "import tensorflow as tf; print(tf.sysconfig.get_lib())") \
//     -o /tmp/product_kernel && /tmp/product_kernel [F U]    # default 128 256 (LSTM step)

#include "../zoo/layers/native/recurrent_loops.cc"

#include <chrono>
#include <cstdio>
#include <cstdlib>

namespace {

using zoo::GemmIsa;
using zoo::kLanes;

// C[MR, NV * lanes] = A[MR, K] @ one packed [K, NV * lanes] panel, A rows lda apart.
template <int MR, int NV>
__attribute__((noinline)) void Block(const float* a, int lda, int K, const float* panel,
                                     float* c, int ldc) {
  using I = GemmIsa;
  typename I::V acc[MR][NV];
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) acc[r][v] = I::Set1(0.0f);
  for (int k = 0; k < K; ++k) {
    typename I::V b[NV];
    for (int v = 0; v < NV; ++v) b[v] = I::Load(panel + (k * NV + v) * kLanes);
    for (int r = 0; r < MR; ++r) {
      const auto x = I::Set1(a[r * lda + k]);
      for (int v = 0; v < NV; ++v) acc[r][v] = I::Fma(x, b[v], acc[r][v]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int v = 0; v < NV; ++v) I::Store(c + r * ldc + v * kLanes, acc[r][v]);
}

// [rows, K] @ [K, columns] in MR x (NV * lanes) blocks; rows a multiple of MR.
template <int MR, int NV>
void Product(int rows, const float* a, int K, const float* b, int columns, float* c) {
  const int width = NV * kLanes;
  for (int p = 0; p < columns / width; ++p)
    for (int r = 0; r + MR <= rows; r += MR)
      Block<MR, NV>(a + r * K, K, K, b + static_cast<size_t>(p) * K * width,
                    c + r * columns + p * width, columns);
}

template <typename F>
void Time(const char* name, double flop, F f) {
  for (int i = 0; i < 100; ++i) f();
  const int calls = 2000;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < calls; ++i) f();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%-34s %7.1f GFLOP/s\n", name, flop * calls / seconds / 1e9);
}

}  // namespace

int main(int argc, char** argv) {
  const int features = argc > 2 ? std::atoi(argv[1]) : 128;
  const int units = argc > 2 ? std::atoi(argv[2]) : 256;
  const int K = features + units, columns = 768, rows = 84;  // 84: a multiple of 4, 6, 7, 12, 14, 28
  // Cache-line aligned, as the native kernels allocate them (zoo::Floats).
  zoo::Floats x(rows * features, 0.5f), h(rows * units, 0.25f), a(rows * K, 0.5f);
  zoo::Floats w(static_cast<size_t>(K) * columns + 16, 0.01f), c(rows * columns);
  const double flop = 2.0 * rows * K * columns;
  std::printf("one core, [%d, %d] @ [%d, %d] (x_t: %d features, h: %d units)\n", rows, K, K,
              columns, features, units);
  for (const int offset : {0, 4}) {  // panels on cache lines, then 16 bytes past them
    const float* panels = w.data() + offset;
    const zoo::Operand xo{x.data(), features, features, panels};
    const zoo::Operand ho{h.data(), units, units, panels + features * zoo::kGemmPanel};
    Time(offset == 0 ? "BatchProduct (the native kernels)" : "BatchProduct, panels unaligned", flop,
         [&] { zoo::BatchProduct(rows, {xo, ho}, columns / zoo::kGemmPanel, c.data()); });
  }
  Time("14 rows x 2 vectors", flop, [&] { Product<14, 2>(rows, a.data(), K, w.data(), columns, c.data()); });
  Time("12 rows x 2 vectors", flop, [&] { Product<12, 2>(rows, a.data(), K, w.data(), columns, c.data()); });
  Time("7 rows x 4 vectors", flop, [&] { Product<7, 4>(rows, a.data(), K, w.data(), columns, c.data()); });
  Time("6 rows x 4 vectors", flop, [&] { Product<6, 4>(rows, a.data(), K, w.data(), columns, c.data()); });
  Time("4 rows x 6 vectors", flop, [&] { Product<4, 6>(rows, a.data(), K, w.data(), columns, c.data()); });
  Time("28 rows x 1 vector", flop, [&] { Product<28, 1>(rows, a.data(), K, w.data(), columns, c.data()); });
}
