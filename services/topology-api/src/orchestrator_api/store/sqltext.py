"""Reading SQL text just enough to rewrite it: what is quoted, what is nested in parentheses,
where the ``?`` placeholders are (a ``?`` in a string literal is no placeholder)."""

from __future__ import annotations

_QUOTES = "'\"`"


def mask(sql: str, *, nested: bool) -> str:
    """``sql`` with quoted text blanked (and with ``nested``, whatever is inside parentheses
    too, the top-level parentheses kept), same length: keywords found in it by regular
    expressions are real and, with ``nested``, at the top level of the statement."""
    out: list[str] = []
    quote = ""
    depth = 0
    for char in sql:
        hidden = nested and depth > 0
        if quote:
            out.append(char if char == quote and not hidden else " ")
            if char == quote:
                quote = ""  # a doubled quote ('') closes and reopens: same mask
        elif char in _QUOTES:
            quote = char
            out.append(" " if hidden else char)
        elif char == "(":
            depth += 1
            out.append(" " if hidden else char)
        elif char == ")":
            depth -= 1
            out.append(" " if nested and depth > 0 else char)
        else:
            out.append(" " if hidden else char)
    return "".join(out)


def placeholders(sql: str) -> list[int]:
    """The offsets of the ``?`` placeholders (those outside quoted text)."""
    masked = mask(sql, nested=False)
    return [index for index, char in enumerate(masked) if char == "?"]
