// src/runtime/neural.cpp - MLPClassifier / MLPRegressor: the forward pass of
// BaseMultilayerPerceptron._forward_pass_fast (sklearn/neural_network/_multilayer_perceptron.py).
//
//   a = X;  for each layer i: a = a @ coefs_[i]; a += intercepts_[i];
//           hidden layers: activation(a) in place;  last layer: out_activation_(a)
//
// numpy computes `a @ coefs_[i]` with BLAS gemm (gemv for one row), whose blocking depends on
// the sizes, and exp / tanh with its own SIMD code, so the results agree to a few units in the
// last place rather than bit for bit (see docs). The arithmetic type follows numpy's promotion: float32 only when both the
// input and the fitted weights are float32, float64 otherwise.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "runtime/estimator.hpp"

namespace vitrify::runtime {

namespace {

using pyobj::node;

enum class act { identity, logistic, tanh, relu, softmax, exp };

result<act> parse_act(const std::string& s, bool output, std::string_view who) {
  if (s == "identity") return act::identity;
  if (s == "logistic") return act::logistic;
  if (s == "tanh") return act::tanh;
  if (s == "relu") return act::relu;
  if (output && s == "softmax") return act::softmax;
  if (output && s == "exp") return act::exp;
  return unsupported_error(who, "activation '" + s + "' is not supported");
}

// numpy's pairwise summation (loops_utils.h.src, PW_BLOCKSIZE 128), as used by X.sum(axis=1).
template <class T>
T pairwise_sum(const T* a, std::size_t n) noexcept {
  if (n < 8) {
    T res = -0.0;
    for (std::size_t i = 0; i < n; ++i) res += a[i];
    return res;
  }
  if (n <= 128) {
    T r[8];
    for (std::size_t j = 0; j < 8; ++j) r[j] = a[j];
    std::size_t i = 8;
    for (; i < n - n % 8; i += 8)
      for (std::size_t j = 0; j < 8; ++j) r[j] += a[i + j];
    T res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  std::size_t n2 = n / 2;
  n2 -= n2 % 8;
  return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

// The activations of sklearn/neural_network/_base.py, in place on one row.
template <class T>
void activate(act a, T* z, std::size_t n) noexcept {
  switch (a) {
    case act::identity: return;
    case act::logistic:  // scipy.special.expit
      for (std::size_t i = 0; i < n; ++i) z[i] = T(1) / (T(1) + std::exp(-z[i]));
      return;
    case act::tanh:
      for (std::size_t i = 0; i < n; ++i) z[i] = std::tanh(z[i]);
      return;
    case act::relu:  // np.maximum(z, 0): NaN propagates
      for (std::size_t i = 0; i < n; ++i) z[i] = (z[i] >= T(0) || z[i] != z[i]) ? z[i] : T(0);
      return;
    case act::exp:
      for (std::size_t i = 0; i < n; ++i) z[i] = std::exp(z[i]);
      return;
    case act::softmax: {
      // inplace_softmax: tmp = z - max(z); exp; z /= z.sum()  (np.max propagates NaN)
      T m = z[0];
      for (std::size_t i = 1; i < n; ++i)
        if (!(m >= z[i]) && m == m) m = z[i];
      for (std::size_t i = 0; i < n; ++i) z[i] = std::exp(z[i] - m);
      const T s = pairwise_sum(z, n);
      for (std::size_t i = 0; i < n; ++i) z[i] /= s;
      return;
    }
  }
}

// z = a @ W for one row (W is in x out, row-major): each output summed over the inputs in order
// with fused multiply-adds. That is how OpenBLAS's Haswell gemm kernel accumulates a dot product
// when the sizes need no blocking, so it is often the same bits as numpy; other sizes and the
// one-row gemv path sum differently (a few ulp).
template <class T>
[[gnu::always_inline]] inline void matvec_body(const T* a, const T* w, std::size_t in, std::size_t out, T* z) noexcept {
  std::fill(z, z + out, T(0));
  for (std::size_t k = 0; k < in; ++k) {
    const T ak = a[k];
    const T* wk = w + k * out;
    for (std::size_t j = 0; j < out; ++j) z[j] = std::fma(ak, wk[j], z[j]);
  }
}

template <class T>
void matvec_generic(const T* a, const T* w, std::size_t in, std::size_t out, T* z) noexcept {
  matvec_body(a, w, in, out, z);
}

template <class T>
using matvec_fn = void (*)(const T*, const T*, std::size_t, std::size_t, T*) noexcept;

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// Same arithmetic with the FMA instruction instead of a libm call per element.
template <class T>
__attribute__((target("avx2,fma"))) void matvec_fma(const T* a, const T* w, std::size_t in, std::size_t out, T* z) noexcept {
  matvec_body(a, w, in, out, z);
}
// Chosen on first use (a function-local static: safe whatever the order of static initializers).
template <class T>
void matvec(const T* a, const T* w, std::size_t in, std::size_t out, T* z) noexcept {
  static const matvec_fn<T> fn = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("fma") && __builtin_cpu_supports("avx2") ? matvec_fma<T> : matvec_generic<T>;
  }();
  fn(a, w, in, out, z);
}
#else
template <class T>
void matvec(const T* a, const T* w, std::size_t in, std::size_t out, T* z) noexcept {
  matvec_generic<T>(a, w, in, out, z);
}
#endif

template <class T>
struct layer {
  std::size_t in = 0, out = 0;
  tensor<T> w;  // (in, out), row-major
  tensor<T> b;  // (out,)
};

class mlp_estimator final : public estimator {
 public:
  std::vector<layer<double>> layers64;
  std::vector<layer<float>> layers32;  // fitted in float32: the weights as stored
  act hidden = act::relu, output = act::identity;
  std::size_t n_out = 0, max_width = 0;
  bool binary = false;        // classifier with one logistic output
  double threshold = 0.5;     // LabelBinarizer: (pos_label + neg_label) / 2

  [[nodiscard]] std::size_t width(method m) const override {
    if (m == method::predict) return is_classifier ? 1 : n_out;
    if (m == method::predict_proba) return binary ? 2 : n_out;
    return 0;
  }

  result<dense> run(method m, const input& x) const override {
    dense storage;
    auto v = x.numeric(storage, short_name(type));
    if (!v) return std::move(v).err();
    if (v->cols() != n_in())
      return fail(errc::invalid_argument, std::string(short_name(type)) + ": X has " + std::to_string(v->cols()) +
                                              " features, the model expects " + std::to_string(n_in()));
    dense out(v->rows(), width(m));
    const bool f32 = v->is_float32() && !layers32.empty();
    std::vector<double> buf64(f32 ? 0 : 2 * max_width + n_in());
    std::vector<float> buf32(f32 ? 2 * max_width : 0);
    for (std::size_t r = 0; r < v->rows(); ++r) {
      if (f32) {
        const float* row = v->f32() + r * v->row_stride();
        VITRIFY_TRY(check_finite(row));
        finish(m, forward(layers32, row, buf32.data()), out.row(r));
      } else {
        const double* row;
        if (v->is_float32()) {
          double* w = buf64.data() + 2 * max_width;
          const float* f = v->f32() + r * v->row_stride();
          for (std::size_t c = 0; c < n_in(); ++c) w[c] = static_cast<double>(f[c]);
          row = w;
        } else {
          row = v->f64() + r * v->row_stride();
        }
        VITRIFY_TRY(check_finite(row));
        finish(m, forward(layers64, row, buf64.data()), out.row(r));
      }
    }
    return out;
  }

  result<void> run_row(method m, std::span<const double> row, std::span<double> out) const override {
    if (row.size() != n_in() || out.size() != width(m))
      return fail(errc::invalid_argument, std::string(short_name(type)) + ": row or output buffer has the wrong size");
    VITRIFY_TRY(check_finite(row.data()));
    thread_local std::vector<double> buf;  // reused: no allocation after a thread's first call
    if (buf.size() < 2 * max_width) buf.resize(2 * max_width);
    finish(m, forward(layers64, row.data(), buf.data()), out.data());
    return {};
  }

  [[nodiscard]] std::size_t n_in() const noexcept { return layers64.front().in; }

 private:
  template <class T>
  result<void> check_finite(const T* x) const {
    for (std::size_t c = 0; c < n_in(); ++c)
      if (!std::isfinite(x[c]))
        return fail(errc::invalid_argument, std::string(short_name(type)) + ": input contains NaN or infinity");
    return {};
  }

  // The network on one row; returns the output layer's values (inside buf, 2 * max_width).
  template <class T>
  const T* forward(const std::vector<layer<T>>& ls, const T* x, T* buf) const noexcept {
    const T* a = x;
    T* z = buf;
    for (std::size_t li = 0; li < ls.size(); ++li) {
      const layer<T>& l = ls[li];
      // a @ W, then the intercept added: numpy's two steps.
      matvec<T>(a, l.w.p, l.in, l.out, z);
      for (std::size_t j = 0; j < l.out; ++j) z[j] += l.b.p[j];
      activate(li + 1 == ls.size() ? output : hidden, z, l.out);
      a = z;
      z = (z == buf) ? buf + max_width : buf;
    }
    return a;
  }

  template <class T>
  void finish(method m, const T* y, double* out) const noexcept {
    if (m == method::predict && is_classifier) {
      if (binary) {
        out[0] = y[0] > static_cast<T>(threshold) ? 1.0 : 0.0;
      } else {
        std::size_t best = 0;  // np.argmax: first maximum, or the first NaN
        for (std::size_t i = 0; i < n_out; ++i) {
          if (y[i] != y[i]) { best = i; break; }
          if (y[i] > y[best]) best = i;
        }
        out[0] = static_cast<double>(best);
      }
      return;
    }
    if (m == method::predict_proba && binary) {
      out[0] = static_cast<double>(T(1) - y[0]);
      out[1] = static_cast<double>(y[0]);
      return;
    }
    for (std::size_t i = 0; i < n_out; ++i) out[i] = static_cast<double>(y[i]);
  }
};

const node* list_item(const node& n, std::size_t i) {
  return (n.k == node::kind::list || n.k == node::kind::tuple) && i < n.items.size() ? n.items[i] : nullptr;
}

result<estimator_ptr> build_mlp(const node& obj, bool classifier) {
  auto e = std::make_shared<mlp_estimator>();
  const std::string who(short_name(obj.type_name()));
  auto hidden = get_str(obj, "activation");
  if (!hidden) return std::move(hidden).err();
  auto h = parse_act(*hidden, false, who);
  if (!h) return std::move(h).err();
  e->hidden = *h;
  auto out_act = get_str(obj, "out_activation_");
  if (!out_act) return std::move(out_act).err();
  auto o = parse_act(*out_act, true, who);
  if (!o) return std::move(o).err();
  e->output = *o;

  auto coefs = need_attr(obj, "coefs_");
  if (!coefs) return std::move(coefs).err();
  auto intercepts = need_attr(obj, "intercepts_");
  if (!intercepts) return std::move(intercepts).err();
  const node& cl = **coefs;
  const node& il = **intercepts;
  if ((cl.k != node::kind::list && cl.k != node::kind::tuple) || (il.k != node::kind::list && il.k != node::kind::tuple))
    return state_error(who, "coefs_ and intercepts_ must be lists of arrays");
  const std::size_t n_layers = cl.items.size();
  if (n_layers == 0 || il.items.size() != n_layers) return state_error(who, "coefs_ and intercepts_ must have the same, nonzero length");
  if (const node* nl = opt_attr(obj, "n_layers_")) {
    auto v = as_integer(*nl, who + ".n_layers_");
    if (!v) return std::move(v).err();
    if (*v < 0 || static_cast<std::uint64_t>(*v) != n_layers + 1) return state_error(who, "n_layers_ does not match coefs_");
  }
  // Weights in float32 when every array is float32 (fitted on float32 data).
  bool all32 = true;
  for (std::size_t i = 0; i < n_layers; ++i) {
    const node* c = list_item(cl, i);
    const node* b = list_item(il, i);
    all32 = all32 && c && b && c->k == node::kind::array && b->k == node::kind::array && c->arr->dtype == "<f4" &&
            b->arr->dtype == "<f4";
  }
  std::size_t prev = 0;
  for (std::size_t i = 0; i < n_layers; ++i) {
    const std::string idx = "[" + std::to_string(i) + "]";
    layer<double> l;
    auto w = as_tensor<double>(*list_item(cl, i), who + ".coefs_" + idx, 2);
    if (!w) return std::move(w).err();
    auto b = as_tensor<double>(*list_item(il, i), who + ".intercepts_" + idx, 1);
    if (!b) return std::move(b).err();
    l.in = w->dim(0);
    l.out = w->dim(1);
    if (l.out == 0) return state_error(who, "coefs_" + idx + " has no columns");
    if (i > 0 && l.in != prev) return state_error(who, "coefs_" + idx + " does not follow the previous layer's width");
    if (b->size() != l.out) return state_error(who, "intercepts_" + idx + " does not match coefs_" + idx);
    prev = l.out;
    l.w = std::move(w).value();
    l.b = std::move(b).value();
    e->max_width = std::max(e->max_width, l.out);
    if (all32) {
      layer<float> f;
      f.in = l.in;
      f.out = l.out;
      auto wf = as_tensor<float>(*list_item(cl, i), who + ".coefs_" + idx, 2);
      if (!wf) return std::move(wf).err();
      auto bf = as_tensor<float>(*list_item(il, i), who + ".intercepts_" + idx, 1);
      if (!bf) return std::move(bf).err();
      f.w = std::move(wf).value();
      f.b = std::move(bf).value();
      e->layers32.push_back(std::move(f));
    }
    e->layers64.push_back(std::move(l));
  }
  e->n_out = prev;

  VITRIFY_TRY(read_feature_info(obj, *e));
  if (e->n_features < 0) e->n_features = static_cast<std::int64_t>(e->n_in());
  if (static_cast<std::size_t>(e->n_features) != e->n_in())
    return state_error(who, "coefs_[0] has " + std::to_string(e->n_in()) + " rows, n_features_in_ is " +
                                std::to_string(e->n_features));
  if (const node* no = opt_attr(obj, "n_outputs_")) {
    auto v = as_integer(*no, who + ".n_outputs_");
    if (!v) return std::move(v).err();
    if (*v < 0 || static_cast<std::uint64_t>(*v) != e->n_out) return state_error(who, "n_outputs_ does not match the last layer");
  }

  e->methods = method_bit(method::predict);
  if (classifier) {
    auto classes = need_attr(obj, "classes_");
    if (!classes) return std::move(classes).err();
    VITRIFY_TRY(read_classes(**classes, *e, who));
    const std::size_t n_classes = e->string_classes ? e->classes.size() : e->class_values.size();
    std::string y_type;
    if (const node* lb = opt_attr(obj, "_label_binarizer"); lb && lb->k == node::kind::object) {
      if (const node* yt = opt_attr(*lb, "y_type_"); yt && yt->k == node::kind::string) y_type = yt->text;
      if (opt_attr(*lb, "pos_label") && opt_attr(*lb, "neg_label")) {
        auto pos = get_float(*lb, "pos_label");
        if (!pos) return std::move(pos).err();
        auto neg = get_float(*lb, "neg_label");
        if (!neg) return std::move(neg).err();
        e->threshold = (*pos + *neg) / 2.0;
      }
    }
    if (y_type == "multilabel-indicator" || (y_type.empty() && e->output == act::logistic && e->n_out > 1))
      return unsupported_error(who, "multilabel targets are not supported");
    if (e->output == act::logistic && e->n_out == 1 && n_classes == 2) {
      e->binary = true;
    } else if (e->output == act::softmax && e->n_out == n_classes && n_classes > 2) {
      e->binary = false;
    } else {
      return state_error(who, "output layer (" + *out_act + ", " + std::to_string(e->n_out) + " units) does not fit " +
                                  std::to_string(n_classes) + " classes");
    }
    e->methods |= method_bit(method::predict_proba);
  }
  return std::static_pointer_cast<const estimator>(e);
}

}  // namespace

void register_neural(registry& r) {
  r.add("sklearn.neural_network.MLPClassifier", [](const node& n, build_context&) { return build_mlp(n, true); });
  r.add("sklearn.neural_network.MLPRegressor", [](const node& n, build_context&) { return build_mlp(n, false); });
}

}  // namespace vitrify::runtime
