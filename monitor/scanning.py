"""Scanning: one pass of the taxonomy's scanner over a paper's text (used by :mod:`monitor.tagging`).

Owns finding things in the text, not weighing them: :func:`scan` runs the one combined expression
(:mod:`monitor.patterns`) over the lower-cased document, sets each sentence's cue bits, notes where negated
words start, where combination words stand and the first word of each relevance vocabulary per sentence,
and keeps the tag matches (:class:`Match`) for the tagger to weigh. :func:`abbreviation_matches` adds the
mentions made through abbreviations the text defines ("fecal microbiota transplantation (FMT)" makes every
later "FMT" a mention). Pure.
"""

from __future__ import annotations

import bisect
import itertools
import re
from dataclasses import dataclass

from .cues import COMBINATION, DIET, GUT, GUT_WEAK, NEGATION, SKIN, SKIN_MICROBIOME
from .document import Document
from .patterns import resolve
from .taxonomy import PatternInfo, Rules, TagAction

__all__ = ["Match", "Scan", "abbreviation_matches", "scan"]

_VOCAB = SKIN | SKIN_MICROBIOME | GUT | GUT_WEAK | DIET
_VOCAB_BITS = (SKIN, SKIN_MICROBIOME, GUT, GUT_WEAK, DIET)
_BITS_OF = {sum(combo): combo for n in range(1, 6) for combo in itertools.combinations(_VOCAB_BITS, n)}
_POSITIONAL = NEGATION | COMBINATION  # cues whose position matters, not just their sentence
_ABBR_DEF = re.compile(r"\(\s*([A-Za-z][A-Za-z0-9-]*[A-Z][A-Za-z0-9-]*|[A-Z][A-Za-z0-9-]+)\s*\)")
_ABBR_MAX = 12  # longer bracketed words are not abbreviations
_ABBR_REACH = 80  # characters before "(ABBR)" searched for its long form


@dataclass(slots=True)
class Match:
    """Tag patterns matched at ``text[start:end]`` and the tags they mention."""

    start: int
    end: int
    actions: tuple[TagAction, ...]


@dataclass(slots=True)
class Scan:
    """What one pass of the scanner found: tag matches, where negated words start, where combination
    words are (by sentence), the first word of each relevance vocabulary in each sentence (by
    ``(vocabulary bit, sentence)``: its start and end) and every cue bit of the paper."""

    matches: list[Match]
    negated_at: set[int]
    combination_at: dict[int, list[int]]
    vocab_at: dict[tuple[int, int], tuple[int, int]]
    paper_cues: int


def scan(doc: Document, rules: Rules) -> Scan:
    """One pass over the text. Cue bits go to their sentence (one int per sentence); negation cues mark
    where a negated word starts; tag matches are kept for weighing once the sentence weights are known."""
    low, starts, sentence_cues = doc.low, doc.starts, doc.cues
    n_sent = len(starts)
    found = Scan([], set(), {}, {}, 0)
    matches, negated_at, vocab_at = found.matches, found.negated_at, found.vocab_at
    text_cache = rules.text_cache
    vocab_bits, bits_of, positional = _VOCAB, _BITS_OF, _POSITIONAL  # hot-loop constants as locals
    paper_cues = 0
    ignore_end = 0
    si = 0
    next_start = starts[1] if n_sent > 1 else len(low) + 1
    seen_vocab = 0
    for m in rules.scanner.regex.finditer(low):
        st, en = m.span(1)  # the separator was consumed; the word starts where the look-ahead does
        if st < ignore_end:
            continue  # inside an ignore phrase
        info = text_cache.get(low[st:en])
        if info is None:
            info = _text_info(rules, low, st, en)
        mask, actions, ignore = info
        if ignore:
            ignore_end = en
            continue
        if actions:
            mask |= _cues_under(rules, low, st, en)
        if st >= next_start:  # a later sentence
            si = max(0, bisect.bisect_right(starts, st) - 1)
            next_start = starts[si + 1] if si + 1 < n_sent else len(low) + 1
            seen_vocab = 0
        if mask:
            if mask & positional:
                _positional_cue(rules, found, low, si, st, en, mask)
            new_vocab = mask & vocab_bits & ~seen_vocab
            if new_vocab and st not in negated_at:
                for bit in bits_of[new_vocab]:
                    vocab_at[(bit, si)] = (st, en)
                seen_vocab |= new_vocab
            sentence_cues[si] |= mask
            paper_cues |= mask
        if actions:
            matches.append(Match(st, en, actions))
    found.paper_cues = paper_cues
    return found


def _cues_under(rules: Rules, low: str, start: int, end: int) -> int:
    """Cue bits of the longest cue or vocabulary word at ``start`` when a longer tag match won there
    ("Helicobacter" in "Helicobacter pylori eradication")."""
    cm = rules.cue_at.match(low, start)
    if cm is None or cm.end() == end:
        return 0
    shorter = rules.text_cache.get(low[start:cm.end()])
    if shorter is None:
        shorter = _text_info(rules, low, start, cm.end())
    return shorter.cues


def _positional_cue(rules: Rules, found: Scan, low: str, si: int, start: int, end: int, mask: int) -> None:
    """Record a combination word's position, or where the word a negation negates starts."""
    if mask & COMBINATION:
        found.combination_at.setdefault(si, []).append(start)
    if mask & NEGATION:
        fm = rules.negation_filler.match(low, end)
        found.negated_at.add(fm.end() if fm else end)


def _text_info(rules: Rules, low: str, start: int, end: int) -> PatternInfo:
    """Cue bits, tag actions and ignore flag of the patterns that matched ``low[start:end]``."""
    scanner = rules.scanner
    ids = resolve(scanner, low, start, end)
    info = rules.ids_cache.get(ids)
    if info is None:
        mask, ignore = 0, False
        actions: list[TagAction] = []
        for i in ids:
            part = rules.pattern_info[i]
            mask |= part.cues
            actions += part.actions
            ignore = ignore or part.ignore
        info = PatternInfo(0, (), True) if ignore else PatternInfo(mask, tuple(actions), False)
        rules.ids_cache[ids] = info
    entry = scanner.cache.get(low[start:end])
    if entry is not None and not entry.contextual and len(rules.text_cache) < 500_000:
        rules.text_cache[low[start:end]] = info  # no look-arounds: the text alone decides
    return info


def abbreviation_matches(doc: str, matches: list[Match], rules: Rules) -> list[Match]:
    """Mentions through abbreviations the text defines: "<term> (ABBR)" makes every "ABBR" that term."""
    if not matches:
        return []
    defined, def_spans = _abbreviation_definitions(doc, matches, rules)
    if not defined:
        return []
    taken = {m.start for m in matches}
    out = []
    for abbr, actions in defined.items():
        i = doc.find(abbr)
        while i >= 0:
            j = i + len(abbr)
            if doc[j:j + 1] == "s":
                j += 1
            before, after = doc[i - 1:i], doc[j:j + 1]
            if (i not in def_spans and i not in taken and not (before.isalnum() or before in "_-")
                    and not (after.isalnum() or after in "_-")):
                out.append(Match(i, j, actions))
            i = doc.find(abbr, i + 1)
    return out


def _abbreviation_definitions(doc: str, matches: list[Match],
                              rules: Rules) -> tuple[dict[str, tuple[TagAction, ...]], set[int]]:
    """Abbreviations defined right after a tag match ("atopic dermatitis (AD)"), or up to three words
    after one when the taxonomy lists the abbreviation for that tag; and where each definition is."""
    starts = [m.start for m in matches]
    defined: dict[str, tuple[TagAction, ...]] = {}
    def_spans: set[int] = set()
    for site in _definition_sites(doc, matches):
        m = _ABBR_DEF.match(doc, site)
        if m is None:
            continue
        abbr = m.group(1)
        if abbr in defined or len(abbr) > _ABBR_MAX:
            continue
        j = k = m.start()
        while k > 0 and doc[k - 1] in " \t":
            k -= 1
        found = [a for x in _matches_before(matches, starts, k) if x.end == k for a in x.actions]
        if not found:
            declared = rules.abbreviations.get(abbr) or rules.abbreviations.get(abbr[:-1] if abbr.endswith("s") else "")
            if declared:
                found = _declared_long_form(doc, matches, starts, j, declared)
        if found:
            defined[abbr] = tuple(found)
            def_spans.add(m.start(1))
    return defined, def_spans


def _definition_sites(doc: str, matches: list[Match]) -> list[int]:
    """Where a definition can attach to a match: every "(" from the end of a match to the reach of its
    start (brackets elsewhere, "(95% CI)", "(OR)", cannot define a tag's abbreviation), in text order."""
    sites: set[int] = set()
    for x in matches:
        limit = max(x.start + _ABBR_REACH, x.end) + 16  # a little beyond the reach: spaces before "("
        i = doc.find("(", x.end, limit)
        while i >= 0:
            sites.add(i)
            i = doc.find("(", i + 1, limit)
    return sorted(sites)


def _matches_before(matches: list[Match], starts: list[int], k: int) -> list[Match]:
    """The matches that start within reach before position ``k``, nearest first."""
    out = []
    i = bisect.bisect_left(starts, k) - 1
    while i >= 0 and starts[i] >= k - _ABBR_REACH:
        out.append(matches[i])
        i -= 1
    return out


def _declared_long_form(doc: str, matches: list[Match], starts: list[int], j: int,
                        declared: frozenset[str]) -> list[TagAction]:
    """A listed abbreviation may follow its long form at up to three words' distance (no full stop)."""
    for x in _matches_before(matches, starts, j):
        gap = doc[x.end:j]
        if x.end <= j and len(gap.split()) <= 3 and "." not in gap:
            found = [a for a in x.actions if a.tag_id in declared]
            if found:
                return found
    return []
