"""What the chain cache keeps when its reused states do not all fit (engine.chain.cache)."""

from collections import OrderedDict

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.chain.cache import ChainCache

MB = 1 << 20


def _block() -> np.ndarray:
    return np.zeros(MB // 8)   # 1 MB


def _trials(cache: ChainCache, trials: int, seeds: int = 4, states: int = 3) -> list[int]:
    """A sweep's full-scale stage in miniature: every trial walks the same seeds in the same order, each seed's
    ``states`` policy-free states asked for (computed and put on a miss), then the candidate's own output, put
    once and never asked for again. Returns the hits of each trial."""
    hits = []
    for t in range(trials):
        n = 0
        for seed in range(seeds):
            for s in range(states):
                key = f"seed{seed}/state{s}"
                if cache.get(key) is not None:
                    n += 1
                else:
                    cache.put(key, _block())
            cache.get(f"trial{t}/seed{seed}")
            cache.put(f"trial{t}/seed{seed}", _block())
        hits.append(n)
    return hits


def test_a_loop_larger_than_the_budget_keeps_the_seeds_that_fit():
    # 12 states walked in order through a 7 MB budget: LRU evicts each state just before it comes round again
    assert _trials(ChainCache(max_entries=100, max_bytes=7 * MB, stale_after=0), 8) == [0] * 8
    hits = _trials(ChainCache(max_entries=100, max_bytes=7 * MB), 8)
    # the first trial fills the cache, the second finds states computed again and keeps what fits of them, and
    # from then on those (two seeds and one state of a third: 7 of 12) are found on every trial
    assert hits[:2] == [0, 0] and hits[2:] == [7] * 6


def test_the_budget_grows_by_what_recomputed_states_lack_up_to_its_ceiling():
    # the loop above with room to grow: the second trial's recomputed states raise the budget until all 12 fit
    grown = ChainCache(max_entries=100, max_bytes=7 * MB, grow_to=64 * MB)
    hits = _trials(grown, 8)
    assert hits[:2] == [0, 0] and hits[2:] == [12] * 6
    assert grown.recomputed == 12 and grown.recomputed_bytes == 12 * MB
    # it grew by what the reused states lacked once the one-off outputs had made room: exactly the 12 of them
    assert grown.max_bytes == grown.bytes == 12 * MB
    # a ceiling below what the loop needs: it stops there, and keeps the states that fit within it
    capped = ChainCache(max_entries=100, max_bytes=7 * MB, grow_to=10 * MB)
    assert _trials(capped, 8)[2:] == [10] * 6 and capped.max_bytes == 10 * MB
    # one-off outputs never raise it, however many; nor does a cache without a ceiling
    for cache in (ChainCache(max_entries=100, max_bytes=4 * MB, grow_to=64 * MB),
                  ChainCache(max_entries=100, max_bytes=4 * MB)):
        for i in range(50):
            cache.put(f"candidate{i}", _block())
        assert cache.max_bytes == 4 * MB and cache.recomputed == 0
    plain = ChainCache(max_entries=100, max_bytes=7 * MB)
    _trials(plain, 3)
    assert plain.max_bytes == 7 * MB and plain.recomputed > 0


def test_one_off_outputs_never_push_out_a_reused_state():
    cache = ChainCache(max_entries=100, max_bytes=4 * MB)
    cache.put("world", _block())
    assert cache.get("world") is not None
    for i in range(50):
        cache.put(f"candidate{i}", _block())
    assert cache.get("world") is not None and cache.bytes <= 4 * MB
    assert cache.get("candidate49") is not None and cache.get("candidate45") is None   # one-offs: LRU among them


def test_a_state_no_longer_asked_for_gives_way_once_stale():
    cache = ChainCache(max_entries=3, stale_after=10)
    for key in ("a", "b", "c"):
        cache.put(key, key)
        cache.get(key)   # all three reused: an earlier phase's working set
    cache.put("d", "d")   # a new phase's state: the reused ones are fresher than the stale bound
    assert cache.get("d") is None and len(cache) == 3
    for _ in range(10):
        cache.get("a")   # lookups: b and c are now stale, a is not
    cache.put("d", "d")
    assert cache.get("d") == "d" and cache.get("a") == "a" and len(cache) == 3
    assert sum(cache.get(k) is not None for k in ("b", "c")) == 1   # the least recently used stale one went


def test_an_output_larger_than_the_budget_is_not_kept():
    cache = ChainCache(max_entries=10, max_bytes=2 * MB)
    cache.put("small", _block())
    cache.put("big", [_block() for _ in range(3)])
    assert cache.get("big") is None and cache.get("small") is not None and cache.bytes <= 2 * MB


ops = st.lists(st.tuples(st.sampled_from(["get", "put"]), st.integers(0, 9)), max_size=80)


@settings(max_examples=200, deadline=None)
@given(ops, st.integers(1, 5))
def test_stale_after_zero_is_plain_lru(sequence, capacity):
    cache, model = ChainCache(max_entries=capacity, stale_after=0), OrderedDict()
    for op, k in sequence:
        if op == "get":
            want = model.get(k)
            if k in model:
                model.move_to_end(k)
            assert cache.get(k) == want
        else:
            cache.put(k, f"v{k}")
            model[k] = f"v{k}"
            model.move_to_end(k)
            while len(model) > capacity:
                model.popitem(last=False)
        assert len(cache) == len(model)


def test_a_forked_process_keeps_what_it_inherited_and_bounds_what_it_puts():
    # a --workers process: its coordinator's anchors are the coordinator's memory (shared copy-on-write), so they
    # neither count against the worker's own budget nor give way to it
    cache = ChainCache(max_entries=100, max_bytes=8 * MB)
    for seed in range(4):
        cache.put(f"anchor{seed}", [_block(), _block()])
    held = cache.bytes
    assert held >= 8 * MB - MB // 2
    assert cache.inherited() == held   # what the worker's coordinator holds beside it
    cache.max_bytes = 2 * MB
    assert cache.bytes == 0
    for i in range(6):
        cache.put(f"candidate{i}", _block())
    assert all(cache.get(f"anchor{seed}") is not None for seed in range(4))
    assert cache.bytes <= 2 * MB and sum(cache.get(f"candidate{i}") is not None for i in range(6)) == 2
