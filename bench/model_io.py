"""Fitted models on disk in a form that cannot run code when read.

A stored model is a header line (format, training key, method, class) and a pickle written with two rules:
tensors are written as numpy arrays (a torch tensor's own pickle goes through ``torch.load`` with arbitrary
code allowed, so it is never used), and reading accepts only an allow-list of globals: classes from the
packages a fitted model is made of (survbench, the method's own package, torch.nn, MONAI networks,
scikit-learn, scikit-survival, lifelines, pandas and numpy internals) and a short, exact list of the
functions those libraries rebuild their objects with. Anything else — ``os.system``, ``builtins.eval``,
``torch.load`` — is refused before it is called. A plugin whose model needs another function names it in
``Method.trusted_globals``.
"""
from __future__ import annotations

import hashlib
import io
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import BenchInputError

MAGIC = b"SURVBENCH-MODEL 1\n"

# Packages whose classes a fitted model may hold. A class is rebuilt without running its __init__ (or, for
# the few reduced by calling the class, with the stored arguments): classes of these packages are data.
TRUSTED_PACKAGES = ("bench.", "baselines.", "proposed.", "torch.nn.modules.", "torch.nn.parameter.",
                    "monai.networks.", "sklearn.", "sksurv.", "lifelines.", "pandas.core.", "pandas._libs.",
                    "numpy.", "scipy.sparse.", "scipy.interpolate.", "torchtuples.", "pycox.", "torch.optim.", "einops.layers.", "torch.utils.data.sampler.")
# Functions (and builtins) that rebuild objects from plain data; exact names only.
TRUSTED_FUNCTIONS = frozenset({
    "bench.model_io._tensor",
    "copyreg._reconstructor", "copyreg.__newobj__",
    "builtins.set", "builtins.frozenset", "builtins.slice", "builtins.complex", "builtins.range",
    "builtins.bytearray", "builtins.object", "builtins.dict", "builtins.list", "builtins.tuple",
    "builtins.float", "builtins.int", "builtins.str", "builtins.bytes", "builtins.bool",
    "collections.OrderedDict", "collections.defaultdict", "collections.deque",
    "pathlib.Path", "pathlib.PosixPath", "pathlib.PurePosixPath", "pathlib.WindowsPath", "pathlib.PureWindowsPath",
    "datetime.datetime", "datetime.date", "datetime.timedelta",
    "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
    "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
    "numpy.core.numeric._frombuffer", "numpy._core.numeric._frombuffer",
    "numpy.random._pickle.__randomstate_ctor", "numpy.random._pickle.__bit_generator_ctor",
    "numpy.random._pickle.__generator_ctor",
    "pandas._libs.internals._unpickle_block", "pandas.core.internals.blocks.new_block",
    "pandas._libs.tslibs.timestamps._unpickle_timestamp", "pandas._libs.tslibs.timedeltas._timedelta_unpickle",
    "pandas.core.indexes.base._new_Index", "pandas._libs.arrays.__pyx_unpickle_NDArrayBacked",
    "pandas.core.arrays.categorical._unpickle_categorical",
    "torch._utils._rebuild_parameter", "torch.device", "torch.Size", "torch.float32", "torch.float64", "torch.int64",
    "torchtuples.base.Model.make_dataloader", "torchtuples.data.identity_collate_fn",
    "torchtuples.data.DataLoaderBatch",
    "baselines.tabular._clip",
    "sklearn.tree._tree.Tree", "sklearn.tree._tree.__pyx_unpickle_Tree",
})
# Class names inside trusted packages that are callables running code, not data.
_NOT_DATA = ("load", "exec", "eval", "system", "popen", "spawn", "hub", "compile", "import")


def _tensor(array: np.ndarray, dtype: str, parameter: bool, requires_grad: bool):
    """A torch tensor (or parameter) from the numpy array it was written as."""
    import torch

    t = torch.from_numpy(np.array(array, copy=True)).to(getattr(torch, dtype))
    if parameter:
        return torch.nn.Parameter(t, requires_grad=requires_grad)
    return t.requires_grad_(requires_grad) if t.is_floating_point() else t


class _Writer(pickle.Pickler):
    def reducer_override(self, obj: Any):
        torch = __import__("sys").modules.get("torch")
        if torch is not None and isinstance(obj, torch.Tensor):
            t = obj.detach().cpu()
            dtype = str(t.dtype).removeprefix("torch.")
            array = (t.float() if t.dtype == torch.bfloat16 else t).numpy()
            return _tensor, (array, dtype, isinstance(obj, torch.nn.Parameter), bool(obj.requires_grad))
        return NotImplemented


class _Reader(pickle.Unpickler):
    def __init__(self, stream, extra_packages: tuple[str, ...], extra_globals: frozenset[str]):
        super().__init__(stream)
        self._packages = TRUSTED_PACKAGES + extra_packages
        self._globals = TRUSTED_FUNCTIONS | extra_globals

    def find_class(self, module: str, name: str):
        full = f"{module}.{name}"
        if full in self._globals:
            return super().find_class(module, name)
        if (module + ".").startswith(self._packages) and not any(w in name.lower() for w in _NOT_DATA):
            obj = super().find_class(module, name)
            if isinstance(obj, type):
                return obj
        raise pickle.UnpicklingError(f"{full} is not on the list of what a stored model may contain")


def model_to_bytes(model: Any, header: dict[str, Any]) -> bytes:
    """``model`` as a stored model's bytes: the magic line, the JSON ``header``, the allow-listed pickle."""
    buf = io.BytesIO()
    _Writer(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(model)
    return MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n" + buf.getvalue()


def dump_model(model: Any, path: Path, header: dict[str, Any]) -> str:
    """Write ``model`` to ``path`` (a temporary file's path; the caller renames it into place); returns the
    sha256 of the bytes written."""
    data = model_to_bytes(model, header)
    Path(path).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def read_header(data: bytes, where: str) -> tuple[dict[str, Any], int]:
    """The header of a stored model and where its payload starts; a file without one (a pickle written by
    an older survbench, or anything else) is refused."""
    if not data.startswith(MAGIC):
        raise BenchInputError(f"{where}: not a survbench model file (an older survbench stored models as plain "
                              f"pickles, which can run code when read; they are no longer read)")
    end = data.find(b"\n", len(MAGIC))
    try:
        header = json.loads(data[len(MAGIC):end])
    except ValueError:
        raise BenchInputError(f"{where}: damaged model header") from None
    return header, end + 1


def load_model(data: bytes, where: str, *, extra_packages: tuple[str, ...] = (),
               extra_globals: frozenset[str] = frozenset()) -> tuple[dict[str, Any], Any]:
    """(header, model) from a stored model's bytes, reading only allowed globals."""
    header, start = read_header(data, where)
    try:
        model = _Reader(io.BytesIO(data[start:]), extra_packages, extra_globals).load()
    except pickle.UnpicklingError as exc:
        raise BenchInputError(f"{where}: refused: {exc}") from None
    except (EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError, KeyError) as exc:
        raise BenchInputError(f"{where}: damaged model ({type(exc).__name__}: {exc})") from None
    return header, model
