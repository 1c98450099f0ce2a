"""The shared answers of polled sessions (``api.state.Coalesced``): one call in flight per key,
its answer shared while fresh, the last one served while the next is made."""

from __future__ import annotations

import asyncio

import pytest

from api.state import Coalesced


class Calls:
    """A call that answers with how many times it was made, after ``delay`` seconds."""

    def __init__(self, delay: float = 0.05) -> None:
        self.made = 0
        self.delay = delay
        self.fail = False

    async def __call__(self) -> int:
        self.made += 1
        made = self.made
        await asyncio.sleep(self.delay)
        if self.fail:
            raise LookupError("gone")
        return made


async def test_concurrent_callers_share_one_call_while_it_is_fresh() -> None:
    answers, call = Coalesced[int](fresh_s=5), Calls()
    assert await asyncio.gather(*(answers.get("s1", call) for _ in range(50))) == [1] * 50
    assert await answers.get("s1", call) == 1 and call.made == 1
    assert await answers.get("s2", call) == 2  # another key: its own call


async def test_a_recent_answer_is_served_while_the_next_is_made() -> None:
    answers, call = Coalesced[int](fresh_s=0.1, stale_s=1.0), Calls(delay=0.2)
    assert await answers.get("s1", call) == 1
    await asyncio.sleep(0.15)  # no longer fresh, still recent
    # The last answer at once, and one call for the next, however many ask meanwhile.
    assert await asyncio.gather(*(answers.get("s1", call) for _ in range(20))) == [1] * 20
    assert call.made == 2
    await asyncio.sleep(0.25)
    assert await answers.get("s1", call) == 2


async def test_an_old_answer_is_not_served_the_caller_waits_for_a_new_one() -> None:
    answers, call = Coalesced[int](fresh_s=0.05, stale_s=0.1), Calls()
    assert await answers.get("s1", call) == 1
    await asyncio.sleep(0.15)
    assert await answers.get("s1", call) == 2


async def test_a_failure_reaches_its_waiters_and_the_next_call_is_made_again() -> None:
    answers, call = Coalesced[int](fresh_s=0.3), Calls()
    call.fail = True
    waiters = await asyncio.gather(
        *(answers.get("s1", call) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(w, LookupError) for w in waiters) and call.made == 1
    call.fail = False
    assert await answers.get("s1", call) == 2


@pytest.mark.parametrize("stale_s", [0.0, 0.01])
async def test_stale_is_never_shorter_than_fresh(stale_s: float) -> None:
    assert Coalesced[int](fresh_s=0.5, stale_s=stale_s).stale_s == 0.5


async def test_after_forget_the_next_caller_gets_a_new_answer() -> None:
    """An event of the session (or a review sent) is news: no answer from before it is given."""
    answers, call = Coalesced[int](fresh_s=5, stale_s=10), Calls(delay=0.1)
    assert await answers.get("s1", call) == 1
    answers.forget("s1")
    assert await answers.get("s1", call) == 2
    # A call asked before a forget is neither waited for by later callers nor kept.
    first = asyncio.ensure_future(answers.get("s2", call))
    await asyncio.sleep(0.01)
    answers.forget("s2")
    assert await answers.get("s2", call) == 4 and await first == 3
    assert await answers.get("s2", call) == 4
