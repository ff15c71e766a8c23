// The float32 FMA instruction ceiling of this CPU: GFLOP/s of independent AVX-512 (or
// AVX2) fused multiply-adds on registers, on one thread and on each of two at once. No
// memory traffic, so no matrix product can beat it; `benchmarks.run`'s "peak" section
// measures what TF's and torch's matmuls reach.
//
//   g++ -O3 -march=native -pthread benchmarks/fma_peak.cc -o /tmp/fma_peak && /tmp/fma_peak

#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>

#if defined(__AVX512F__)
using Vector = __m512;
constexpr int kLanes = 16;
inline Vector Fill(float x) { return _mm512_set1_ps(x); }
inline Vector Fma(Vector a, Vector b, Vector c) { return _mm512_fmadd_ps(a, b, c); }
inline float Sum(Vector v) { return _mm512_reduce_add_ps(v); }
#else
using Vector = __m256;
constexpr int kLanes = 8;
inline Vector Fill(float x) { return _mm256_set1_ps(x); }
inline Vector Fma(Vector a, Vector b, Vector c) { return _mm256_fmadd_ps(a, b, c); }
inline float Sum(Vector v) {
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, v);
  float total = 0;
  for (float x : lanes) total += x;
  return total;
}
#endif

// Twelve independent accumulators: more than FMA latency x FMA ports on current cores,
// so the loop is bound by FMA throughput alone.
constexpr int kChains = 12;
constexpr long kIterations = 100'000'000;

volatile float sink;  // keeps the result, so the loop is not optimized away

double SecondsForChains() {
  Vector acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = Fill(0.001f * i);
  const Vector scale = Fill(0.9999f), shift = Fill(0.0001f);
  const auto start = std::chrono::steady_clock::now();
  for (long n = 0; n < kIterations; ++n)
    for (int i = 0; i < kChains; ++i) acc[i] = Fma(acc[i], scale, shift);
  const auto stop = std::chrono::steady_clock::now();
  float total = 0;
  for (int i = 0; i < kChains; ++i) total += Sum(acc[i]);
  sink = total;
  return std::chrono::duration<double>(stop - start).count();
}

int main() {
  const double flops = 2.0 * kLanes * kChains * kIterations;  // an FMA is 2 FLOPs per lane
  std::printf("FMA width: %d float32 lanes\n", kLanes);
  std::printf("1 thread:  %.1f GFLOP/s\n", flops / SecondsForChains() / 1e9);
  double other = 0;
  std::thread helper([&] { other = SecondsForChains(); });
  const double own = SecondsForChains();
  helper.join();
  std::printf("2 threads: %.1f GFLOP/s in all\n", 2 * flops / std::max(own, other) / 1e9);
}
