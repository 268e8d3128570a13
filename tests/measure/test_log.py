"""The append-only event log: write-then-extend under one lock, failure policy, sinks."""

from __future__ import annotations

import hashlib
import io
import os
import random
import stat
import threading
import time
from pathlib import Path

import pytest

from cllm.errors import EventLogError
from cllm.measure import ZERO_RTMR, Event, EventLog, extend, parse_event_log, replay


def event(name: str, rtmr: int = 3) -> Event:
    digest = hashlib.sha384(name.encode()).digest()
    return Event(rtmr=rtmr, type="cllm.test", name=name, digest=digest, details={"n": name})


class Register:
    """A fake TEE: accumulates extends like TDG.MR.RTMR.EXTEND and remembers their order."""

    def __init__(self) -> None:
        self.values = [ZERO_RTMR] * 4
        self.calls: list[tuple[int, bytes]] = []

    def __call__(self, index: int, value: bytes) -> None:
        self.values[index] = extend(self.values[index], value)
        self.calls.append((index, value))


def test_append_writes_then_extends() -> None:
    sink = io.BytesIO()
    seen_at_extend: list[bytes] = []

    def extend_fn(index: int, value: bytes) -> None:
        # The entry must already be in the sink (and flushed) when the register changes.
        seen_at_extend.append(sink.getvalue())

    log = EventLog(extend_fn, sink=sink)
    first = event("first")
    log.append(first)
    assert seen_at_extend == [first.canonical_bytes() + b"\n"]
    assert log.events() == (first,)


def test_sink_lines_are_the_hashed_bytes() -> None:
    register = Register()
    sink = io.BytesIO()
    log = EventLog(register, sink=sink)
    events = [event("a"), event("b", rtmr=2), event("c")]
    for e in events:
        log.append(e)
    lines = sink.getvalue().splitlines()
    assert lines == [e.canonical_bytes() for e in events]
    assert [hashlib.sha384(line).digest() for line in lines] == [v for _, v in register.calls]
    assert parse_event_log(sink.getvalue()) == tuple(events)
    assert log.rtmrs() == replay(events) == tuple(register.values)


def test_text_sink() -> None:
    sink = io.StringIO()
    log = EventLog(Register(), sink=sink)
    log.append(event("ü"))
    assert sink.getvalue() == event("ü").canonical_bytes().decode() + "\n"


def test_no_sink_keeps_memory_log() -> None:
    register = Register()
    log = EventLog(register)
    log.append(event("x"))
    assert log.events() == (event("x"),)
    assert log.rtmrs() == tuple(register.values)


def test_many_threads_keep_log_and_register_in_the_same_order() -> None:
    register = Register()
    sink = io.BytesIO()
    rng = random.Random(7)
    delays = [rng.random() / 10_000 for _ in range(1000)]

    def slow_extend(index: int, value: bytes) -> None:
        # Yield between write and extend to give a racing append every chance to interleave.
        time.sleep(delays[len(register.calls) % len(delays)])
        register(index, value)

    log = EventLog(slow_extend, sink=sink)

    def worker(t: int) -> None:
        for i in range(40):
            log.append(event(f"t{t}-{i}", rtmr=t % 4))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    logged = log.events()
    assert len(logged) == 16 * 40
    # Same order: the n-th extend is the n-th log entry, in memory and in the sink.
    assert [(e.rtmr, e.extend_value()) for e in logged] == register.calls
    assert parse_event_log(sink.getvalue()) == logged
    assert log.rtmrs() == replay(logged) == tuple(register.values)


def test_extend_failure_closes_the_log() -> None:
    register = Register()
    fail = [False]

    def flaky(index: int, value: bytes) -> None:
        if fail[0]:
            raise OSError("rtmr3: write error")
        register(index, value)

    sink = io.BytesIO()
    log = EventLog(flaky, sink=sink)
    log.append(event("ok"))
    fail[0] = True
    with pytest.raises(EventLogError) as caught:
        log.append(event("lost"))
    assert caught.value.code == "extend_failed"
    assert log.failed
    # The entry stays logged (it was written first); the log says more than the register.
    assert [e.name for e in log.events()] == ["ok", "lost"]
    assert len(sink.getvalue().splitlines()) == 2
    assert log.rtmrs() != tuple(register.values)
    fail[0] = False
    with pytest.raises(EventLogError) as caught:
        log.append(event("after"))
    assert caught.value.code == "eventlog_failed"
    assert len(register.calls) == 1


def test_write_failure_extends_nothing() -> None:
    class BrokenSink(io.BytesIO):
        def write(self, data: object) -> int:
            raise OSError("disk full")

    register = Register()
    log = EventLog(register, sink=BrokenSink())
    with pytest.raises(EventLogError) as caught:
        log.append(event("x"))
    assert caught.value.code == "eventlog_io"
    assert register.calls == []
    assert log.events() == ()
    assert log.failed


def test_path_sink_created_private(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    register = Register()
    with EventLog(register, sink=path) as log:
        log.append(event("a"))
        log.append(event("b"))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert parse_event_log(path.read_bytes()) == (event("a"), event("b"))
    with pytest.raises(EventLogError) as caught:
        log.append(event("c"))
    assert caught.value.code == "eventlog_closed"


def test_existing_log_needs_resume(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    register = Register()
    with EventLog(register, sink=path) as log:
        log.append(event("before restart"))
    with pytest.raises(EventLogError) as caught:
        EventLog(register, sink=path)
    assert caught.value.code == "eventlog_exists"
    # A restarted server continues the log; its replay continues from the register's state.
    with EventLog(register, sink=path, resume=True) as resumed:
        assert resumed.events() == (event("before restart"),)
        resumed.append(event("after restart"))
        assert resumed.rtmrs() == tuple(register.values)
    assert len(parse_event_log(path.read_text())) == 2


def test_resume_refuses_partial_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(event("a").canonical_bytes())  # no newline: cut off mid-write
    with pytest.raises(EventLogError) as caught:
        EventLog(Register(), sink=path, resume=True)
    assert caught.value.code == "eventlog_malformed"


def test_unopenable_path(tmp_path: Path) -> None:
    with pytest.raises(EventLogError) as caught:
        EventLog(Register(), sink=tmp_path / "missing" / "events.jsonl")
    assert caught.value.code == "eventlog_io"
