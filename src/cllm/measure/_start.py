"""The start marker: the first event each start of ``cllm serve`` extends into RTMR3.

On real TDX, RTMR3 lives as long as the boot, so a restarted server continues the log of the
ones before. The marker makes each start visible in the log: the events after the last marker
are the live start; every event of the log, earlier starts included, is judged by policies
(docs/policy.md). ``details.start`` counts the starts before this one in the boot (0: first),
so a fresh TD's log is reproducible by ``cllm measure``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Final

import rfc8785

from cllm.measure._event import Event, freeze_json
from cllm.measure._plan import MEASURED_RTMR

__all__ = ["START_EVENT_TYPE", "count_starts", "start_marker"]

START_EVENT_TYPE: Final = "cllm.start"


def start_marker(index: int) -> Event:
    """The marker of the ``index``-th start within a boot: digest = SHA-384(JCS(details))."""
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < 2**31:
        raise ValueError("index must be a non-negative integer")
    details = {"start": index}
    digest = hashlib.sha384(rfc8785.dumps(details)).digest()
    frozen = freeze_json(details, depth=2)
    assert not isinstance(frozen, str | int | bool | tuple)  # a mapping freezes to a mapping
    return Event(
        rtmr=MEASURED_RTMR, type=START_EVENT_TYPE, name="serve", digest=digest, details=frozen
    )


def count_starts(events: Iterable[Event]) -> int:
    return sum(1 for event in events if event.type == START_EVENT_TYPE)
