"""SMS length: GSM-7 or UCS-2 encoding, segment counts, and cutting a text to fit."""

from __future__ import annotations

# The GSM 03.38 basic character set (one septet each) and its extension table (two septets:
# an escape and the character). Any other character makes the whole message UCS-2.
GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXTENDED = frozenset("^{}\\[~]|€\f")

# Characters per segment: a single message, or each part of a concatenated one (the rest of
# a part carries the header that joins them).
GSM_SINGLE, GSM_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67


def is_gsm(text: str) -> bool:
    """Whether ``text`` can be sent in the GSM 7-bit alphabet."""
    return all(ch in GSM_BASIC or ch in GSM_EXTENDED for ch in text)


def units(text: str) -> int:
    """The message's length in its encoding's units (septets, or UTF-16 code units)."""
    if is_gsm(text):
        return sum(2 if ch in GSM_EXTENDED else 1 for ch in text)
    return sum(2 if ord(ch) > 0xFFFF else 1 for ch in text)


def segments(text: str) -> int:
    """How many SMS segments ``text`` is sent in (0 for an empty text)."""
    if not text:
        return 0
    single, part = (GSM_SINGLE, GSM_PART) if is_gsm(text) else (UCS2_SINGLE, UCS2_PART)
    length = units(text)
    return 1 if length <= single else -(-length // part)


def fit(head: str, tail: str = "", max_segments: int = 2) -> str:
    """Join ``head`` and ``tail`` by a line break, cutting ``head`` so the SMS fits.

    ``tail`` (numbered choices, say) is kept whole when it can be; the cut is marked with an
    ellipsis in the message's own alphabet ("..." in GSM, "…" otherwise, since "…" alone
    would turn a GSM message into a shorter UCS-2 one).
    """
    whole = f"{head}\n{tail}" if head and tail else head or tail
    if segments(whole) <= max_segments:
        return whole
    if segments(tail) > max_segments or len(tail) >= len(whole):
        head, tail = whole, ""
    ellipsis = "..." if is_gsm(whole) else "…"

    def joined(cut: int) -> str:
        body = head[:cut].rstrip() + ellipsis
        return f"{body}\n{tail}" if tail else body

    # The longest cut that fits: segments() grows with the cut, so bisect it.
    low, high = 0, len(head)
    while low < high:
        middle = (low + high + 1) // 2
        if segments(joined(middle)) <= max_segments:
            low = middle
        else:
            high = middle - 1
    return joined(low)
