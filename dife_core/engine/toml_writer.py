"""A small TOML writer for audit specs (the standard library only reads TOML).

Tables become ``[a.b]`` sections, lists of tables ``[[a]]``, anything nested
inside an array an inline table. ``None`` values are left out (TOML has no
null). Strings use JSON escapes, which TOML basic strings accept.
"""

from __future__ import annotations

import json
import math
import re

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(k) -> str:
    k = str(k)
    return k if _BARE.match(k) else json.dumps(k)


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v if x is not None) + "]"
    if isinstance(v, dict):
        items = [f"{_key(k)} = {_value(x)}" for k, x in v.items() if x is not None]
        return "{" + ", ".join(items) + "}"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _is_table_list(v) -> bool:
    return isinstance(v, (list, tuple)) and bool(v) and all(isinstance(x, dict) for x in v)


def _emit(d: dict, path: list, out: list) -> None:
    plain = [(k, v) for k, v in d.items() if v is not None and not isinstance(v, dict) and not _is_table_list(v)]
    tables = [(k, v) for k, v in d.items() if isinstance(v, dict)]
    arrays = [(k, v) for k, v in d.items() if _is_table_list(v)]
    if path and (plain or not (tables or arrays)):
        out.append("")
        out.append("[" + ".".join(_key(p) for p in path) + "]")
    for k, v in plain:
        out.append(f"{_key(k)} = {_value(v)}")
    for k, v in tables:
        _emit(v, path + [k], out)
    for k, v in arrays:
        for item in v:
            out.append("")
            out.append("[[" + ".".join(_key(p) for p in path + [k]) + "]]")
            sub_plain = {kk: vv for kk, vv in item.items() if not isinstance(vv, dict) and not _is_table_list(vv)}
            for kk, vv in sub_plain.items():
                if vv is not None:
                    out.append(f"{_key(kk)} = {_value(vv)}")
            for kk, vv in item.items():
                if isinstance(vv, dict) or _is_table_list(vv):
                    out.append(f"{_key(kk)} = {_value(vv)}")


def dumps(data: dict) -> str:
    out: list = []
    _emit(data, [], out)
    return "\n".join(out).lstrip("\n") + "\n"
