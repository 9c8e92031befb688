"""The config store's own files (seen.json, the replay memory; meta.json of a generation;
state.json) are parsed at the boundary: whatever a damaged file holds comes out as a
ValueError, which the store handles (StoreError, or the generation skipped), never as another
exception or a value of the wrong type."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.flashing.meta import ConfigMeta, StoreState
from gateway.flashing.seen import Seen
from gateway.flashing.store import ConfigStore, StoreError

JSON: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(["v", "highest", "digests", "forced", "forced_floor", "x"]),
                      inner, max_size=5),
    max_leaves=20)
"""JSON values, objects mostly with seen.json's own keys (so the deeper checks are reached)."""

SEEN = st.builds(Seen, highest=st.integers(0, 2**63), digests=st.lists(st.text(max_size=64)),
                 forced=st.lists(st.tuples(st.text(max_size=64), st.integers(-2**63, 2**63))),
                 forced_floor=st.integers(-2**63, 2**63))


def _parsed_or_value_error(data: bytes) -> None:
    try:
        seen = Seen.from_json(data)
    except ValueError:
        return
    assert isinstance(seen.highest, int) and not isinstance(seen.highest, bool)
    assert all(isinstance(d, str) for d in seen.digests)
    assert all(isinstance(d, str) and isinstance(ts, int) and not isinstance(ts, bool)
               for d, ts in seen.forced)


@given(value=JSON)
def test_any_json_is_read_or_refused_with_a_value_error(value: Any) -> None:
    _parsed_or_value_error(json.dumps(value).encode())


@given(data=st.binary(max_size=200))
def test_any_bytes_are_read_or_refused_with_a_value_error(data: bytes) -> None:
    _parsed_or_value_error(data)


@given(seen=SEEN)
def test_what_is_written_reads_back_the_same(seen: Seen) -> None:
    assert Seen.from_json(seen.to_json()) == seen


@pytest.mark.parametrize("content", [
    b'{"highest": 1, "digests": [], "forced": [[]]}',            # was IndexError
    b'{"highest": 1, "digests": [], "forced": [["a", 1e400]]}',  # was OverflowError
    b'{"highest": true, "digests": []}',                          # was read as version 1
    b'{"highest": 1, "digests": [], "forced": [["a", "5"]]}',
])
def test_a_damaged_memory_is_a_store_error(tmp_path: Path, content: bytes) -> None:
    store = ConfigStore(tmp_path / "config")
    (tmp_path / "config" / "seen.json").write_bytes(content)
    with pytest.raises(StoreError, match=r"seen\.json is unreadable"):
        store.highest_version()


META = st.fixed_dictionaries(
    {"version": st.integers(0, 2**31), "sha256": st.just("ab" * 32),
     "source": st.sampled_from(["factory", "flash", "local"])},
    optional={k: JSON for k in ("author", "key_id", "request_id", "applied_ns")})
"""meta.json objects valid in their required keys, anything in the optional ones."""


@given(raw=META | JSON)
def test_a_generation_meta_is_read_with_its_types_or_refused(raw: Any) -> None:
    """A meta.json is read with the types ConfigMeta declares or refused with ValueError (a
    text applied_ns once made rebuilding the state from the generations fail on sorting)."""
    try:
        meta = ConfigMeta.from_json(json.dumps(raw).encode())
    except ValueError:
        return
    assert all(v is None or isinstance(v, str) for v in (meta.author, meta.key_id,
                                                          meta.request_id))
    assert meta.applied_ns is None or type(meta.applied_ns) is int
    assert ConfigMeta.from_json(meta.to_json()) == meta


@given(raw=JSON)
def test_the_store_state_is_read_or_refused_with_a_value_error(raw: Any) -> None:
    try:
        state = StoreState.from_json(json.dumps(raw).encode())
    except ValueError:
        return
    assert all(n is None or isinstance(n, str) for n in (state.active, state.previous,
                                                         state.staged))
