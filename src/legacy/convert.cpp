// vitrify convert: a scikit-learn model saved with pickle or joblib -> a vitrify file, without
// executing anything. The non-executing reader (pickle*.cpp) turns the file into an inert graph;
// this file decides whether that graph may be converted (a closed list of names), records where
// it came from, encodes it (encode.cpp) and, by default, proves the result builds with the C++
// runtime before it replaces the output.
#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <set>
#include <system_error>

#include "vitrify/convert.hpp"
#include "vitrify/reader.hpp"
#include "vitrify/runtime.hpp"
#include "vitrify/version.hpp"

namespace vitrify::legacy {

namespace {

using pyobj::node;
using nk = node::kind;

// Types the estimators the runtime implements contain besides themselves, as vitrify.dump
// names them: taken from the dump graphs of fitted estimators (the scikit-learn part of
// python/vitrify/trusted_types.txt), plus numpy and builtins vitrify.load always trusts
// (model.py _BASE_TRUSTED). Every name here is trusted by vitrify.load, so a converted model
// always loads in Python. A helper estimator listed here (the trees of a forest, the dummy
// initial model of gradient boosting, label encoders) is admitted inside another estimator;
// the root must still be an estimator the runtime implements.
constexpr std::array component_table = {
    // builtins and collections
    "builtins.bool", "builtins.bytearray", "builtins.bytes", "builtins.complex", "builtins.dict",
    "builtins.float", "builtins.frozenset", "builtins.int", "builtins.list", "builtins.range",
    "builtins.set", "builtins.slice", "builtins.str", "builtins.tuple", "builtins.NoneType",
    "collections.OrderedDict", "collections.defaultdict", "collections.Counter", "collections.deque",
    // numpy types, scalar types and the functions scikit-learn stores as parameters
    "numpy.dtype", "numpy.random.RandomState", "numpy.random.Generator", "numpy.ma.MaskedArray",
    "numpy.bool_", "numpy.int8", "numpy.int16", "numpy.int32", "numpy.int64", "numpy.uint8", "numpy.uint16",
    "numpy.uint32", "numpy.uint64", "numpy.float16", "numpy.float32", "numpy.float64", "numpy.longdouble",
    "numpy.complex64", "numpy.complex128", "numpy.str_", "numpy.bytes_", "numpy.object_", "numpy.intc",
    "numpy.uintc", "numpy.number", "numpy.integer", "numpy.floating", "numpy.inexact",
    "numpy.log", "numpy.log1p", "numpy.exp", "numpy.expm1", "numpy.sqrt", "numpy.square", "numpy.abs",
    "numpy.absolute", "numpy.mean", "numpy.median", "numpy.sum", "numpy.max", "numpy.min", "numpy.nanmean",
    "numpy.nanmedian", "numpy.sin", "numpy.cos", "numpy.tanh", "numpy.argmax", "numpy.argmin", "numpy.amax",
    "numpy.amin", "numpy.ravel", "numpy.ones", "numpy.zeros",
    // trees and gradient boosting internals
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    // losses and links (gradient boosting, linear models, MLP)
    "sklearn._loss.AbsoluteError", "sklearn._loss.HalfBinomialLoss", "sklearn._loss.HalfGammaLoss",
    "sklearn._loss.HalfMultinomialLoss", "sklearn._loss.HalfPoissonLoss", "sklearn._loss.HalfSquaredError",
    "sklearn._loss.HalfTweedieLoss", "sklearn._loss.HalfTweedieLossIdentity", "sklearn._loss.HuberLoss",
    "sklearn._loss.PinballLoss", "sklearn._loss.loss.ExponentialLoss",
    "sklearn._loss._loss.CyAbsoluteError", "sklearn._loss._loss.CyExponentialLoss",
    "sklearn._loss._loss.CyHalfBinomialLoss", "sklearn._loss._loss.CyHalfGammaLoss",
    "sklearn._loss._loss.CyHalfMultinomialLoss", "sklearn._loss._loss.CyHalfPoissonLoss",
    "sklearn._loss._loss.CyHalfSquaredError", "sklearn._loss._loss.CyHalfTweedieLoss",
    "sklearn._loss._loss.CyHalfTweedieLossIdentity", "sklearn._loss._loss.CyHuberLoss",
    "sklearn._loss._loss.CyPinballLoss", "sklearn._loss._loss.__pyx_unpickle_CyHalfMultinomialLoss",
    "sklearn._loss.link.HalfLogitLink", "sklearn._loss.link.IdentityLink", "sklearn._loss.link.Interval",
    "sklearn._loss.link.LogLink", "sklearn._loss.link.LogitLink", "sklearn._loss.link.MultinomialLogit",
    "sklearn.linear_model._sgd_fast.Hinge", "sklearn.linear_model._sgd_fast.ModifiedHuber",
    "sklearn.linear_model._sgd_fast.SquaredHinge",
    // neighbors
    "sklearn.neighbors.KDTree", "sklearn.neighbors.BallTree", "sklearn.neighbors._kd_tree.newObj",
    "sklearn.neighbors._ball_tree.newObj", "sklearn.metrics._dist_metrics.EuclideanDistance64",
    "sklearn.metrics._dist_metrics.newObj",
    // MLP optimizer state, scorers of early stopping, metadata routing records
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.metrics._scorer._PassthroughScorer", "sklearn.metrics._scorer._Scorer",
    "sklearn.utils._metadata_requests.MetadataRequest", "sklearn.utils._metadata_requests.MethodMetadataRequest",
    // helper estimators held inside supported ones
    "sklearn.preprocessing.LabelBinarizer", "sklearn.preprocessing.LabelEncoder",
    "sklearn.dummy.DummyClassifier", "sklearn.dummy.DummyRegressor",
    "sklearn.tree.DecisionTreeClassifier", "sklearn.tree.DecisionTreeRegressor",
    "sklearn.tree.ExtraTreeClassifier", "sklearn.tree.ExtraTreeRegressor",
};

// Raw names of numpy's random-generator pickling, which the reader turns into RandomState /
// Generator nodes (their state is plain data): the bit generator's seed sequence is rebuilt
// through a Cython unpickle function the reader does not need for that state.
constexpr std::array numpy_random_raw = {
    "numpy.random._pickle.__randomstate_ctor", "numpy.random._pickle.__generator_ctor",
    "numpy.random._pickle.__bit_generator_ctor", "numpy.random.bit_generator.__pyx_unpickle_SeedSequence",
    "numpy.random.bit_generator.SeedSequence", "numpy.random._pcg64.PCG64", "numpy.random._pcg64.PCG64DXSM",
    "numpy.random._mt19937.MT19937", "numpy.random._philox.Philox", "numpy.random._sfc64.SFC64",
    "numpy.random.mtrand.RandomState", "numpy.random._generator.Generator",
};


const std::set<std::string, std::less<>>& supported_set() {
  static const std::set<std::string, std::less<>> s = [] {
    auto v = runtime::supported_types();
    return std::set<std::string, std::less<>>(v.begin(), v.end());
  }();
  return s;
}

const std::set<std::string_view>& component_set() {
  static const std::set<std::string_view> s(component_table.begin(), component_table.end());
  return s;
}

std::string join(const std::vector<std::string>& v, std::string_view sep, std::size_t max = 20) {
  std::string out;
  for (std::size_t i = 0; i < v.size() && i < max; ++i) out += (i ? std::string(sep) : "") + v[i];
  if (v.size() > max) out += std::string(sep) + "... (" + std::to_string(v.size() - max) + " more)";
  return out;
}

// `_sklearn_version` of the root estimator, else of the first estimator met (depth first).
std::string sklearn_version(const node* n, std::set<const node*>& seen, int depth = 0) {
  if (!n || depth > 200 || !seen.insert(n).second) return {};
  if (n->k == nk::object && n->obj) {
    if (const node* v = n->attr("_sklearn_version"); v && v->k == nk::string) return v->text;
    const node* st = n->obj->state;
    if (auto s = sklearn_version(st, seen, depth + 1); !s.empty()) return s;
    for (const node* a : n->obj->args)
      if (auto s = sklearn_version(a, seen, depth + 1); !s.empty()) return s;
  }
  for (const node* x : n->items)
    if (auto s = sklearn_version(x, seen, depth + 1); !s.empty()) return s;
  for (const auto& [k, v] : n->entries)
    if (auto s = sklearn_version(v, seen, depth + 1); !s.empty()) return s;
  if (n->arr)
    for (const node* x : n->arr->items)
      if (auto s = sklearn_version(x, seen, depth + 1); !s.empty()) return s;
  return {};
}

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S+00:00", &tm);
  return buf;
}

result<std::string> sha256_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return fail(errc::io_error, p.string() + ": cannot open for hashing");
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) return fail(errc::io_error, "SHA-256 unavailable");
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    auto got = in.gcount();
    if (got > 0 && EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<std::size_t>(got)) != 1)
      return fail(errc::io_error, "SHA-256 failed");
  }
  if (in.bad()) return fail(errc::io_error, p.string() + ": read error while hashing");
  unsigned char md[32];
  unsigned len = 0;
  if (EVP_DigestFinal_ex(ctx.get(), md, &len) != 1 || len != 32) return fail(errc::io_error, "SHA-256 failed");
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : md) {
    out += hex[c >> 4];
    out += hex[c & 15];
  }
  return out;
}

void put(value& d, std::string k, value v) {
  d.items().push_back(value::string(std::move(k)));
  d.items().push_back(std::move(v));
}

result<std::vector<std::byte>> read_head(const std::filesystem::path& p, std::size_t n) {
  std::ifstream in(p, std::ios::binary);
  if (!in) {
    std::error_code ec;
    if (!std::filesystem::exists(p, ec)) return fail(errc::io_error, p.string() + ": no such file");
    return fail(errc::io_error, p.string() + ": cannot open");
  }
  std::vector<std::byte> head(n);
  in.read(reinterpret_cast<char*>(head.data()), static_cast<std::streamsize>(n));
  head.resize(static_cast<std::size_t>(in.gcount()));
  return head;
}

}  // namespace

convert_name classify_for_convert(std::string_view name) {
  // The scanner's dangerous names, and load's deny list (generated from python/vitrify/_trust.py)
  // for every name the reader does not itself turn into inert data (joblib's array wrappers and
  // torch's rebuild functions are safe pickle forms that never reach the converted file).
  const name_class c = classify_name(name);
  if (c == name_class::dangerous || (c != name_class::safe && load_denies(name))) return convert_name::dangerous;
  if (supported_set().count(name)) return convert_name::estimator;
  if (component_set().count(name)) return convert_name::component;
  return convert_name::unsupported;
}

std::vector<std::string> convert_component_names() {
  std::vector<std::string> v(component_table.begin(), component_table.end());
  std::sort(v.begin(), v.end());
  return v;
}

std::vector<std::string> convert_refusals(const pyobj::node& root, const std::vector<std::string>& raw_globals) {
  std::set<std::string> dangerous, unsupported;
  for (const auto& n : pyobj::referenced_names(root)) {
    switch (classify_for_convert(n)) {
      case convert_name::dangerous: dangerous.insert(n); break;
      case convert_name::unsupported: unsupported.insert(n); break;
      default: break;
    }
  }
  // Every name the stream mentions counts, used or not: a payload may be referenced and then
  // dropped from the stack. Names the reader handles itself (numpy's array reconstruction,
  // joblib's wrappers, copyreg) are safe by its table.
  for (const auto& g : raw_globals) {
    std::string c = canonical_name(g);
    auto k = classify_for_convert(c);
    if (k == convert_name::dangerous || classify_name(g) == name_class::dangerous) dangerous.insert(g);
    else if (k == convert_name::unsupported && classify_name(g) != name_class::safe &&
             std::find(numpy_random_raw.begin(), numpy_random_raw.end(), std::string_view(g)) == numpy_random_raw.end())
      unsupported.insert(c);
  }
  std::vector<std::string> out;
  for (const auto& n : dangerous) out.push_back(n + " (runs code or touches the system)");
  for (const auto& n : unsupported) out.push_back(n + " (not convertible)");
  return out;
}

result<convert_info> convert_file(const std::filesystem::path& in, const std::filesystem::path& out,
                                  const convert_options& opt) {
  convert_info info;
  auto head = read_head(in, 64 * 1024);
  if (!head) return std::move(head).err();
  info.format = detect_format(*head);
  const std::string where = in.string() + ": ";
  switch (info.format) {
    case file_format::pickle:
    case file_format::joblib: break;
    case file_format::vitrify:
      return fail(errc::invalid_argument, where + "already a vitrify file (nothing to convert)");
    case file_format::safetensors:
    case file_format::torch_zip:
    case file_format::torch_tar:
    case file_format::npy:
    case file_format::npz:
      // Dispatch point for tensor files (safetensors / PyTorch state_dicts / numpy archives):
      // they hold tensors, not a scikit-learn model, and are imported by their own path.
      return fail(errc::unknown_format, where + "not a scikit-learn model file (" + std::string(format_name(info.format)) +
                                            "): tensor files are imported with vitrify.load_tensors / save_tensors");
    default:
      return fail(errc::unknown_format, where + "not a scikit-learn model file (neither pickle nor joblib)");
  }

  auto rr = read_file(in, opt.read);
  if (!rr) return std::move(rr).err();
  read_result& r = *rr;
  if (!r.complete || !r.graph || !r.graph->root)
    return fail(errc::bad_pickle, where + "the pickle stream cannot be fully accounted for, refusing to convert: " +
                                      (r.problems.empty() ? std::string("incomplete stream") : join(r.problems, "; ", 8)));
  info.streams = r.streams;
  const node& root = *r.graph->root;
  auto refusals = convert_refusals(root, r.globals);
  if (!refusals.empty())
    return fail(errc::unsupported_model, where + "refusing to convert: the file names " + join(refusals, ", "));
  if (root.k != nk::object || classify_for_convert(root.type_name()) != convert_name::estimator)
    return fail(errc::unsupported_model,
                where + "refusing to convert: the file holds " +
                    (root.k == nk::object ? "a " + std::string(root.type_name()) : std::string("no estimator object")) +
                    ", which the C++ runtime does not implement");
  info.estimator = std::string(root.type_name());
  std::set<const node*> seen;
  info.sklearn_version = sklearn_version(&root, seen);

  std::error_code ec;
  info.input_bytes = std::filesystem::file_size(in, ec);
  if (opt.hash_input) {
    auto h = sha256_file(in);
    if (!h) return std::move(h).err();
    info.sha256 = *h;
  }

  // Environment: the versions the model was fitted with, as far as the file records them
  // (scikit-learn stores its version in every estimator's state; numpy and Python versions
  // are not in a pickle, so they are not claimed).
  encode_options eo;
  eo.arrays = opt.compress;
  eo.max_depth = opt.read.max_depth + 16;
  value env = value::dict();
  value pk = value::dict();
  if (!info.sklearn_version.empty()) put(pk, "scikit-learn", value::string(info.sklearn_version));
  put(env, "packages", std::move(pk));
  put(env, "byteorder", value::string("little"));
  put(env, "vitrify", value::string(library_version()));
  put(env, "created", value::string(utc_now()));
  eo.environment = std::move(env);
  value src = value::dict();
  put(src, "file", value::string(in.filename().string()));
  put(src, "format", value::string(std::string(format_name(info.format))));
  put(src, "bytes", value::integer(static_cast<std::int64_t>(info.input_bytes)));
  if (!info.sha256.empty()) put(src, "sha256", value::string(info.sha256));
  if (!info.sklearn_version.empty()) put(src, "sklearn_version", value::string(info.sklearn_version));
  value prov = value::dict();
  put(prov, "converted_from", std::move(src));
  put(prov, "converter", value::string(std::string("vitrify ") + library_version() + " (non-executing pickle reader)"));
  put(prov, "converted", value::string(utc_now()));
  eo.provenance = std::move(prov);

  // Write next to the target, check, then rename over it: a model that fails the check never
  // replaces an existing file.
  std::filesystem::path tmp = out;
  tmp += ".vitrify-convert-" + std::to_string(::getpid()) + ".tmp";
  writer_options wo;
  wo.durable = opt.durable;
  {
    auto w = writer::create(tmp, wo);
    if (!w) return std::move(w).err();
    auto enc = write_objects(root, *w, eo);
    if (!enc) return std::move(enc).err();
    info.encoded = std::move(enc).value();
    VITRIFY_TRY(w->commit());
  }
  auto cleanup = [&] { std::filesystem::remove(tmp, ec); };
  if (opt.check) {
    auto f = file::open(tmp);
    if (!f) {
      cleanup();
      return std::move(f).err();
    }
    auto m = runtime::model::from_file(*f);
    if (!m) {
      cleanup();
      error e = std::move(m).err();
      e.message = where + "the converted model does not build with the C++ runtime: " + e.message;
      return e;
    }
    info.checked = true;
  }
  std::filesystem::rename(tmp, out, ec);
  if (ec) {
    cleanup();
    return fail(errc::io_error, out.string() + ": cannot move the converted file into place: " + ec.message());
  }
  if (opt.durable) {
    // The rename itself must survive a crash, like the writer's own.
    std::filesystem::path dir = out.has_parent_path() ? out.parent_path() : std::filesystem::path(".");
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
      (void)::fsync(fd);
      ::close(fd);
    }
  }
  info.output_bytes = std::filesystem::file_size(out, ec);
  return info;
}

}  // namespace vitrify::legacy
