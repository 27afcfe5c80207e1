"""A PubMed-like query matcher: PubMed search syntax evaluated over a small set of records.

Owns what the E-utilities stand-in (:mod:`monitor.standin`) and ``bench/query_recall.py`` need to answer a
real PubMed term the way PubMed would, without PubMed:

- **Syntax**: ``AND``/``OR``/``NOT`` in capitals, evaluated left to right without precedence (as PubMed
  does), ``( … )`` groups, adjacent terms ANDed, ``"quoted phrases"``, unquoted words before a tag taken as
  one phrase (``gut microbiome[tiab]``), ``stem*`` truncation, proximity ``"a b"[tiab:~N]``.
- **Fields**: ``[tiab]`` (title, abstract and author keywords), ``[ti]``, ``[ab]``, ``[ot]``, ``[mh]``
  (MeSH descriptor names; *not exploded*: no MeSH tree here), ``[mh:noexp]``, ``[majr]``, ``[pt]``,
  ``[la]``, ``[tw]``/``[all]`` (text plus MeSH), ``[uid]``/``[pmid]``. An unknown tag is reported as
  ``FieldNotFound`` and searched in all fields, as PubMed does. Known tags this module cannot evaluate
  (dates, authors, journals …) raise :class:`Unsupported` rather than answer wrongly.
- **Words**: case and accents folded; hyphens, apostrophes and other punctuation separate words
  (``gut-skin axis`` = ``gut skin axis``); no stemming, no automatic term mapping.
- **The phrase index** (:class:`PhraseIndex`): phrases listed as unknown behave as PubMed's do when a
  phrase is not in its index (GUIDE §6): a multi-word phrase in a text field is broken into its words,
  ANDed (broader than written), with a ``QuotedPhraseNotFound`` warning; a hyphenated phrase, a single
  word or a MeSH/publication-type value that is unknown finds nothing, with a ``PhraseNotFound`` error.
  Proximity searches do not use the phrase index. A truncated stem with more variants in the records
  than ``wildcard_cap`` uses only the first ones, with PubMed's "Wildcard search for … used only the first
  N variations" message.

Shapes of NCBI's answers: a known term is translated quoted and lower-cased (``"biopython"[All Fields]``,
``tests/data/esearch/esearch1.xml``); an unknown one is kept as written in parentheses with a bare
``PhraseNotFound`` (``(abcXYZ[All Fields])``, ``esearch8.xml``, 2026: reproduced byte for byte).
``QuotedPhraseNotFound`` carries the quoted phrase (a live 2026 capture quoted in a public client's tests
shows ``"qzxwvunonsenseterm"``); older responses appended the field (``"qwerty asdfg"[All Fields]``) and
translated the broken phrase as its words ANDed (``(qwerty[All Fields] AND asdfg[All Fields])``).
Guess: the modern forms (quotes, no field; words quoted and lower-cased) are used here.

Nothing here imports the rest of the project: the stand-in must stay an independent emulation of NCBI.
"""

from __future__ import annotations

import bisect
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

# Field tag (lower case, as written) -> canonical key.
FIELD_ALIASES: dict[str, str] = {
    "tiab": "tiab", "title/abstract": "tiab",
    "ti": "ti", "title": "ti",
    "ab": "ab", "abstract": "ab",
    "ot": "ot", "other term": "ot", "other terms": "ot",
    "mh": "mh", "mesh": "mh", "mesh terms": "mh",
    "mh:noexp": "mh", "mesh:noexp": "mh", "mesh terms:noexp": "mh",
    "majr": "majr", "mesh major topic": "majr",
    "pt": "pt", "publication type": "pt",
    "la": "la", "language": "la",
    "tw": "tw", "text word": "tw", "text words": "tw",
    "all": "all", "all fields": "all",
    "uid": "uid", "pmid": "uid",
}
# How QueryTranslation names each field.
FIELD_NAMES: dict[str, str] = {
    "tiab": "Title/Abstract", "ti": "Title", "ab": "Abstract", "ot": "Other Term", "mh": "MeSH Terms",
    "majr": "MeSH Major Topic", "pt": "Publication Type", "la": "Language", "tw": "Text Word",
    "all": "All Fields", "uid": "UID",
}
# Real PubMed tags this matcher does not evaluate: a term using one gets a loud error, not a wrong answer.
UNSUPPORTED_FIELDS = frozenset({
    "dp", "pdat", "edat", "mhda", "crdt", "lr", "dcom", "au", "1au", "lastau", "fau", "ad", "ta", "jour",
    "vi", "ip", "pg", "sh", "nm", "rn", "gr", "si", "pmcid", "aid", "lid", "book", "cois", "filter", "sb",
    "ps", "pa", "cn", "ed", "ir", "fir", "is", "ppdat", "epdat", "ec", "rdn", "sn",
})
PROXIMITY_FIELDS = frozenset({"tiab", "ti"})
TEXT_FIELDS = frozenset({"tiab", "ti", "ab", "ot", "tw", "all"})
DEFAULT_WILDCARD_CAP = 600
_WORD = re.compile(r"[0-9a-z\u00b5\u00df-\uffff]+")
_OPERATORS = frozenset({"AND", "OR", "NOT"})


class QuerySyntaxError(ValueError):
    """A term PubMed itself could not run (unbalanced parentheses, a dangling operator …)."""


class Unsupported(ValueError):
    """A term using PubMed syntax this matcher does not evaluate (so it cannot answer faithfully)."""


# --- records and the index -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Doc:
    """What a search can see of one record."""

    pmid: str
    title: str = ""
    abstract: str = ""
    mesh: tuple[str, ...] = ()  # descriptor names ("Dermatitis, Atopic"); "X / qualifier" is cut at " / "
    major: tuple[str, ...] = ()  # descriptors marked as major topics
    keywords: tuple[str, ...] = ()
    pub_types: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()  # "eng" or "English"


@dataclass(frozen=True, slots=True)
class PhraseIndex:
    """Which phrases PubMed's phrase index does *not* know (compared case-insensitively, whitespace
    collapsed), and how many variants of a truncated stem are searched."""

    unknown: frozenset[str] = frozenset()
    wildcard_cap: int = DEFAULT_WILDCARD_CAP

    @classmethod
    def without(cls, phrases: Iterable[str], wildcard_cap: int = DEFAULT_WILDCARD_CAP) -> PhraseIndex:
        return cls(frozenset(normalize(p) for p in phrases), wildcard_cap)

    def knows(self, text: str) -> bool:
        return normalize(text) not in self.unknown


def normalize(text: str) -> str:
    """A phrase as the phrase index compares it: lower case, quotes and outer blanks removed, blanks collapsed."""
    return " ".join(text.strip().strip('"').lower().split())


def fold(text: str) -> str:
    """Lower case without accents (PubMed searches are case- and accent-insensitive)."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def words(text: str) -> list[str]:
    """The searchable words of a text: folded, split at anything that is not a letter or digit."""
    return _WORD.findall(fold(text))


# --- the query tree -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Term:
    """One search term: ``text`` as written (without quotes), its field key (``None``: untagged), whether it
    was quoted, the proximity distance of ``[tiab:~N]``, and the tag exactly as written."""

    text: str
    field: str | None
    quoted: bool = False
    proximity: int | None = None
    tag: str | None = None


@dataclass(frozen=True, slots=True)
class Group:
    """Operands combined left to right: ``ops[i]`` joins the result so far with ``items[i + 1]``."""

    items: tuple[Node, ...]
    ops: tuple[str, ...]
    parenthesised: bool = False


Node = Term | Group


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "(" ")" "op" "phrase" "word"
    text: str
    tag: str | None = None


def tokenize(term: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(term)
    while i < n:
        c = term[i]
        if c.isspace():
            i += 1
        elif c in "()":
            tokens.append(_Token(c, c))
            i += 1
        elif c == '"':
            end = term.find('"', i + 1)
            if end < 0:
                raise QuerySyntaxError("unmatched double quote")
            text = term[i + 1:end]
            tag, i = _read_tag(term, end + 1)
            tokens.append(_Token("phrase", text, tag))
        else:
            j = i
            while j < n and not term[j].isspace() and term[j] not in '()"[':
                j += 1
            text = term[i:j]
            tag, i = _read_tag(term, j)
            if not text:
                raise QuerySyntaxError(f"a field tag without a term at {term[j:i]!r}")
            kind = "op" if text in _OPERATORS and tag is None else "word"
            tokens.append(_Token(kind, text, tag))
    return tokens


def _read_tag(term: str, i: int) -> tuple[str | None, int]:
    j = i
    while j < len(term) and term[j] == " ":
        j += 1
    if j < len(term) and term[j] == "[":
        end = term.find("]", j)
        if end < 0:
            raise QuerySyntaxError("unclosed '['")
        return term[j + 1:end], end + 1
    return None, i


def parse(term: str) -> Group:
    """The query tree of ``term``. Raises :class:`QuerySyntaxError`."""
    tokens = _merge_words(tokenize(term))
    group, pos = _parse_group(tokens, 0, parenthesised=False)
    if pos != len(tokens):
        raise QuerySyntaxError("a ')' without a matching '('")
    return group


def _merge_words(tokens: list[_Token]) -> list[_Token]:
    """Untagged words directly before a tagged word form one phrase with that tag (``lewy body[tiab]``)."""
    out: list[_Token] = []
    run: list[_Token] = []
    for tok in tokens:
        if tok.kind == "word" and tok.tag is None:
            run.append(tok)
            continue
        if tok.kind == "word" and run:
            out.append(_Token("word", " ".join(t.text for t in run) + " " + tok.text, tok.tag))
        else:
            out.extend(run)
            out.append(tok)
        run = []
    out.extend(run)
    return out


def _parse_group(tokens: list[_Token], pos: int, *, parenthesised: bool) -> tuple[Group, int]:
    items: list[Node] = []
    ops: list[str] = []
    expect_operand = True
    while pos < len(tokens):
        tok = tokens[pos]
        if tok.kind == ")":
            if not parenthesised:
                raise QuerySyntaxError("a ')' without a matching '('")
            break
        if tok.kind == "op":
            if expect_operand:
                raise QuerySyntaxError(f"{tok.text} without a term before it")
            ops.append(tok.text)
            expect_operand = True
            pos += 1
            continue
        if not expect_operand:
            ops.append("AND")  # adjacent terms: PubMed ANDs them
        if tok.kind == "(":
            inner, pos = _parse_group(tokens, pos + 1, parenthesised=True)
            if pos >= len(tokens):
                raise QuerySyntaxError("an unclosed '('")
            items.append(inner)
        else:
            items.append(_term(tok))
        pos += 1
        expect_operand = False
    if expect_operand:
        raise QuerySyntaxError("an empty group or a dangling operator")
    return Group(tuple(items), tuple(ops), parenthesised), pos


def _term(tok: _Token) -> Term:
    if tok.tag is None:
        return Term(tok.text, None, quoted=tok.kind == "phrase")
    raw = tok.tag.strip().lower()
    proximity: int | None = None
    match = re.fullmatch(r"(.+?)\s*:\s*~\s*(\d+)", raw)
    if match:
        raw, proximity = match.group(1), int(match.group(2))
    key = FIELD_ALIASES.get(raw)
    if key is None and raw in UNSUPPORTED_FIELDS:
        raise Unsupported(f"field [{tok.tag}] is real PubMed syntax the matcher does not evaluate")
    if proximity is not None and key not in PROXIMITY_FIELDS:
        proximity = None  # PubMed: proximity only in [ti] and [tiab]
    if proximity is not None and "*" in tok.text:
        proximity = None  # PubMed: a wildcard inside a proximity search turns it into a phrase search
    return Term(tok.text, key if key is not None else "?" + raw, quoted=tok.kind == "phrase",
                proximity=proximity, tag=tok.tag)


# --- evaluation -----------------------------------------------------------------------------------------


@dataclass(slots=True)
class Outcome:
    """One search: matching PMIDs (in record order), PubMed's QueryTranslation, ErrorList and WarningList."""

    ids: list[str]
    translation: str
    errors: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Seq:
    kind: str  # "ti" "ab" "ot" "mh"
    words: tuple[str, ...]


class Matcher:
    """Search ``docs`` with PubMed syntax. Build once, search many times (the word index is kept)."""

    def __init__(self, docs: Iterable[Doc], index: PhraseIndex | None = None) -> None:
        self.docs = list(docs)
        self.index = index or PhraseIndex()
        self._seqs: list[list[_Seq]] = []
        self._postings: dict[str, dict[int, list[tuple[int, int]]]] = {}
        self._mesh: list[set[str]] = []
        self._major: list[set[str]] = []
        for d, doc in enumerate(self.docs):
            seqs = [_Seq("ti", tuple(words(doc.title))), _Seq("ab", tuple(words(doc.abstract)))]
            seqs += [_Seq("ot", tuple(words(k))) for k in doc.keywords]
            heads = [_heading(m) for m in doc.mesh]
            seqs += [_Seq("mh", tuple(words(h))) for h in heads]
            self._seqs.append(seqs)
            for s, seq in enumerate(seqs):
                for p, word in enumerate(seq.words):
                    self._postings.setdefault(word, {}).setdefault(d, []).append((s, p))
            self._mesh.append({normalize(h) for h in heads})
            self._major.append({normalize(_heading(m)) for m in doc.major})
        self._vocabulary = sorted(self._postings)

    def search(self, term: str) -> Outcome:
        """Evaluate ``term``. Raises :class:`QuerySyntaxError` or :class:`Unsupported`."""
        tree = parse(term)
        run = _Run(self)
        hits = run.group(tree)
        ids = [doc.pmid for d, doc in enumerate(self.docs) if d in hits]
        return Outcome(ids, run.render(tree), run.errors, run.warnings)

    # -- term matching (called by _Run) --

    def variants(self, stem: str) -> list[str]:
        """Every indexed word starting with ``stem``, alphabetically."""
        start = bisect.bisect_left(self._vocabulary, stem)
        out: list[str] = []
        for word in self._vocabulary[start:]:
            if not word.startswith(stem):
                break
            out.append(word)
        return out

    def docs_with(self, word_options: Sequence[str]) -> set[int]:
        found: set[int] = set()
        for word in word_options:
            found.update(self._postings.get(word, {}))
        return found

    def positions(self, d: int, word_options: Sequence[str], kinds: frozenset[str]) -> list[tuple[int, int]]:
        seqs = self._seqs[d]
        return sorted((s, p) for w in word_options for s, p in self._postings.get(w, {}).get(d, ())
                      if seqs[s].kind in kinds)

    def heading_docs(self, text: str, major: bool) -> set[int]:
        wanted = normalize(text)
        table = self._major if major else self._mesh
        if wanted.endswith("*"):
            stem = wanted[:-1]
            return {d for d, heads in enumerate(table) if any(h.startswith(stem) for h in heads)}
        return {d for d, heads in enumerate(table) if wanted in heads}

    def attribute_docs(self, key: str, text: str) -> set[int]:
        wanted = normalize(text)
        if key == "uid":
            return {d for d, doc in enumerate(self.docs) if doc.pmid == wanted}
        if key == "pt":
            return {d for d, doc in enumerate(self.docs) if wanted in {normalize(p) for p in doc.pub_types}}
        languages = {wanted, _LANGUAGE_CODES.get(wanted, wanted)}
        return {d for d, doc in enumerate(self.docs)
                if {normalize(x) for x in doc.languages} & languages}


_LANGUAGE_CODES = {"english": "eng", "eng": "english", "french": "fre", "fre": "french", "german": "ger",
                   "ger": "german", "spanish": "spa", "spa": "spanish", "chinese": "chi", "chi": "chinese"}
_KINDS = {"tiab": frozenset({"ti", "ab", "ot"}), "ti": frozenset({"ti"}), "ab": frozenset({"ab"}),
          "ot": frozenset({"ot"}), "tw": frozenset({"ti", "ab", "ot", "mh"}),
          "all": frozenset({"ti", "ab", "ot", "mh"})}


def _heading(mesh: str) -> str:
    return mesh.split(" / ")[0].strip().lstrip("*")


class _Run:
    """One evaluation: the hits of each node, plus the messages PubMed would give along the way."""

    def __init__(self, matcher: Matcher) -> None:
        self.m = matcher
        self.errors: list[tuple[str, str]] = []
        self.warnings: list[tuple[str, str]] = []
        self._broken: set[int] = set()  # ids of Terms searched word by word (phrase not in the index)
        self._missing: set[int] = set()  # ids of Terms PubMed does not know at all (PhraseNotFound)
        self._everything = set(range(len(matcher.docs)))

    def group(self, group: Group) -> set[int]:
        result = self.node(group.items[0])
        for op, item in zip(group.ops, group.items[1:]):
            other = self.node(item)
            if op == "AND":
                result &= other
            elif op == "OR":
                result |= other
            else:
                result -= other
        return result

    def node(self, node: Node) -> set[int]:
        return self.group(node) if isinstance(node, Group) else self.term(node)

    def term(self, t: Term) -> set[int]:
        key = t.field or "all"
        if key.startswith("?"):
            self._note(self.errors, "FieldNotFound", key[1:])
            key = "all"
        if key in ("mh", "majr", "pt", "la", "uid"):
            if not self.m.index.knows(t.text) and key != "uid":
                self._note(self.errors, "PhraseNotFound", t.text)
                self._missing.add(id(t))
                return set()
            if key in ("mh", "majr"):
                return self.m.heading_docs(t.text, major=key == "majr")
            return self.m.attribute_docs(key, t.text)
        terms = words(t.text)
        if terms and t.text.rstrip().endswith("*"):
            terms[-1] += "*"  # truncation applies to the last word of a phrase
        if not terms:
            return set()
        kinds = _KINDS[key]
        if t.proximity is not None:
            return self._phrase(terms, kinds, t.proximity)
        multi = len(terms) > 1
        if self.m.index.knows(t.text):
            return self._phrase(terms, kinds, None)
        if not multi or "-" in t.text:
            # A single unknown word, or a hyphenated phrase the index lacks: PubMed finds nothing.
            self._note(self.errors, "PhraseNotFound", t.text)
            self._missing.add(id(t))
            return set()
        self._note(self.warnings, "QuotedPhraseNotFound", f'"{t.text}"')
        self._broken.add(id(t))
        hits = set(self._everything)
        for word in terms:
            hits &= self._phrase([word], kinds, None)
        return hits

    def _phrase(self, terms: list[str], kinds: frozenset[str], proximity: int | None) -> set[int]:
        options = [self._expand(w) for w in terms]
        candidates = self.m.docs_with(options[0])
        for opts in options[1:]:
            candidates &= self.m.docs_with(opts)
        hits: set[int] = set()
        for d in candidates:
            spots = [self.m.positions(d, opts, kinds) for opts in options]
            if _adjacent(spots) if proximity is None else _near(spots, proximity):
                hits.add(d)
        return hits

    def _expand(self, word: str) -> list[str]:
        if not word.endswith("*"):
            return [word]
        stem = word[:-1]
        found = self.m.variants(stem)
        cap = self.m.index.wildcard_cap
        if len(found) > cap:
            self._note(self.warnings, "OutputMessage",
                       f"Wildcard search for '{stem}*' used only the first {cap} variations. "
                       "Lengthen root word to search for all endings.")
            found = found[:cap]
        return found

    def _note(self, where: list[tuple[str, str]], kind: str, text: str) -> None:
        if (kind, text) not in where:
            where.append((kind, text))

    # -- QueryTranslation --

    def render(self, node: Node) -> str:
        if isinstance(node, Group):
            parts = [self.render(node.items[0])]
            for op, item in zip(node.ops, node.items[1:]):
                parts.append(f"{op} {self.render(item)}")
            text = " ".join(parts)
            return f"({text})" if node.parenthesised else text
        key = node.field or "all"
        name = FIELD_NAMES.get(key, "All Fields")
        if node.proximity is not None:
            return f'"{fold(node.text)}"[{name}:~{node.proximity}]'
        if id(node) in self._missing:
            # As written, unquoted, in parentheses: tests/data/esearch/esearch8.xml has "(abcXYZ[All Fields])".
            return f"({node.text}[{name}])"
        if id(node) in self._broken:
            return "(" + " AND ".join(f'"{w}"[{name}]' for w in words(node.text)) + ")"
        return f'"{fold(node.text)}"[{name}]'


def _adjacent(spots: list[list[tuple[int, int]]]) -> bool:
    """Some occurrence of word 1 is followed by word 2, 3 … in the same sequence."""
    later = [set(s) for s in spots[1:]]
    return any(all((seq, pos + i + 1) in later[i] for i in range(len(later))) for seq, pos in spots[0])


def _near(spots: list[list[tuple[int, int]]], distance: int) -> bool:
    """All words within one sequence, in any order, with at most ``distance`` other words in between."""
    seqs = set.intersection(*({s for s, _ in spot} for spot in spots))
    for seq in seqs:
        lists = [[p for s, p in spot if s == seq] for spot in spots]
        if _window_fits(lists, distance):
            return True
    return False


def _window_fits(lists: list[list[int]], distance: int) -> bool:
    width = distance + len(lists)  # k words with at most `distance` others between them span k + distance
    merged = sorted((p, i) for i, ps in enumerate(lists) for p in ps)
    for start, _ in merged:
        seen = {i for p, i in merged if start <= p < start + width}
        if len(seen) == len(lists):
            return True
    return False
