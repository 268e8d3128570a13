"""Fair admission and batching in front of the one quoting slot: batches are filled
round-robin, a client over its share (and only that client) is refused with 429 and a
Retry-After, the global cap answers 503, a batch closes after its oldest nonce waited, and a
failing TEE fails its batch closed without stopping the next one."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import pytest

from cllm.errors import TeeError
from cllm.server._admission import (
    Admission,
    AdmissionRefusedError,
    AdmissionSettings,
    client_key,
)


class Quoter:
    """Records each batch; holds it until released, like a slow quote."""

    def __init__(self) -> None:
        self.batches: list[list[bytes]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail = False

    def __call__(self, nonces: Sequence[bytes]) -> list[bytes]:
        self.batches.append(list(nonces))
        self.gate.wait(10)
        if self.fail:
            raise TeeError("the host's quote service failed", code="quote_failed")
        return [b"doc:" + n for n in nonces]


def _nonce(client: str, i: int) -> bytes:
    return f"{client}-{i}".encode()


def test_batches_are_filled_round_robin_across_clients() -> None:
    async def scenario() -> Quoter:
        quoter = Quoter()
        quoter.gate.clear()
        admission = Admission(
            quoter, AdmissionSettings(batch_max=4, batch_wait=0.0, client_pending=8)
        )
        # A first nonce occupies the quote slot; meanwhile "flood" queues 6, "a" and "b" 1 each.
        first = asyncio.create_task(admission.evidence(b"x", client="x"))
        await asyncio.sleep(0.05)
        tasks = [
            asyncio.create_task(admission.evidence(_nonce("flood", i), client="flood"))
            for i in range(6)
        ]
        tasks += [asyncio.create_task(admission.evidence(_nonce(c, 0), client=c)) for c in "ab"]
        await asyncio.sleep(0.05)
        quoter.gate.set()
        bodies = await asyncio.gather(first, *tasks)
        assert bodies[1:] == [b"doc:" + _nonce("flood", i) for i in range(6)] + [
            b"doc:a-0",
            b"doc:b-0",
        ]
        return quoter

    quoter = asyncio.run(scenario())
    assert quoter.batches[0] == [b"x"]
    # The second batch takes one from each client before a second from the flooder.
    second = quoter.batches[1]
    assert len(second) == 4
    assert {b"a-0", b"b-0"} <= set(second)
    assert sum(n.startswith(b"flood") for n in second) == 2
    assert sorted(n for batch in quoter.batches for n in batch) == sorted(
        [b"x", b"a-0", b"b-0", *(_nonce("flood", i) for i in range(6))]
    )


def test_only_the_client_over_its_share_is_refused() -> None:
    async def scenario() -> None:
        quoter = Quoter()
        quoter.gate.clear()
        admission = Admission(quoter, AdmissionSettings(batch_max=64, client_pending=2))
        held = [asyncio.create_task(admission.evidence(bytes([i]), client="f")) for i in range(2)]
        await asyncio.sleep(0.05)
        with pytest.raises(AdmissionRefusedError) as caught:
            await admission.evidence(b"more", client="f")
        assert caught.value.status == 429
        assert caught.value.code == "rate_limited"
        assert caught.value.retry_after >= 1
        other = asyncio.create_task(admission.evidence(b"other", client="g"))  # not refused
        await asyncio.sleep(0.01)
        quoter.gate.set()
        assert await other == b"doc:other"
        assert await asyncio.gather(*held) == [b"doc:\x00", b"doc:\x01"]
        # Its share is free again once its nonces were answered.
        assert await admission.evidence(b"again", client="f") == b"doc:again"

    asyncio.run(scenario())


def test_the_global_cap_is_busy_for_everyone() -> None:
    async def scenario() -> None:
        quoter = Quoter()
        quoter.gate.clear()
        admission = Admission(quoter, AdmissionSettings(batch_max=1, client_pending=8, queue_max=2))
        first = asyncio.create_task(admission.evidence(b"0", client="a"))
        await asyncio.sleep(0.05)  # in the quote slot: no longer waiting
        waiting = [
            asyncio.create_task(admission.evidence(bytes([i]), client=str(i))) for i in (1, 2)
        ]
        await asyncio.sleep(0.01)
        with pytest.raises(AdmissionRefusedError) as caught:
            await admission.evidence(b"3", client="3")
        assert (caught.value.status, caught.value.code) == (503, "attestation_busy")
        quoter.gate.set()
        await asyncio.gather(first, *waiting)

    asyncio.run(scenario())


def test_unbatched_means_one_quote_per_nonce() -> None:
    async def scenario() -> Quoter:
        quoter = Quoter()
        admission = Admission(quoter, AdmissionSettings(batch_max=1, client_pending=8))
        await asyncio.gather(*(admission.evidence(bytes([i]), client="a") for i in range(5)))
        return quoter

    assert [len(b) for b in asyncio.run(scenario()).batches] == [1] * 5


def test_a_batch_waits_for_its_oldest_nonce_then_closes() -> None:
    async def scenario() -> Quoter:
        quoter = Quoter()
        admission = Admission(quoter, AdmissionSettings(batch_max=64, batch_wait=0.2))
        first = asyncio.create_task(admission.evidence(b"1", client="a"))
        await asyncio.sleep(0.05)  # within the wait: joins the same batch
        second = asyncio.create_task(admission.evidence(b"2", client="b"))
        await asyncio.gather(first, second)
        return quoter

    assert asyncio.run(scenario()).batches == [[b"1", b"2"]]


def test_a_full_batch_does_not_wait() -> None:
    async def scenario() -> float:
        quoter = Quoter()
        admission = Admission(quoter, AdmissionSettings(batch_max=3, batch_wait=5.0))
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.gather(*(admission.evidence(bytes([i]), client=str(i)) for i in range(3)))
        return loop.time() - started

    assert asyncio.run(scenario()) < 4.0


def test_a_failed_quote_fails_its_batch_closed_and_the_next_batch_works() -> None:
    async def scenario() -> None:
        quoter = Quoter()
        quoter.fail = True
        admission = Admission(quoter, AdmissionSettings(batch_max=8, client_pending=1))
        with pytest.raises(AdmissionRefusedError) as caught:
            await admission.evidence(b"1", client="a")
        assert (caught.value.status, caught.value.code) == (503, "quote_failed")
        quoter.fail = False
        assert await admission.evidence(b"2", client="a") == b"doc:2"  # share released

    asyncio.run(scenario())


def test_a_client_that_went_away_frees_its_share_and_is_not_quoted() -> None:
    async def scenario() -> Quoter:
        quoter = Quoter()
        quoter.gate.clear()
        admission = Admission(quoter, AdmissionSettings(batch_max=8, client_pending=1))
        busy = asyncio.create_task(admission.evidence(b"slot", client="x"))
        await asyncio.sleep(0.05)
        gone = asyncio.create_task(admission.evidence(b"gone", client="a"))
        await asyncio.sleep(0.01)
        gone.cancel()
        await asyncio.sleep(0.01)
        quoter.gate.set()
        await busy
        assert await admission.evidence(b"back", client="a") == b"doc:back"
        return quoter

    batches = asyncio.run(scenario()).batches
    assert all(b"gone" not in batch for batch in batches)


@pytest.mark.parametrize(
    ("peer", "header", "key"),
    [
        ("192.0.2.7", None, "192.0.2.7"),
        ("2001:db8:1:2:aaaa::1", None, "2001:db8:1:2::/64"),  # one host's /64 is one client
        ("2001:db8:1:2:bbbb::9", None, "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.9", None, "192.0.2.9"),
        ("127.0.0.1", "198.51.100.1, 203.0.113.5", "203.0.113.5"),  # the proxy's own entry
        ("127.0.0.1", "", "127.0.0.1"),
        (None, None, "unknown"),
    ],
)
def test_client_keys(peer: str | None, header: str | None, key: str) -> None:
    assert client_key(peer, header) == key


def test_a_request_over_its_share_waits_briefly_for_it() -> None:
    async def scenario() -> None:
        quoter = Quoter()
        quoter.gate.clear()
        admission = Admission(
            quoter, AdmissionSettings(batch_max=8, client_pending=1, share_wait=5.0)
        )
        first = asyncio.create_task(admission.evidence(b"1", client="a"))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(admission.evidence(b"2", client="a"))  # over: waits
        await asyncio.sleep(0.05)
        assert not second.done()
        quoter.gate.set()  # the first is answered, the share frees, the second goes in
        assert await asyncio.gather(first, second) == [b"doc:1", b"doc:2"]

    asyncio.run(scenario())


def test_only_a_few_requests_may_wait_for_a_share() -> None:
    async def scenario() -> None:
        quoter = Quoter()
        quoter.gate.clear()
        settings = AdmissionSettings(client_pending=1, share_wait=5.0, share_waiters=2)
        admission = Admission(quoter, settings)
        held = asyncio.create_task(admission.evidence(b"0", client="a"))
        await asyncio.sleep(0.05)
        waiting = [asyncio.create_task(admission.evidence(bytes([i]), client="a")) for i in (1, 2)]
        await asyncio.sleep(0.05)
        started = asyncio.get_running_loop().time()
        with pytest.raises(AdmissionRefusedError) as caught:  # the third is refused at once
            await admission.evidence(b"3", client="a")
        assert caught.value.status == 429
        assert asyncio.get_running_loop().time() - started < 1.0
        quoter.gate.set()
        await asyncio.gather(held, *waiting)

    asyncio.run(scenario())
