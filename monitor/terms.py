"""PubMed term text: named blocks, where a phrase sits in a term, fallbacks and suggested fixes.

Pure functions of strings, no I/O. :mod:`monitor.config` expands ``{block}`` references with
:func:`resolve_blocks` and :func:`expand`; :mod:`monitor.cycle` and :mod:`monitor.workbench` use
:func:`apply_fallbacks` when NCBI reports a phrase it does not know, and :func:`fixes` to say what to try.

What a term is made of here is deliberately shallow: *atoms* (a quoted phrase or a word, with the field tag
written after it) between parentheses and operators. That is all a fallback or a fix needs: which piece of
the text NCBI complained about, and with which field tag it was written.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

# ErrorList/WarningList entries after which NCBI ran a broader search than the one written.
DEGRADING = frozenset(
    {"PhraseNotFound", "FieldNotFound", "QuotedPhraseNotFound", "PhraseIgnored", "QuotedPhraseIgnored"}
)
# Of those, the ones a configured fallback (a replacement for one phrase) can repair.
PHRASE_PROBLEMS = frozenset({"PhraseNotFound", "QuotedPhraseNotFound", "QuotedPhraseIgnored", "PhraseIgnored"})
BLOCK_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_REFERENCE = re.compile(r"\{([^{}]*)\}")
_TEXT_TAGS = frozenset({"tiab", "title/abstract", "ti", "title", "tw", "text word", "all", "all fields"})
_PROXIMITY_TAGS = {"tiab": "tiab", "title/abstract": "tiab", "ti": "ti", "title": "ti"}
MESH_BROWSER = "https://meshb.nlm.nih.gov/search?searchType=allWords&q="


class TermError(ValueError):
    """A term or block that cannot be expanded; ``block`` names the block at fault (``None``: the term)."""

    def __init__(self, message: str, block: str | None = None) -> None:
        self.block = block
        super().__init__(message)


# --- blocks ---------------------------------------------------------------------------------------------


def resolve_blocks(raw: Mapping[str, str]) -> dict[str, str]:
    """Every block with the references inside it expanded. Raises :class:`TermError` naming the block
    for a bad name, an unknown reference, a cycle or unbalanced parentheses/quotes."""
    for name in raw:
        if not BLOCK_NAME_RE.match(name):
            raise TermError(f"block names are lowercase letters, digits and '_' (starting with a letter), "
                            f"not {name!r}", block=name)
    resolved: dict[str, str] = {}

    def visit(name: str, chain: tuple[str, ...]) -> str:
        if name in resolved:
            return resolved[name]
        if name in chain:
            loop = " -> ".join((*chain[chain.index(name):], name))
            raise TermError(f"blocks refer to each other in a cycle: {loop}", block=chain[0])
        text = raw[name]
        problem = balance_problem(text)
        if problem:
            raise TermError(problem, block=name)

        def inner(ref: str) -> str:
            if ref not in raw:
                raise TermError(_unknown(ref, raw), block=name)
            return visit(ref, (*chain, name))

        resolved[name] = " ".join(_substitute(text, inner, block=name).split())
        return resolved[name]

    for name in raw:
        visit(name, ())
    return resolved


def expand(text: str, blocks: Mapping[str, str]) -> str:
    """``text`` with every ``{name}`` replaced by ``(block text)``, whitespace collapsed. Raises
    :class:`TermError` for an unknown block, a stray brace or unbalanced parentheses/quotes afterwards."""

    def lookup(ref: str) -> str:
        if ref not in blocks:
            raise TermError(_unknown(ref, blocks))
        return blocks[ref]

    out = " ".join(_substitute(text, lookup, block=None).split())
    problem = balance_problem(out)
    if problem:
        raise TermError(problem + (" (after expanding blocks)" if out != " ".join(text.split()) else ""))
    return out


def references(text: str) -> tuple[str, ...]:
    """The block names ``text`` refers to, in order of first use."""
    found = [m.group(1).strip() for m in _REFERENCE.finditer(_blank_quotes(text))]
    return tuple(dict.fromkeys(found))


def _substitute(text: str, lookup: Callable[[str], str], *, block: str | None) -> str:
    outside = _blank_quotes(text)
    pieces: list[str] = []
    last = 0
    for match in _REFERENCE.finditer(outside):
        ref = match.group(1).strip()
        if not BLOCK_NAME_RE.match(ref):
            raise TermError(f"{match.group(0)!r} is not a block reference: write {{name}} with a block name of "
                            "lowercase letters, digits and '_'", block=block)
        pieces.append(text[last:match.start()])
        pieces.append(f"({lookup(ref)})")
        last = match.end()
    pieces.append(text[last:])
    result = "".join(pieces)
    stray = next((c for c in _blank_quotes(result) if c in "{}"), None)
    if stray:
        raise TermError(f"has a stray {stray!r} (block references look like {{skin_conditions}})", block=block)
    return result


def _unknown(ref: str, known: Mapping[str, str]) -> str:
    names = ", ".join(sorted(known)) or "none: add a [blocks] table"
    return f"unknown block {{{ref}}} (known: {names})"


def _blank_quotes(text: str) -> str:
    """``text`` with everything inside double quotes replaced by spaces (same length, same positions)."""
    out: list[str] = []
    inside = False
    for c in text:
        if c == '"':
            inside = not inside
            out.append(c)
        else:
            out.append(" " if inside else c)
    return "".join(out)


def balance_problem(term: str) -> str | None:
    """Parentheses and double quotes that do not pair up: cheap local checks that catch typos before NCBI
    silently reinterprets the query."""
    depth = 0
    for ch in _blank_quotes(term):
        depth += ch == "("
        depth -= ch == ")"
        if depth < 0:
            return "has a ')' without a matching '('"
    if term.count('"') % 2:
        return "has an unmatched double quote"
    if depth:
        return "has an unclosed '('"
    return None


# --- atoms: where a phrase sits in a term ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Atom:
    """One searchable piece of a term: ``term[start:end]`` is it as written (quotes and tag included)."""

    start: int
    end: int
    text: str  # without quotes or tag
    quoted: bool
    tag: str | None  # the field tag as written, without brackets


def atoms(term: str) -> list[Atom]:
    """The phrases and words of ``term``, in order. Untagged words directly before a tagged one form one
    atom, as PubMed reads them (``gut microbiome[tiab]``); operators and parentheses are skipped."""
    found: list[Atom] = []
    run: list[Atom] = []
    i, n = 0, len(term)
    while i < n:
        c = term[i]
        if c.isspace() or c in "()":
            i += 1
            continue
        if c == '"':
            end = term.find('"', i + 1)
            end = n - 1 if end < 0 else end
            tag, stop = _tag_after(term, end + 1)
            found.extend(run)
            run = []
            found.append(Atom(i, stop, term[i + 1:end], True, tag))
            i = stop
            continue
        j = i
        while j < n and not term[j].isspace() and term[j] not in '()"[':
            j += 1
        word = term[i:j]
        tag, stop = _tag_after(term, j)
        if word in ("AND", "OR", "NOT") and tag is None:
            found.extend(run)
            run = []
        elif tag is None:
            run.append(Atom(i, stop, word, False, None))
        else:
            start = run[0].start if run else i
            found.append(Atom(start, stop, term[start:j], False, tag))
            run = []
        i = max(stop, i + 1)
    found.extend(run)
    return found


def _tag_after(term: str, i: int) -> tuple[str | None, int]:
    j = i
    while j < len(term) and term[j] == " ":
        j += 1
    if j < len(term) and term[j] == "[":
        end = term.find("]", j)
        if end >= 0:
            return term[j + 1:end], end + 1
    return None, i


def phrase_key(text: str) -> str:
    """How phrases are compared: the words only (case, accents, quotes, hyphens and a trailing ``[field]``
    ignored), so NCBI's ``"Gut-Skin axis"[All Fields]`` finds ``"gut-skin axis"[tiab]``."""
    text = re.sub(r"\[[^\]]*\]\s*$", "", text.strip())
    folded = "".join(c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c))
    return " ".join(re.findall(r"[0-9a-z\u00b5\u00df-\uffff]+\*?", folded))


def problem_phrase(text: str) -> str:
    """The phrase an ErrorList/WarningList entry names, without quotes or field: ``"a b"[All Fields]`` → ``a b``."""
    return re.sub(r"\[[^\]]*\]\s*$", "", text.strip()).strip().strip('"').strip()


def find_phrase(term: str, phrase: str) -> list[Atom]:
    key = phrase_key(phrase)
    return [a for a in atoms(term) if phrase_key(a.text) == key]


# --- fallbacks ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fallback:
    """A replacement for one phrase, used only when NCBI reports that phrase as not found. ``where`` is the
    config key that set it (``fallbacks."gut-brain-skin axis"``)."""

    phrase: str
    replacement: str
    where: str = ""


@dataclass(frozen=True, slots=True)
class UsedFallback:
    kind: str  # the ErrorList/WarningList entry that triggered it
    phrase: str
    replacement: str
    occurrences: int


@dataclass(frozen=True, slots=True)
class Rewrite:
    """What :func:`apply_fallbacks` made of a degraded term: the term to search instead, the fallbacks it
    used and the problems no fallback covers (the query stays refused while any are left)."""

    term: str
    used: tuple[UsedFallback, ...]
    uncovered: tuple[tuple[str, str], ...]

    @property
    def complete(self) -> bool:
        return bool(self.used) and not self.uncovered


def apply_fallbacks(term: str, problems: Iterable[tuple[str, str]], fallbacks: Sequence[Fallback]) -> Rewrite:
    """Replace every phrase NCBI reported as not found by its configured fallback (in parentheses, wherever
    it occurs in ``term``, whatever its field tag). A problem is covered when a fallback for its phrase was
    applied, or when its phrase lies inside a replaced phrase (NCBI also reports the single words of a
    phrase it broke up). Problems that are not about phrases (``FieldNotFound``) are never covered."""
    by_key = {phrase_key(f.phrase): f for f in fallbacks}
    spans: dict[tuple[int, int], str] = {}
    used: list[UsedFallback] = []
    replaced_keys: list[str] = []
    pending: list[tuple[str, str]] = []
    for kind, text in problems:
        if kind not in DEGRADING:
            continue
        key = phrase_key(problem_phrase(text))
        fallback = by_key.get(key) if kind in PHRASE_PROBLEMS else None
        hits = find_phrase(term, fallback.phrase) if fallback else []
        if fallback and hits:
            for atom in hits:
                spans[(atom.start, atom.end)] = f"({fallback.replacement})"
            if key not in replaced_keys:
                used.append(UsedFallback(kind, fallback.phrase, fallback.replacement, len(hits)))
                replaced_keys.append(key)
        else:
            pending.append((kind, text))
    uncovered = tuple(
        (kind, text) for kind, text in pending
        if kind not in PHRASE_PROBLEMS or not any(_inside(phrase_key(problem_phrase(text)), k) for k in replaced_keys)
    )
    new = term
    for (start, end), replacement in sorted(spans.items(), reverse=True):
        new = new[:start] + replacement + new[end:]
    return Rewrite(new, tuple(used), uncovered)


def _inside(part: str, whole: str) -> bool:
    a, b = part.split(), whole.split()
    return bool(a) and any(b[i:i + len(a)] == a for i in range(len(b) - len(a) + 1))


# --- fixes to suggest -----------------------------------------------------------------------------------


def fixes(kind: str, text: str, term: str, fallbacks: Sequence[Fallback] = ()) -> tuple[str, ...]:
    """What to try for one ErrorList/WarningList entry, most specific first (empty: nothing to fix).
    ``fallbacks``: the ones configured for the query, so an existing one is named instead of suggested."""
    if kind == "FieldNotFound":
        return (f"[{problem_phrase(text)}] is not a PubMed field tag: use one of [tiab] [ti] [ab] [mh] [majr] [pt] "
                "[la] [tw] (docs/queries.md, rule 2)",)
    if kind == "OutputMessage":
        return _output_fixes(text)
    if kind not in PHRASE_PROBLEMS:
        return ()
    phrase = problem_phrase(text)
    found = find_phrase(term, phrase)
    tag = next((a.tag for a in found if a.tag), None)
    if kind == "PhraseIgnored" and phrase.lower() in ("and", "or", "not"):
        return (f"{phrase!r} was read as a word and ignored: write the operator in capitals ({phrase.upper()})",)
    configured = next((f for f in fallbacks if phrase_key(f.phrase) == phrase_key(phrase)), None)
    return _phrase_fixes(phrase, tag, configured)


def _phrase_fixes(phrase: str, tag: str | None, configured: Fallback | None) -> tuple[str, ...]:
    plain = " ".join(re.sub(r"[-‐‑–]", " ", phrase.replace("*", "")).split())
    field = _PROXIMITY_TAGS.get((tag or "tiab").strip().lower())
    out: list[str] = []
    if configured is not None:
        out.append(f"a fallback is configured ({configured.where or 'fallbacks'}): ({configured.replacement}); "
                   "a run uses it once every other problem of the query is covered too")
    if len(plain.split()) > 1 and field:
        proximity = f'"{plain}"[{field}:~0]'
        out.append(f"proximity search (no phrase index needed; any order, adjacent): {proximity} "
                   f"(loosen with ~1, ~2)")
        if configured is None:
            out.append(f"or keep the phrase and add a fallback to queries.toml: [fallbacks] "
                       f"\"{phrase}\" = '{proximity}'")
    elif len(plain.split()) == 1:
        stem = plain[:max(4, len(plain) - 2)]
        out.append(f"check the spelling; a word PubMed does not index finds nothing: try the stem {stem}*[tiab] "
                   "or a synonym, or remove it")
    if "-" in phrase:
        out.append(f'without the hyphen: "{plain}"[{tag or "tiab"}] (a hyphenated phrase PubMed does not know '
                   "finds nothing)")
    else:
        for alt in _alternatives(phrase):
            out.append(f'an alternative phrase: "{alt}"[{tag or "tiab"}]')
    if tag is None or (tag.strip().lower() in _TEXT_TAGS or tag.strip().lower() in ("mh", "mesh", "majr")):
        query = "+".join(plain.split())
        out.append(f"a MeSH heading for the concept (look it up: {MESH_BROWSER}{query}) as \"Heading\"[mh], "
                   "next to the [tiab] words")
    return tuple(out)


def _alternatives(phrase: str) -> list[str]:
    """The singular or plural of the last word (the phrase index lists each form separately)."""
    words = phrase.split()
    if len(words) < 2:
        return []
    last = words[-1]
    if last.endswith(("ss", "is", "us", "*")):
        return []
    if last.endswith("s"):
        other = last[:-1]
    elif last[-1:].isalpha() and not last.endswith(("a", "y")):
        other = last + "s"
    else:
        return []
    return [" ".join([*words[:-1], other])]


def _output_fixes(text: str) -> tuple[str, ...]:
    match = re.search(r"Wildcard search for '([^']+)' used only the first (\d+) variations", text)
    if match:
        stem = match.group(1)
        return (f"{stem} has more than {match.group(2)} endings in PubMed and only the first ones were searched: "
                f"lengthen the stem, or list the words you mean ({stem.rstrip('*')}X[tiab] OR …)",)
    return ()


# --- one-line reports -----------------------------------------------------------------------------------


def describe_problems(problems: Iterable[tuple[str, str]]) -> str:
    return "; ".join(f"{kind} {text!r}" for kind, text in problems)


def refusal(problems: Sequence[tuple[str, str]], term: str) -> str:
    """Why a query is refused and the first thing to try, in one line (for the run report)."""
    named = describe_problems(problems)
    first = next((fixes(kind, text, term) for kind, text in problems if fixes(kind, text, term)), ())
    hint = f"; fix: {first[0]}" if first else ""
    return (f"NCBI would run a broader search than written ({named}); nothing stored{hint} "
            "(`monitor queries check` lists every fix)")


def fallback_note(used: Sequence[UsedFallback]) -> str:
    """What a run searched instead, in one line (for the run report of a query that still ran)."""
    parts = [f"{u.kind} {u.phrase!r}: searched ({u.replacement}) instead" for u in used]
    return "fallback used: " + "; ".join(parts)
