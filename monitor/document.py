"""The paper as the tagger reads it: one text cut into sentences, each with its section and role.

Owns :func:`build_document` (title, abstract sections and author keywords joined into one text; an
unlabelled abstract that carries its headings inline, "Background: …" or "METHODS\\n…", is split at them;
sections cut into sentences) and :func:`weigh_sentences` (each sentence's base weight from its section,
or, in an unstructured abstract, from its role: aim, background before the aim, first sentence,
conclusion, body). Pure.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from .cues import AIM, CONCLUSION, EXCLUSION, FUTURE
from .types import TagInput

__all__ = ["Document", "SentenceWeights", "build_document", "weigh_sentences"]

_HEADINGS = (
    r"background(?:\s*(?:&|and)\s*aims?)?|introduction|context|rationale|importance|aims?(?: of the study)?|"
    r"objectives?|purpose(?: of (?:the )?(?:review|study))?|goals?|hypothesis|methods?|methodology|"
    r"materials? and methods?|patients? and methods?|subjects and methods|study design|"
    r"design(?:,? setting,? and participants)?|setting|participants|interventions?|measurements?|"
    r"main outcome measures?|search (?:methods|strategy)|selection criteria|eligibility criteria|"
    r"data (?:collection and analysis|sources|extraction|synthesis)|study selection|results?|main results|"
    r"findings|recent findings|observations|case (?:summary|presentation|report|description)|"
    r"conclusions?(?: and relevance)?|authors.? conclusions|interpretation|discussion|summary|implications?|"
    r"limitations?|significance"
)
# A heading ("Background:", "(1) Methods.", "RESULTS" on a line of its own) at the start of a sentence.
_HEADING_TAIL = r"[ \t]*(?:\(\d\)[ \t]*)?(" + _HEADINGS + r")[ \t]*(?::|\.(?=\s)|\n|[ \t]+[-–—][ \t]+)[ \t\n]*"
_LEADING_HEADING = re.compile(_HEADING_TAIL)  # run on lower-cased text, at the start of each sentence
_LEADING_HEADING_START = re.compile(r"[ \t]*(?:\(\d\)[ \t]*)?[A-Za-z &]{3,40}[.:]")
# Between two sentences: a full stop (! ?) and the space after it, before a capital, digit or opening
# bracket or quote; or a line break and the space after it. The stop stays with its sentence.
_SENTENCE_END = re.compile(r"[.!?\n](?:(?<=\n)\s*|[ \t]+(?=[A-Z0-9(\[“\"']))")
_DASHES = {"\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2212": "-",
           "\u00a0": " ", "\u2009": " ", "\u202f": " ", "\u2019": "'"}
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

_SECTION_WEIGHT_KEY = {"title": "title", "keyword": "keyword", "OBJECTIVE": "objective", "METHODS": "methods",
                       "RESULTS": "results", "CONCLUSIONS": "conclusions", "BACKGROUND": "background"}
_ROLE_SOURCE = {role: f"abstract:{role}" for role in ("OBJECTIVE", "BACKGROUND", "CONCLUSIONS", "UNASSIGNED")}


@dataclass(frozen=True, slots=True)
class SentenceWeights:
    """Base weights of sentences, from the taxonomy's [scoring]: by section (title, keyword, NlmCategory)
    and, in unstructured abstracts, by role."""

    by_section: Mapping[str, float]
    aim: float
    before_aim: float
    first: float
    conclusion: float
    body: float

    @classmethod
    def of(cls, scoring: Mapping[str, float]) -> SentenceWeights:
        return cls({section: scoring[key] for section, key in _SECTION_WEIGHT_KEY.items()}, scoring["aim_sentence"],
                   scoring["before_aim"], scoring["first_sentence"], scoring["conclusion_sentence"],
                   scoring["body_sentence"])


@dataclass(slots=True)
class Document:
    """The joined text (Unicode dashes and spaces normalised), its lower-cased twin with the same offsets,
    and its sentences as columns: sentence ``i`` is ``text[starts[i]:ends[i]]``. The text starts with a
    newline, so every word has a separator before it.

    ``sections[i]`` is ``title``, ``keyword``, an NlmCategory (``OBJECTIVE``, ``METHODS`` …) or
    ``UNSTRUCTURED``; ``sources[i]`` is what evidence from the sentence says (``title``,
    ``abstract:METHODS``, ``abstract`` …; :func:`weigh_sentences` sets the role of an unstructured
    sentence); ``cues[i]`` are the cue bits the scan found in it, ``weights[i]`` its base weight and
    ``context[i]`` whether it is context rather than the paper's own work (background, or "further studies
    are needed"); the last three are filled in by the tagger. Columns rather than one object per sentence:
    a paper has a dozen sentences and building an object for each cost more than the rest of cutting them."""

    text: str
    low: str
    starts: list[int]
    ends: list[int]
    sections: list[str]
    sources: list[str]
    weights: list[float]
    cues: list[int]
    context: list[bool]
    own_cues: int = 0  # cue bits of the paper's own sentences (not context, not exclusion criteria)
    done_cues: int = 0  # the same without conclusion sentences: what the paper did, not what it suggests


def build_document(paper: TagInput) -> Document:
    """Join title, abstract sections and keywords; cut into sentences."""
    pieces: list[str] = ["\n"]
    doc = Document("", "", [], [], [], [], [], [], [])
    pos = 1
    title = paper.title
    if title:
        doc.starts.append(pos)
        doc.ends.append(pos + len(title))
        doc.sources.append("title")
        doc.sections.append("title")
        pieces += (title, "\n\n")
        pos += len(title) + 2
    for text, label, category in paper.abstract:
        if not text:
            continue
        _abstract_sentences(text, label, category, pos, doc)
        pieces += (text, "\n\n")
        pos += len(text) + 2
    for kw in paper.keywords:
        if kw.strip():
            doc.starts.append(pos)
            doc.ends.append(pos + len(kw))
            doc.sources.append("keyword")
            doc.sections.append("keyword")
            pieces += (kw, "\n\n")
            pos += len(kw) + 2
    joined = "".join(pieces)
    if not joined.isascii():
        for bad, good in _DASHES.items():
            if bad in joined:
                joined = joined.replace(bad, good)
    low = joined.lower()
    if len(low) != len(joined):  # a few Unicode capitals lower-case to two characters; keep offsets aligned
        low = joined.translate(_ASCII_LOWER)
    doc.text, doc.low = joined, low
    n = len(doc.starts)
    doc.weights = [0.0] * n
    doc.cues = [0] * n
    doc.context = [False] * n
    return doc


def _abstract_sentences(text: str, label: str | None, category: str | None, pos: int, doc: Document) -> None:
    """Cut one abstract section (at ``pos`` in the document) into sentences. An unlabelled section is
    split where a heading ("Background:", "METHODS\\n", "Aim. …") starts a sentence."""
    cat = _category_of(label, category)
    low_text = None
    if cat is not None or label:
        section, source = cat or "UNSTRUCTURED", f"abstract:{cat or 'UNASSIGNED'}"
    else:
        section, source = "UNSTRUCTURED", "abstract"
        if ":" in text or "\n" in text or _LEADING_HEADING_START.match(text):
            low_text = text.lower()
            if len(low_text) != len(text):
                low_text = text.translate(_ASCII_LOWER)
    # (the columns are appended to directly: this loop runs for every sentence of every paper)
    starts, ends, sources, sections = doc.starts, doc.ends, doc.sources, doc.sections
    s = 0
    if low_text is None:
        for stop, end in [m.span() for m in _SENTENCE_END.finditer(text, s)]:
            cut = stop if text[stop] == "\n" else stop + 1
            if cut > s:
                starts.append(pos + s)
                ends.append(pos + cut)
                sources.append(source)
                sections.append(section)
            s = end
    else:
        h = _LEADING_HEADING.match(low_text)
        if h:
            section, source, s = _heading_section(h)
        for m in _SENTENCE_END.finditer(text, s):
            cut = m.start() + (1 if text[m.start()] != "\n" else 0)
            if cut > s:
                starts.append(pos + s)
                ends.append(pos + cut)
                sources.append(source)
                sections.append(section)
            s = m.end()
            h = _LEADING_HEADING.match(low_text, s)
            if h:
                section, source, s = _heading_section(h)
    if s < len(text):
        starts.append(pos + s)
        ends.append(pos + len(text))
        sources.append(source)
        sections.append(section)


def _heading_section(h: re.Match[str]) -> tuple[str, str, int]:
    """Section, evidence source and where the text starts after an inline heading."""
    section = _category_of_label(h.group(1)) or "UNSTRUCTURED"
    source = f"abstract:{section}" if section != "UNSTRUCTURED" else "abstract"
    return section, source, h.end()


def _category_of(label: str | None, category: str | None) -> str | None:
    if category and category.upper() not in ("UNASSIGNED", "UNLABELLED"):
        return category.upper()
    return _category_of_label(label) if label else None


def _category_of_label(label: str) -> str | None:
    lab = label.lower()
    if any(k in lab for k in ("conclu", "interpretation", "implication", "significance")):
        return "CONCLUSIONS"
    if "summary" in lab:
        return "RESULTS" if "case" in lab else "CONCLUSIONS"
    if any(k in lab for k in ("result", "finding", "observation", "case")):
        return "RESULTS"
    if any(k in lab for k in ("aim", "objective", "purpose", "goal", "hypothes")):
        return "OBJECTIVE"
    if any(k in lab for k in ("method", "design", "setting", "participant", "patient", "subject", "intervention",
                              "measure", "search", "selection", "eligib", "data", "material")):
        return "METHODS"
    if any(k in lab for k in ("background", "introduction", "context", "rationale", "importance")):
        return "BACKGROUND"
    return None


def weigh_sentences(doc: Document, w: SentenceWeights) -> None:
    """Give each sentence its base weight and (in unstructured abstracts) its role as evidence source;
    set the document's ``own_cues`` and ``done_cues``.

    A sentence of a labelled section, the title or a keyword weighs what its section weighs (other
    sections: the body weight). A run of unstructured sentences is read as an abstract: the aim
    sentence, what comes before it (background), the first sentence, conclusion sentences, the body.
    Background sentences, and abstract sentences saying further studies are needed, are context.
    Needs the sentences' cue bits (the aim, conclusion and future-work cues)."""
    sections, sources = doc.sections, doc.sources
    own = done = 0
    i, n = 0, len(sections)
    while i < n:
        section = sections[i]
        j = i + 1
        if section == "UNSTRUCTURED":
            while j < n and sections[j] == "UNSTRUCTURED" and sources[j] == sources[i]:
                j += 1
            run_own, run_done = _weigh_unstructured(doc, i, j, w)
        else:
            while j < n and sections[j] == section:
                j += 1
            run_own, run_done = _weigh_labelled(doc, i, j, section, w)
        own, done = own | run_own, done | run_done
        i = j
    doc.own_cues, doc.done_cues = own, done


def _weigh_labelled(doc: Document, i: int, j: int, section: str, w: SentenceWeights) -> tuple[int, int]:
    """Weights and context of the run ``i:j`` of one labelled section (or the title, or keywords);
    returns the cue bits of its own sentences, and of those that are not conclusions."""
    cues, weights, context = doc.cues, doc.weights, doc.context
    run = 0
    for c in cues[i:j]:
        run |= c
    weight = w.by_section.get(section, w.body)
    if not run & (AIM | FUTURE | EXCLUSION):  # the common case: one weight, one role for the whole run
        weights[i:j] = [weight] * (j - i)
        if section == "BACKGROUND":
            context[i:j] = [True] * (j - i)
            return 0, 0
        return run, (run if section != "CONCLUSIONS" else 0)
    own = done = 0
    for k in range(i, j):
        c = cues[k]
        if section == "BACKGROUND" and c & AIM:
            weights[k], doc.sources[k] = w.aim, _ROLE_SOURCE["OBJECTIVE"]
        else:
            weights[k] = weight
            if section == "BACKGROUND" or (c & FUTURE and section != "title" and section != "keyword"):
                context[k] = True
                continue
        if not c & EXCLUSION:
            own |= c
            if section != "CONCLUSIONS":
                done |= c
    return own, done


def _weigh_unstructured(doc: Document, i: int, j: int, w: SentenceWeights) -> tuple[int, int]:
    """Roles in the run ``i:j`` of unstructured sentences (one abstract without section labels); returns
    the cue bits of its own sentences, and of those that are not conclusions."""
    sources, weights, cues, context = doc.sources, doc.weights, doc.cues, doc.context
    aim_at = None
    for k in range(i, j):
        if cues[k] & AIM:
            aim_at = k
            break
    if aim_at is not None and aim_at - i >= math.ceil(0.6 * (j - i)):
        aim_at = None  # a late "this article also reviews" does not make the abstract background
    own = done = 0
    for k in range(i, j):
        c = cues[k]
        if c & AIM:
            weights[k], sources[k] = w.aim, _ROLE_SOURCE["OBJECTIVE"]
        elif aim_at is not None and k < aim_at:
            weights[k], sources[k], context[k] = w.before_aim, _ROLE_SOURCE["BACKGROUND"], True
            continue
        elif k == i and j - i > 1:  # the first of several sentences introduces; a lone one is the paper
            weights[k], sources[k], context[k] = w.first, _ROLE_SOURCE["BACKGROUND"], True
            continue
        elif c & CONCLUSION:
            weights[k], sources[k] = w.conclusion, _ROLE_SOURCE["CONCLUSIONS"]
            if not c & (FUTURE | EXCLUSION):
                own |= c
            context[k] = bool(c & FUTURE)
            continue
        else:
            weights[k], sources[k] = w.body, _ROLE_SOURCE["UNASSIGNED"]
        if c & FUTURE:
            context[k] = True
        elif not c & EXCLUSION:
            own |= c
            done |= c
    return own, done
