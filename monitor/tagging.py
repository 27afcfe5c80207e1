"""Tagging: the tagger that applies a compiled taxonomy (:mod:`monitor.taxonomy`) to one parsed paper.

Owns the tagging rules (:func:`tag`). Pure: no I/O, no database, no network, no randomness — the same
paper and taxonomy always give the same :class:`~monitor.types.Tagging`. The taxonomy's names
(:func:`load_taxonomy`, :class:`Taxonomy` …) are re-exported here for callers that import them from here.

How a paper is tagged
---------------------
1. The title, the abstract and the author keywords are joined into one document and cut into sentences
   (:mod:`monitor.document`). Abstract sections keep their NlmCategory; an unlabelled abstract that
   carries its headings inline ("Background: …", "METHODS\\n…") is split at them.
2. One regular expression, compiled once from every pattern of the taxonomy (:mod:`monitor.patterns`),
   runs over the lower-cased document (:func:`_scan`): tag patterns, sentence cues (aim, conclusion,
   future work, exclusion criteria, confounders, adverse events, negation, route of administration …),
   the relevance vocabularies and ignore phrases. Cues and vocabulary only mark their sentence; tag
   matches are weighed once every sentence's role is known.
3. Abbreviations defined in the text ("fecal microbiota transplantation (FMT)") make every later
   "FMT" a mention of the same term (:func:`_abbreviation_matches`).
4. Every mention earns the weight of where it is: title, MeSH (major > minor), keywords, or its
   abstract section (Objective/Methods/Results/Conclusions > Background). In an unstructured abstract the
   sentence's role decides: an aim sentence ("we aimed", "this review") counts most, sentences before it
   are background, a "we conclude" sentence counts as a conclusion. Modifiers (:func:`_mention_weight`):
   a negated mention ("without", "no history of"), one inside exclusion criteria, a confounder list or an
   adverse-event list earns nothing; "further studies are needed" earns less. ``weak`` names (bacterial
   genera) count only where the sentence says something was given, never as a microbiome-composition
   finding.
5. Per tag, the best mention of each sentence counts once; the sum must reach the tag's ``min_score``.
   ``generic`` mentions are dropped when a tag in ``yields_to`` is given (:func:`_decide`).
   ``combination_of`` tags (synbiotics) are also given when their components are given together in one
   sentence (:func:`_combinations`).
6. Designs: publication types first (they alone suffice), then MeSH and text.
7. ``gut_skin_relevant``: a skin-side score (conditions, skin vocabulary) and a gut-side score (gut
   vocabulary, oral diet/nutrition, gut-targeted interventions — nutrients only when taken orally, not
   topical use or blood levels (:func:`_gut_route`); an unqualified "microbiome" only if the paper never
   speaks of the skin microbiome) are each squashed to [0, 1) and multiplied; the product is ``relevance``.
"""

from __future__ import annotations

import bisect
import itertools
import math
import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from operator import attrgetter

from .cues import (
    ADVERSE,
    BLOOD,
    COMBINATION,
    COMPOSITION,
    CONFOUNDER,
    DIET,
    EXCLUSION,
    FUTURE,
    GENERIC,
    GUT,
    GUT_ALWAYS,
    GUT_NEVER,
    GUT_RULES,
    GUT_UNLESS_TOPICAL,
    GUT_WEAK,
    INTERVENTION,
    K_CONDITION,
    K_INTERVENTION,
    NEGATION,
    ORAL,
    SKIN,
    SKIN_MICROBIOME,
    STRONG,
    TOPICAL,
    WEAK,
)
from .document import Document, build_document, weigh_sentences
from .patterns import resolve
from .taxonomy import (
    DEFAULT_TAXONOMY,
    MeshInfo,
    PatternInfo,
    Rules,
    TagAction,
    TagDef,
    Taxonomy,
    load_taxonomy,
    parse_taxonomy,
)
from .types import Article, TagEvidence, Tagging, TagInput

__all__ = ["DEFAULT_TAXONOMY", "TagDef", "Taxonomy", "load_taxonomy", "parse_taxonomy", "tag"]

EVIDENCE_PER_TAG = 3  # strongest mentions kept as evidence for each tag (one per sentence)
EVIDENCE_PER_SIDE = 2  # strongest skin-side and gut-side mentions kept as relevance evidence
_DROP_ANY = EXCLUSION  # a mention inside exclusion criteria never counts
_VOCAB = SKIN | SKIN_MICROBIOME | GUT | GUT_WEAK | DIET
_VOCAB_BITS = (SKIN, SKIN_MICROBIOME, GUT, GUT_WEAK, DIET)
_BITS_OF = {sum(combo): combo for n in range(1, 6) for combo in itertools.combinations(_VOCAB_BITS, n)}
_POSITIONAL = NEGATION | COMBINATION  # cues whose position matters, not just their sentence
_ABBR_DEF = re.compile(r"\(\s*([A-Za-z][A-Za-z0-9-]*[A-Z][A-Za-z0-9-]*|[A-Z][A-Za-z0-9-]+)\s*\)")
_ABBR_MAX = 12  # longer bracketed words are not abbreviations
_ABBR_REACH = 80  # characters before "(ABBR)" searched for its long form

# ──────────────────────────────────────────── working records ───────────────────────────────────────────
# The state of tagging one paper. Plain slotted dataclasses: several are built per sentence or per match,
# and they are the cheapest named records to build.


@dataclass(slots=True)
class Match:
    """Tag patterns matched at ``text[start:end]`` and the tags they mention."""

    start: int
    end: int
    actions: tuple[TagAction, ...]


@dataclass(slots=True)
class Span:
    """``text[start:end]``."""

    start: int
    end: int


@dataclass(slots=True)
class Hit:
    """Where a mention is: a source (``title``, ``abstract:METHODS``, ``mesh`` …) and the document span,
    or (``start`` = -1) the MeSH descriptor or publication type it came from, as ``text``."""

    source: str
    start: int
    end: int
    text: str = ""


@dataclass(slots=True)
class SideHit:
    """One mention on the skin side or the gut side of relevance: its weight, source and text."""

    weight: float
    source: str
    text: str


@dataclass(slots=True)
class WeakMention:
    """A ``weak`` name in a sentence that gives something: kept once it is known no absorbing tag
    (``absorbs``) is named in the same sentence."""

    tag_id: str
    sentence: int
    weight: float
    hit: Hit


@dataclass(slots=True)
class MeshHit:
    """A MeSH heading of the paper that the taxonomy knows (``key`` casefolded)."""

    name: str
    key: str
    major: bool
    info: MeshInfo


@dataclass(slots=True)
class Slot:
    """The best mention of one tag in one place (a sentence, a MeSH heading, a publication type):
    overall, and not counting ``generic`` patterns (``strong_*``)."""

    weight: float = 0.0
    strong_weight: float = 0.0
    hit: Hit | None = None
    strong_hit: Hit | None = None


@dataclass(slots=True)
class Scan:
    """What one pass of the scanner found: tag matches, where negated words start, where combination
    words are (by sentence), the first mention of each relevance vocabulary in each sentence (by
    ``(vocabulary bit, sentence)``) and every cue bit of the paper."""

    matches: list[Match]
    negated_at: set[int]
    combination_at: dict[int, list[int]]
    vocab_at: dict[tuple[int, int], Span]
    paper_cues: int


@dataclass(slots=True)
class Tally:
    """Mentions collected so far. ``found[tag][place]`` is a tag's best mention in each place (a sentence
    index, ``("mesh", descriptor)`` or ``("pt", publication type)``); ``skin`` and ``gut`` the best
    relevance mention per place; ``tags_in_sentence`` and ``positions`` are kept only for tracked tags
    (those that absorb others or form combinations)."""

    found: dict[str, dict[Hashable, Slot]]
    skin: dict[Hashable, SideHit]
    gut: dict[Hashable, SideHit]
    weak: list[WeakMention]
    tags_in_sentence: dict[int, set[str]]
    positions: dict[tuple[str, int], list[int]]


# ─────────────────────────────────────────────── tagging ────────────────────────────────────────────────


def tag(paper: Article | TagInput, taxonomy: Taxonomy) -> Tagging:
    """Tag one paper (a parsed article or the stored :class:`~monitor.types.TagInput` of one).
    Deterministic; see the module docstring for the rules."""
    if isinstance(paper, Article):
        paper = TagInput.of(paper)
    rules = taxonomy.rules
    doc = build_document(paper)
    scan = _scan(doc, rules)
    weigh_sentences(doc, rules.sentence_weights)
    mesh_hits, mesh_cues = _mesh_hits(paper, rules)
    title_cues = doc.cues[0] if doc.sections and doc.sections[0] == "title" else 0
    paper_cues = scan.paper_cues | mesh_cues
    matches = scan.matches
    if "(" in doc.text:
        extra = _abbreviation_matches(doc.text, matches, rules)
        if extra:
            matches = sorted(matches + extra, key=attrgetter("start"))

    tally = Tally({}, {}, {}, [], {}, {})  # in this order (ties between equal weights go to the first mention)
    if matches:
        _text_mentions(doc, matches, scan.negated_at, taxonomy, tally, title_cues, paper_cues)
    if tally.weak:
        _weak_mentions(tally, rules)
    if scan.vocab_at:
        _vocabulary_mentions(doc, scan, tally, paper_cues)
    if mesh_hits:
        _mesh_mentions(mesh_hits, taxonomy, tally, title_cues, paper_cues)
    if paper.publication_types:
        _publication_type_mentions(paper, taxonomy, tally)
    if tally.found:
        _combinations(doc, scan, rules, tally)
    final = _decide(tally.found, taxonomy.tags)

    scale = taxonomy.relevance_scale
    skin_score = sum(v.weight for v in tally.skin.values())
    gut_score = sum(v.weight for v in tally.gut.values())
    relevance = round((1.0 - math.exp(-skin_score / scale)) * (1.0 - math.exp(-gut_score / scale)), 4)
    by_kind: dict[str, list[str]] = {"condition": [], "intervention": [], "design": []}
    for tag_id in final:
        by_kind[taxonomy.tags[tag_id].kind].append(tag_id)
    return Tagging(
        conditions=tuple(sorted(by_kind["condition"])),
        interventions=tuple(sorted(by_kind["intervention"])),
        designs=tuple(sorted(by_kind["design"])),
        gut_skin_relevant=relevance >= taxonomy.relevance_threshold,
        relevance=relevance,
        evidence=_evidence(doc.text, final, tally, taxonomy),
        taxonomy_version=taxonomy.version,
    )


def _scan(doc: Document, rules: Rules) -> Scan:
    """One pass over the text. Cue bits go to their sentence (one int per sentence); negation cues mark
    where a negated word starts; tag matches are kept for weighing once the sentence weights are known."""
    low, starts, sentence_cues = doc.low, doc.starts, doc.cues
    n_sent = len(starts)
    scan = Scan([], set(), {}, {}, 0)
    matches, negated_at, vocab_at = scan.matches, scan.negated_at, scan.vocab_at
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
                _positional_cue(rules, scan, low, si, st, en, mask)
            new_vocab = mask & vocab_bits & ~seen_vocab
            if new_vocab and st not in negated_at:
                for bit in bits_of[new_vocab]:
                    vocab_at[(bit, si)] = Span(st, en)
                seen_vocab |= new_vocab
            sentence_cues[si] |= mask
            paper_cues |= mask
        if actions:
            matches.append(Match(st, en, actions))
    scan.paper_cues = paper_cues
    return scan


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


def _positional_cue(rules: Rules, scan: Scan, low: str, si: int, start: int, end: int, mask: int) -> None:
    """Record a combination word's position, or where the word a negation negates starts."""
    if mask & COMBINATION:
        scan.combination_at.setdefault(si, []).append(start)
    if mask & NEGATION:
        fm = rules.negation_filler.match(low, end)
        scan.negated_at.add(fm.end() if fm else end)


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


# ─────────────────────────────────────────────── mentions ───────────────────────────────────────────────


def _text_mentions(doc: Document, matches: Sequence[Match], negated_at: set[int], taxonomy: Taxonomy,
                   tally: Tally, title_cues: int, paper_cues: int) -> None:
    """Weigh every tag match of the text by its sentence and the sentence's cues."""
    text, starts = doc.text, doc.starts
    tracked = taxonomy.rules.tracked
    future = taxonomy.scoring["future_work"]
    n_sent = len(starts)
    si, cues, weight0, source, next_start = -1, 0, 0.0, "", 0
    for match in matches:
        start, end = match.start, match.end
        if start >= next_start:  # a later sentence
            si = bisect.bisect_right(starts, start) - 1
            next_start = starts[si + 1] if si + 1 < n_sent else len(text) + 1
            cues, weight0, source = doc.cues[si], doc.weights[si], doc.sources[si]
            if cues & _DROP_ANY:
                weight0 = 0.0
        base = 0.0 if start in negated_at else weight0
        for tag_id, kind, strength, gut_rule in match.actions:
            if tag_id in tracked:
                tally.tags_in_sentence.setdefault(si, set()).add(tag_id)
            weight = _mention_weight(kind, cues, base, future)
            if weight <= 0.0:
                continue
            if kind == K_CONDITION:
                _keep(tally.skin, si, weight, source, text[start:end])
            elif strength == WEAK and (not cues & INTERVENTION or cues & COMPOSITION):
                continue
            if kind == K_INTERVENTION and gut_rule != GUT_NEVER and _gut_route(gut_rule, cues, title_cues, paper_cues):
                _keep(tally.gut, si, weight, source, text[start:end])
            hit = Hit(source, start, end)
            if strength == WEAK:
                tally.weak.append(WeakMention(tag_id, si, weight, hit))
                continue
            _add_mention(tally.found, tag_id, si, weight, strength, hit)
            if tag_id in tracked:
                tally.positions.setdefault((tag_id, si), []).append(start)


def _mention_weight(kind: int, cues: int, base: float, future: float) -> float:
    """What a mention earns in a sentence with these cues: nothing for a condition in an adverse-event
    list or an intervention in a confounder list; less in a "further studies" sentence (not conditions)."""
    if kind == K_CONDITION:
        return 0.0 if cues & ADVERSE else base
    if cues & FUTURE:
        if kind == K_INTERVENTION and cues & CONFOUNDER:
            return 0.0
        return base * future
    if kind == K_INTERVENTION and cues & CONFOUNDER:
        return 0.0
    return base


def _weak_mentions(tally: Tally, rules: Rules) -> None:
    """Weak mentions count unless an absorbing tag is named in the same sentence."""
    for weak in tally.weak:
        absorbers = rules.absorbed_by.get(weak.tag_id)
        if absorbers and tally.tags_in_sentence.get(weak.sentence, set()).intersection(absorbers):
            continue
        _add_mention(tally.found, weak.tag_id, weak.sentence, weak.weight, WEAK, weak.hit)


def _vocabulary_mentions(doc: Document, scan: Scan, tally: Tally, paper_cues: int) -> None:
    """Relevance vocabularies: the best sentence weight per side and sentence."""
    for (bit, si), span in scan.vocab_at.items():
        text = doc.text[span.start:span.end]
        cues, weight, source = doc.cues[si], doc.weights[si], doc.sources[si]
        if cues & _DROP_ANY:
            continue
        if bit == SKIN or bit == SKIN_MICROBIOME:
            if not cues & ADVERSE:
                _keep(tally.skin, si, weight, source, text)
        elif bit == GUT:
            _keep(tally.gut, si, weight, source, text)
        elif bit == DIET:
            if not (cues & BLOOD and not cues & ORAL):
                _keep(tally.gut, si, weight, source, text)
        elif not paper_cues & SKIN_MICROBIOME:  # gut_weak: "microbiome" with no skin microbiome in the paper
            _keep(tally.gut, si, weight * 0.5, source, text)


def _mesh_hits(paper: TagInput, rules: Rules) -> tuple[list[MeshHit], int]:
    """The paper's MeSH headings the taxonomy knows, and their route cues (oral/topical)."""
    hits: list[MeshHit] = []
    cues = 0
    for heading in paper.mesh:  # (descriptor, ui, major, ((qualifier, ui, major), ...))
        name = heading[0]
        key = name.casefold()
        info = rules.mesh.get(key)
        if info is not None:
            hits.append(MeshHit(name, key, heading[2] or any(q[2] for q in heading[3]), info))
            cues |= info.cues
    return hits, cues


def _mesh_mentions(mesh_hits: Sequence[MeshHit], taxonomy: Taxonomy, tally: Tally, title_cues: int,
                   paper_cues: int) -> None:
    """MeSH headings: the tags they imply and the relevance sides they stand for."""
    w, tags = taxonomy.scoring, taxonomy.tags
    for mh in mesh_hits:
        weight = w["mesh_major"] if mh.major else w["mesh_minor"]
        label = mh.name + ("*" if mh.major else "")
        place = ("mesh", mh.key)
        for tag_id in mh.info.tags:
            td = tags[tag_id]
            _add_mention(tally.found, tag_id, place, weight, STRONG, Hit("mesh", -1, -1, label))
            if td.kind == "condition":
                _keep(tally.skin, place, weight, "mesh", label)
            elif td.kind == "intervention" and _gut_route(GUT_RULES[td.gut_side], 0, title_cues, paper_cues):
                _keep(tally.gut, place, weight, "mesh", label)
        if mh.info.gut:
            _keep(tally.gut, place, weight, "mesh", label)
        if mh.info.skin:
            _keep(tally.skin, place, weight, "mesh", label)


def _publication_type_mentions(paper: TagInput, taxonomy: Taxonomy, tally: Tally) -> None:
    weight = taxonomy.scoring["publication_type"]
    for pt in paper.publication_types:  # (name, ui)
        name = pt[0]
        for tag_id in taxonomy.rules.pubtypes.get(name.casefold(), ()):
            _add_mention(tally.found, tag_id, ("pt", name), weight, STRONG, Hit("publication_type", -1, -1, name))


def _combinations(doc: Document, scan: Scan, rules: Rules, tally: Tally) -> None:
    """Combination tags (synbiotics): both components given together in one sentence, joined by a
    combination word between them (or wherever, when a component was only named by a weak name)."""
    found = tally.found
    for combo in rules.combinations:
        a, b = combo.first, combo.second
        if a not in found or b not in found:
            continue
        for si in sorted(k for k in found[a] if isinstance(k, int) and k in found[b] and k in scan.combination_at):
            if not _joined(tally.positions.get((a, si), []), tally.positions.get((b, si), []),
                           scan.combination_at[si]):
                continue
            weight = min(found[a][si].weight, found[b][si].weight)
            _add_mention(found, combo.tag_id, si, weight, STRONG, Hit(doc.sources[si], doc.starts[si], doc.ends[si]))


def _joined(first: Sequence[int], second: Sequence[int], words: Sequence[int]) -> bool:
    """Is a combination word between a mention of each component (true when either has no position)?"""
    if not first or not second:
        return True
    return any(min(x, y) < c < max(x, y) for c in words for x in first for y in second)


def _add_mention(found: dict[str, dict[Hashable, Slot]], tag_id: str, place: Hashable, weight: float,
                 strength: int, hit: Hit) -> None:
    slot = found.setdefault(tag_id, {}).get(place)
    if slot is None:
        slot = found[tag_id][place] = Slot()
    if weight > slot.weight:
        slot.weight, slot.hit = weight, hit
    if strength != GENERIC and weight > slot.strong_weight:
        slot.strong_weight, slot.strong_hit = weight, hit


def _keep(side: dict[Hashable, SideHit], place: Hashable, weight: float, source: str, text: str) -> None:
    old = side.get(place)
    if old is None or weight > old.weight:
        side[place] = SideHit(weight, source, text)


def _gut_route(rule: int, cues: int, title_cues: int, paper_cues: int) -> bool:
    """Does a mention of an intervention with this gut_side rule count towards the gut side? ``cues`` are
    its sentence's, ``title_cues`` the title's, ``paper_cues`` those of every sentence and MeSH heading."""
    if rule == GUT_ALWAYS:
        return True
    if rule == GUT_NEVER:
        return False
    if cues & ORAL:
        return True
    if rule == GUT_UNLESS_TOPICAL:
        if cues & TOPICAL:
            return False
        return not (title_cues & TOPICAL and not paper_cues & ORAL)
    # if_oral: an oral mention, or an unqualified one in a paper that speaks of oral use and never topical
    if cues & (TOPICAL | BLOOD):
        return False
    return bool(paper_cues & ORAL) and not paper_cues & TOPICAL


# ──────────────────────────────────────────── decisions ─────────────────────────────────────────────────


def _decide(found: Mapping[str, Mapping[Hashable, Slot]], tags: Mapping[str, TagDef]) -> dict[str, bool]:
    """The tags given (per tag: whether its generic mentions were dropped because a tag it yields to is
    given). A tag is given when its best mentions per place sum to its ``min_score``."""
    provisional: set[str] = set()
    for tag_id, places in found.items():
        score = 0.0
        for slot in places.values():
            score += slot.weight
        if score >= tags[tag_id].min_score:
            provisional.add(tag_id)
    final: dict[str, bool] = {}
    for tag_id, places in found.items():
        td = tags[tag_id]
        if td.yields_to and not provisional.isdisjoint(td.yields_to):
            score = 0.0
            for slot in places.values():
                score += slot.strong_weight
            if score >= td.min_score:
                final[tag_id] = True
        elif tag_id in provisional:
            final[tag_id] = False
    return final


def _evidence(text: str, final: Mapping[str, bool], tally: Tally, taxonomy: Taxonomy) -> tuple[TagEvidence, ...]:
    """The strongest mention of each place (document order breaks ties), a few per tag, then the
    strongest skin-side and gut-side mentions."""
    evidence: list[TagEvidence] = []
    for tag_id in sorted(final, key=taxonomy.rules.order.__getitem__):
        slots = tally.found[tag_id].values()
        if final[tag_id]:
            best = [(v.strong_weight, v.strong_hit) for v in slots
                    if v.strong_hit is not None and v.strong_weight > 0.0]
        else:
            best = [(v.weight, v.hit) for v in slots if v.hit is not None]
        if len(best) > 1:
            best.sort(key=_weight_first, reverse=True)
        kind = taxonomy.tags[tag_id].kind
        for weight, hit in best[:EVIDENCE_PER_TAG]:
            shown = hit.text if hit.start < 0 else text[hit.start:hit.end]
            evidence.append(TagEvidence(tag_id, kind, hit.source, shown, round(weight, 3)))
    for side, hits in (("skin_side", tally.skin), ("gut_side", tally.gut)):
        for side_hit in sorted(hits.values(), key=attrgetter("weight"), reverse=True)[:EVIDENCE_PER_SIDE]:
            evidence.append(TagEvidence(side, "relevance", side_hit.source, side_hit.text, round(side_hit.weight, 3)))
    return tuple(evidence)


def _weight_first(item: tuple[float, Hit]) -> float:
    return item[0]


# ───────────────────────────────────────────── abbreviations ────────────────────────────────────────────


def _abbreviation_matches(doc: str, matches: list[Match], rules: Rules) -> list[Match]:
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
    for m in _ABBR_DEF.finditer(doc):
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
