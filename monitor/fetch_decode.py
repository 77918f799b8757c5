"""Decode a response body (gzip, deflate or identity) with a cap on DECODED bytes.

Role: the fetcher asks aiohttp for the raw bytes (``auto_decompress=False``) and feeds
them here chunk by chunk, so the byte cap counts what the body inflates to, not what
travelled on the wire: a gzip bomb of a few KB that would inflate to gigabytes stops at
the cap.

Inputs: the ``Content-Encoding`` header and the cap; then raw chunks via :meth:`feed`.
Outputs: the decoded body from :meth:`finish`, or :class:`BodyTooLarge` /
:class:`BadEncoding`, which the fetcher turns into a
:class:`~monitor.poll_errors.FetchError`.

Invariants: zlib is never asked for more than ``max_bytes + 1 - decoded so far`` bytes
per call (``max_length``), so memory stays within the cap plus one network chunk, however
compressible the input. Multi-member gzip is read to the end; bytes after a complete
deflate stream are ignored, as browsers do.
"""

from __future__ import annotations

import zlib

# Codings we announce in Accept-Encoding and can decode. (No br: it needs a dependency.)
ACCEPT_ENCODING = "gzip, deflate"
_GZIP_WBITS = 16 + zlib.MAX_WBITS
_ZLIB_WBITS = zlib.MAX_WBITS
_RAW_DEFLATE_WBITS = -zlib.MAX_WBITS


class BodyTooLarge(Exception):
    """The decoded body passed the cap."""


class BadEncoding(Exception):
    """The body does not decode with its Content-Encoding (or the coding is unknown)."""


def _looks_like_zlib(head: bytes) -> bool:
    """A zlib header: deflate method, and the two bytes are a multiple of 31."""
    return len(head) >= 2 and head[0] & 0x0F == 8 and ((head[0] << 8) | head[1]) % 31 == 0


class BodyDecoder:
    """Incremental decoder: ``feed()`` raw chunks, then ``finish()`` for the body."""

    def __init__(self, content_encoding: str | None, max_bytes: int) -> None:
        coding = (content_encoding or "").strip().lower()
        if coding in ("", "identity"):
            self._wbits: int | None = None
        elif coding in ("gzip", "x-gzip"):
            self._wbits = _GZIP_WBITS
        elif coding == "deflate":
            self._wbits = 0  # zlib-wrapped or raw: decided on the first bytes
        else:
            raise BadEncoding(f"unsupported Content-Encoding {coding!r}")
        self.coding = coding or "identity"
        self.max_bytes = max_bytes
        self.size = 0
        self._parts: list[bytes] = []
        self._inflater: zlib._Decompress | None = None
        self._done = False  # a deflate stream ended; anything after it is ignored
        self._members = 0

    def feed(self, data: bytes) -> None:
        if self._wbits is None:
            self._add(data)
            return
        try:
            self._inflate(data)
        except zlib.error as exc:
            raise BadEncoding(f"cannot decode the {self.coding} response body: {exc}") from exc

    def finish(self) -> bytes:
        """The whole decoded body; raises if a compressed stream stopped half-way."""
        if self._inflater is not None and not self._inflater.eof:
            raise BadEncoding(f"the {self.coding} response body ends in mid-stream")
        return b"".join(self._parts)

    def _add(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise BodyTooLarge(self.size)
        if chunk:
            self._parts.append(chunk)

    def _inflate(self, data: bytes) -> None:
        while data and not self._done:
            if self._inflater is None:
                if self._members and not data.strip(b"\0"):
                    return  # zero padding after a complete gzip member
                wbits = self._wbits or (
                    _ZLIB_WBITS if _looks_like_zlib(data) else _RAW_DEFLATE_WBITS
                )
                self._inflater = zlib.decompressobj(wbits)
            inflater = self._inflater
            # One more byte than the cap allows is enough to know the cap was passed.
            self._add(inflater.decompress(data, self.max_bytes - self.size + 1))
            data = inflater.unconsumed_tail
            if inflater.eof:
                self._members += 1
                data = inflater.unused_data + data
                if self._wbits == _GZIP_WBITS:
                    self._inflater = None  # another gzip member may follow
                else:
                    self._done = True
