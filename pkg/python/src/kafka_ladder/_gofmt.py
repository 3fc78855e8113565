"""Go's renderings that appear in ladder's error texts: %q of strings, bytes and
bytes-as-runes, and time.Duration's String. Error texts are part of the shared
test vectors, so Python writes them as Go does."""

from __future__ import annotations

import unicodedata

_ESCAPES = {7: "\\a", 8: "\\b", 12: "\\f", 10: "\\n", 13: "\\r", 9: "\\t", 11: "\\v"}


def _printable(ch: str) -> bool:
    # unicode.IsPrint: letters, marks, numbers, punctuation, symbols and the ASCII space.
    if ch == " ":
        return True
    return unicodedata.category(ch)[0] in "LMNPS"


def _escape_rune(ch: str, quote: str) -> str:
    r = ord(ch)
    if ch == quote or ch == "\\":
        return "\\" + ch
    if _printable(ch):
        return ch
    if r in _ESCAPES:
        return _ESCAPES[r]
    if r < 0x20 or r == 0x7F:
        return f"\\x{r:02x}"
    if 0xD800 <= r <= 0xDFFF or r > 0x10FFFF:
        return "\\ufffd"
    if r < 0x10000:
        return f"\\u{r:04x}"
    return f"\\U{r:08x}"


def quote(value: str | bytes) -> str:
    """Go's %q of a string or a []byte (strconv.Quote): invalid UTF-8 as \\xNN."""
    if isinstance(value, str):
        value = value.encode("utf-8", "surrogatepass")
    out = ['"']
    i = 0
    while i < len(value):
        ch, size = _decode_rune(value, i)
        if ch is None:
            out.append(f"\\x{value[i]:02x}")
        else:
            out.append(_escape_rune(ch, '"'))
        i += size
    out.append('"')
    return "".join(out)


def quote_byte(b: int) -> str:
    """Go's %q of a byte: the character literal of rune(b)."""
    return "'" + _escape_rune(chr(b), "'") + "'"


def _decode_rune(b: bytes, i: int) -> tuple[str | None, int]:
    c = b[i]
    if c < 0x80:
        return chr(c), 1
    for size in (2, 3, 4):
        chunk = b[i : i + size]
        try:
            ch = chunk.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if len(ch) == 1:
            return ch, size
    return None, 1


def trim_space(s: str) -> str:
    """Go's strings.TrimSpace (Unicode White_Space)."""

    def space(ch: str) -> bool:
        return ch in "\t\n\v\f\r \x85\xa0" or unicodedata.category(ch) in ("Zs", "Zl", "Zp")

    i, j = 0, len(s)
    while i < j and space(s[i]):
        i += 1
    while j > i and space(s[j - 1]):
        j -= 1
    return s[i:j]


def _fmt_frac(v: int, prec: int) -> tuple[str, int]:
    digits = []
    printing = False
    for _ in range(prec):
        digit = v % 10
        printing = printing or digit != 0
        if printing:
            digits.append(str(digit))
        v //= 10
    text = "." + "".join(reversed(digits)) if printing else ""
    return text, v


def duration_string(ns: int) -> str:
    """Go's time.Duration.String, e.g. 1h30m0s, 1.5ms, 0s."""
    neg = ns < 0
    u = -ns if neg else ns
    if u < 1_000_000_000:
        if u == 0:
            return "0s"
        if u < 1_000:
            prec, unit = 0, "ns"
        elif u < 1_000_000:
            prec, unit = 3, "µs"
        else:
            prec, unit = 6, "ms"
        frac, u = _fmt_frac(u, prec)
        text = f"{u}{frac}{unit}"
    else:
        frac, u = _fmt_frac(u, 9)
        text = f"{u % 60}{frac}s"
        u //= 60
        if u > 0:
            text = f"{u % 60}m" + text
            u //= 60
            if u > 0:
                text = f"{u}h" + text
    return "-" + text if neg else text


_UNITS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5
    "μs": 1_000,  # U+03BC
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}

_MAX = 1 << 63


def parse_go_duration(s: str) -> int:
    """Go's time.ParseDuration, in nanoseconds. Raises ValueError with Go's text."""
    orig = s
    total = 0
    neg = False
    if s and s[0] in "+-":
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError("time: invalid duration " + quote(orig))
    while s:
        if not (s[0] == "." or "0" <= s[0] <= "9"):
            raise ValueError("time: invalid duration " + quote(orig))
        i = 0
        v = 0
        while i < len(s) and "0" <= s[i] <= "9":
            v = v * 10 + ord(s[i]) - 48
            if v > _MAX:
                raise ValueError("time: invalid duration " + quote(orig))
            i += 1
        pre = i > 0
        s = s[i:]
        post = False
        f, scale = 0, 1.0
        if s and s[0] == ".":
            s = s[1:]
            i = 0
            overflow = False
            while i < len(s) and "0" <= s[i] <= "9":
                if not overflow:
                    if f > (_MAX - 1) // 10:
                        overflow = True
                    else:
                        y = f * 10 + ord(s[i]) - 48
                        if y > _MAX:
                            overflow = True
                        else:
                            f = y
                            scale *= 10
                i += 1
            post = i > 0
            s = s[i:]
        if not pre and not post:
            raise ValueError("time: invalid duration " + quote(orig))
        i = 0
        while i < len(s) and not (s[i] == "." or "0" <= s[i] <= "9"):
            i += 1
        if i == 0:
            raise ValueError("time: missing unit in duration " + quote(orig))
        u, s = s[:i], s[i:]
        if u not in _UNITS:
            raise ValueError("time: unknown unit " + quote(u) + " in duration " + quote(orig))
        unit = _UNITS[u]
        if v > _MAX // unit:
            raise ValueError("time: invalid duration " + quote(orig))
        v *= unit
        if f > 0:
            v += int(float(f) * (float(unit) / scale))
            if v > _MAX:
                raise ValueError("time: invalid duration " + quote(orig))
        total += v
        if total > _MAX:
            raise ValueError("time: invalid duration " + quote(orig))
    if neg:
        return -total
    if total > _MAX - 1:
        raise ValueError("time: invalid duration " + quote(orig))
    return total
