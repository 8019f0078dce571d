#!/usr/bin/env python
"""Regenerate src/legacy/pickle_names.inc, the fixed name tables of the non-executing pickle
reader (compiled into the C++ library; nothing is looked up at run time):

* canonical names: the private path a pickle records for a class or function
  (``obj.__module__ + "." + obj.__qualname__``, e.g.
  ``sklearn.linear_model._logistic.LogisticRegression``) -> the public name vitrify.dump
  writes (``sklearn.linear_model.LogisticRegression``, python/vitrify/model.py
  ``_canonical_name``), for every class and function defined in scikit-learn, in numpy's
  random / core modules (both the numpy 2 ``numpy._core`` and the numpy 1 ``numpy.core``
  spelling) and in scipy.sparse;
* trusted names: python/vitrify/trusted_types.txt (what vitrify.load trusts by default) plus
  the numpy / builtins / collections names the reader turns into inert nodes;
* Python 2 -> 3 renames applied by pickle's fix_imports (``_compat_pickle``).

Run with the project's venv (it imports the installed vitrify package for _canonical_name):
``.venv/bin/python scripts/gen_pickle_names.py``. Review the diff
before committing: the trusted table decides what `vitrify scan` calls clean.
"""

import _compat_pickle
import importlib
import inspect
import os
import pkgutil
import sys
import types
import warnings

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

import numpy as np  # noqa: E402
import sklearn  # noqa: E402

from vitrify import model  # noqa: E402

SKIP_PARTS = ("tests", "externals", "_build_utils", "conftest", "setup", "_testing", "experimental", "_precompute",
              "_generate_pyx", "_build", "build_utils")

# Estimators behind sklearn.experimental flags are importable only once enabled.
import sklearn.experimental.enable_halving_search_cv  # noqa: E402,F401
import sklearn.experimental.enable_iterative_imputer  # noqa: E402,F401


def walk(package):
    yield package.__name__
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if any(p in SKIP_PARTS for p in info.name.split(".")):
            continue
        yield info.name


def defined_in(mod):
    for attr, obj in sorted(vars(mod).items()):
        if not isinstance(obj, (type, types.FunctionType, types.BuiltinFunctionType, np.ufunc)):
            continue
        if getattr(obj, "__module__", None) != mod.__name__:
            continue
        qual = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
        if qual != attr or "." in qual:
            continue
        yield attr, obj


canonical = {}


def add_module(name, aliases=()):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mod = importlib.import_module(name)
    except Exception:  # noqa: BLE001 - optional modules (e.g. deprecated shims)
        return
    for attr, obj in defined_in(mod):
        try:
            public = model._canonical_name(obj)
        except Exception:  # noqa: BLE001
            continue
        for m in (name, *aliases):
            private = f"{m}.{attr}"
            if private != public:
                canonical[private] = public


for modname in walk(sklearn):
    add_module(modname)

import numpy.random  # noqa: E402

for modname in walk(numpy.random):
    add_module(modname)
for sub in ("multiarray", "numeric", "_multiarray_umath", "umath", "fromnumeric", "records", "defchararray",
            "_internal", "numerictypes", "shape_base", "function_base", "einsumfunc", "getlimits"):
    add_module(f"numpy._core.{sub}", aliases=(f"numpy.core.{sub}",))

try:
    import scipy.sparse  # noqa: E402,F401

    import scipy  # noqa: E402

    for modname in walk(scipy):
        add_module(modname)
except ImportError:
    pass

# One trust table: the names vitrify.load admits by default (python/vitrify/_trust.py: the
# generated trusted_types.txt and the numpy, scipy and standard-library names dump writes), less
# the names load never trusts, so that scan and convert judge a name exactly as load does ...
from vitrify import _trust  # noqa: E402

trusted = {n for n in _trust._default_trusted() if not _trust._denied(n)}

# ... plus the pickle forms the non-executing reader turns into inert nodes or that carry only
# data (array and scalar reconstructors, copyreg, joblib's array wrappers, torch storages).
trusted |= {
    "numpy.ndarray", "numpy.matrix", "numpy.dtype", "numpy._core.multiarray._reconstruct",
    "numpy.ma.core._mareconstruct", "numpy.ma.MaskedArray", "numpy.ma.core.MaskedArray",
    "numpy._core.multiarray.scalar", "numpy._core.numeric._frombuffer",
    "numpy.random._pickle.__randomstate_ctor", "numpy.random._pickle.__generator_ctor",
    "numpy.random._pickle.__bit_generator_ctor", "numpy.random.RandomState", "numpy.random.Generator",
    "numpy.random.MT19937", "numpy.random.PCG64", "numpy.random.PCG64DXSM", "numpy.random.Philox",
    "numpy.random.SFC64", "numpy.random.SeedSequence", "numpy.random.bit_generator.SeedlessSeedSequence",
    "copyreg._reconstructor", "copyreg.__newobj__", "copyreg.__newobj_ex__", "_codecs.encode",
    "builtins.object", "builtins.set", "builtins.frozenset", "builtins.complex", "builtins.slice",
    "builtins.range", "builtins.bytearray", "builtins.bytes", "builtins.dict", "builtins.list",
    "builtins.tuple", "builtins.int", "builtins.float", "builtins.str", "builtins.bool",
    "collections.OrderedDict", "collections.defaultdict", "collections.deque", "functools.partial",
    "joblib.numpy_pickle.NumpyArrayWrapper", "joblib.numpy_pickle.NDArrayWrapper",
    "joblib.numpy_pickle_compat.NDArrayWrapper",
    "torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor_v3",
    "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state",
}
for t in ("bool_", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32",
          "float64", "longdouble", "complex64", "complex128", "object_", "str_", "bytes_", "datetime64",
          "timedelta64", "intc", "uintc", "intp", "uintp", "void"):
    trusted.add(f"numpy.{t}")
for s in ("Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool", "ComplexFloat",
          "ComplexDouble", "UInt16", "UInt32", "UInt64", "Float8_e4m3fn", "Float8_e5m2"):
    trusted.add(f"torch.{s}Storage")
trusted.add("torch.storage.UntypedStorage")
trusted.add("torch.UntypedStorage")
for d in ("float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool",
          "uint16", "uint32", "uint64", "complex64", "complex128", "float8_e4m3fn", "float8_e5m2"):
    trusted.add(f"torch.{d}")

# Cython extension types pickle through a generated module-level helper
# (`__pyx_unpickle_<Class>(cls, checksum, state)`) that only creates the instance and sets its
# state: trust it exactly when the class is trusted.
for private, public in list(canonical.items()):
    if public in trusted:
        trusted.add(private)
for name in list(trusted):
    mod, _, cls = name.rpartition(".")
    if mod and cls[:1].isupper():
        trusted.add(f"{mod}.__pyx_unpickle_{cls}")
for private, public in canonical.items():
    if public in trusted:
        mod, _, cls = private.rpartition(".")
        if cls[:1].isupper():
            trusted.add(f"{mod}.__pyx_unpickle_{cls}")


# How load may use each trusted name (docs/LOAD_RULES.md), so that `vitrify scan` judges calls by
# the same rule: the rebuild functions vitrify.load calls (its reconstructor table), the rebuild
# functions the non-executing reader turns into inert nodes, and the Cython unpickle helpers;
# every other trusted name that is not a class is a function load keeps only as a reference
# (a compute kernel, a ufunc, check_array): a file that CALLS one is not clean.
from vitrify import _reconstructors  # noqa: E402

reconstructors = set(_reconstructors.RECONSTRUCTORS)
reader_rebuilds = {
    "numpy._core.multiarray._reconstruct", "numpy.ma.core._mareconstruct", "numpy._core.multiarray.scalar",
    "numpy._core.numeric._frombuffer", "numpy.random._pickle.__randomstate_ctor",
    "numpy.random._pickle.__generator_ctor", "numpy.random._pickle.__bit_generator_ctor",
    "copyreg._reconstructor", "copyreg.__newobj__", "copyreg.__newobj_ex__", "_codecs.encode",
    "torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor_v3",
    "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state",
}
reader_rebuilds |= {"numpy.core." + n[len("numpy._core."):] for n in reader_rebuilds if n.startswith("numpy._core.")}


def is_class(name):
    try:
        obj = model._import_name(name)
    except Exception:  # noqa: BLE001 - not importable here: judged as a function (never called)
        return False
    return isinstance(obj, type)


reference_only = {t for t in trusted
                  if t not in reconstructors and t not in reader_rebuilds and "__pyx_unpickle_" not in t
                  and not t.rsplit(".", 1)[-1] == "newObj" and not is_class(t)}


def q(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


py2_modules = sorted(_compat_pickle.IMPORT_MAPPING.items())
py2_names = sorted(_compat_pickle.NAME_MAPPING.items())

out = [
    "// Generated by scripts/gen_pickle_names.py with scikit-learn " + sklearn.__version__ + ", numpy " + np.__version__
    + ". Do not edit.",
    "// clang-format off",
    "// Private path -> public name (sorted by private path).",
    "static constexpr std::pair<std::string_view, std::string_view> k_canonical_names[] = {",
]
out += [f"    {{{q(k)}, {q(v)}}}," for k, v in sorted(canonical.items())]
out += ["};", "// Canonical names vitrify trusts (sorted).", "static constexpr std::string_view k_trusted_names[] = {"]
out += [f"    {q(t)}," for t in sorted(trusted)]
out += ["};", "// Trusted names that are functions load never calls, only references (sorted).",
        "static constexpr std::string_view k_reference_only[] = {"]
out += [f"    {q(t)}," for t in sorted(reference_only)]
out += ["};", "// The rebuild functions vitrify.load calls: python/vitrify/_reconstructors.py (sorted).",
        "static constexpr std::string_view k_reconstructors[] = {"]
out += [f"    {q(t)}," for t in sorted(reconstructors)]
out += ["};", "// Names vitrify.load never trusts, even when a caller lists them: python/vitrify/_trust.py",
        "// _DENY_MODULE_PREFIXES (a module and everything under it) and _DENY_NAMES.",
        "static constexpr std::string_view k_load_deny_prefixes[] = {"]
out += [f"    {q(t)}," for t in _trust._DENY_MODULE_PREFIXES]
out += ["};", "static constexpr std::string_view k_load_deny_names[] = {"]
out += [f"    {q(t)}," for t in sorted(_trust._DENY_NAMES)]
out += ["};", "// _compat_pickle.IMPORT_MAPPING (sorted).",
        "static constexpr std::pair<std::string_view, std::string_view> k_py2_modules[] = {"]
out += [f"    {{{q(k)}, {q(v)}}}," for k, v in py2_modules]
out += ["};", "// _compat_pickle.NAME_MAPPING, as \"module.name\" -> \"module.name\" (sorted).",
        "static constexpr std::pair<std::string_view, std::string_view> k_py2_names[] = {"]
out += [f"    {{{q(k[0] + '.' + k[1])}, {q(v[0] + '.' + v[1])}}}," for k, v in sorted(py2_names, key=lambda kv: kv[0][0] + "." + kv[0][1])]
out += ["};", "// clang-format on", ""]

path = os.path.join(ROOT, "src", "legacy", "pickle_names.inc")
with open(path, "w") as f:
    f.write("\n".join(out))
print(f"{path}: {len(canonical)} canonical names, {len(trusted)} trusted names, {len(reference_only)} of them "
      f"references only, {len(reconstructors)} reconstructors", file=sys.stderr)
