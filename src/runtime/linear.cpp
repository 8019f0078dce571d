// src/runtime/linear.cpp - linear models: LogisticRegression, LinearRegression, Ridge,
// RidgeClassifier, Lasso, ElasticNet, SGDClassifier, SGDRegressor, LinearSVC, LinearSVR (the
// linear SVMs are registered here: their prediction is the linear models' arithmetic), and the
// dense product kernels of linalg.hpp that naive Bayes and KMeans share.
//
// scikit-learn: decision = X @ coef_.T + intercept_ (numpy matmul → OpenBLAS), binary predict
// `scores > 0`, multiclass argmax (first maximum); predict_proba per estimator (see below).
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "runtime/estimator.hpp"
#include "runtime/linalg.hpp"

#if defined(__GNUC__) || defined(__clang__)
#define VITRIFY_ALWAYS_INLINE __attribute__((always_inline)) inline
#else
#define VITRIFY_ALWAYS_INLINE inline
#endif

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define VITRIFY_FMA_DISPATCH 1  // FMA kernels compiled for avx2+fma, chosen at run time
#define VITRIFY_TARGET_FMA __attribute__((target("avx2,fma")))
#include <immintrin.h>
#elif defined(__aarch64__)
#define VITRIFY_FMA_NATIVE 1    // fmadd is part of the base ISA
#endif

namespace vitrify::runtime {

// =========================================================================================
// linalg: products in OpenBLAS's summation order (see linalg.hpp for the measured orders).
// =========================================================================================
namespace linalg {
namespace {

template <bool Fused>
VITRIFY_ALWAYS_INLINE double madd(double a, double b, double c) noexcept {
  if constexpr (Fused) return __builtin_fma(a, b, c);
  else return a * b + c;
}

// dgemv_t order (OpenBLAS kernel/x86_64/dgemv_t_4.c): the gemv "columns" are the rows of X
// (or of W for a 1-row X), taken 4 at a time by the FMA microkernel: four fused lanes over the
// first f - f%4 features, reduced (l0+l2)+(l1+l3). The last n%4 columns go through SSE kernels
// without FMA: two of them (n%4 >= 2) through dgemv_kernel_4x2 (two lanes, even and odd
// features, reduced l0+l1), the last one (n%4 odd) through dgemv_kernel_4x1 (four lanes,
// (l0+l2)+(l1+l3)). Then the last f%4 features are added as one term, as the C source
// `y += a0*x0 + a1*x1 + a2*x2` compiles with contraction.
enum class gemv_kernel : std::uint8_t { fma4, sse2, sse4 };

inline gemv_kernel gemv_kernel_for(std::size_t i, std::size_t n) noexcept {
  const std::size_t n4 = n - n % 4;
  if (i < n4) return gemv_kernel::fma4;
  if ((n % 4) >= 2 && i < n4 + 2) return gemv_kernel::sse2;
  return gemv_kernel::sse4;
}

template <bool Fused, class T>
VITRIFY_ALWAYS_INLINE double dot_gemv(const T* x, const double* w, std::size_t f, gemv_kernel kern) noexcept {
  const std::size_t m1 = f & ~std::size_t{3};
  double s;
  if (kern == gemv_kernel::sse2) {
    double l0 = 0, l1 = 0;
    for (std::size_t p = 0; p < m1; p += 2) {
      l0 = l0 + static_cast<double>(x[p]) * w[p];
      l1 = l1 + static_cast<double>(x[p + 1]) * w[p + 1];
    }
    s = l0 + l1;
  } else {
    const bool fused = Fused && kern == gemv_kernel::fma4;
    double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    if (fused) {
      for (std::size_t p = 0; p < m1; p += 4) {
        a0 = madd<Fused>(static_cast<double>(x[p]), w[p], a0);
        a1 = madd<Fused>(static_cast<double>(x[p + 1]), w[p + 1], a1);
        a2 = madd<Fused>(static_cast<double>(x[p + 2]), w[p + 2], a2);
        a3 = madd<Fused>(static_cast<double>(x[p + 3]), w[p + 3], a3);
      }
    } else {
      for (std::size_t p = 0; p < m1; p += 4) {
        a0 = a0 + static_cast<double>(x[p]) * w[p];
        a1 = a1 + static_cast<double>(x[p + 1]) * w[p + 1];
        a2 = a2 + static_cast<double>(x[p + 2]) * w[p + 2];
        a3 = a3 + static_cast<double>(x[p + 3]) * w[p + 3];
      }
    }
    s = (a0 + a2) + (a1 + a3);
  }
  const T* xt = x + m1;
  const double* wt = w + m1;
  switch (f - m1) {
    case 0: return s;
    case 1: return madd<Fused>(static_cast<double>(xt[0]), wt[0], s);
    case 2: return s + madd<Fused>(static_cast<double>(xt[0]), wt[0], static_cast<double>(xt[1]) * wt[1]);
    default:
      return s + madd<Fused>(static_cast<double>(xt[2]), wt[2],
                             madd<Fused>(static_cast<double>(xt[0]), wt[0], static_cast<double>(xt[1]) * wt[1]));
  }
}

// OpenBLAS splits the inner dimension of gemm into blocks of GEMM_Q (256 on these targets);
// a remainder between Q and 2Q is halved (rounded up to 8).
inline std::size_t k_block(std::size_t left) noexcept {
  constexpr std::size_t q = 256;
  if (left >= 2 * q) return q;
  if (left > q) return ((left / 2) + 7) & ~std::size_t{7};
  return left;
}

constexpr std::size_t rb = 8;  // rows per gemm block
constexpr std::size_t cb = 4;  // outputs per gemm block

// gemm order for up to 8 rows: one fused chain per output over each K block, blocks added.
// Vectorised across 4 outputs (one register per row), 8 rows at a time so that 8 chains overlap.
// `wt` is f × k4 (W transposed, outputs padded with zeros to a multiple of 4).
template <bool Fused, class T>
VITRIFY_ALWAYS_INLINE void gemm_block(const T* x, std::size_t ld, std::size_t nr, const double* wt, std::size_t f,
                                      std::size_t k, double* out, std::size_t ldo) noexcept {
  const std::size_t k4 = (k + cb - 1) / cb * cb;
  const T* xr[rb];
  for (std::size_t r = 0; r < rb; ++r) xr[r] = x + (r < nr ? r : 0) * ld;  // padding rows repeat row 0
  for (std::size_t j0 = 0; j0 < k; j0 += cb) {
    const std::size_t jn = std::min(cb, k - j0);
    double tot[rb][cb];
    std::size_t p0 = 0;
    bool first = true;
    do {
      const std::size_t len = k_block(f - p0);
      double acc[rb][cb] = {};
      for (std::size_t p = p0; p < p0 + len; ++p) {
        const double* wp = wt + p * k4 + j0;
        for (std::size_t r = 0; r < rb; ++r) {
          const double xv = static_cast<double>(xr[r][p]);
          for (std::size_t jj = 0; jj < cb; ++jj) acc[r][jj] = madd<Fused>(xv, wp[jj], acc[r][jj]);
        }
      }
      for (std::size_t r = 0; r < rb; ++r)
        for (std::size_t jj = 0; jj < cb; ++jj) tot[r][jj] = first ? acc[r][jj] : tot[r][jj] + acc[r][jj];
      first = false;
      p0 += len;
    } while (p0 < f);
    for (std::size_t r = 0; r < nr; ++r)
      for (std::size_t jj = 0; jj < jn; ++jj) out[r * ldo + j0 + jj] = tot[r][jj];
  }
}

#if VITRIFY_FMA_DISPATCH
// dot_gemv's fma4 kernel with the four lanes in one AVX2 register (lane l = features p ≡ l mod 4,
// exactly OpenBLAS's layout), for 4 rows at once.
template <class T>
VITRIFY_TARGET_FMA inline __m256d load4(const T* p) noexcept {
  if constexpr (std::is_same_v<T, float>) return _mm256_cvtps_pd(_mm_loadu_ps(p));
  else return _mm256_loadu_pd(p);
}

template <class T>
VITRIFY_TARGET_FMA inline void gemv4_avx2(const T* x, std::size_t ld, const double* w, std::size_t f, double* out,
                                          std::size_t ldo) noexcept {
  const std::size_t m1 = f & ~std::size_t{3};
  __m256d a[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd()};
  for (std::size_t p = 0; p < m1; p += 4) {
    const __m256d wv = _mm256_loadu_pd(w + p);
    for (std::size_t r = 0; r < 4; ++r) a[r] = _mm256_fmadd_pd(load4(x + r * ld + p), wv, a[r]);
  }
  for (std::size_t r = 0; r < 4; ++r) {
    alignas(32) double l[4];
    _mm256_store_pd(l, a[r]);
    const double s = (l[0] + l[2]) + (l[1] + l[3]);
    const T* xt = x + r * ld + m1;
    const double* wt = w + m1;
    double v;
    switch (f - m1) {
      case 0: v = s; break;
      case 1: v = __builtin_fma(static_cast<double>(xt[0]), wt[0], s); break;
      case 2: v = s + __builtin_fma(static_cast<double>(xt[0]), wt[0], static_cast<double>(xt[1]) * wt[1]); break;
      default:
        v = s + __builtin_fma(static_cast<double>(xt[2]), wt[2],
                              __builtin_fma(static_cast<double>(xt[0]), wt[0], static_cast<double>(xt[1]) * wt[1]));
    }
    out[r * ldo] = v;
  }
}
#endif

#if VITRIFY_FMA_DISPATCH
// The gemm block with explicit AVX2 registers (one register = 4 outputs of one row; 8 rows):
// the same fused chains as gemm_block, which GCC would otherwise vectorise across rows with
// shuffles.
template <class T>
VITRIFY_TARGET_FMA inline void gemm_block_avx2(const T* x, std::size_t ld, std::size_t nr, const double* wt,
                                               std::size_t f, std::size_t k, double* out, std::size_t ldo) noexcept {
  const std::size_t k4 = (k + cb - 1) / cb * cb;
  const T* xr[rb];
  for (std::size_t r = 0; r < rb; ++r) xr[r] = x + (r < nr ? r : 0) * ld;
  for (std::size_t j0 = 0; j0 < k; j0 += cb) {
    const std::size_t jn = std::min(cb, k - j0);
    __m256d tot[rb];
    std::size_t p0 = 0;
    bool first = true;
    do {
      const std::size_t len = k_block(f - p0);
      __m256d acc[rb];
      for (std::size_t r = 0; r < rb; ++r) acc[r] = _mm256_setzero_pd();
      for (std::size_t p = p0; p < p0 + len; ++p) {
        const __m256d wv = _mm256_loadu_pd(wt + p * k4 + j0);
        for (std::size_t r = 0; r < rb; ++r)
          acc[r] = _mm256_fmadd_pd(_mm256_set1_pd(static_cast<double>(xr[r][p])), wv, acc[r]);
      }
      for (std::size_t r = 0; r < rb; ++r) tot[r] = first ? acc[r] : _mm256_add_pd(tot[r], acc[r]);
      first = false;
      p0 += len;
    } while (p0 < f);
    for (std::size_t r = 0; r < nr; ++r) {
      alignas(32) double v[cb];
      _mm256_store_pd(v, tot[r]);
      for (std::size_t jj = 0; jj < jn; ++jj) out[r * ldo + j0 + jj] = v[jj];
    }
  }
}
#endif

template <bool Fused, class T>
VITRIFY_ALWAYS_INLINE void apply_impl(const T* x, std::size_t rows, std::size_t ld, const double* w,
                                      const double* wt, std::size_t k, std::size_t f, double* out,
                                      std::size_t ldo) {
  if (k == 1) {
    const std::size_t n4 = rows - rows % 4;
    for (std::size_t r = 0; r < n4; r += 4) {
#if VITRIFY_FMA_DISPATCH
      if constexpr (Fused) {
        gemv4_avx2(x + r * ld, ld, w, f, out + r * ldo, ldo);
        continue;
      }
#endif
      // Four independent rows per step: the fused chains overlap (same arithmetic per row).
      double o0 = dot_gemv<Fused>(x + r * ld, w, f, gemv_kernel::fma4);
      double o1 = dot_gemv<Fused>(x + (r + 1) * ld, w, f, gemv_kernel::fma4);
      double o2 = dot_gemv<Fused>(x + (r + 2) * ld, w, f, gemv_kernel::fma4);
      double o3 = dot_gemv<Fused>(x + (r + 3) * ld, w, f, gemv_kernel::fma4);
      out[r * ldo] = o0;
      out[(r + 1) * ldo] = o1;
      out[(r + 2) * ldo] = o2;
      out[(r + 3) * ldo] = o3;
    }
    for (std::size_t r = n4; r < rows; ++r) out[r * ldo] = dot_gemv<Fused>(x + r * ld, w, f, gemv_kernel_for(r, rows));
    return;
  }
  if (rows == 1) {
    for (std::size_t j = 0; j < k; ++j) out[j] = dot_gemv<Fused>(x, w + j * f, f, gemv_kernel_for(j, k));
    return;
  }
  for (std::size_t r0 = 0; r0 < rows; r0 += rb) {
#if VITRIFY_FMA_DISPATCH
    if constexpr (Fused) {
      gemm_block_avx2(x + r0 * ld, ld, std::min(rb, rows - r0), wt, f, k, out + r0 * ldo, ldo);
      continue;
    }
#endif
    gemm_block<Fused>(x + r0 * ld, ld, std::min(rb, rows - r0), wt, f, k, out + r0 * ldo, ldo);
  }
}

#if VITRIFY_FMA_DISPATCH
VITRIFY_TARGET_FMA void apply_fma64(const double* x, std::size_t rows, std::size_t ld, const double* w,
                                    const double* wt, std::size_t k, std::size_t f, double* out, std::size_t ldo) {
  apply_impl<true>(x, rows, ld, w, wt, k, f, out, ldo);
}
VITRIFY_TARGET_FMA void apply_fma32(const float* x, std::size_t rows, std::size_t ld, const double* w,
                                    const double* wt, std::size_t k, std::size_t f, double* out, std::size_t ldo) {
  apply_impl<true>(x, rows, ld, w, wt, k, f, out, ldo);
}
VITRIFY_TARGET_FMA void row_fma(const double* x, const double* w, std::size_t k, std::size_t f, double* out) {
  for (std::size_t j = 0; j < k; ++j) out[j] = dot_gemv<true>(x, w + j * f, f, gemv_kernel_for(j, k));
}
#endif

bool detect_fma() noexcept {
#if VITRIFY_FMA_DISPATCH
  __builtin_cpu_init();
  return __builtin_cpu_supports("fma") && __builtin_cpu_supports("avx2");
#elif VITRIFY_FMA_NATIVE
  return true;
#else
  return false;
#endif
}

const bool have_fma = detect_fma();

}  // namespace

bool fused_multiply_add() noexcept { return have_fma; }

dense_map::dense_map(const double* w, std::size_t k, std::size_t f) : k_(k), f_(f), w_(w, w + k * f) {
  const std::size_t k4 = (k + cb - 1) / cb * cb;
  wt_.assign(k4 * f, 0.0);
  for (std::size_t j = 0; j < k; ++j)
    for (std::size_t p = 0; p < f; ++p) wt_[p * k4 + j] = w[j * f + p];
}

void dense_map::apply(const matrix_view& x, double* out, std::size_t ldo) const {
  const std::size_t rows = x.rows(), ld = x.row_stride();
  if (rows == 0) return;
#if VITRIFY_FMA_DISPATCH
  if (have_fma) {
    if (x.is_float32()) apply_fma32(x.f32(), rows, ld, w_.data(), wt_.data(), k_, f_, out, ldo);
    else apply_fma64(x.f64(), rows, ld, w_.data(), wt_.data(), k_, f_, out, ldo);
    return;
  }
#elif VITRIFY_FMA_NATIVE
  if (x.is_float32()) apply_impl<true>(x.f32(), rows, ld, w_.data(), wt_.data(), k_, f_, out, ldo);
  else apply_impl<true>(x.f64(), rows, ld, w_.data(), wt_.data(), k_, f_, out, ldo);
  return;
#endif
  if (x.is_float32()) apply_impl<false>(x.f32(), rows, ld, w_.data(), wt_.data(), k_, f_, out, ldo);
  else apply_impl<false>(x.f64(), rows, ld, w_.data(), wt_.data(), k_, f_, out, ldo);
}

void dense_map::apply_row(const double* x, double* out) const {
#if VITRIFY_FMA_DISPATCH
  if (have_fma) return row_fma(x, w_.data(), k_, f_, out);
#elif VITRIFY_FMA_NATIVE
  for (std::size_t j = 0; j < k_; ++j) out[j] = dot_gemv<true>(x, w_.data() + j * f_, f_, gemv_kernel_for(j, k_));
  return;
#endif
  for (std::size_t j = 0; j < k_; ++j) out[j] = dot_gemv<false>(x, w_.data() + j * f_, f_, gemv_kernel_for(j, k_));
}

double pairwise_sum(const double* a, std::size_t n, std::size_t s) noexcept {
  if (n < 8) {
    double r = -0.0;
    for (std::size_t i = 0; i < n; ++i) r += a[i * s];
    return r;
  }
  if (n <= 128) {
    double r[8];
    for (std::size_t j = 0; j < 8; ++j) r[j] = a[j * s];
    std::size_t i = 8;
    for (; i < n - n % 8; i += 8)
      for (std::size_t j = 0; j < 8; ++j) r[j] += a[(i + j) * s];
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i * s];
    return res;
  }
  std::size_t n2 = n / 2;
  n2 -= n2 % 8;
  return pairwise_sum(a, n2, s) + pairwise_sum(a + n2 * s, n - n2, s);
}

void softmax_row(double* p, std::size_t n) noexcept {
  double m = p[0];
  for (std::size_t j = 1; j < n; ++j) m = std::max(m, p[j]);  // np.max (NaN never reaches here)
  for (std::size_t j = 0; j < n; ++j) p[j] = std::exp(p[j] - m);
  const double s = pairwise_sum(p, n);
  for (std::size_t j = 0; j < n; ++j) p[j] /= s;
}

}  // namespace linalg

// =========================================================================================
// Linear estimators
// =========================================================================================
namespace {

using pyobj::node;

enum class proba_kind : std::uint8_t {
  none,
  ovr,             // LinearClassifierMixin._predict_proba_lr: expit, binary [1-p, p], else row-normalised
  softmax,         // LogisticRegression multinomial: softmax(decision)
  softmax_binary,  // ≤ 1.7 multinomial with 2 classes: softmax([-d, d])
  modified_huber,  // SGDClassifier(loss="modified_huber")
};

error nonfinite_error(const std::string& type) {
  return fail(errc::invalid_argument, std::string(short_name(type)) +
                                          ": input contains NaN or infinity (scikit-learn rejects such input)");
}

class linear_model final : public estimator {
 public:
  linalg::dense_map map;
  std::vector<double> intercept;  // one per output
  std::size_t outputs = 1;        // k: scores per row
  bool regressor_1d = false;      // regressor with a 1-d coef_ (one output column)
  proba_kind proba = proba_kind::none;

  [[nodiscard]] std::size_t n_classes() const noexcept { return is_classifier ? classes.size() : 0; }

  [[nodiscard]] std::size_t width(method m) const override {
    switch (m) {
      case method::predict: return is_classifier ? 1 : outputs;
      case method::decision_function: return outputs;
      case method::predict_proba: return n_classes();
      default: return 0;
    }
  }

  // Scores of one row (k values) → the method's output (width(m) values). `s` may alias `out`
  // only for decision_function / regression.
  result<void> finish_row(method m, const double* s, double* out) const {
    for (std::size_t j = 0; j < outputs; ++j)
      if (!std::isfinite(s[j])) return nonfinite_error(type);
    if (!is_classifier || m == method::decision_function) {
      if (out != s) std::memcpy(out, s, outputs * sizeof(double));
      return {};
    }
    const std::size_t nc = n_classes();
    if (m == method::predict) {
      if (outputs == 1) {
        out[0] = s[0] > 0 ? 1.0 : 0.0;
      } else {
        std::size_t best = 0;
        for (std::size_t j = 1; j < outputs; ++j)
          if (s[j] > s[best]) best = j;
        out[0] = static_cast<double>(best);
      }
      return {};
    }
    // predict_proba: out has nc values.
    switch (proba) {
      case proba_kind::ovr:
        if (outputs == 1) {
          const double p = linalg::expit(s[0]);
          out[0] = 1.0 - p;
          out[1] = p;
        } else {
          for (std::size_t j = 0; j < nc; ++j) out[j] = linalg::expit(s[j]);
          normalise(out, nc);
        }
        return {};
      case proba_kind::softmax:
        if (out != s) std::memcpy(out, s, nc * sizeof(double));
        linalg::softmax_row(out, nc);
        return {};
      case proba_kind::softmax_binary: {
        const double d = s[0];
        out[0] = -d;
        out[1] = d;
        linalg::softmax_row(out, 2);
        return {};
      }
      case proba_kind::modified_huber:
        if (outputs == 1) {
          const double p = (std::clamp(s[0], -1.0, 1.0) + 1.0) / 2.0;
          out[0] = 1.0 - p;
          out[1] = p;
        } else {
          for (std::size_t j = 0; j < nc; ++j) out[j] = (std::clamp(s[j], -1.0, 1.0) + 1.0) / 2.0;
          normalise(out, nc);
        }
        return {};
      case proba_kind::none: break;
    }
    return fail(errc::invalid_argument, type + " has no predict_proba");
  }

  // OvR normalisation (sklearn ≥ 1.9: an all-zero row becomes uniform).
  static void normalise(double* p, std::size_t n) noexcept {
    double sum = linalg::pairwise_sum(p, n);
    if (sum == 0) {
      for (std::size_t j = 0; j < n; ++j) p[j] = 1.0;
      sum = static_cast<double>(n);
    }
    for (std::size_t j = 0; j < n; ++j) p[j] /= sum;
  }

  void scores(const matrix_view& x, double* out, std::size_t ldo) const {
    map.apply(x, out, ldo);
    for (std::size_t r = 0; r < x.rows(); ++r)
      for (std::size_t j = 0; j < outputs; ++j) out[r * ldo + j] += intercept[j];
  }

  result<dense> run(method m, const input& in) const override {
    dense storage;
    auto xv = in.numeric(storage, type);
    if (!xv) return std::move(xv).err();
    const matrix_view& x = *xv;
    const std::size_t rows = x.rows();
    const std::size_t w = width(m);
    dense out(rows, w);
    if (!is_classifier || m == method::decision_function) {
      scores(x, out.v.data(), w);
      for (double v : out.v)
        if (!std::isfinite(v)) return nonfinite_error(type);
      return out;
    }
    // Scores into a k-wide buffer (the proba width when it fits, else a separate one).
    const bool in_place = m == method::predict_proba && proba != proba_kind::softmax_binary && w == outputs;
    std::vector<double> buf;
    double* s = out.v.data();
    if (!in_place) {
      buf.resize(rows * outputs);
      s = buf.data();
    }
    scores(x, s, outputs);
    for (std::size_t r = 0; r < rows; ++r) VITRIFY_TRY(finish_row(m, s + r * outputs, out.row(r)));
    return out;
  }

  result<void> run_row(method m, std::span<const double> row, std::span<double> out) const override {
    if (row.size() != map.inputs() || out.size() != width(m))
      return fail(errc::invalid_argument, type + ": row or output buffer has the wrong size");
    constexpr std::size_t stack_k = 64;
    std::array<double, stack_k> small{};
    std::vector<double> big;
    double* s = small.data();
    if (outputs > stack_k) {
      big.resize(outputs);  // only for models with more than 64 outputs
      s = big.data();
    }
    map.apply_row(row.data(), s);
    for (std::size_t j = 0; j < outputs; ++j) s[j] += intercept[j];
    return finish_row(m, s, out.data());
  }
};

/// What an estimator type is and how it turns scores into probabilities.
struct linear_spec {
  bool classifier = false;
  enum class proba_rule : std::uint8_t { none, logistic, sgd } rule = proba_rule::none;
};

result<estimator_ptr> build_linear(const node& obj, const linear_spec& spec) {
  const std::string who(short_name(obj.type_name()));
  auto e = std::make_shared<linear_model>();
  e->type = obj.type_name();
  VITRIFY_TRY(read_feature_info(obj, *e));

  auto coef_node = need_attr(obj, "coef_");
  if (!coef_node) return std::move(coef_node).err();
  if ((*coef_node)->k == node::kind::object)
    return unsupported_error(who, "a sparse coef_ (after sparsify()) is not supported; call densify() before saving");
  auto coef = as_tensor<double>(**coef_node, who + ".coef_");
  if (!coef) return std::move(coef).err();
  if (coef->rank() != 1 && coef->rank() != 2) return state_error(who, "coef_ must be 1-d or 2-d");
  const std::size_t k = coef->rank() == 1 ? 1 : coef->dim(0);
  const std::size_t f = coef->rank() == 1 ? coef->dim(0) : coef->dim(1);
  if (k == 0) return state_error(who, "coef_ has no rows");
  if (e->n_features >= 0 && static_cast<std::size_t>(e->n_features) != f)
    return state_error(who, "coef_ has " + std::to_string(f) + " columns but n_features_in_ is " + std::to_string(e->n_features));
  e->n_features = static_cast<std::int64_t>(f);
  e->outputs = k;
  e->regressor_1d = !spec.classifier && coef->rank() == 1;

  // intercept_: a number (0.0 without an intercept), or k values; (1,) also for 1-d coef_.
  const node* in = opt_attr(obj, "intercept_");
  if (!in) return state_error(who, "missing attribute intercept_");
  auto icpt = as_tensor<double>(*in, who + ".intercept_");
  if (!icpt) return std::move(icpt).err();
  if (icpt->rank() > 1) return state_error(who, "intercept_ must be a number or 1-d");
  if (icpt->rank() == 0 || (icpt->size() == 1 && k == 1)) {
    if (icpt->size() != 1) return state_error(who, "intercept_ is empty");
    e->intercept.assign(k, (*icpt)[0]);
  } else {
    if (icpt->size() != k)
      return state_error(who, "intercept_ has " + std::to_string(icpt->size()) + " values for " + std::to_string(k) + " coef_ rows");
    e->intercept.assign(icpt->p, icpt->p + k);
  }
  e->map = linalg::dense_map(coef->p, k, f);

  if (!spec.classifier) {
    e->methods = method_bit(method::predict);
    return estimator_ptr(std::move(e));
  }

  // Classifiers.
  const node* classes = opt_attr(obj, "classes_");
  if (!classes) {
    if (const node* lb = opt_attr(obj, "_label_binarizer")) classes = opt_attr(*lb, "classes_");
  }
  if (!classes) return state_error(who, "missing attribute classes_");
  VITRIFY_TRY(read_classes(*classes, *e, who));
  if (const node* lb = opt_attr(obj, "_label_binarizer")) {
    if (const node* yt = opt_attr(*lb, "y_type_"); yt && yt->k == node::kind::string && yt->text.starts_with("multilabel"))
      return unsupported_error(who, "multilabel targets are not supported");
  }
  const std::size_t nc = e->classes.size();
  if (nc < 2) return state_error(who, "a classifier needs at least 2 classes");
  if (k != (nc == 2 ? 1 : nc))
    return state_error(who, "coef_ has " + std::to_string(k) + " rows for " + std::to_string(nc) + " classes");
  // coef_ is (k, f); RidgeClassifier keeps a binary model's coef_ 1-d (same product).
  if (coef->rank() != 2 && nc != 2) return state_error(who, "coef_ of a multiclass classifier must be 2-d");
  e->methods = method_bit(method::predict) | method_bit(method::decision_function);

  if (spec.rule == linear_spec::proba_rule::logistic) {
    // sklearn ≥ 1.8: binary → expit, multiclass → softmax. Pickles of ≤ 1.7 carry multi_class.
    e->proba = nc == 2 ? proba_kind::ovr : proba_kind::softmax;
    if (const node* mc = opt_attr(obj, "multi_class"); mc && mc->k == node::kind::string) {
      std::string solver;
      if (const node* s = opt_attr(obj, "solver"); s && s->k == node::kind::string) solver = s->text;
      const std::string& v = mc->text;
      bool ovr;
      if (v == "ovr" || v == "warn") ovr = true;
      else if (v == "auto" || v == "deprecated") ovr = nc <= 2 || solver == "liblinear";
      else if (v == "multinomial") ovr = false;
      else return unsupported_error(who, "multi_class='" + v + "' is not supported");
      e->proba = ovr ? proba_kind::ovr : (nc == 2 ? proba_kind::softmax_binary : proba_kind::softmax);
    }
  } else if (spec.rule == linear_spec::proba_rule::sgd) {
    auto loss = get_str(obj, "loss");
    if (!loss) return std::move(loss).err();
    if (*loss == "log_loss" || *loss == "log") e->proba = proba_kind::ovr;
    else if (*loss == "modified_huber") e->proba = proba_kind::modified_huber;
  }
  if (e->proba != proba_kind::none) e->methods |= method_bit(method::predict_proba);
  return estimator_ptr(std::move(e));
}

}  // namespace

void register_linear(registry& r) {
  auto add = [&](const char* name, linear_spec spec) {
    r.add(name, [spec](const node& obj, build_context&) { return build_linear(obj, spec); });
  };
  using rule = linear_spec::proba_rule;
  add("sklearn.linear_model.LogisticRegression", {true, rule::logistic});
  add("sklearn.linear_model.RidgeClassifier", {true, rule::none});
  add("sklearn.linear_model.SGDClassifier", {true, rule::sgd});
  add("sklearn.svm.LinearSVC", {true, rule::none});
  for (const char* n : {"sklearn.linear_model.LinearRegression", "sklearn.linear_model.Ridge",
                        "sklearn.linear_model.Lasso", "sklearn.linear_model.ElasticNet",
                        "sklearn.linear_model.SGDRegressor", "sklearn.svm.LinearSVR"})
    add(n, {false, rule::none});
}

}  // namespace vitrify::runtime
