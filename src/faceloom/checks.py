"""One shape check for arrays and tensors, with one clear error (kornia's ``KORNIA_CHECK_SHAPE``).

``check_shape(x, "B 3 H W")`` passes for any (B, 3, H, W) and otherwise says ``x: expected
Bx3xHxW, got (2, 4, 8, 8) float32``; letters name sizes and must agree where
they repeat (``"N N"`` is square), numbers are fixed, ``*`` matches any number of leading axes,
and ``a|b`` takes either size. Sizes known to the caller are given by keyword: ``check_shape(x,
"B 3 R R", R=64)``. ``dtype`` also checks the element type (numpy arrays and torch tensors).
"""

from __future__ import annotations

from typing import Any


class ShapeError(ValueError):
    """An array or tensor of the wrong shape or type, named with what was expected."""


def _show(parts: list[str], sizes: dict[str, int], dtype: Any) -> str:
    """``Bx3x64x64 float32``: the expected shape, with the sizes the caller fixed filled in."""
    shape = "x".join(str(sizes.get(p, p)) for p in parts)
    return f"{shape} {getattr(dtype, '__name__', dtype)}" if dtype is not None else shape


def _got(x: Any) -> str:
    shape = tuple(int(s) for s in getattr(x, "shape", ()))
    return f"{shape} {getattr(x, 'dtype', type(x).__name__)}"


def check_shape(
    x: Any, shape: str, name: str = "input", *, dtype: Any = None, **sizes: int
) -> dict[str, int]:
    """Raise :class:`ShapeError` unless ``x.shape`` matches ``shape``; returns the bound sizes.

    Args:
        x: a numpy array or torch tensor.
        shape: space-separated axes, e.g. ``"B 3 R R"``, ``"* 68 2"``, ``"H W 3|4"``.
        name: what ``x`` is, for the message ("frame", "crops").
        dtype: the required element type (``np.uint8``, ``torch.float32``), or None.
        sizes: sizes of named axes that must match (``R=64``).
    """
    parts = shape.split()
    got = tuple(int(s) for s in getattr(x, "shape", ()))  # int(): traced shapes are tensors
    bound: dict[str, int] = dict(sizes)

    def refuse() -> ShapeError:
        return ShapeError(f"{name}: expected {_show(parts, sizes, dtype)}, got {_got(x)}")

    if dtype is not None and getattr(x, "dtype", None) != dtype:
        raise refuse()
    lead = parts[0] == "*"
    axes = parts[1:] if lead else parts
    if (len(got) < len(axes)) if lead else (len(got) != len(axes)):
        raise refuse()
    for part, size in zip(axes, got[len(got) - len(axes) :], strict=True):
        options = part.split("|")
        if all(o.isdigit() for o in options):
            if size not in {int(o) for o in options}:
                raise refuse()
        elif part in bound:
            if bound[part] != size:
                raise refuse()
        else:
            bound[part] = int(size)
    return bound
