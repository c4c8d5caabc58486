"""FOCUS text columns as JSON string literals, computed in Arrow: the `extra` column's values."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc

_CONTROL = "[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f]"
_ESCAPED = '[\\\\"\\x00-\\x1f]'  # what a JSON string literal cannot hold as it is


def json_strings(text: pa.Array) -> pa.Array:
    """Each text as a JSON string literal (null stays null), escaped in Arrow; the rare
    value holding another control character goes through json.dumps."""
    if not pc.any(pc.match_substring_regex(text, _ESCAPED)).as_py():
        return pc.binary_join_element_wise('"', text, '"', "")
    for plain, escaped in (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
        text = pc.replace_substring(text, plain, escaped)
    quoted = pc.binary_join_element_wise('"', text, '"', "")
    control = pc.match_substring_regex(text, _CONTROL)
    if pc.any(control).as_py():
        fixed = [
            json.dumps(json.loads(value, strict=False), ensure_ascii=False) if flag else value
            for value, flag in zip(quoted.to_pylist(), control.to_pylist())
        ]
        quoted = pa.array(fixed, pa.string())
    return quoted
