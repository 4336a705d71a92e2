"""The answer cache: LRU order, the version it trusts, and when it forgets."""

from gateway.cache import AnswerCache


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def make_cache(max_entries=3, ttl=5.0):
    clock = FakeClock()
    return AnswerCache(max_entries, ttl, clock=clock), clock


def test_nothing_is_answered_before_a_version_is_seen():
    cache, _ = make_cache()
    cache.put("a", 1, 5, "answer")

    assert cache.get("a", 5) is None
    assert len(cache) == 0


def test_hit_needs_same_image_version_and_top_k():
    cache, _ = make_cache()
    cache.saw_version(1)
    cache.put("a", 1, 5, "answer")

    assert cache.get("a", 5) == "answer"
    assert cache.get("a", 3) is None
    assert cache.get("b", 5) is None


def test_least_recently_used_goes_first():
    cache, _ = make_cache(max_entries=2)
    cache.saw_version(1)
    cache.put("a", 1, 5, "A")
    cache.put("b", 1, 5, "B")
    assert cache.get("a", 5) == "A"

    cache.put("c", 1, 5, "C")

    assert [cache.get(key, 5) for key in "abc"] == ["A", None, "C"]


def test_version_is_trusted_only_for_its_ttl():
    cache, clock = make_cache(ttl=5.0)
    cache.saw_version(1)
    cache.put("a", 1, 5, "answer")

    clock.now += 5.0
    assert cache.get("a", 5) == "answer"
    clock.now += 0.1
    assert cache.get("a", 5) is None

    cache.saw_version(1)
    assert cache.get("a", 5) == "answer"


def test_new_version_drops_the_old_answers():
    cache, _ = make_cache()
    cache.saw_version(1)
    cache.put("a", 1, 5, "old")

    cache.saw_version(2)

    assert cache.get("a", 5) is None
    assert len(cache) == 0


def test_answer_of_an_older_version_is_not_stored():
    """A slow request answered by version 1 after version 2 was seen."""
    cache, _ = make_cache()
    cache.saw_version(2)

    cache.put("a", 1, 5, "old")

    assert len(cache) == 0


def test_zero_entries_turns_it_off():
    cache, _ = make_cache(max_entries=0)
    cache.saw_version(1)
    cache.put("a", 1, 5, "answer")

    assert cache.get("a", 5) is None
