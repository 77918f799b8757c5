"""E-mail delivery into a real local SMTP server (aiosmtpd), plus the pure rendering.

Covers: the message arrives with a text and an HTML part, the exact subject, Date and
Message-ID, the envelope recipients; a hostile headline cannot inject a header; long
headlines are cut; HTML escapes feed text, highlights matched spans and links only
http(s) URLs; SMTP down, timeouts and 4xx replies are transient, 5xx replies and failed
AUTH permanent; AUTH is used when a username is configured; STARTTLS on a server
without it is a permanent (configuration) error. TLS for real (a ``trustme`` CA):
STARTTLS and implicit TLS deliver when the CA is trusted through
``WIREWATCH_SMTP_CAFILE``; a certificate that does not verify and an unreadable CA file
are permanent errors.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from certs import server_tls, tls_ca, trusted_ca
from receivers import SmtpSink, free_port, smtp_sink

from monitor.config import EmailChannel
from monitor.items import Item
from workers.delivery import (
    DeliveryError,
    build_message,
    deliver,
    email_html,
    email_subject,
    email_text,
    send_email,
)
from workers.delivery.email import CAFILE_ENV
from workers.delivery.render import SUBJECT_MAX, highlight
from workers.model import Alert, Entity, MatchedTerm

__all__ = ["server_tls", "smtp_sink", "tls_ca", "trusted_ca"]  # fixtures, for pytest

TITLE = "Acme recalls widgets in France"


def make_alert(title: str = TITLE, url: str = "https://news.example/acme?a=1&b=2") -> Alert:
    item = Item(
        key="k1",
        feed_url="https://news.example/feed.xml",
        feed_name="Example News",
        url=url,
        title=title,
        summary="Acme Corp <b>said</b> it would recall 10,000 widgets.",
        published=datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC),
    )
    return Alert(
        id="a1b2c3d4",
        rule_id="acme-recalls",
        query="acme AND recall*",
        item=item,
        entities=(
            Entity("Acme", "ORG", 0, 4),
            Entity("France", "GPE", 24, 30),
            Entity("Acme Corp", "ORG", 31, 40),
            Entity("Acme", "ORG", 31, 35),
        ),
        matched=(
            MatchedTerm("acme", "title", 0, 4, "Acme"),
            MatchedTerm("recall*", "title", 5, 12, "recalls"),
            MatchedTerm("acme", "summary", 0, 4, "Acme"),
        ),
        created=datetime(2024, 5, 6, 7, 9, 0, tzinfo=UTC),
    )


def channel_for(sink: SmtpSink, **smtp: object) -> EmailChannel:
    return EmailChannel.model_validate(
        {
            "type": "email",
            "from": "wirewatch@desk.example",
            "to": ["analyst@desk.example", "editor@desk.example"],
            "smtp": {"host": sink.host, "port": sink.port, "timeout": 5, **smtp},
        }
    )


def test_message_arrives_with_text_and_html(smtp_sink: SmtpSink) -> None:
    send_email(make_alert(), channel_for(smtp_sink))
    [mail] = smtp_sink.wait_for(1)
    message = mail.message
    assert message["Subject"] == f"[wirewatch] acme-recalls: {TITLE}"
    assert message["Message-ID"] == "<a1b2c3d4@wirewatch>"
    assert message["From"] == "wirewatch@desk.example"
    assert message["To"] == "analyst@desk.example, editor@desk.example"
    assert message["Date"].datetime == datetime(2024, 5, 6, 7, 9, 0, tzinfo=UTC)
    assert message["Auto-Submitted"] == "auto-generated"
    assert mail.mail_from == "wirewatch@desk.example"
    assert mail.rcpt_tos == ["analyst@desk.example", "editor@desk.example"]
    assert mail.login is None
    assert message.get_content_type() == "multipart/alternative"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None
    assert html is not None
    assert "https://news.example/acme?a=1&b=2" in text.get_content()
    assert "ORG: Acme, Acme Corp" in text.get_content()
    assert "<mark>Acme</mark> <mark>recalls</mark>" in html.get_content()


def test_header_injection_in_the_headline_is_neutralised(smtp_sink: SmtpSink) -> None:
    alert = make_alert("Breaking\r\nBcc: evil@x\r\n\r\nbody")
    send_email(alert, channel_for(smtp_sink))
    [mail] = smtp_sink.wait_for(1)
    assert mail.message["Bcc"] is None
    assert mail.rcpt_tos == ["analyst@desk.example", "editor@desk.example"]
    assert mail.message["Subject"] == "[wirewatch] acme-recalls: Breaking Bcc: evil@x body"
    headers = mail.raw.split(b"\r\n\r\n", 1)[0]
    assert b"\nBcc" not in headers
    assert b"evil@x" in headers  # still there, but inside the one-line subject


def test_subject_strips_control_characters_and_is_cut() -> None:
    assert (
        email_subject(make_alert("a\x00b\tc\u2028d\x1b[31m"))
        == "[wirewatch] acme-recalls: a b c d [31m"
    )
    long = email_subject(make_alert("word " * 100))
    assert len(long) <= SUBJECT_MAX
    assert long.endswith("word…")
    assert email_subject(make_alert("", url="https://x.example/a")) == (
        "[wirewatch] acme-recalls: https://x.example/a"
    )


def test_html_escapes_feed_text_and_links_only_http() -> None:
    html = email_html(make_alert("<script>alert(1)</script>", url="javascript:alert(1)"))
    assert "<script>" not in html
    assert "&lt;script&gt;" in html
    assert "javascript:" not in html
    assert "&lt;b&gt;said&lt;/b&gt;" in html  # summary markup is text, not HTML
    html = email_html(make_alert())
    assert '<a href="https://news.example/acme?a=1&amp;b=2">' in html
    assert "<b>GPE</b>: France" in html


def test_highlight_ignores_bad_and_overlapping_spans() -> None:
    def term(start: int, end: int, text: str = "") -> MatchedTerm:
        return MatchedTerm("t", "title", start, end, text)

    assert highlight("a <b> c", [term(2, 5, "<b>")]) == "a <mark>&lt;b&gt;</mark> c"
    assert highlight("abc", [term(1, 9), term(-1, 1), term(2, 2)]) == "abc"
    assert highlight("abc", [term(0, 1, "x")]) == "abc"  # span does not hold the text
    assert highlight("abcdef", [term(0, 3), term(2, 5)]) == "<mark>abcde</mark>f"


def test_text_part_says_why_it_matched() -> None:
    text = email_text(make_alert())
    assert "Rule:      acme-recalls" in text
    assert "Published: 2024-05-06T07:08:09+00:00" in text
    assert "'recall*' in title at 5-12: 'recalls'" in text
    assert "GPE: France" in text


def test_build_message_is_deterministic_where_it_matters() -> None:
    """A retry is recognisably the same mail: same Message-ID, Date and subject."""
    channel = EmailChannel.model_validate(
        {"type": "email", "from": "a@b.example", "to": ["c@d.example"]}
    )
    first, second = build_message(make_alert(), channel), build_message(make_alert(), channel)
    for name in ("Message-ID", "Date", "Subject", "From", "To"):
        assert first[name] == second[name]


def test_a_follow_up_answers_the_first_alert() -> None:
    """Threaded by References/In-Reply-To and by subject; the reason comes first."""
    channel = EmailChannel.model_validate(
        {"type": "email", "from": "a@b.example", "to": ["c@d.example"]}
    )
    first = make_alert()
    follow = replace(
        make_alert(title="Acme recall widens"),
        id="f0110w",
        kind="follow_up",
        thread_id=first.id,
        thread_title=first.item.title,
        reason="the story is now carried by 3 outlets",
    )
    original, message = build_message(first, channel), build_message(follow, channel)
    assert "In-Reply-To" not in original and original["X-Wirewatch-Kind"] == "new"
    assert message["In-Reply-To"] == message["References"] == original["Message-ID"]
    assert message["Subject"] == "Re: " + original["Subject"]
    assert message["X-Wirewatch-Kind"] == "follow_up"
    text = email_text(follow)
    assert "Follow-up: the story is now carried by 3 outlets" in text.splitlines()[3]
    assert "Follow-up" in email_html(follow)


def test_login_is_used_when_a_username_is_set() -> None:
    with SmtpSink(credentials=("desk", "pa55word")) as sink:
        send_email(make_alert(), channel_for(sink, username="desk", password="pa55word"))
        assert sink.wait_for(1)[0].login == "desk"


def test_wrong_password_is_permanent() -> None:
    with SmtpSink(credentials=("desk", "pa55word")) as sink:
        with pytest.raises(DeliveryError) as caught:
            send_email(make_alert(), channel_for(sink, username="desk", password="wrong"))
        assert not caught.value.transient
        assert caught.value.status == 535
        assert "wrong" not in str(caught.value)
        assert sink.messages == []


def test_missing_login_when_required_is_permanent() -> None:
    with SmtpSink(credentials=("desk", "pa55word")) as sink:
        with pytest.raises(DeliveryError) as caught:
            send_email(make_alert(), channel_for(sink))
        assert not caught.value.transient
        assert caught.value.status == 530


@pytest.mark.parametrize(
    ("reply", "transient"), [("451 4.3.0 try later", True), ("554 5.7.1 rejected", False)]
)
def test_smtp_replies_map_to_transient_or_permanent(reply: str, transient: bool) -> None:
    with SmtpSink(data_reply=reply) as sink:
        with pytest.raises(DeliveryError) as caught:
            deliver(make_alert(), "desk-mail", channel_for(sink))
        assert caught.value.transient is transient
        assert caught.value.status == int(reply[:3])
        assert caught.value.channel == "desk-mail"


def test_smtp_down_is_transient() -> None:
    channel = EmailChannel.model_validate(
        {
            "type": "email",
            "from": "a@b.example",
            "to": ["c@d.example"],
            "smtp": {"host": "127.0.0.1", "port": free_port(), "timeout": 2},
        }
    )
    with pytest.raises(DeliveryError) as caught:
        send_email(make_alert(), channel)
    assert caught.value.transient
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)


def test_starttls_on_a_server_without_it_is_permanent(smtp_sink: SmtpSink) -> None:
    with pytest.raises(DeliveryError) as caught:
        send_email(make_alert(), channel_for(smtp_sink, starttls=True))
    assert not caught.value.transient
    assert smtp_sink.messages == []


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never says a word (no SMTP greeting)."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()


def test_smtp_timeout_is_transient(silent_server: int) -> None:
    channel = EmailChannel.model_validate(
        {
            "type": "email",
            "from": "a@b.example",
            "to": ["c@d.example"],
            "smtp": {"host": "127.0.0.1", "port": silent_server, "timeout": 0.2},
        }
    )
    with pytest.raises(DeliveryError) as caught:
        send_email(make_alert(), channel)
    assert caught.value.transient
    assert "timed out" in caught.value.reason


@pytest.mark.usefixtures("trusted_ca")
def test_starttls_with_a_trusted_ca_delivers_over_tls(server_tls: ssl.SSLContext) -> None:
    with SmtpSink(credentials=("desk", "pa55word"), starttls=server_tls) as sink:
        channel = channel_for(sink, starttls=True, username="desk", password="pa55word")
        send_email(make_alert(), channel)
        [mail] = sink.wait_for(1)
    assert mail.tls
    assert mail.login == "desk"
    assert mail.message["Message-ID"] == "<a1b2c3d4@wirewatch>"


@pytest.mark.usefixtures("trusted_ca")
def test_implicit_tls_with_a_trusted_ca_delivers(server_tls: ssl.SSLContext) -> None:
    with SmtpSink(implicit_tls=server_tls) as sink:
        deliver(make_alert(), "desk-mail", channel_for(sink, ssl=True))
        [mail] = sink.wait_for(1)
    assert mail.tls
    assert mail.rcpt_tos == ["analyst@desk.example", "editor@desk.example"]


@pytest.mark.parametrize("mode", ["starttls", "ssl"])
def test_an_untrusted_certificate_is_permanent(
    server_tls: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    monkeypatch.delenv(CAFILE_ENV, raising=False)  # the test CA is unknown to the system
    if mode == "starttls":
        sink = SmtpSink(starttls=server_tls)
    else:
        sink = SmtpSink(implicit_tls=server_tls)
    with sink:
        with pytest.raises(DeliveryError) as caught:
            send_email(make_alert(), channel_for(sink, **{mode: True}))
        assert sink.messages == []
    assert not caught.value.transient
    assert "certificate" in caught.value.reason
    assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)


def test_an_unreadable_ca_file_is_permanent(
    smtp_sink: SmtpSink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CAFILE_ENV, str(tmp_path / "missing.pem"))
    with pytest.raises(DeliveryError) as caught:
        send_email(make_alert(), channel_for(smtp_sink, starttls=True))
    assert not caught.value.transient
    assert CAFILE_ENV in caught.value.reason
    assert smtp_sink.messages == []


def test_the_ca_file_is_ignored_without_tls(
    smtp_sink: SmtpSink, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CAFILE_ENV, str(tmp_path / "missing.pem"))
    send_email(make_alert(), channel_for(smtp_sink))
    assert not smtp_sink.wait_for(1)[0].tls
