"""Story assignment: the same algorithm in Redis (the session's real server) and memory."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
import redis

from monitor.items import Item
from monitor.keys import Keys
from workers.shingles import Bander, jaccard, shingle_hashes, similarity, words
from workers.stories import MemoryBackend, StoryBackend, StoryIndex, outlet_of
from workers.story_store import RedisBackend

SUMMARY = (
    "The port authority said on Tuesday that the harbour in Valletta would reopen to "
    "container ships after three days of storms, with 40 vessels waiting offshore."
)
COPIES = [
    ("https://wire.example.com/feed", "Valletta harbour to reopen after storms", SUMMARY),
    (
        "https://feeds.bbc.co.uk/news",
        "Malta: Valletta harbour to reopen after three days of storms",
        SUMMARY.replace("said on Tuesday", "said Tuesday"),
    ),
    (
        "https://www.daily.example.org/rss",
        "Valletta harbour reopens after storms",
        SUMMARY.replace("40 vessels", "forty vessels") + " Ferries are running again.",
    ),
]
OTHER = Item(
    key="https://other.test/feed#9",
    feed_url="https://other.test/feed",
    feed_name="Other",
    url="https://other.test/9",
    title="Central bank raises interest rates by half a point",
    summary="The central bank raised its main rate to 4.5% to fight inflation, it said.",
)


def copy(index: int, tag: str = "") -> Item:
    feed, title, summary = COPIES[index]
    return Item(
        key=f"{feed}#{tag}{index}",
        feed_url=feed,
        feed_name=feed,
        url=f"{feed.rsplit('/', 1)[0]}/story-{tag}{index}",
        title=title,
        summary=summary,
    )


def redis_index(client: redis.Redis, prefix: str, window_s: float = 3600) -> StoryIndex:
    return StoryIndex(RedisBackend(client, Keys(prefix), 3600), window_s, 0.3)


Factory = Callable[[float], StoryIndex]


@pytest.fixture(params=["redis", "memory"])
def make_index(request: pytest.FixtureRequest, redis_client: redis.Redis, prefix: str) -> Factory:
    if request.param == "memory":
        backend: StoryBackend = MemoryBackend()
        return lambda window: StoryIndex(backend, window, 0.3)
    return lambda window: redis_index(redis_client, prefix, window)


def test_copies_from_three_outlets_are_one_story(make_index: Factory) -> None:
    index = make_index(3600)
    first = index.assign([copy(0)], 1000.0)[copy(0).key]
    assert first.created
    later = index.assign([copy(1), copy(2), OTHER], 1010.0)
    story = later[copy(2).key].story
    assert later[copy(1).key].story.id == story.id == first.story.id
    assert not later[copy(1).key].created
    assert story.first_outlet == "example.com"
    assert [name for name, _ in story.outlets] == ["example.com", "bbc.co.uk", "example.org"]
    assert [similar.similarity >= 0.3 for similar in later.values()] == [True] * 3
    assert story.items == 3 and story.first_seen == 1000.0
    assert later[OTHER.key].story.id != story.id and later[OTHER.key].created


def test_a_retried_batch_finds_the_same_stories(make_index: Factory) -> None:
    index = make_index(3600)
    once = index.assign([copy(0), copy(1), OTHER], 1000.0)
    again = index.assign([copy(0), copy(1), OTHER], 1005.0)
    assert {k: a.story.id for k, a in once.items()} == {k: a.story.id for k, a in again.items()}
    assert again[copy(1).key].story.items == 2
    assert not any(found.created for found in again.values())


def test_an_item_after_the_window_starts_a_new_story(make_index: Factory) -> None:
    index = make_index(600)
    first = index.assign([copy(0)], 1000.0)[copy(0).key].story
    late = index.assign([copy(1)], 1000.0 + 601)[copy(1).key]
    assert late.created and late.story.id != first.id
    # ...and its copies join the new story, not the closed one.
    later = index.assign([copy(2)], 1000.0 + 620)[copy(2).key]
    assert later.story.id == late.story.id


def test_two_workers_racing_on_copies_end_in_one_story(
    redis_client: redis.Redis, redis_url: str, prefix: str
) -> None:
    for round_ in range(8):  # several rounds: the race must be lost every way round
        barrier = threading.Barrier(2)
        found: dict[str, str] = {}

        def work(
            which: int, round_: int, barrier: threading.Barrier, found: dict[str, str]
        ) -> None:
            client = redis.Redis.from_url(redis_url)
            index = redis_index(client, f"{prefix}{round_}:")
            item = copy(which, tag=f"r{round_}-")
            barrier.wait()
            found[item.key] = index.assign([item], 1000.0)[item.key].story.id
            client.close()

        threads = [threading.Thread(target=work, args=(n, round_, barrier, found)) for n in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(set(found.values())) == 1, found


def test_outlets_are_publishers_not_feeds() -> None:
    def at(feed: str, url: str = "https://elsewhere.test/1") -> str:
        return outlet_of(Item("k", feed, "F", url, "t"))

    assert at("https://feeds.bbci.co.uk/news/rss.xml") == "bbci.co.uk"
    assert at("https://www.bbci.co.uk/sport/rss.xml") == "bbci.co.uk"
    assert at("http://rss.cnn.com/rss/edition.rss") == at("https://cnn.com/world.rss") == "cnn.com"
    assert at("https://feeds.feedburner.com/x", "https://www.example.org/a") == "example.org"
    # The Public Suffix List, not a guess from the labels' lengths:
    assert at("https://www.abc.net.au/news/feed/51120/rss.xml") == "abc.net.au"
    assert at("https://news.yahoo.co.jp/rss") == "yahoo.co.jp"
    assert at("https://www.gov.uk/news.atom") == "www.gov.uk"  # gov.uk is a public suffix
    assert at("https://one.blogspot.com/feeds") != at("https://two.blogspot.com/feeds")
    assert at("http://intranet:8080/feed") == "intranet"
    assert at("http://127.0.0.1:8080/feed") == "127.0.0.1"
    assert outlet_of(Item("k", "file:seed.xml", "Seed wire", "", "t")) == "Seed wire"


def test_shingles_ignore_case_punctuation_and_stop_words() -> None:
    assert words("The U.S. and China's TALKS") == ["u", "china", "talks"]
    a = shingle_hashes("Harbour reopens, after storms!")
    assert a == shingle_hashes("harbour REOPENS after the storms")
    assert jaccard(a, shingle_hashes("Harbour reopens after storm")) == pytest.approx(0.5)
    bander = Bander()
    assert len(bander.buckets(a)) == 32 and bander.buckets(a) == Bander().buckets(a)
    assert bander.buckets(()) == []


def test_copies_in_one_batch_are_one_story(make_index: Factory) -> None:
    found = make_index(3600).assign([copy(0), copy(1), copy(2)], 1000.0)
    assert len({a.story.id for a in found.values()}) == 1
    assert [a.created for a in found.values()] == [True, False, False]


def test_short_texts_that_differ_only_in_their_numbers_are_not_one_story() -> None:
    def sim(a: str, b: str) -> float:
        return similarity(frozenset(shingle_hashes(a)), frozenset(shingle_hashes(b)))

    assert sim("Lisbon weather, report 3", "Lisbon weather: report 3") == 1.0
    assert sim("Lisbon weather, report 3", "Lisbon weather, report 4") == 0.0
    # In a longer text a changed number is an update of the same story.
    long = "Typhoon hits southern South Korea, killing at least {} people, officials say; "
    long += "thousands flee flooded coastal towns as winds reach record strength"
    assert sim(long.format(42), long.format(48)) > 0.8
    assert shingle_hashes("5,500 jobs") == shingle_hashes("5500 jobs")


def test_one_publishers_series_is_not_one_story_but_other_outlets_copies_are(
    make_index: Factory,
) -> None:
    body = " ".join(f"Officials in Paris and Berlin met on day {n}." for n in range(8))

    def item(feed: str, n: int) -> Item:
        title = f"Typhoon death toll rises to {n}"
        return Item(f"{feed}#{n}", feed, feed, "", title, body)

    index = make_index(3600)
    first = index.assign([item("https://a.test/rss", 42)], 1000.0)
    series = index.assign([item("https://a.test/rss", 48)], 1001.0)
    copy_ = index.assign([item("https://b.test/rss", 48)], 1002.0)
    assert series["https://a.test/rss#48"].created  # the same publisher: another item
    story = first["https://a.test/rss#42"].story.id
    assert copy_["https://b.test/rss#48"].story.id in {
        story,
        series["https://a.test/rss#48"].story.id,
    }
