"""The pending coil releases as the alarm journal keeps them (gateway.actions.orphans): what is
written reads back the same; a value or a release that is not of the format, one coil too many
or listed twice is refused with the reason, never raised."""

from __future__ import annotations

import json
from typing import Any

from gateway.actions.orphans import (
    MAX_PENDING,
    MAX_TEXT,
    Coil,
    Driven,
    Orphan,
    decode,
    encode,
    output_ids,
)
from gateway.config.outputs import Output, WriteBackoff
from gateway.config.section import validator


def orphan(address: int, **output: Any) -> Orphan:
    made = validator(Output).validate_python({"id": f"out-{address}", "role": "exhaust_fan",
                                  "device": "do-1", "point": f"do{address + 1}",
                                  "on_value": False, "verify": False, **output})
    return Orphan(Driven(made, Coil(("rtu", "/dev/ttyUSB0"), 31, address), "rs485",
                         ("batt",)), version=4, tries=2, error="no reply " * 40)


def test_what_is_written_reads_back() -> None:
    written = [orphan(0, backoff={"initial": "2s", "multiplier": 3, "max": "1m"}),
               orphan(1, rooms=["batt", "tx"])]
    written.append(Orphan(Driven(written[0].driven.output, Coil(("tcp", "10.0.0.5", 502), 1, 7),
                                 "tcp-bus"), version=2))
    read, problems = decode(encode(written))
    assert problems == []
    assert [(o.driven, o.version, o.tries) for o in read] == [
        (o.driven, o.version, o.tries) for o in written]
    assert read[0].driven.output.backoff == WriteBackoff(initial=2.0, multiplier=3.0, max=60.0)
    assert read[0].driven.output.on_value is False and read[0].driven.output.verify is False
    assert read[0].error == ("no reply " * 40)[:200] and read[2].error is None
    assert output_ids(encode(written)) == {"out-0", "out-1"}


def test_nothing_kept_is_nothing_to_restore() -> None:
    assert decode(None) == ([], []) and decode("") == ([], [])


def test_a_value_not_of_the_format_is_refused_whole() -> None:
    for text in ("{not json", json.dumps({"version": 2, "releases": []}), "[]",
                 json.dumps({"version": 1, "releases": {}})):
        read, [problem] = decode(text)
        assert read == [] and problem.endswith("refused whole"), text
    read, [problem] = decode(" " * (MAX_TEXT + 1))
    assert read == [] and f"more than {MAX_TEXT}" in problem


def test_each_bad_release_is_refused_alone_with_its_reason() -> None:
    good = json.loads(encode([orphan(0)]))["releases"][0]
    releases = [{**good, "unit": 300}, 7, {**good, "line": ["udp", "x"]}, good, good,
                {**good, "output": {**good["output"], "role": "kettle"}}]
    read, problems = decode(json.dumps({"version": 1, "releases": releases}))
    assert [o.driven.coil.address for o in read] == [0]
    assert len(problems) == 5
    assert problems[0].startswith("release 0 (output 'out-0'): unit: ")
    assert problems[1].startswith("release 1: the release: ")
    assert problems[2].startswith("release 2 (output 'out-0'): line")
    assert problems[3] == "release 4 (output 'out-0'): its coil is listed before: refused"
    assert problems[4].startswith("release 5 (output 'out-0'): output.role: ")


def test_the_releases_kept_are_bounded() -> None:
    many = [orphan(address) for address in range(MAX_PENDING + 10)]
    text = encode(many)
    assert len(json.loads(text)["releases"]) == MAX_PENDING  # written: the first ones
    releases = json.loads(text)["releases"]
    releases += [{**releases[0], "address": MAX_PENDING + n} for n in range(3)]
    read, problems = decode(json.dumps({"version": 1, "releases": releases}))
    assert len(read) == MAX_PENDING
    assert problems == [f"3 releases past the first {MAX_PENDING} (from release "
                        f"{MAX_PENDING} (output 'out-0') on): refused"]
