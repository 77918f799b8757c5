"""Normalisation: canonical URLs, HTML to text, UTC dates, item keys."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.normalise import canonical_url, html_to_text, item_key, published_utc

NOW = datetime(2025, 1, 6, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("HTTP://Example.COM/News?b=2&a=1#top", "http://example.com/News?a=1&b=2"),
        ("https://example.com:443/x", "https://example.com/x"),
        ("http://example.com:8080/x", "http://example.com:8080/x"),
        ("https://example.com", "https://example.com/"),
        (
            "https://example.com/a?utm_source=rss&UTM_Medium=x&id=7&fbclid=1&gclid=2",
            "https://example.com/a?id=7",
        ),
        ("https://example.com/a?mc_cid=1&mc_eid=2&ocid=3&cmpid=4", "https://example.com/a"),
        ("https://example.com/caf%C3%A9 x", "https://example.com/caf%C3%A9%20x"),
        ("  https://example.com/a  ", "https://example.com/a"),
        ("mailto:desk@example.com", "mailto:desk@example.com"),
        ("/relative/path", "/relative/path"),
        ("", ""),
    ],
)
def test_canonical_url(raw: str, expected: str) -> None:
    assert canonical_url(raw) == expected


_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)
_values = st.text(alphabet="abcXYZ0123456789-._~ %&=+/é", max_size=8)
_tracking = st.sampled_from(["utm_source", "utm_campaign", "fbclid", "gclid", "mc_eid", "ocid"])


@given(
    host=st.from_regex(r"[a-z][a-z0-9-]{0,10}\.(com|org|co\.uk)", fullmatch=True),
    path=st.text(alphabet="abc/-_.%~é ", max_size=15),
    params=st.lists(st.tuples(_names, _values), max_size=4),
    tracking=st.lists(st.tuples(_tracking, _values), max_size=3),
)
def test_canonical_url_ignores_tracking_and_is_idempotent(
    host: str, path: str, params: list[tuple[str, str]], tracking: list[tuple[str, str]]
) -> None:
    from urllib.parse import urlencode

    params = [(k, v) for k, v in params if not k.startswith("utm_")]
    clean = f"https://{host}/{path}?{urlencode(params)}"
    tracked = f"https://{host.upper()}/{path}?{urlencode(params + tracking)}#frag"
    assert canonical_url(tracked) == canonical_url(clean)
    once = canonical_url(tracked)
    assert canonical_url(once) == once


@given(st.text(max_size=60))
def test_canonical_url_never_raises_and_is_idempotent_on_any_text(text: str) -> None:
    once = canonical_url(text)
    assert canonical_url(once) == once


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("<p>Hello &amp; <b>world</b></p><p>Second&nbsp;para</p>", "Hello & world\nSecond para"),
        ("line one<br/>line two", "line one\nline two"),
        ("  spaced \t\n out  ", "spaced out"),
        ("<script>alert(1)</script><style>p{}</style>Kept", "Kept"),
        ("<ul><li>a</li><li>b</li></ul>", "a\nb"),
        ("Caf&eacute; &#8220;quoted&#8221;", "Café “quoted”"),
        ("", ""),
    ],
)
def test_html_to_text(html: str, text: str) -> None:
    assert html_to_text(html) == text


def test_published_utc_reads_utc_struct_time() -> None:
    parsed = time.strptime("2025-01-06 09:00:00", "%Y-%m-%d %H:%M:%S")
    assert published_utc(parsed, NOW) == datetime(2025, 1, 6, 9, 0, tzinfo=UTC)


def test_published_utc_keeps_slightly_future_and_clamps_far_future() -> None:
    soon = (NOW + timedelta(hours=5)).utctimetuple()
    later = (NOW + timedelta(days=3)).utctimetuple()
    assert published_utc(soon, NOW) == NOW + timedelta(hours=5)
    assert published_utc(later, NOW) == NOW


def test_published_utc_without_date() -> None:
    assert published_utc(None, NOW) is None


def test_item_key_prefers_guid_then_canonical_url_then_title() -> None:
    feed = "https://example.com/feed"
    assert item_key(feed, "g1", "https://a/1", "T") == item_key(feed, "g1", "https://b/2", "U")
    assert item_key(feed, None, "https://a.com/1?utm_source=x", "T") == item_key(
        feed, "", "HTTPS://A.com/1", "other title"
    )
    assert item_key(feed, None, None, "Title") == item_key(feed, None, "", "Title")
    assert item_key(feed, "g1", None, None) != item_key("https://other/feed", "g1", None, None)
    # a GUID that spells a URL is not the same key as that URL
    assert item_key(feed, "https://a.com/1", None, None) != item_key(
        feed, None, "https://a.com/1", None
    )
