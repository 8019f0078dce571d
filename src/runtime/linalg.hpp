// src/runtime/linalg.hpp - dense products X·Wᵀ summed in the order scikit-learn's BLAS sums them.
//
// scikit-learn computes linear decision functions, naive Bayes likelihoods and KMeans distances
// with numpy's matmul, which calls OpenBLAS. On x86-64 with FMA (measured with the
// scipy-openblas 0.3.31 wheel, Haswell/SkylakeX kernels) OpenBLAS sums:
//   * gemm (X has >= 2 rows and W >= 2 rows): one fused multiply-add chain per output element,
//     features in order, starting from 0 (operands of up to 256 features; longer ones are split
//     into K blocks whose sums are added — our guess of the blocking, not always exact);
//   * gemv (W has one row, or X one row): four lanes, lane l taking the features p ≡ l (mod 4)
//     of the first f - f%4 features with fused multiply-adds, reduced as (l0+l2)+(l1+l3), then the
//     last f%4 features added as one term: t = x0*w0 (1 left), fma(x0,w0,x1*w1) (2 left),
//     fma(x2,w2,fma(x0,w0,x1*w1)) (3 left), s + t (1 left: fma(x0,w0,s)).
// Reproducing this order makes most results bit-identical to scikit-learn's on the same
// machine; the rest (other CPUs' kernels, long K) differ by a few ULP of the terms' magnitude.
// Without hardware FMA the same order is used with separate multiply and add (within tolerance).
#pragma once

#include <cmath>
#include <cstddef>
#include <vector>

#include "vitrify/runtime.hpp"

namespace vitrify::runtime::linalg {

/// out[r * ldo + j] = Σ_p x[r, p] · w[j, p] for a fixed k × f matrix W (copied at build time
/// into the layouts the kernels read). Immutable and safe to share between threads.
class dense_map {
 public:
  dense_map() = default;
  /// `w` is k × f row-major.
  dense_map(const double* w, std::size_t k, std::size_t f);

  [[nodiscard]] std::size_t outputs() const noexcept { return k_; }
  [[nodiscard]] std::size_t inputs() const noexcept { return f_; }
  [[nodiscard]] const double* row(std::size_t j) const noexcept { return w_.data() + j * f_; }

  /// All rows of x (x.cols() == inputs()). Chooses gemm or gemv order like numpy would for
  /// this shape (one row of x or one row of W: gemv).
  void apply(const matrix_view& x, double* out, std::size_t ldo) const;
  /// One float64 row (numpy's order for a 1-row X: gemv).
  void apply_row(const double* x, double* out) const;

 private:
  std::size_t k_ = 0, f_ = 0;
  std::vector<double> w_;   // k × f
  std::vector<double> wt_;  // f × k4 (k rounded up to 4, zero padded), for the gemm kernel
};

/// Whether the FMA kernels are in use (x86-64 CPUs with FMA, aarch64).
bool fused_multiply_add() noexcept;

/// numpy's pairwise summation (`np.sum` along a contiguous axis): sequential below 8 values,
/// eight accumulators up to 128, halves above (numpy/_core/src/umath/loops_utils.h.src).
double pairwise_sum(const double* a, std::size_t n, std::size_t stride = 1) noexcept;

/// scipy.special.expit as scipy computes it: 1 / (1 + exp(-x)).
inline double expit(double x) noexcept { return 1.0 / (1.0 + std::exp(-x)); }

/// sklearn.utils.extmath.softmax on one row, in place: subtract the max, exp, divide by the
/// pairwise sum.
void softmax_row(double* p, std::size_t n) noexcept;

}  // namespace vitrify::runtime::linalg
