// src/runtime/svm.cpp - kernel SVMs (SVC, NuSVC, SVR, NuSVR, OneClassSVM) as scikit-learn
// predicts with them: its vendored libsvm (sklearn/svm/src/libsvm/svm.cpp, dense build)
// evaluated step for step, so the results are the same bits.
//
// The fitted state is what sklearn hands to libsvm at predict time: support_vectors_,
// _n_support, _dual_coef_ and _intercept_ (the private ones: the public dual_coef_ /
// intercept_ are negated for binary problems), _probA / _probB, _gamma, degree, coef0.
// LinearSVC / LinearSVR (liblinear) live in linear.cpp.
#include <algorithm>
#include <cmath>
#include <limits>

#include "runtime/estimator.hpp"

namespace vitrify::runtime {

namespace {

using pyobj::node;

enum class svm_impl { c_svc, nu_svc, one_class, epsilon_svr, nu_svr };
enum class kernel_kind { linear, poly, rbf, sigmoid };

// ---- dot product ----------------------------------------------------------------------------
//
// Dense libsvm computes every dot product with BLAS ddot (scipy's cython_blas, i.e. the
// OpenBLAS bundled with scipy). Its x86-64 kernel for Haswell and Zen (kernel/x86_64/ddot.c with
// ddot_microk_haswell-2.c) sums the first n & -16 products in 16 lanes with fused multiply-add
// (4 ymm accumulators), reduces the lanes in a fixed tree, and adds the remaining products one
// by one without fusing. We follow that order exactly; other BLAS kernels (SkylakeX, MKL,
// aarch64) sum in another order and may differ in the last bits.

// The 16-lane part: sums of x[i]*y[i] for i < n1 (n1 a multiple of 16).
[[gnu::always_inline]] inline double dot_lanes_body(const double* x, const double* y, std::size_t n1) noexcept {
  double acc[16] = {};
  for (std::size_t i = 0; i < n1; i += 16)
    for (std::size_t j = 0; j < 16; ++j) acc[j] = std::fma(x[i + j], y[i + j], acc[j]);
  // Accumulator a holds lanes 4a..4a+3: vextractf128 + vaddpd fold the upper pair onto the
  // lower, then (a0 + a1) + (a2 + a3) pairwise, then vhaddpd adds the two lanes.
  double h0[4], h1[4];
  for (std::size_t a = 0; a < 4; ++a) {
    h0[a] = acc[4 * a + 0] + acc[4 * a + 2];
    h1[a] = acc[4 * a + 1] + acc[4 * a + 3];
  }
  const double s0 = (h0[0] + h0[1]) + (h0[2] + h0[3]);
  const double s1 = (h1[0] + h1[1]) + (h1[2] + h1[3]);
  return s0 + s1;
}

double dot_lanes_generic(const double* x, const double* y, std::size_t n1) noexcept {
  return dot_lanes_body(x, y, n1);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// Same arithmetic, with std::fma compiled to the instruction instead of a libm call.
__attribute__((target("fma"))) double dot_lanes_fma(const double* x, const double* y, std::size_t n1) noexcept {
  return dot_lanes_body(x, y, n1);
}
using lanes_fn = double (*)(const double*, const double*, std::size_t) noexcept;
// Chosen on first use (a function-local static: safe whatever the order of static initializers).
inline double dot_lanes(const double* x, const double* y, std::size_t n1) noexcept {
  static const lanes_fn fn = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("fma") ? dot_lanes_fma : dot_lanes_generic;
  }();
  return fn(x, y, n1);
}
#else
inline double dot_lanes(const double* x, const double* y, std::size_t n1) noexcept { return dot_lanes_generic(x, y, n1); }
#endif

inline double blas_dot(const double* x, const double* y, std::size_t n) noexcept {
  const std::size_t n1 = n & ~std::size_t{15};
  double dot = n1 ? dot_lanes(x, y, n1) : 0.0;
  for (std::size_t i = n1; i < n; ++i) dot += y[i] * x[i];
  return dot;
}

// libsvm's powi: exponentiation by squaring, in its order of products.
inline double powi(double base, int times) noexcept {
  double tmp = base, ret = 1.0;
  for (int t = times; t > 0; t /= 2) {
    if (t % 2 == 1) ret *= tmp;
    tmp = tmp * tmp;
  }
  return ret;
}

// libsvm's min / max templates (their NaN behaviour matters: the second argument wins).
inline double lmin(double x, double y) noexcept { return (x < y) ? x : y; }
inline double lmax(double x, double y) noexcept { return (x > y) ? x : y; }

// libsvm's sigmoid_predict.
inline double sigmoid_predict(double decision_value, double a, double b) noexcept {
  const double fApB = decision_value * a + b;
  if (fApB >= 0) return std::exp(-fApB) / (1.0 + std::exp(-fApB));
  return 1.0 / (1 + std::exp(fApB));
}

// libsvm's multiclass_probability (method 2 of Wu, Lin and Weng), k x k matrices in r and q.
void multiclass_probability(std::size_t k, const double* r, double* p, double* q, double* qp) noexcept {
  const int ki = static_cast<int>(k);
  const int max_iter = std::max(100, ki);
  const double eps = 0.005 / ki;
  for (std::size_t t = 0; t < k; ++t) {
    p[t] = 1.0 / ki;
    double* qt = q + t * k;
    qt[t] = 0;
    for (std::size_t j = 0; j < t; ++j) {
      qt[t] += r[j * k + t] * r[j * k + t];
      qt[j] = q[j * k + t];
    }
    for (std::size_t j = t + 1; j < k; ++j) {
      qt[t] += r[j * k + t] * r[j * k + t];
      qt[j] = -r[j * k + t] * r[t * k + j];
    }
  }
  for (int iter = 0; iter < max_iter; ++iter) {
    // Stopping condition; Qp and pQp recomputed for accuracy, as libsvm does.
    double pqp = 0;
    for (std::size_t t = 0; t < k; ++t) {
      qp[t] = 0;
      for (std::size_t j = 0; j < k; ++j) qp[t] += q[t * k + j] * p[j];
      pqp += p[t] * qp[t];
    }
    double max_error = 0;
    for (std::size_t t = 0; t < k; ++t) {
      const double error = std::fabs(qp[t] - pqp);
      if (error > max_error) max_error = error;
    }
    if (max_error < eps) break;
    for (std::size_t t = 0; t < k; ++t) {
      const double qtt = q[t * k + t];
      const double diff = (-qp[t] + pqp) / qtt;
      p[t] += diff;
      pqp = (pqp + diff * (diff * qtt + 2 * qp[t])) / (1 + diff) / (1 + diff);
      for (std::size_t j = 0; j < k; ++j) {
        qp[j] = (qp[j] + diff * q[t * k + j]) / (1 + diff);
        p[j] /= (1 + diff);
      }
    }
  }
}

// np.argmax: the first maximum; a NaN wins (the first one).
std::size_t np_argmax(const double* v, std::size_t n) noexcept {
  std::size_t best = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (v[i] != v[i]) return i;
    if (v[i] > v[best]) best = i;
  }
  return best;
}

// ---- the estimator ----------------------------------------------------------------------------

class svm_estimator final : public estimator {
 public:
  svm_impl impl = svm_impl::c_svc;
  kernel_kind kernel = kernel_kind::rbf;
  double gamma = 0, coef0 = 0;
  int degree = 3;
  std::size_t n_sv = 0, dim = 0;
  std::size_t n_class = 0;   // classifiers: number of classes; others 2 (libsvm's layout)
  std::size_t n_pairs = 0;   // n_class * (n_class - 1) / 2
  tensor<double> sv;         // (n_sv, dim)
  tensor<double> coef;       // (n_class - 1, n_sv)
  std::vector<double> rho;   // -_intercept_, as set_model stores it
  std::vector<std::size_t> start, count;  // per class: first support vector and how many
  std::vector<double> prob_a, prob_b;
  bool ovr = true, break_ties = false;

  [[nodiscard]] bool classifier() const noexcept { return impl == svm_impl::c_svc || impl == svm_impl::nu_svc; }

  [[nodiscard]] std::size_t width(method m) const override {
    if (!classifier()) return 1;
    switch (m) {
      case method::predict: return 1;
      case method::predict_proba: return n_class;
      case method::decision_function:
        if (n_class == 2) return 1;
        return ovr ? n_class : n_pairs;
      default: return 0;
    }
  }

  // Scratch layout (doubles) for one row.
  [[nodiscard]] std::size_t scratch_size() const noexcept {
    return dim /*row*/ + dim /*diff*/ + n_sv /*kvalue*/ + n_pairs + 1 /*dec*/ + n_class /*votes, ovr*/ +
           3 * n_class * n_class /*r, q*/ + n_class /*qp*/;
  }

  result<dense> run(method m, const input& x) const override {
    dense storage;
    auto v = x.numeric(storage, short_name(type));
    if (!v) return std::move(v).err();
    VITRIFY_TRY(check_method(m));
    if (v->cols() != dim)
      return fail(errc::invalid_argument, std::string(short_name(type)) + ": X has " + std::to_string(v->cols()) +
                                              " features, the model expects " + std::to_string(dim));
    const std::size_t w = width(m);
    dense out(v->rows(), w);
    std::vector<double> scratch(scratch_size());
    for (std::size_t r = 0; r < v->rows(); ++r) {
      double* row = scratch.data();
      const double* xr;
      if (v->is_float32()) {
        const float* f = v->f32() + r * v->row_stride();
        for (std::size_t c = 0; c < dim; ++c) row[c] = static_cast<double>(f[c]);
        xr = row;
      } else {
        xr = v->f64() + r * v->row_stride();
      }
      VITRIFY_TRY(check_finite(xr));
      one_row(m, xr, scratch.data() + dim, out.row(r));
    }
    return out;
  }

  result<void> run_row(method m, std::span<const double> row, std::span<double> out) const override {
    if (row.size() != dim || out.size() != width(m))
      return fail(errc::invalid_argument, std::string(short_name(type)) + ": row or output buffer has the wrong size");
    VITRIFY_TRY(check_method(m));
    VITRIFY_TRY(check_finite(row.data()));
    // One buffer per thread, reused: run_row allocates only when a model needs more room than
    // the thread's previous calls did.
    thread_local std::vector<double> scratch;
    if (scratch.size() < scratch_size()) scratch.resize(scratch_size());
    one_row(m, row.data(), scratch.data() + dim, out.data());
    return {};
  }

 private:
  [[nodiscard]] result<void> check_method(method m) const {
    if (m == method::predict && classifier() && break_ties && !ovr)
      return fail(errc::invalid_argument, std::string(short_name(type)) +
                                              ": break_ties must be False when decision_function_shape is 'ovo'");
    return {};
  }

  // scikit-learn validates X with ensure_all_finite=True and raises on NaN / infinity.
  [[nodiscard]] result<void> check_finite(const double* x) const {
    for (std::size_t c = 0; c < dim; ++c)
      if (!std::isfinite(x[c]))
        return fail(errc::invalid_argument, std::string(short_name(type)) + ": input contains NaN or infinity");
    return {};
  }

  // libsvm's Kernel::k_function for dense nodes (x the input row, s a support vector).
  double kernel_value(const double* x, const double* s, double* diff) const noexcept {
    switch (kernel) {
      case kernel_kind::linear: return blas_dot(x, s, dim);
      case kernel_kind::poly: return powi(gamma * blas_dot(x, s, dim) + coef0, degree);
      case kernel_kind::rbf: {
        for (std::size_t i = 0; i < dim; ++i) diff[i] = x[i] - s[i];
        const double sum = blas_dot(diff, diff, dim);
        return std::exp(-gamma * sum);
      }
      case kernel_kind::sigmoid: return std::tanh(gamma * blas_dot(x, s, dim) + coef0);
    }
    return 0;
  }

  // libsvm's svm_predict_values: fills dec (n_pairs values, or 1 for one-class / regression)
  // and returns the voted class index for classifiers.
  std::size_t predict_values(const double* x, double* work, double* dec) const noexcept {
    double* diff = work;
    double* kvalue = diff + dim;
    if (!classifier()) {
      const double* c = coef.p;
      double sum = 0;
      for (std::size_t i = 0; i < n_sv; ++i) sum += c[i] * kernel_value(x, sv.p + i * dim, diff);
      sum -= rho[0];
      dec[0] = sum;
      return 0;
    }
    for (std::size_t i = 0; i < n_sv; ++i) kvalue[i] = kernel_value(x, sv.p + i * dim, diff);
    double* vote = kvalue + n_sv + n_pairs + 1;
    for (std::size_t i = 0; i < n_class; ++i) vote[i] = 0;
    std::size_t p = 0;
    for (std::size_t i = 0; i < n_class; ++i)
      for (std::size_t j = i + 1; j < n_class; ++j) {
        double sum = 0;
        const std::size_t si = start[i], sj = start[j], ci = count[i], cj = count[j];
        const double* coef1 = coef.p + (j - 1) * n_sv;
        const double* coef2 = coef.p + i * n_sv;
        for (std::size_t k = 0; k < ci; ++k) sum += coef1[si + k] * kvalue[si + k];
        for (std::size_t k = 0; k < cj; ++k) sum += coef2[sj + k] * kvalue[sj + k];
        sum -= rho[p];
        dec[p] = sum;
        if (dec[p] > 0) vote[i] += 1;
        else vote[j] += 1;
        ++p;
      }
    std::size_t best = 0;
    for (std::size_t i = 1; i < n_class; ++i)
      if (vote[i] > vote[best]) best = i;
    return best;
  }

  // sklearn.utils.multiclass._ovr_decision_function(dec < 0, -dec, n_class) into out.
  void ovr_decision(const double* dec, double* votes, double* out) const noexcept {
    double* conf_sum = out;
    for (std::size_t i = 0; i < n_class; ++i) votes[i] = 0, conf_sum[i] = 0;
    std::size_t k = 0;
    for (std::size_t i = 0; i < n_class; ++i)
      for (std::size_t j = i + 1; j < n_class; ++j) {
        const double confidence = -dec[k];
        conf_sum[i] -= confidence;
        conf_sum[j] += confidence;
        if (dec[k] < 0) votes[j] += 1;
        else votes[i] += 1;
        ++k;
      }
    for (std::size_t i = 0; i < n_class; ++i)
      out[i] = votes[i] + conf_sum[i] / (3 * (std::fabs(conf_sum[i]) + 1));
  }

  void one_row(method m, const double* x, double* work, double* out) const noexcept {
    double* dec = work + dim + n_sv;
    double* votes = dec + n_pairs + 1;
    const std::size_t voted = predict_values(x, work, dec);
    if (!classifier()) {
      if (impl == svm_impl::one_class && m == method::predict) out[0] = dec[0] > 0 ? 1.0 : -1.0;
      else out[0] = dec[0];
      return;
    }
    if (m == method::predict) {
      if (break_ties && ovr && n_class > 2) {
        ovr_decision(dec, votes + n_class, votes);  // the row's ovr values land in `votes`
        out[0] = static_cast<double>(np_argmax(votes, n_class));
      } else {
        out[0] = static_cast<double>(voted);
      }
      return;
    }
    if (m == method::decision_function) {
      if (n_class == 2) out[0] = -dec[0];
      else if (ovr) ovr_decision(dec, votes, out);
      else std::copy(dec, dec + n_pairs, out);
      return;
    }
    // predict_proba: libsvm's svm_predict_probability.
    const std::size_t k = n_class;
    double* r = votes + k;
    double* q = r + k * k;
    double* qp = q + k * k;
    const double min_prob = 1e-7;
    std::size_t p = 0;
    for (std::size_t i = 0; i < k; ++i)
      for (std::size_t j = i + 1; j < k; ++j) {
        r[i * k + j] = lmin(lmax(sigmoid_predict(dec[p], prob_a[p], prob_b[p]), min_prob), 1 - min_prob);
        r[j * k + i] = 1 - r[i * k + j];
        ++p;
      }
    multiclass_probability(k, r, out, q, qp);
  }
};

result<kernel_kind> read_kernel(const node& obj, std::string_view who) {
  const node* k = opt_attr(obj, "kernel");
  if (!k) return state_error(who, "missing attribute kernel");
  if (k->k != node::kind::string) return unsupported_error(who, "a callable kernel is not supported");
  if (k->text == "linear") return kernel_kind::linear;
  if (k->text == "poly") return kernel_kind::poly;
  if (k->text == "rbf") return kernel_kind::rbf;
  if (k->text == "sigmoid") return kernel_kind::sigmoid;
  if (k->text == "precomputed") return unsupported_error(who, "kernel='precomputed' is not supported");
  return state_error(who, "unknown kernel '" + k->text + "'");
}

result<estimator_ptr> build_svm(const node& obj, svm_impl impl) {
  auto e = std::make_shared<svm_estimator>();
  e->impl = impl;
  const std::string who(short_name(obj.type_name()));
  if (const node* s = opt_attr(obj, "_sparse")) {
    auto sp = as_integer(*s, who + "._sparse");
    if (!sp) return std::move(sp).err();
    if (*sp) return unsupported_error(who, "an SVM fitted on sparse data is not supported");
  }
  auto kern = read_kernel(obj, who);
  if (!kern) return std::move(kern).err();
  e->kernel = *kern;
  auto gamma = get_float(obj, "_gamma");
  if (!gamma) return std::move(gamma).err();
  e->gamma = *gamma;
  auto coef0 = get_float(obj, "coef0");
  if (!coef0) return std::move(coef0).err();
  e->coef0 = *coef0;
  auto degree = get_int(obj, "degree");
  if (!degree) return std::move(degree).err();
  if (*degree < 0 || *degree > std::numeric_limits<int>::max()) return state_error(who, "degree out of range");
  e->degree = static_cast<int>(*degree);

  VITRIFY_TRY(read_feature_info(obj, *e));
  const node* svn = opt_attr(obj, "support_vectors_");
  if (!svn) return state_error(who, "missing attribute support_vectors_");
  if (svn->k == node::kind::object) return unsupported_error(who, "sparse support_vectors_ are not supported");
  auto sv = as_tensor<double>(*svn, who + ".support_vectors_", 2);
  if (!sv) return std::move(sv).err();
  e->sv = std::move(sv).value();
  e->n_sv = e->sv.dim(0);
  e->dim = e->sv.dim(1);
  if (e->n_features < 0) e->n_features = static_cast<std::int64_t>(e->dim);
  if (static_cast<std::size_t>(e->n_features) != e->dim)
    return state_error(who, "support_vectors_ has " + std::to_string(e->dim) + " columns, n_features_in_ is " +
                                std::to_string(e->n_features));

  const bool is_classifier = impl == svm_impl::c_svc || impl == svm_impl::nu_svc;
  if (is_classifier) {
    auto classes = need_attr(obj, "classes_");
    if (!classes) return std::move(classes).err();
    VITRIFY_TRY(read_classes(**classes, *e, who));
    auto nsv = attr_tensor<std::int64_t>(obj, "_n_support", 1);
    if (!nsv) return std::move(nsv).err();
    e->n_class = nsv->size();
    const std::size_t n_labels = e->string_classes ? e->classes.size() : e->class_values.size();
    if (e->n_class < 2 || e->n_class != n_labels)
      return state_error(who, "_n_support has " + std::to_string(e->n_class) + " entries for " +
                                  std::to_string(n_labels) + " classes");
    std::size_t total = 0;
    for (std::size_t i = 0; i < e->n_class; ++i) {
      const std::int64_t c = (*nsv)[i];
      if (c < 0 || static_cast<std::uint64_t>(c) > e->n_sv - total)
        return state_error(who, "_n_support does not add up to the number of support vectors");
      e->start.push_back(total);
      e->count.push_back(static_cast<std::size_t>(c));
      total += static_cast<std::size_t>(c);
    }
    if (total != e->n_sv) return state_error(who, "_n_support does not add up to the number of support vectors");
  } else {
    e->n_class = 2;
  }
  e->n_pairs = e->n_class * (e->n_class - 1) / 2;

  auto coef = attr_tensor<double>(obj, "_dual_coef_", 2);
  if (!coef) return std::move(coef).err();
  if (coef->dim(0) != e->n_class - 1 || coef->dim(1) != e->n_sv)
    return state_error(who, "_dual_coef_ must have shape (" + std::to_string(e->n_class - 1) + ", " +
                                std::to_string(e->n_sv) + ")");
  e->coef = std::move(coef).value();
  auto intercept = attr_tensor<double>(obj, "_intercept_", 1);
  if (!intercept) return std::move(intercept).err();
  if (intercept->size() != e->n_pairs)
    return state_error(who, "_intercept_ must have " + std::to_string(e->n_pairs) + " values");
  for (std::size_t i = 0; i < e->n_pairs; ++i) e->rho.push_back(-(*intercept)[i]);

  e->methods = method_bit(method::predict);
  if (impl == svm_impl::one_class) e->methods |= method_bit(method::decision_function);
  if (is_classifier) {
    e->methods |= method_bit(method::decision_function);
    auto shape = get_str(obj, "decision_function_shape");
    if (!shape) return std::move(shape).err();
    if (*shape != "ovr" && *shape != "ovo") return state_error(who, "unknown decision_function_shape '" + *shape + "'");
    e->ovr = *shape == "ovr";
    if (const node* bt = opt_attr(obj, "break_ties")) {
      auto b = as_integer(*bt, who + ".break_ties");
      if (!b) return std::move(b).err();
      e->break_ties = *b != 0;
    }
    // predict_proba exists when fitted with probability=True (sklearn 1.9 writes "deprecated"
    // for the default) and libsvm produced the Platt parameters.
    const node* pr = opt_attr(obj, "probability");
    bool probability = false;
    if (pr && pr->k != node::kind::string) {
      auto b = as_integer(*pr, who + ".probability");
      if (!b) return std::move(b).err();
      probability = *b != 0;
    }
    const node* pa = opt_attr(obj, "_probA");
    const node* pb = opt_attr(obj, "_probB");
    if (probability && pa && pb) {
      auto a = as_tensor<double>(*pa, who + "._probA", 1);
      if (!a) return std::move(a).err();
      auto b = as_tensor<double>(*pb, who + "._probB", 1);
      if (!b) return std::move(b).err();
      if (a->size() != 0 && b->size() != 0) {
        if (a->size() != e->n_pairs || b->size() != e->n_pairs)
          return state_error(who, "_probA and _probB must have " + std::to_string(e->n_pairs) + " values");
        e->prob_a.assign(a->p, a->p + a->size());
        e->prob_b.assign(b->p, b->p + b->size());
        e->methods |= method_bit(method::predict_proba);
      }
    }
  }
  return std::static_pointer_cast<const estimator>(e);
}

}  // namespace

void register_svm(registry& r) {
  r.add("sklearn.svm.SVC", [](const node& n, build_context&) { return build_svm(n, svm_impl::c_svc); });
  r.add("sklearn.svm.NuSVC", [](const node& n, build_context&) { return build_svm(n, svm_impl::nu_svc); });
  r.add("sklearn.svm.SVR", [](const node& n, build_context&) { return build_svm(n, svm_impl::epsilon_svr); });
  r.add("sklearn.svm.NuSVR", [](const node& n, build_context&) { return build_svm(n, svm_impl::nu_svr); });
  r.add("sklearn.svm.OneClassSVM", [](const node& n, build_context&) { return build_svm(n, svm_impl::one_class); });
}

}  // namespace vitrify::runtime
