"""Pattern compilation: many taxonomy regular expressions → one fast scanner (used by :mod:`monitor.taxonomy`).

Owns the pattern rules (:func:`pattern_problem` says why a pattern cannot be used), case folding of a
regex's literals (:func:`lower_regex`), and the :class:`Scanner`: one expression over every pattern, built
as a character trie of the patterns' literal beginnings behind one separator class, so a scan tries each
word start once instead of every pattern at every position. Which patterns matched a text is found
afterwards by :func:`resolve` (and cached), since an expression with hundreds of groups is slow to match.
Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from .errors import ConfigError

try:  # stdlib (3.11+); used only to order patterns by their shortest match
    import re._parser as _sre_parse  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover
    _sre_parse = None

__all__ = ["Candidates", "Scanner", "build_scanner", "lower_regex", "pattern_problem", "resolve"]

_SPECIAL = set("\\.^$*+?{}[]|()")
_QUANT = set("?*+{")
# A match starts with the separator before the word (the document starts with a newline): a leading
# character set lets the engine skip to candidate places, several times faster than (?<!\w) at every
# character. Words glued to other characters are not matched.
SEPARATOR = r"[ \t\n\r\f\v(\[{/\\\-\"'“”‘’,;:.!?<>=+*%&@#~|®©™°±×·•…]"
# Word-initial letters of biomedical English, most frequent first: the trie tries them in this order.
_FIRST_ORDER = {c: i for i, c in enumerate("atspiocwmdrfbehglnuvykjqzx0123456789")}
# Patterns whose match depends on the text around it (look-arounds, anchors).
_CONTEXT_RE = re.compile(r"\(\?<?[=!]|\\[bBAZ]|[$^]")
_CACHE_LIMIT = 500_000


class Candidates(NamedTuple):
    """The patterns that fully match one text: those that always do (``fixed``) and those with
    look-arounds that must be checked in place (``contextual``)."""

    fixed: tuple[int, ...]
    contextual: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Scanner:
    """One combined expression over many patterns; ``targets[i]`` says what pattern i stands for.

    ``body`` is the trie alone (it matches at one position); ``singles`` are the patterns compiled one by
    one; ``by_first`` the patterns that can start with a character (plus the ``general`` ones that can
    start with anything); ``contextual`` the patterns with look-arounds. ``cache`` maps a matched text to
    the patterns that fully match it (filled lazily; it only speeds up :func:`resolve`)."""

    regex: re.Pattern[str]
    body: str
    targets: tuple[tuple[Hashable, ...], ...]
    singles: tuple[re.Pattern[str], ...]
    by_first: dict[str, tuple[int, ...]]
    general: tuple[int, ...]
    contextual: frozenset[int]
    cache: dict[str, Candidates]


# ─────────────────────────────────────────── checking patterns ──────────────────────────────────────────


def pattern_problem(pattern: str) -> str | None:
    """Why a pattern cannot be used, or None."""
    if "(?P" in pattern:
        return "named groups (?P...) are not allowed; use (?:...)"
    low = lower_regex(pattern)
    try:
        compiled = re.compile(low)
        re.compile(r"(?<!\w)(?:" + low + r")(?!\w)(?P<_m>)|x")  # catches global flags (?i) mid-pattern
    except re.error as exc:
        return f"not a valid regular expression: {exc}"
    if compiled.groups and re.search(r"\\[1-9]", pattern):
        return "backreferences are not allowed"
    if compiled.fullmatch(""):
        return "matches the empty string"
    return None


def lower_regex(pattern: str) -> str:
    """Lower-case the literal letters of a regex, leaving escapes (\\W, \\S, \\B, \\D, \\N{...}) alone."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "\\" and i + 1 < n:
            if pattern[i + 1] == "N" and pattern[i + 2:i + 3] == "{":
                j = pattern.find("}", i)
                j = n - 1 if j < 0 else j
                out.append(pattern[i:j + 1])
                i = j + 1
                continue
            out.append(pattern[i:i + 2])
            i += 2
            continue
        out.append(ch.lower())
        i += 1
    return "".join(out)


# ───────────────────────────────────────── reading a regex's shape ───────────────────────────────────────


def _class_end(p: str, i: int) -> int:
    """Index of the ']' closing the character class that opens at p[i]."""
    j = i + 1
    if p[j:j + 1] == "^":
        j += 1
    if p[j:j + 1] == "]":
        j += 1
    while j < len(p):
        if p[j] == "\\":
            j += 2
            continue
        if p[j] == "]":
            return j
        j += 1
    return len(p) - 1


def _walk(p: str, start: int = 0) -> Iterator[tuple[int, str, int]]:
    """``(index, char, depth)`` for each character of regex ``p`` from ``start`` that is neither escaped
    nor inside a character class; ``depth`` is the number of groups open before the character."""
    depth, j = 0, start
    while j < len(p):
        ch = p[j]
        if ch == "\\":
            j += 2
            continue
        if ch == "[":
            j = _class_end(p, j) + 1
            continue
        yield j, ch, depth
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        j += 1


def _group_end(p: str, i: int) -> int:
    """Index of the ')' closing the group that opens at p[i]."""
    for j, ch, depth in _walk(p, i):
        if ch == ")" and depth == 1:
            return j
    return len(p) - 1


def _top_split(p: str) -> list[str]:
    """Split a regex at its top-level '|'."""
    parts, start = [], 0
    for j, ch, depth in _walk(p):
        if ch == "|" and depth == 0:
            parts.append(p[start:j])
            start = j + 1
    parts.append(p[start:])
    return parts


def _min_width(p: str) -> tuple[int, int]:
    """Shortest and longest match of a pattern (an ordering hint only)."""
    if _sre_parse is None:  # pragma: no cover
        return (len(p), len(p))
    try:
        lo, hi = _sre_parse.parse(p).getwidth()
    except (re.error, ValueError, TypeError, OverflowError):  # pragma: no cover - patterns were validated
        return (len(p), len(p))
    return (lo, min(hi, 10_000))


def _literal_prefix(p: str) -> tuple[str, str]:
    """Split a regex into its leading plain literal characters and the rest."""
    out: list[str] = []
    i, n = 0, len(p)
    while i < n:
        ch = p[i]
        if ch == "\\":
            nxt = p[i + 1:i + 2]
            if not nxt or nxt.isalnum():
                break
            width = 2
        elif ch in _SPECIAL:
            break
        else:
            nxt, width = ch, 1
        if p[i + width:i + width + 1] in _QUANT and p[i + width:i + width + 1] != "":
            break
        out.append(nxt)
        i += width
    return "".join(out), p[i:]


# ──────────────────────────────────── multiplying out leading alternatives ───────────────────────────────

Expansion = list[tuple[str, str]]  # (first literal character, rest of the pattern)


def _expand_each(variants: list[str], budget: list[int]) -> Expansion | None:
    """Expand every variant and concatenate; None as soon as one cannot be expanded."""
    out: Expansion = []
    for v in variants:
        e = _expand(v, budget)
        if e is None:
            return None
        out += e
    return out


def _expand(p: str, budget: list[int]) -> Expansion | None:
    """Rewrite a pattern as alternatives that each start with one literal character: ``[(char, rest)]``.

    Leading alternations, optional groups and small character classes are multiplied out, so the pattern
    can sit in its first character's bucket. None when the start is not literal (``\\w``, ``.``,
    look-arounds, repeated groups) or the expansion grows too large.
    """
    budget[0] -= 1
    if budget[0] < 0:
        return None
    alts = _top_split(p)
    if len(alts) > 1:
        return _expand_each(alts, budget)
    if not p:
        return None
    ch = p[0]
    if ch == "(":
        return _expand_group(p, budget)
    if ch == "[":
        return _expand_class(p, budget)
    if ch == "\\":
        nxt = p[1:2]
        if not nxt or nxt.isalnum():
            return None
        first, rest = nxt, p[2:]
    elif ch in _SPECIAL:
        return None
    else:
        first, rest = ch, p[1:]
    if rest[:1] == "?" and rest[1:2] not in ("?", "+"):
        tail = rest[1:]
        e = _expand(tail, budget) if tail else None
        if e is None:
            return None
        return [(first, tail), *e]
    if rest[:1] in _QUANT:
        return None
    return [(first, rest)]


def _expand_group(p: str, budget: list[int]) -> Expansion | None:
    """:func:`_expand` of a pattern that opens with a group: each alternative of the group (and, when
    the group is optional, what follows it) becomes a variant."""
    if p.startswith("(?:"):
        inner_start = 3
    elif p[1:2] == "?":
        return None  # look-around or inline flags
    else:
        inner_start = 1
    j = _group_end(p, 0)
    inner, after = p[inner_start:j], p[j + 1:]
    if after[:1] == "?" and after[1:2] not in ("?", "+"):
        variants = [a + after[1:] for a in _top_split(inner)] + [after[1:]]
    elif after[:1] in _QUANT:
        return None
    else:
        variants = [a + after for a in _top_split(inner)]
    return _expand_each(variants, budget)


def _expand_class(p: str, budget: list[int]) -> Expansion | None:
    """:func:`_expand` of a pattern that opens with a small character class: one variant per character."""
    j = _class_end(p, 0)
    body, after = p[1:j], p[j + 1:]
    if not body or body[0] == "^" or "\\" in body or after[:1] in _QUANT or len(body) > 12:
        return None
    if "-" in body.strip("-"):
        return None  # ranges: leave to the general bucket
    out: Expansion = []
    for c in dict.fromkeys(body):
        e = _expand(re.escape(c) + after, budget)
        if e is None:
            return None
        out += e
    return out


# ─────────────────────────────────────────────── the scanner ────────────────────────────────────────────

Trie = dict[str, Any]  # character -> child node; "" -> [((-min width, -max width), pattern index, rest)]


def build_scanner(entries: Sequence[tuple[str, Hashable]], file: str) -> Scanner:
    """Compile ``(pattern, target)`` pairs into one expression.

    Identical patterns are merged (one mention, several targets). Each pattern is multiplied out into
    alternatives that start with literal text, and the alternatives are arranged as a character trie,
    so at a word start the engine follows one path instead of trying every pattern. At a trie node,
    longer literal paths are tried before shorter ones, and among the rest the pattern with the longer
    minimum match first: at one position the more specific pattern wins. The expression has no groups
    (a match object with hundreds of groups is slow to build); :func:`resolve` finds which patterns
    matched from the matched text.
    """
    merged: dict[str, list[Hashable]] = {}
    for pattern, target in entries:
        low = lower_regex(pattern)
        bucket = merged.setdefault(low, [])
        if target not in bucket:
            bucket.append(target)
    patterns = list(merged)
    targets = tuple(tuple(merged[p]) for p in patterns)
    root: Trie = {}
    by_first: dict[str, list[int]] = {}
    for idx, p in enumerate(patterns):
        _add_to_trie(root, by_first, idx, p)
    body = _emit_trie(root) if root else r"(?!x)x"
    try:
        # The separator is consumed and the word only looked at, so every word start is tried once and a
        # match never hides the words after its first one (only [ignore] phrases hide, see tagging.py).
        regex = re.compile(SEPARATOR + "(?=(" + body + "))")
        singles = tuple(re.compile(r"(?<!\w)(?:" + p + r")(?!\w)") for p in patterns)
    except re.error as exc:  # pragma: no cover - each pattern compiled alone; report rather than crash
        raise ConfigError(f"the patterns do not compile together: {exc}", path=file) from None
    general = tuple(by_first.pop("", ()))
    contextual = frozenset(i for i, p in enumerate(patterns) if _CONTEXT_RE.search(p))
    return Scanner(regex, body, targets, singles, {k: tuple(v) + general for k, v in by_first.items()}, general,
                   contextual, {})


def _add_to_trie(root: Trie, by_first: dict[str, list[int]], idx: int, p: str) -> None:
    """File pattern ``idx`` under the literal beginnings of its alternatives (or in the general bucket)."""
    expansions = _expand(p, [200])
    if expansions is None:
        alternatives = [("", f"(?:{p})")]
        by_first.setdefault("", []).append(idx)
    else:
        alternatives = [_literal_prefix(re.escape(f) + r) for f, r in expansions]
        for f, _ in expansions:
            if idx not in by_first.setdefault(f, []):
                by_first[f].append(idx)
    for prefix, rest in alternatives:
        node = root
        for ch in prefix:
            node = node.setdefault(ch, {})
        w = _min_width(re.escape(prefix) + rest)
        node.setdefault("", []).append(((-w[0], -w[1]), idx, rest + r"(?!\w)"))


def _emit_trie(node: Trie) -> str:
    parts = []
    for ch in sorted((k for k in node if k), key=lambda c: (_FIRST_ORDER.get(c, 99), c)):
        child = node[ch]
        chain = [ch]
        while len(child) == 1 and "" not in child:  # compress single-child paths
            (only,) = child
            chain.append(only)
            child = child[only]
        parts.append("".join(re.escape(c) for c in chain) + _emit_trie(child))
    parts += [alt for _, _, alt in sorted(node.get("", ()))]
    return parts[0] if len(parts) == 1 else "(?:" + "|".join(parts) + ")"


# ──────────────────────────────────────── which patterns matched ────────────────────────────────────────


def resolve(scanner: Scanner, low: str, start: int, end: int) -> tuple[int, ...]:
    """The patterns that match exactly ``low[start:end]`` where the scan found a match there.

    A pattern without look-arounds that fully matches the text matches it in place too; only patterns
    with look-arounds are re-checked against the surrounding text."""
    entry = scanner.cache.get(low[start:end])
    if entry is None:
        entry = _candidates(scanner, low[start:end])
    fixed, contextual = entry
    if not contextual:
        return fixed
    verified = [i for i in contextual if _matches_at(scanner.singles[i], low, start, end)]
    return fixed + tuple(verified) if (fixed or verified) else contextual


def _candidates(scanner: Scanner, text: str) -> Candidates:
    pool = scanner.by_first.get(text[:1], scanner.general)
    hits = [i for i in pool if scanner.singles[i].fullmatch(text)]
    entry = Candidates(tuple(i for i in hits if i not in scanner.contextual),
                       tuple(i for i in hits if i in scanner.contextual))
    if len(scanner.cache) < _CACHE_LIMIT:
        scanner.cache[text] = entry
    return entry


def _matches_at(rx: re.Pattern[str], low: str, start: int, end: int) -> bool:
    m = rx.match(low, start)
    return m is not None and m.end() == end
