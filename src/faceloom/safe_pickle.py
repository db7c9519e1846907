"""Read pickled data from files faceloom did not write, without running anything they name.

DeepFaceLab keeps its face metadata as a pickled dict inside each aligned JPEG, faceswap its
``alignments.fsa`` as a zlib-compressed pickle. :func:`restricted_loads` takes plain Python types
(dict, list, tuple, str, bytes, numbers, bool, None, set) and numpy arrays and scalars; any other
global a pickle asks for is refused, so a crafted file cannot run code.
"""

from __future__ import annotations

import importlib
import io
import pickle
from typing import Any

ALLOWED: frozenset[tuple[str, str]] = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "complex"),
        ("collections", "OrderedDict"),
        ("_codecs", "encode"),  # how a pickle of protocol < 3 carries bytes
    }
)


class UnsafePickle(pickle.UnpicklingError):
    """The data names a global that is not a plain type or a numpy array."""


class _Restricted(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED:
            raise UnsafePickle(f"refused to load {module}.{name}: only plain types and numpy arrays")
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            # numpy 1 pickles name numpy.core, numpy 2 numpy._core: either reaches the same function.
            other = (
                module.replace("numpy._core", "numpy.core")
                if "_core" in module
                else module.replace("numpy.core", "numpy._core")
            )
            return getattr(importlib.import_module(other), name)


def restricted_loads(data: bytes) -> Any:
    """``pickle.loads`` for plain types and numpy arrays only.

    Raises:
        UnsafePickle: any other global; pickle.UnpicklingError, EOFError, ValueError: damaged data.
    """
    return _Restricted(io.BytesIO(data), encoding="latin1").load()
