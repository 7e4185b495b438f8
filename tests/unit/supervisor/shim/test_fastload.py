"""The fast paths' JSON reader reads what json.loads reads (through json's own C scanner) and refuses the rest."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wasmvisor.supervisor.shim import fastload

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20,
)


@given(json_values, st.sampled_from([None, 2]))
def test_loads_reads_what_json_loads_reads(value: object, indent: int | None) -> None:
    text = "\n " + json.dumps(value, indent=indent) + " \n"
    assert fastload.loads(text.encode()) == json.loads(text)


def test_loads_reads_nan_and_infinities_as_json_does() -> None:
    nan, inf, minus_inf = fastload.loads(b"[NaN, Infinity, -Infinity]")
    assert math.isnan(nan) and (inf, minus_inf) == (math.inf, -math.inf)


@pytest.mark.parametrize("text", [b"", b"  ", b"{", b"{} x", b"[1,]", b"{'a': 1}", b"\xff"])
def test_loads_refuses_what_is_not_one_json_document(text: bytes) -> None:
    with pytest.raises(ValueError):
        fastload.loads(text)


def test_sha256_is_the_standard_digest() -> None:
    import hashlib

    assert fastload.sha256(b"abc").hexdigest() == hashlib.sha256(b"abc").hexdigest()
