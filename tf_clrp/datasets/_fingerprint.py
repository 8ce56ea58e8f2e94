"""Stable, JSON-able fingerprints of the things a stored run depends on.

A fingerprint must be equal for equal settings in another process and differ when results
could differ: a model is its architecture (its config with the auto-generated layer names
replaced by their order of appearance) plus a SHA-256 of its weights; a Python function is
a hash of its code object (bytecode, constants, nested code), its defaults, its closure
values and the module globals it reads. Whatever cannot be fingerprinted reliably is
reported in ``Fingerprinter.problems`` (a resume is then refused).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import re
import types
from typing import Any

import keras
import numpy as np
import tensorflow as tf

_MAX_DEPTH = 32
#: Functions of these packages are named, not hashed (fixed by the installed versions).
_LIBRARIES = ("tensorflow", "keras", "numpy", "tf_clrp", "scipy", "builtins", "functools")
_SMALL_ARRAY = 16


def digest(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()[:32]


def _canonical_json(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=repr)
    return re.sub(r" at 0x[0-9a-fA-F]+", "", text)


def _rename_layers(config: Any) -> Any:
    """``config`` with every layer name replaced by ``<n#>`` (order of first appearance)."""
    names: dict[str, str] = {}

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "name" and isinstance(value, str):
                    names.setdefault(value, f"<n{len(names)}>")
                collect(value)
        elif isinstance(node, list | tuple):
            for value in node:
                collect(value)

    def rename(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: rename(value) for key, value in node.items()}
        if isinstance(node, list | tuple):
            return [rename(value) for value in node]
        return names.get(node, node) if isinstance(node, str) else node

    collect(config)
    return rename(config)


def model_fingerprint(model: keras.Model) -> dict[str, Any]:
    """Name (informative only), architecture hash and weights hash of a Keras model."""
    weights = hashlib.sha256()
    for variable in model.weights:
        # np.asarray of the backing tensor avoids the copy convert_to_numpy makes
        array = np.ascontiguousarray(np.asarray(getattr(variable, "value", variable)))
        weights.update(f"{array.dtype.str}{array.shape};".encode())
        weights.update(memoryview(array).cast("B"))
    try:
        architecture = {"config": _rename_layers(model.get_config())}
    except (NotImplementedError, TypeError, ValueError, AttributeError):
        architecture = {
            "layers": [type(layer).__qualname__ for layer in model.layers],
            "shapes": [list(v.shape) for v in model.weights],
        }
    return {
        "name": model.name,
        "architecture": digest(_canonical_json(architecture)),
        "weights": weights.hexdigest()[:32],
        "n_weights": len(model.weights),
    }


class Fingerprinter:
    """Describes values as JSON; ``problems`` lists what could not be described reliably."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self._active: set[int] = set()

    def describe(self, value: Any, where: str, depth: int = 0) -> Any:
        """A JSON-able description of ``value`` (``where`` names it in problems)."""
        if depth > _MAX_DEPTH:
            self.problems.append(f"{where}: nested too deeply to fingerprint")
            return "?"
        if value is None or isinstance(value, bool | int | str):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else repr(value)
        if isinstance(value, bytes):
            return {"bytes": digest(value)}
        if isinstance(value, np.generic):
            return self.describe(value.item(), where, depth)
        if isinstance(value, tf.Tensor | tf.Variable):
            return self.describe(np.asarray(value), where, depth)
        if isinstance(value, np.ndarray):
            return self._array(value, where)
        if isinstance(value, keras.Model):
            return {"model": model_fingerprint(value)}
        if isinstance(value, list | tuple):
            return [self.describe(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
        if isinstance(value, dict):
            return {
                str(k): self.describe(v, f"{where}.{k}", depth + 1)
                for k, v in sorted(value.items(), key=lambda item: str(item[0]))
            }
        if isinstance(value, set | frozenset):
            items = [self.describe(v, where, depth + 1) for v in value]
            return {"set": sorted(items, key=_canonical_json)}
        return self._callable_or_object(value, where, depth)

    def _array(self, array: np.ndarray, where: str) -> Any:
        if array.dtype.hasobject:
            self.problems.append(f"{where}: an object array cannot be fingerprinted")
            return "?"
        if array.size <= _SMALL_ARRAY and array.dtype.kind in "biuf":
            return {"array": array.tolist(), "dtype": array.dtype.str}
        array = np.ascontiguousarray(array)
        return {
            "array": digest(memoryview(array).cast("B")),
            "dtype": array.dtype.str,
            "shape": list(array.shape),
        }

    def _callable_or_object(self, value: Any, where: str, depth: int) -> Any:
        if isinstance(value, types.ModuleType):
            return {"module": value.__name__}
        if isinstance(value, type):
            return {"class": f"{value.__module__}.{value.__qualname__}"}
        if isinstance(value, types.FunctionType):
            return self._function(value, where, depth)
        if isinstance(value, types.MethodType):
            return {
                "method": self.describe(value.__func__, where, depth + 1),
                "self": self.describe(value.__self__, f"{where}.__self__", depth + 1),
            }
        if isinstance(value, functools.partial):
            return {
                "partial": self.describe(value.func, where, depth + 1),
                "args": self.describe(value.args, f"{where}.args", depth + 1),
                "keywords": self.describe(value.keywords, f"{where}.keywords", depth + 1),
            }
        if isinstance(value, types.BuiltinFunctionType | types.BuiltinMethodType):
            owner = getattr(value, "__self__", None)
            if owner is None or isinstance(owner, types.ModuleType):
                return {"builtin": f"{getattr(value, '__module__', '')}.{value.__qualname__}"}
        python_function = getattr(value, "python_function", None)
        if isinstance(python_function, types.FunctionType):  # a tf.function
            return self._function(python_function, where, depth)
        return self._object(value, where, depth)

    def _object(self, value: Any, where: str, depth: int) -> Any:
        if id(value) in self._active:
            return {"cycle": type(value).__qualname__}
        self._active.add(id(value))
        try:
            kind = f"{type(value).__module__}.{type(value).__qualname__}"
            call = next(
                (vars(k)["__call__"] for k in type(value).__mro__ if "__call__" in vars(k)), None
            )
            code = (
                self.describe(call, f"{where}.__call__", depth + 1)
                if isinstance(call, types.FunctionType)
                else None
            )
            if dataclasses.is_dataclass(value):
                state: Any = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
            elif callable(getattr(value, "get_config", None)):
                state = value.get_config()
            elif hasattr(value, "__dict__"):
                state = vars(value)
            else:
                self.problems.append(f"{where}: a {kind} cannot be fingerprinted")
                return "?"
            return {"object": kind, "call": code, "state": self.describe(state, where, depth + 1)}
        finally:
            self._active.discard(id(value))

    def _function(self, fn: types.FunctionType, where: str, depth: int) -> Any:
        name = f"{fn.__module__}.{fn.__qualname__}"
        if str(fn.__module__).split(".")[0] in _LIBRARIES:
            return {"library_function": name}
        if id(fn) in self._active:
            return {"recursive": name}
        self._active.add(id(fn))
        try:
            globals_read = sorted(n for n in _names(fn.__code__) if n in fn.__globals__)
            closure = []
            for cell, free in zip(fn.__closure__ or (), fn.__code__.co_freevars):
                try:
                    content = cell.cell_contents
                except ValueError:
                    self.problems.append(f"{where}: closure variable {free!r} is unset")
                    content = "?"
                closure.append(self.describe(content, f"{where} (closure {free!r})", depth + 1))
            return {
                "function": name,
                "code": _code_digest(fn.__code__),
                "defaults": self.describe(fn.__defaults__, f"{where} (defaults)", depth + 1),
                "kwdefaults": self.describe(fn.__kwdefaults__, f"{where} (defaults)", depth + 1),
                "closure": closure,
                "globals": {
                    g: self.describe(fn.__globals__[g], f"{where} (global {g!r})", depth + 1)
                    for g in globals_read
                },
            }
        finally:
            self._active.discard(id(fn))


def _names(code: types.CodeType) -> set[str]:
    """Global (and attribute) names read by ``code`` and the code nested in it."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _code_digest(code: types.CodeType) -> str:
    """Hash of a code object: bytecode, names, constants (nested code recursively)."""
    consts = [_code_digest(c) if isinstance(c, types.CodeType) else repr(c) for c in code.co_consts]
    content = [
        code.co_code.hex(),
        list(code.co_names),
        list(code.co_varnames),
        list(code.co_freevars),
        code.co_argcount,
        code.co_kwonlyargcount,
        consts,
    ]
    return digest(json.dumps(content))
