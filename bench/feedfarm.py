"""A local feed farm for the poller benchmark: N synthetic feeds over HTTP on 127.0.0.1.

Role: stand in for thousands of publishers, in a process of its own (so its CPU is not
the poller's), with the shape of real feeds (see ``../shared/data/real-feeds/``: RSS 2.0
in the style of a news site, some Atom 1.0; 20–50 items; tens to a couple of hundred KB,
most below 80 KB) and real HTTP caching semantics.

Routes:

- ``GET /feeds/{n}.xml`` — feed ``n`` (``0 <= n < feeds``). Each answer carries a strong
  ``ETag`` and a ``Last-Modified``; ``If-None-Match`` (when sent) or else
  ``If-Modified-Since`` that still matches gets a bodiless ``304``.
- ``POST /_advance`` — JSON ``{"fraction": 0.05, "first": 0, "count": N, "seed": 1,
  "min_new": 1, "max_new": 3}``: that fraction of the feeds ``first … first+count-1``
  (chosen with ``seed``) publish 1–3 new items each; the oldest items drop off, so a
  feed keeps its size. Answers ``{"changed": [...ids]}``.
- ``GET /_stats`` — responses served so far by status (a sanity check for a round).

For the end-to-end benchmark (:mod:`bench.e2e`), a farm built with ``texts`` (news
items: a title and a summary each) publishes *news*: every item published after the
start takes the next text of that list (so NER and rules do real work), and its
``pubDate`` / ``published`` is the moment it was published (the farm keeps that moment
to the microsecond; the feed shows it to the second). More routes:

- ``POST /_publish`` — JSON ``{"items": N, "seed": 1}``: N new items now, spread over
  random feeds (never more at once on a feed than it shows). Answers ``{"published":
  [[feed, item, unix time], ...]}``.
- ``POST /_pace`` — JSON ``{"rate": 100, "seconds": 30, "seed": 1}``: publish steadily at
  that rate (items a second, on random feeds), in the background. Answers at once.
- ``GET /_published`` — every item published through ``/_publish`` or ``/_pace``, as
  ``[[feed, item, unix time], ...]``, and whether a pace is still running.
- ``GET /_fetched`` — per feed, the unix times at which a 200 body was rendered: an
  item was fetched at the first of them at or after its publication.

Bodies are rendered on request from a pool of pre-built paragraphs (deterministic per
feed and item number), so ten thousand feeds cost almost no memory; a 304 renders
nothing. Start it with :func:`start_farm` (a ``multiprocessing`` child) or
``python -m bench.feedfarm --feeds N --port P``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from html import escape
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from aiohttp import web

BASE_TIME = 1_700_000_000  # item n of a feed was published BASE_TIME + n * 600 s
_WORD_TEXT = (
    "minister government election talks border security forces council court ruling "
    "economy inflation markets energy prices summit leaders agreement ceasefire "
    "report officials spokesperson statement parliament vote opposition coalition "
    "protest city police investigation storm flooding health hospital vaccine "
    "researchers study data company shares profits trade tariffs exports sanctions "
    "military aid defence talks negotiations region capital province villagers "
    "rescue teams emergency crisis budget tax reform schools teachers union strike "
    "workers wages airline airport rail network climate emissions targets scientists "
    "ocean drought wildfire harvest farmers food"
)
_WORDS = tuple(_WORD_TEXT.split())
_NAMES = ("Reuters", "Agence", "Staff", "Correspondent", "Desk", "Bureau")


@dataclass
class _Feed:
    """What differs between feeds; everything else follows from the feed number."""

    atom: bool
    items: int  # items in the body (20–50)
    paragraphs: int  # paragraphs per item description: sets the body's size
    head: int  # number of the newest item
    modified: float  # unix time of the last change (Last-Modified)


class Farm:
    """The state of every feed, and the rendering of their bodies."""

    def __init__(self, feeds: int, seed: int = 7, texts: Sequence[tuple[str, str]] = ()) -> None:
        rand = random.Random(seed)
        self.texts = list(texts)  # news (title, summary) for items published from now on
        self.published: dict[tuple[int, int], float] = {}  # (feed, item) → unix time
        self.text_of: dict[tuple[int, int], int] = {}  # (feed, item) → index into texts
        self.fetched: dict[int, list[float]] = {}  # feed → times a 200 body was rendered
        self.order: list[tuple[int, int, float]] = []  # published items, in order
        self.pacing = False
        self.started = float(int(time.time()) - 3600)
        self.paragraphs = [_paragraph(rand) for _ in range(512)]
        self.feeds: list[_Feed] = []
        for _ in range(feeds):
            items = rand.randint(20, 50)
            # Skewed log-uniform body size, about 20–200 KB, most feeds 30–80 KB (like
            # the real ones: median ~45 KB, 90th percentile ~120 KB).
            target_kb = 18.0 * 10 ** (rand.random() ** 1.6)
            per_item = target_kb * 1024 / items
            paragraphs = max(1, round((per_item - 700) / 330))
            self.feeds.append(
                _Feed(rand.random() < 0.2, items, paragraphs, 1000 + items, self.started)
            )
        self.served: Counter[int] = Counter()

    def etag(self, n: int) -> str:
        return f'"f{n}-{self.feeds[n].head}"'

    def last_modified(self, n: int) -> str:
        return format_datetime(_utc(self.feeds[n].modified), usegmt=True)

    def advance(
        self, fraction: float, first: int, count: int, seed: int, min_new: int, max_new: int
    ) -> list[int]:
        """Make ``fraction`` of feeds ``first … first+count-1`` publish new items."""
        rand = random.Random(seed)
        ids = list(range(first, min(len(self.feeds), first + count)))
        chosen = sorted(rand.sample(ids, round(len(ids) * fraction))) if ids else []
        now = time.time()
        for n in chosen:
            feed = self.feeds[n]
            feed.head += rand.randint(min_new, max_new)
            # Last-Modified has one-second resolution: never equal to the previous one.
            feed.modified = max(now, feed.modified + 1.0)
        return chosen

    def publish(self, count: int, rand: random.Random) -> list[tuple[int, int, float]]:
        """``count`` new items now on random feeds, each stamped with this moment."""
        out: list[tuple[int, int, float]] = []
        now = time.time()
        fresh: Counter[int] = Counter()
        for _ in range(count):
            n = rand.randrange(len(self.feeds))
            feed = self.feeds[n]
            if fresh[n] >= feed.items - 1:  # it would push an unseen item off the feed
                n = min(range(len(self.feeds)), key=lambda m: fresh[m])
                feed = self.feeds[n]
            fresh[n] += 1
            feed.head += 1
            feed.modified = max(now, feed.modified + 1.0)
            key = (n, feed.head)
            self.published[key] = now
            self.text_of[key] = len(self.order)
            self.order.append((n, feed.head, now))
            out.append((n, feed.head, now))
        return out

    async def pace(self, rate: float, seconds: float, seed: int) -> None:
        """Publish ``rate`` items a second for ``seconds``, steadily (ticks of 10 ms)."""
        rand = random.Random(seed)
        self.pacing = True
        started = time.monotonic()
        done = 0
        try:
            while (elapsed := time.monotonic() - started) < seconds:
                due = int(rate * elapsed) - done
                if due > 0:
                    self.publish(due, rand)
                    done += due
                await asyncio.sleep(0.01)
        finally:
            self.pacing = False

    def body(self, n: int) -> bytes:
        self.fetched.setdefault(n, []).append(time.time())
        feed = self.feeds[n]
        numbers = range(feed.head, feed.head - feed.items, -1)
        if feed.atom:
            return _atom(self, n, feed, numbers).encode()
        return _rss(self, n, feed, numbers).encode()

    def _text(self, n: int, item: int, paragraphs: int) -> list[str]:
        pool = self.paragraphs
        start = (n * 7919 + item * 104_729) % len(pool)
        return [pool[(start + k * 31) % len(pool)] for k in range(paragraphs)]

    def news(self, n: int, item: int) -> tuple[str, str] | None:
        """The news text of a published item (``None``: an item of the initial backlog)."""
        index = self.text_of.get((n, item))
        if index is None or not self.texts:
            return None
        return self.texts[index % len(self.texts)]

    def published_at(self, n: int, item: int) -> datetime:
        stamp = self.published.get((n, item))
        return _utc(stamp if stamp is not None else BASE_TIME + item * 600)

    def _html(self, n: int, item: int, paragraphs: int) -> str:
        news = self.news(n, item)
        paras = [news[1]] if news is not None else self._text(n, item, paragraphs)
        return "".join(f"<p>{p}</p>" for p in paras)

    def _title(self, n: int, item: int) -> str:
        news = self.news(n, item)
        if news is not None:
            return news[0]
        words = [_WORDS[(n * 31 + item * 17 + k * 13) % len(_WORDS)] for k in range(9)]
        return f"{words[0].capitalize()} {' '.join(words[1:])} ({n}/{item})"


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(int(seconds), UTC)


def _paragraph(rand: random.Random) -> str:
    words = [rand.choice(_WORDS) for _ in range(rand.randint(35, 60))]
    words[0] = words[0].capitalize()
    return " ".join(words) + "."


def _rss(farm: Farm, n: int, feed: _Feed, numbers: range) -> str:
    site = f"https://news{n % 97}.example.org"
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/" '
        'xmlns:media="http://search.yahoo.com/mrss/">\n<channel>\n'
        f"<title>Newswire {n}</title>\n<link>{site}/</link>\n"
        f"<description>Latest news from wire {n}</description>\n<language>en-gb</language>\n"
        f"<pubDate>{farm.last_modified(n)}</pubDate>\n<ttl>5</ttl>\n"
    ]
    for item in numbers:
        link = f"{site}/world/{item // 100}/story-{n}-{item}"
        html = farm._html(n, item, feed.paragraphs)
        html += f'<a href="{link}">Continue reading...</a>'
        cats = "".join(
            f'<category domain="{site}/topic/{w}">{w.capitalize()}</category>\n'
            for w in _WORDS[item % 40 : item % 40 + 4]
        )
        published = format_datetime(farm.published_at(n, item), usegmt=True)
        parts.append(
            f"<item>\n<title>{escape(farm._title(n, item))}</title>\n<link>{link}</link>\n"
            f"<description>{escape(html)}</description>\n{cats}"
            f"<pubDate>{published}</pubDate>\n<guid>{link}</guid>\n"
            f"<dc:creator>{_NAMES[item % len(_NAMES)]}</dc:creator>\n"
            f'<media:content width="140" url="{site}/img/{n}/{item}.jpg"/>\n</item>\n'
        )
    parts.append("</channel>\n</rss>\n")
    return "".join(parts)


def _atom(farm: Farm, n: int, feed: _Feed, numbers: range) -> str:
    site = f"https://blog{n % 97}.example.net"
    updated = _utc(feed.modified).isoformat()
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">\n'
        f"<title>Wire blog {n}</title>\n<id>tag:blog{n}.example.net,2024:feed</id>\n"
        f'<link rel="alternate" href="{site}/"/>\n<updated>{updated}</updated>\n'
    ]
    for item in numbers:
        link = f"{site}/{item // 100}/post-{n}-{item}.html"
        html = farm._html(n, item, feed.paragraphs)
        stamp = farm.published_at(n, item).isoformat()
        parts.append(
            f"<entry>\n<title>{escape(farm._title(n, item))}</title>\n"
            f'<link rel="alternate" href="{link}"/>\n'
            f"<id>tag:blog{n}.example.net,2024:post-{item}</id>\n"
            f"<published>{stamp}</published>\n<updated>{stamp}</updated>\n"
            f"<author><name>{_NAMES[item % len(_NAMES)]}</name></author>\n"
            f'<content type="html">{escape(html)}</content>\n</entry>\n'
        )
    parts.append("</feed>\n")
    return "".join(parts)


_PACERS = web.AppKey("pacers", set[asyncio.Task[None]])


def make_app(farm: Farm) -> web.Application:
    async def feed(request: web.Request) -> web.StreamResponse:
        try:
            n = int(request.match_info["n"])
            state = farm.feeds[n]
        except (ValueError, IndexError):
            raise web.HTTPNotFound() from None
        etag, modified = farm.etag(n), farm.last_modified(n)
        headers = {"ETag": etag, "Last-Modified": modified, "Cache-Control": "max-age=60"}
        match = request.headers.get("If-None-Match")
        since = request.headers.get("If-Modified-Since")
        if match is not None:
            fresh = etag in (tag.strip() for tag in match.split(","))
        elif since is not None:
            fresh = _not_after(state.modified, since)
        else:
            fresh = False
        if fresh:
            farm.served[304] += 1
            return web.Response(status=304, headers=headers)
        farm.served[200] += 1
        kind = "application/atom+xml" if state.atom else "application/rss+xml"
        return web.Response(body=farm.body(n), headers=headers, content_type=kind, charset="utf-8")

    async def advance(request: web.Request) -> web.Response:
        spec = await request.json()
        changed = farm.advance(
            float(spec.get("fraction", 0.05)),
            int(spec.get("first", 0)),
            int(spec.get("count", len(farm.feeds))),
            int(spec.get("seed", 1)),
            int(spec.get("min_new", 1)),
            int(spec.get("max_new", 3)),
        )
        return web.json_response({"changed": changed})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({str(k): v for k, v in farm.served.items()})

    async def publish(request: web.Request) -> web.Response:
        spec = await request.json()
        rand = random.Random(int(spec.get("seed", 1)))
        return web.json_response({"published": farm.publish(int(spec["items"]), rand)})

    async def pace(request: web.Request) -> web.Response:
        spec = await request.json()
        if farm.pacing:
            raise web.HTTPConflict(text="a pace is running")
        job = farm.pace(float(spec["rate"]), float(spec["seconds"]), int(spec.get("seed", 1)))
        request.app[_PACERS].add(task := asyncio.create_task(job))
        task.add_done_callback(request.app[_PACERS].discard)
        farm.pacing = True
        return web.json_response({"started": True})

    async def published(request: web.Request) -> web.Response:
        return web.json_response({"published": farm.order, "pacing": farm.pacing})

    async def fetched(request: web.Request) -> web.Response:
        return web.json_response({str(n): times for n, times in farm.fetched.items()})

    app = web.Application()
    app[_PACERS] = set()
    app.router.add_get("/feeds/{n}.xml", feed)
    app.router.add_post("/_advance", advance)
    app.router.add_get("/_stats", stats)
    app.router.add_post("/_publish", publish)
    app.router.add_post("/_pace", pace)
    app.router.add_get("/_published", published)
    app.router.add_get("/_fetched", fetched)
    return app


def _not_after(modified: float, since: str) -> bool:
    try:
        return int(modified) <= parsedate_to_datetime(since).timestamp()
    except (TypeError, ValueError):
        return False


async def serve(
    feeds: int,
    port: int,
    ready: Connection | None = None,
    texts: Sequence[tuple[str, str]] = (),
) -> None:
    """Serve ``feeds`` feeds on 127.0.0.1:``port`` (0: any free port) until cancelled."""
    runner = web.AppRunner(make_app(Farm(feeds, texts=texts)), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=4096)
    await site.start()
    bound = runner.addresses[0][1]
    if ready is not None:
        ready.send(bound)
        ready.close()
    else:
        print(f"feed farm: {feeds} feeds on http://127.0.0.1:{bound}/feeds/N.xml", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def _child(feeds: int, ready: Connection, texts: Sequence[tuple[str, str]] = ()) -> None:
    asyncio.run(serve(feeds, 0, ready, texts))


def start_farm(feeds: int, texts: Sequence[tuple[str, str]] = ()) -> tuple[BaseProcess, str]:
    """Start the farm in a child process; returns it and its base URL.

    ``texts``: news (title, summary) for the items published through ``/_publish`` and
    ``/_pace`` (see the module docstring); none: synthetic text, as for the poller bench.
    """
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe(duplex=False)
    process = context.Process(
        target=_child, args=(feeds, child, list(texts)), name="feedfarm", daemon=True
    )
    process.start()
    child.close()
    if not parent.poll(60):
        process.kill()
        raise RuntimeError("the feed farm did not start within 60 s")
    port = parent.recv()
    return process, f"http://127.0.0.1:{port}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    asyncio.run(serve(args.feeds, args.port))


if __name__ == "__main__":
    main()
