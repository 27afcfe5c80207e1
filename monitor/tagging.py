"""Tagging: the tagger that applies a compiled taxonomy (:mod:`monitor.taxonomy`) to one parsed paper.

Owns the tagging rules (:func:`tag`, and :func:`analyse`, which also keeps every mention it considered
and why it counted or not, for :mod:`monitor.explain`). Pure: no I/O, no database, no network, no
randomness — the same paper and taxonomy always give the same :class:`~monitor.types.Tagging`. The
taxonomy's names (:func:`load_taxonomy`, :class:`Taxonomy` …) are re-exported here for callers that import
them from here.

How a paper is tagged
---------------------
1. The title, the abstract and the author keywords are joined into one document and cut into sentences
   (:mod:`monitor.document`). Abstract sections keep their NlmCategory; an unlabelled abstract that
   carries its headings inline ("Background: …", "METHODS\\n…") is split at them.
2. One regular expression compiled from every pattern of the taxonomy runs over the document
   (:mod:`monitor.scanning`): tag patterns, sentence cues (aim, conclusion, future work, exclusion
   criteria, confounders, adverse events, negation, route of administration …), the relevance
   vocabularies and ignore phrases. Abbreviations the text defines count as their long form.
3. Every sentence gets its role: title, keyword, or its abstract section; in an unstructured abstract the
   aim sentence ("we aimed", "this review") is the objective, sentences before it and the first sentence
   are background, a "we conclude" sentence is a conclusion. Background and "further studies are needed"
   sentences are *context*: they weigh little and never give a tag on their own (a paper studies what its
   title, aim, methods, results and conclusions are about, not what its introduction mentions).
4. Every mention earns the weight of where it is (:func:`_mention_weight`): nothing when negated
   ("without", "no history of"), inside exclusion criteria, a confounder list or an adverse-event list.
   Rule classes on top (each has unit tests in tests/test_tagging.py):

   - *subject lists*: when the title or the aim names a group ("inflammatory skin diseases",
     "dermatoses"), each condition of a sentence that lists several is a subject of the paper;
   - *taxa*: a ``weak`` name (a bacterial genus) counts only where the sentence says it was given, and a
     named strain (``strains``) only as long as it is not a finding of a microbiome-composition or
     Mendelian randomization analysis (``taxa_ignored_in``) and not the strain of a postbiotic
     (``absorbs``: a heat-killed strain is a postbiotic unless the sentence says it was live);
   - *combinations*: a synbiotic (``combination_of``) is also given when its components are given
     together in one sentence, and a synbiotic study's named components count as given;
   - *qualifiers*: a ``generic`` word directly before another intervention qualifies it ("dietary
     galacto-oligosaccharides" is a prebiotic, not a dietary pattern); generic words also yield to the
     tags in ``yields_to``.
5. Per tag, the best mention of each sentence counts once; the sum must reach the tag's ``min_score`` and
   at least one mention must be outside context (:func:`_decide`).
6. Designs: publication types first (they alone suffice), then MeSH and text.
7. Relevance: a skin-side score (conditions, skin vocabulary) and a gut-side score (gut vocabulary, oral
   diet/nutrition, gut-targeted interventions — nutrients only when taken orally, not applied to the skin
   or measured in blood (:func:`_gut_route`); an unqualified "microbiome" only if the paper never speaks of
   the skin's or another organ's microbiome) are each squashed to [0, 1) and multiplied; the product is
   mapped through the taxonomy's calibration (``[relevance] calibration``) to ``relevance``, which reads as
   the chance that the paper is gut–skin relevant.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter

from .cues import (
    ADVERSE,
    BLOOD,
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
    INTERVENTION,
    K_CONDITION,
    K_INTERVENTION,
    LIVE,
    NONGUT_MICROBIOME,
    ORAL,
    SKIN,
    SKIN_MICROBIOME,
    STRAIN,
    STRONG,
    SUBJECT_GROUP,
    TOPICAL,
    WEAK,
)
from .document import Document, build_document, weigh_sentences
from .scanning import Match, Scan, abbreviation_matches, scan
from .taxonomy import DEFAULT_TAXONOMY, Calibration, MeshInfo, Rules, TagDef, Taxonomy, load_taxonomy, parse_taxonomy
from .types import Article, TagEvidence, Tagging, TagInput

__all__ = ["DEFAULT_TAXONOMY", "Analysis", "Considered", "TagDef", "Taxonomy", "Verdict", "analyse", "calibrate",
           "load_taxonomy", "parse_taxonomy", "tag"]

EVIDENCE_PER_TAG = 3  # strongest mentions kept as evidence for each tag (one per sentence)
EVIDENCE_PER_SIDE = 2  # strongest skin-side and gut-side mentions kept as relevance evidence
_QUALIFIER_GAP = 2  # a generic word qualifies an intervention named at most this many words after it
_LIST_MIN = 2  # conditions named in one sentence that make it a list of subjects
_REVIEWS = frozenset({"review", "systematic_review", "meta_analysis"})  # designs whose lists are subjects


# Why a mention did not count (explanations show these).
NEGATED = "negated"
EXCLUDED = "inside exclusion criteria"
ADVERSE_LIST = "an adverse event, not what the paper studies"
CONFOUNDER_LIST = "a confounder adjusted for, not a studied exposure"
NOT_GIVEN = "a taxon the sentence does not say was given"
COMPOSITION_FINDING = "a taxon found by a microbiome-composition analysis"
IGNORED_DESIGN = "a taxon in a {design} study"
ABSORBED = "the strain of a {tag} preparation"
QUALIFIER = "qualifies another intervention named right after it"
NOT_ORAL = "not taken by mouth (applied to the skin, or a blood level)"
BLOOD_LEVEL = "a blood level, not intake"
OTHER_MICROBIOME = "an unqualified microbiome in a paper about the skin's or another organ's microbiome"
FUTURE_ONLY = "future work or a recommendation, not what the paper did"
SUGGESTED_ONLY = "intake suggested by the conclusions only; the paper gave or measured no intake"
_CONCLUSIONS = "abstract:CONCLUSIONS"
CONTEXT_ONLY = "named only in background or future-work sentences"
PASSING = "passing mention: score {score:g} below {minimum:g}"
YIELDS = "generic words only; yields to {tags}"


# ──────────────────────────────────────────── working records ───────────────────────────────────────────
# The state of tagging one paper. Plain slotted dataclasses: several are built per sentence or per match,
# and they are the cheapest named records to build.


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
class TaxonMention:
    """A ``weak`` or ``strains`` mention, decided once the whole paper is read (:func:`_taxa`)."""

    tag_id: str
    sentence: int
    weight: float
    strength: int
    cues: int
    gut_rule: int
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
    overall, and not counting ``generic`` patterns (``strong_*``); ``context`` when the place is a
    background or future-work sentence."""

    weight: float
    strong_weight: float
    hit: Hit | None
    strong_hit: Hit | None
    context: bool


@dataclass(slots=True)
class Tally:
    """Mentions collected so far. ``found[tag][place]`` is a tag's best mention in each place (a sentence
    index, ``("mesh", descriptor)`` or ``("pt", publication type)``); ``skin`` and ``gut`` the best
    relevance mention per place; ``tags_in_sentence`` and ``positions`` are kept only for tracked tags
    (those that absorb others or form combinations); ``spans`` are the matches of absorbing tags."""

    found: dict[str, dict[Hashable, Slot]]
    skin: dict[Hashable, SideHit]
    gut: dict[Hashable, SideHit]
    taxa: list[TaxonMention]
    tags_in_sentence: dict[int, set[str]]
    positions: dict[tuple[str, int], list[int]]
    spans: dict[str, list[tuple[int, int]]]


@dataclass(slots=True)
class Considered:
    """A mention the tagger looked at (kept only by :func:`analyse`): the tag id (or ``skin_side`` /
    ``gut_side``), the sentence (-1 for MeSH and publication types), the matched span (or ``text``), what
    it earned, and ``reason`` — empty when it counted, else why it was discounted. For MeSH headings and
    publication types ``text`` is ``"MeSH: <descriptor>"`` or ``"publication type: <name>"``."""

    target: str
    sentence: int
    start: int
    end: int
    text: str
    weight: float
    reason: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """The decision on one tag that has mentions: its score, whether it is given, the tags it yielded
    generic mentions to, and why it is not given."""

    tag_id: str
    score: float
    given: bool
    yielded: tuple[str, ...] = ()
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Analysis:
    """Everything :func:`analyse` saw: the tagging, the document, the per-tag verdicts, the two sides of
    relevance and the raw (uncalibrated) relevance, and every mention considered."""

    tagging: Tagging
    document: Document
    verdicts: tuple[Verdict, ...]
    skin_score: float
    gut_score: float
    raw_relevance: float
    considered: tuple[Considered, ...]


@dataclass(slots=True)
class _Paper:
    """Per-paper facts the rules need: route cues of the title, of the paper's own (non-context)
    sentences and of those that say what it did (not its conclusions), every cue of the paper, and the
    trace (None unless explaining)."""

    title_cues: int
    own_cues: int
    done_cues: int
    paper_cues: int
    trace: list[Considered] | None = field(default=None)


# ─────────────────────────────────────────────── tagging ────────────────────────────────────────────────


def tag(paper: Article | TagInput, taxonomy: Taxonomy) -> Tagging:
    """Tag one paper (a parsed article or the stored :class:`~monitor.types.TagInput` of one).
    Deterministic; see the module docstring for the rules."""
    return _run(paper, taxonomy, None)


def analyse(paper: Article | TagInput, taxonomy: Taxonomy) -> Analysis:
    """:func:`tag`, keeping every mention considered and the verdict on every tag (slower)."""
    probe = _Probe()
    tagging = _run(paper, taxonomy, probe)
    assert probe.document is not None and probe.tally is not None
    return Analysis(tagging, probe.document, tuple(_verdicts(probe.tally.found, taxonomy.tags)), probe.skin_score,
                    probe.gut_score, probe.raw, tuple(probe.considered))


@dataclass(slots=True)
class _Probe:
    """What :func:`analyse` wants from a run besides the tagging (tagging alone builds none of it)."""

    considered: list[Considered] = field(default_factory=list)
    document: Document | None = None
    tally: Tally | None = None
    skin_score: float = 0.0
    gut_score: float = 0.0
    raw: float = 0.0


def _run(paper: Article | TagInput, taxonomy: Taxonomy, probe: _Probe | None) -> Tagging:
    """The steps of the module docstring, in order; ``probe`` (explanations only) keeps what they saw."""
    if isinstance(paper, Article):
        paper = TagInput.of(paper)
    rules = taxonomy.rules
    doc = build_document(paper)
    found = scan(doc, rules)
    weigh_sentences(doc, rules.sentence_weights)
    mesh_hits, mesh_cues = _mesh_hits(paper, rules)
    facts = _Paper(doc.cues[0] if doc.sections and doc.sections[0] == "title" else 0, doc.own_cues | mesh_cues,
                   doc.done_cues | mesh_cues, found.paper_cues | mesh_cues, probe.considered if probe else None)
    matches = found.matches
    if "(" in doc.text:
        extra = abbreviation_matches(doc.text, matches, rules)
        if extra:
            matches = sorted(matches + extra, key=attrgetter("start"))

    tally = Tally({}, {}, {}, [], {}, {}, {})  # in this order (ties between equal weights go to the first mention)
    if matches:
        _text_mentions(doc, matches, found.negated_at, taxonomy, tally, facts)
    if mesh_hits:
        _mesh_mentions(mesh_hits, taxonomy, tally, facts)
    if paper.publication_types:
        _publication_type_mentions(paper, taxonomy, tally, facts)
    if tally.taxa:
        _taxa(doc, taxonomy, tally, facts)
    if found.vocab_at:
        _vocabulary_mentions(doc, found, tally, facts)
    if tally.found:
        if found.paper_cues & SUBJECT_GROUP:
            _subject_lists(doc, taxonomy, tally, facts)
        _combinations(doc, found, rules, tally, facts)
    final = _decide(tally.found, taxonomy.tags)

    skin_score = sum(v.weight for v in tally.skin.values())
    gut_score = sum(v.weight for v in tally.gut.values())
    scale = taxonomy.relevance_scale
    raw = (1.0 - math.exp(-skin_score / scale)) * (1.0 - math.exp(-gut_score / scale))
    relevance = round(calibrate(raw, taxonomy.calibration), 4)
    by_kind: dict[str, list[str]] = {"condition": [], "intervention": [], "design": []}
    for tag_id in final:
        by_kind[taxonomy.tags[tag_id].kind].append(tag_id)
    tagging = Tagging(
        conditions=tuple(sorted(by_kind["condition"])),
        interventions=tuple(sorted(by_kind["intervention"])),
        designs=tuple(sorted(by_kind["design"])),
        gut_skin_relevant=relevance >= taxonomy.relevance_threshold,
        relevance=relevance,
        evidence=_evidence(doc.text, final, tally, taxonomy),
        taxonomy_version=taxonomy.version,
    )
    if probe is not None:
        probe.document, probe.tally, probe.raw = doc, tally, raw
        probe.skin_score, probe.gut_score = skin_score, gut_score
    return tagging


def calibrate(raw: float, calibration: Calibration) -> float:
    """The calibrated relevance of a raw score in [0, 1]: ``sigmoid(slope * logit(raw) + intercept)``."""
    if raw <= 0.0:
        return 0.0
    if raw >= 1.0:
        return 1.0
    z = calibration.slope * math.log(raw / (1.0 - raw)) + calibration.intercept
    return 1.0 / (1.0 + math.exp(-z)) if z > -500 else 0.0


# ─────────────────────────────────────────────── mentions ───────────────────────────────────────────────


def _text_mentions(doc: Document, matches: Sequence[Match], negated_at: set[int], taxonomy: Taxonomy,
                   tally: Tally, facts: _Paper) -> None:
    """Weigh every tag match of the text by its sentence and the sentence's cues."""
    text, starts = doc.text, doc.starts
    rules = taxonomy.rules
    tracked, absorbing = rules.tracked, rules.absorbing
    future = taxonomy.scoring["future_work"]
    trace = facts.trace
    n_sent = len(starts)
    si, cues, weight0, source, context, next_start = -1, 0, 0.0, "", False, 0
    for mi, match in enumerate(matches):
        start, end = match.start, match.end
        if start >= next_start:  # a later sentence
            si = bisect.bisect_right(starts, start) - 1
            next_start = starts[si + 1] if si + 1 < n_sent else len(text) + 1
            cues, weight0, source, context = doc.cues[si], doc.weights[si], doc.sources[si], doc.context[si]
        negated = start in negated_at
        for tag_id, kind, strength, gut_rule in match.actions:
            if tag_id in tracked:
                tally.tags_in_sentence.setdefault(si, set()).add(tag_id)
            if tag_id in absorbing:
                tally.spans.setdefault(tag_id, []).append((start, end))
            weight, reason = _mention_weight(kind, cues, 0.0 if negated else weight0, future)
            if negated:
                reason = NEGATED
            elif strength == GENERIC and kind == K_INTERVENTION and _qualifies(text, matches, mi, tag_id):
                weight, reason = 0.0, QUALIFIER
            elif tag_id in rules.absorbed_by and weight > 0.0:
                reason = _inside_absorber(tally, rules.absorbed_by[tag_id], start)
                weight = 0.0 if reason else weight
            if weight <= 0.0:
                if trace is not None:
                    trace.append(Considered(tag_id, si, start, end, "", 0.0, reason))
                continue
            hit = Hit(source, start, end)
            if kind == K_CONDITION:
                _keep(tally.skin, si, weight, source, text[start:end])
                if trace is not None:
                    trace.append(Considered("skin_side", si, start, end, "", weight, ""))
            elif strength == WEAK or strength == STRAIN:
                tally.taxa.append(TaxonMention(tag_id, si, weight, strength, cues, gut_rule, hit))
                continue
            if kind == K_INTERVENTION:
                _gut_side(tally, si, weight, cues, gut_rule, hit, text, facts)
            _add_mention(tally.found, tag_id, si, weight, strength, hit, context)
            if trace is not None:
                trace.append(Considered(tag_id, si, start, end, "", weight, ""))
            if tag_id in tracked:
                tally.positions.setdefault((tag_id, si), []).append(start)


def _mention_weight(kind: int, cues: int, base: float, future: float) -> tuple[float, str]:
    """What a mention earns in a sentence with these cues, and why it earns nothing: exclusion criteria;
    a condition in an adverse-event list; an intervention in a confounder list. Interventions in a
    "further studies" sentence earn less (conditions do not: the paper still studies the disease)."""
    if cues & EXCLUSION:
        return 0.0, EXCLUDED
    if kind == K_CONDITION:
        return (0.0, ADVERSE_LIST) if cues & ADVERSE else (base, "")
    if kind == K_INTERVENTION and cues & CONFOUNDER:
        return 0.0, CONFOUNDER_LIST
    return (base * future if cues & FUTURE else base), ""


def _qualifies(text: str, matches: Sequence[Match], mi: int, tag_id: str) -> bool:
    """Is the generic word of ``matches[mi]`` an adjective of another intervention named within a couple
    of words after it ("dietary glutamine", "diet supplemented with zinc"; not "diet and zinc")?"""
    end = matches[mi].end
    for nxt in matches[mi + 1:mi + 4]:
        gap = text[end:nxt.start]
        words = gap.split()
        if len(words) > _QUALIFIER_GAP or any(c in gap for c in ".,;:!?/") or any(
                w.lower() in ("and", "or", "&", "vs", "versus") for w in words):
            return False
        if any(a.kind == K_INTERVENTION and a.tag_id != tag_id and a.strength != GENERIC for a in nxt.actions):
            return True
    return False


def _inside_absorber(tally: Tally, absorbers: Sequence[str], start: int) -> str:
    """ABSORBED when a mention lies inside a match of an absorbing tag ("heat-killed probiotic")."""
    for absorber in absorbers:
        if any(a <= start < b for a, b in tally.spans.get(absorber, ())):
            return ABSORBED.format(tag=absorber)
    return ""


def _gut_side(tally: Tally, si: int, weight: float, cues: int, gut_rule: int, hit: Hit, text: str,
              facts: _Paper) -> None:
    """An intervention mention on the gut side of relevance, if its gut_side rule and route allow it."""
    if gut_rule == GUT_NEVER:
        return
    if cues & FUTURE:
        reason = FUTURE_ONLY
    elif hit.source == _CONCLUSIONS and gut_rule != GUT_ALWAYS and not facts.done_cues & ORAL:
        reason = SUGGESTED_ONLY
    else:
        reason = "" if _gut_route(gut_rule, cues, facts) else NOT_ORAL
    if facts.trace is not None:
        facts.trace.append(Considered("gut_side", si, hit.start, hit.end, "", 0.0 if reason else weight, reason))
    if not reason:
        _keep(tally.gut, si, weight, hit.source, text[hit.start:hit.end])


def _taxa(doc: Document, taxonomy: Taxonomy, tally: Tally, facts: _Paper) -> None:
    """Decide the taxon mentions (``weak`` genus names and ``strains``) now that the paper is read."""
    tags, rules = taxonomy.tags, taxonomy.rules
    provisional = _provisional(tally.found, tags)
    for t in tally.taxa:
        td = tags[t.tag_id]
        reason = _taxon_reason(t, td, rules, tally, provisional)
        if facts.trace is not None:
            facts.trace.append(Considered(t.tag_id, t.sentence, t.hit.start, t.hit.end, "",
                                          0.0 if reason else t.weight, reason))
        if reason:
            continue
        _gut_side(tally, t.sentence, t.weight, t.cues, t.gut_rule, t.hit, doc.text, facts)
        _add_mention(tally.found, t.tag_id, t.sentence, t.weight, t.strength, t.hit, doc.context[t.sentence])


def _taxon_reason(t: TaxonMention, td: TagDef, rules: Rules, tally: Tally, provisional: set[str]) -> str:
    """Why a taxon mention does not count ("" when it does)."""
    if t.cues & COMPOSITION:
        return COMPOSITION_FINDING
    for design in td.taxa_ignored_in:
        if design in provisional:
            return IGNORED_DESIGN.format(design=design.replace("_", " "))
    absorbers = () if t.cues & LIVE else rules.absorbed_by.get(t.tag_id, ())  # "live" strains are probiotics
    if absorbers and _inside_absorber(tally, absorbers, t.hit.start):
        return ABSORBED.format(tag=absorbers[0])
    for absorber in absorbers:
        if absorber in tally.tags_in_sentence.get(t.sentence, ()) or absorber in provisional:
            return ABSORBED.format(tag=absorber)
    if t.strength == WEAK and not t.cues & INTERVENTION:
        if not any(c.tag_id in provisional and td.id in (c.first, c.second) for c in rules.combinations):
            return NOT_GIVEN
    return ""


def _vocabulary_mentions(doc: Document, found: Scan, tally: Tally, facts: _Paper) -> None:
    """Relevance vocabularies: the best sentence weight per side and sentence."""
    trace = facts.trace
    for (bit, si), (v_start, v_end) in found.vocab_at.items():
        cues, weight, source = doc.cues[si], doc.weights[si], doc.sources[si]
        reason = _vocabulary_reason(bit, cues, facts.paper_cues)
        if not reason and bit == DIET and source == _CONCLUSIONS and not facts.done_cues & (ORAL | DIET):
            reason = SUGGESTED_ONLY
        side = tally.skin if bit == SKIN or bit == SKIN_MICROBIOME else tally.gut
        if bit not in (SKIN, SKIN_MICROBIOME, GUT, DIET):
            weight *= 0.5  # gut_weak: an unqualified "microbiome"
        if trace is not None:
            trace.append(Considered("skin_side" if side is tally.skin else "gut_side", si, v_start, v_end, "",
                                    0.0 if reason else weight, reason))
        if not reason:
            _keep(side, si, weight, source, doc.text[v_start:v_end])


def _vocabulary_reason(bit: int, cues: int, paper_cues: int) -> str:
    if cues & EXCLUSION:
        return EXCLUDED
    if cues & ADVERSE:  # "constipation and rash were the adverse events"
        return ADVERSE_LIST
    if cues & FUTURE and bit != SKIN and bit != SKIN_MICROBIOME:
        return FUTURE_ONLY
    if bit == SKIN or bit == SKIN_MICROBIOME:
        return ""
    if bit == GUT:
        return ""
    if bit == DIET:
        return BLOOD_LEVEL if cues & BLOOD and not cues & ORAL else ""
    return OTHER_MICROBIOME if paper_cues & (SKIN_MICROBIOME | NONGUT_MICROBIOME) else ""


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


def _mesh_mentions(mesh_hits: Sequence[MeshHit], taxonomy: Taxonomy, tally: Tally, facts: _Paper) -> None:
    """MeSH headings: the tags they imply and the relevance sides they stand for."""
    w, tags = taxonomy.scoring, taxonomy.tags
    for mh in mesh_hits:
        weight = w["mesh_major"] if mh.major else w["mesh_minor"]
        label = mh.name + ("*" if mh.major else "")
        place = ("mesh", mh.key)
        for tag_id in mh.info.tags:
            td = tags[tag_id]
            _add_mention(tally.found, tag_id, place, weight, STRONG, Hit("mesh", -1, -1, label), False)
            if facts.trace is not None:
                facts.trace.append(Considered(tag_id, -1, -1, -1, f"MeSH: {label}", weight, ""))
            if td.kind == "condition" or mh.info.skin:
                _side(tally.skin, "skin_side", place, weight, label, facts)
            if (td.kind == "intervention" and _gut_route(GUT_RULES[td.gut_side], 0, facts)) or mh.info.gut:
                _side(tally.gut, "gut_side", place, weight, label, facts)
        if not mh.info.tags:
            if mh.info.gut:
                _side(tally.gut, "gut_side", place, weight, label, facts)
            if mh.info.skin:
                _side(tally.skin, "skin_side", place, weight, label, facts)


def _side(side: dict[Hashable, SideHit], target: str, place: Hashable, weight: float, label: str,
          facts: _Paper) -> None:
    """A MeSH heading on one side of relevance."""
    _keep(side, place, weight, "mesh", label)
    if facts.trace is not None:
        facts.trace.append(Considered(target, -1, -1, -1, f"MeSH: {label}", weight, ""))


def _publication_type_mentions(paper: TagInput, taxonomy: Taxonomy, tally: Tally, facts: _Paper) -> None:
    weight = taxonomy.scoring["publication_type"]
    for pt in paper.publication_types:  # (name, ui)
        name = pt[0]
        for tag_id in taxonomy.rules.pubtypes.get(name.casefold(), ()):
            _add_mention(tally.found, tag_id, ("pt", name), weight, STRONG,
                         Hit("publication_type", -1, -1, name), False)
            if facts.trace is not None:
                facts.trace.append(Considered(tag_id, -1, -1, -1, f"publication type: {name}", weight, ""))


def _subject_lists(doc: Document, taxonomy: Taxonomy, tally: Tally, facts: _Paper) -> None:
    """Lists of subjects: in a paper whose title or aim names a group of diseases, a sentence naming
    several conditions lists its subjects (in a review, so does a sentence that names the group and
    several conditions): each of them counts at least ``subject_list`` there, also in a background
    sentence."""
    group_paper = any(c & SUBJECT_GROUP and doc.sources[i] in ("title", "abstract:OBJECTIVE")
                      for i, c in enumerate(doc.cues))
    review = not group_paper and any(taxonomy.tags[t].kind == "design" and t in _REVIEWS
                                     for t in _provisional(tally.found, taxonomy.tags))
    if not group_paper and not review:
        return
    floor = taxonomy.scoring["subject_list"]
    conditions = [t for t in tally.found if taxonomy.tags[t].kind == "condition"]
    per_sentence: dict[int, list[str]] = {}
    for tag_id in conditions:
        for place in tally.found[tag_id]:
            if isinstance(place, int):
                per_sentence.setdefault(place, []).append(tag_id)
    for si, listed in per_sentence.items():
        cues = doc.cues[si]
        if len(listed) < _LIST_MIN or cues & (ADVERSE | EXCLUSION) or (review and not cues & SUBJECT_GROUP):
            continue
        for tag_id in listed:
            slot = tally.found[tag_id][si]
            slot.context = False
            if slot.weight < floor:
                slot.weight = slot.strong_weight = floor
            if facts.trace is not None and slot.hit is not None:
                facts.trace.append(Considered(tag_id, si, slot.hit.start, slot.hit.end, "", slot.weight, ""))


def _combinations(doc: Document, found: Scan, rules: Rules, tally: Tally, facts: _Paper) -> None:
    """Combination tags (synbiotics): both components given together in one sentence, joined by a
    combination word between them (or wherever, when a component was only named by a taxon)."""
    mentions = tally.found
    for combo in rules.combinations:
        a, b = combo.first, combo.second
        if a not in mentions or b not in mentions:
            continue
        together = (k for k in mentions[a] if isinstance(k, int) and k in mentions[b] and k in found.combination_at)
        for si in sorted(together):
            if not _joined(tally.positions.get((a, si), []), tally.positions.get((b, si), []),
                           found.combination_at[si]):
                continue
            weight = min(mentions[a][si].weight, mentions[b][si].weight)
            _add_mention(mentions, combo.tag_id, si, weight, STRONG, Hit(doc.sources[si], doc.starts[si], doc.ends[si]),
                         doc.context[si])
            if facts.trace is not None:
                for part in (a, b):
                    hit = mentions[part][si].hit
                    if hit is not None:
                        facts.trace.append(Considered(combo.tag_id, si, hit.start, hit.end, "", weight, ""))


def _joined(first: Sequence[int], second: Sequence[int], words: Sequence[int]) -> bool:
    """Is a combination word between a mention of each component (true when either has no position)?"""
    if not first or not second:
        return True
    return any(min(x, y) < c < max(x, y) for c in words for x in first for y in second)


def _add_mention(found: dict[str, dict[Hashable, Slot]], tag_id: str, place: Hashable, weight: float,
                 strength: int, hit: Hit, context: bool) -> None:
    slot = found.setdefault(tag_id, {}).get(place)
    if slot is None:
        slot = found[tag_id][place] = Slot(0.0, 0.0, None, None, context)
    if weight > slot.weight:
        slot.weight, slot.hit = weight, hit
    if strength != GENERIC and weight > slot.strong_weight:
        slot.strong_weight, slot.strong_hit = weight, hit


def _keep(side: dict[Hashable, SideHit], place: Hashable, weight: float, source: str, text: str) -> None:
    old = side.get(place)
    if old is None or weight > old.weight:
        side[place] = SideHit(weight, source, text)


def _gut_route(rule: int, cues: int, facts: _Paper) -> bool:
    """Does a mention of an intervention with this gut_side rule count towards the gut side? ``cues`` are
    its sentence's; the paper's route is read from its title and its own (non-context) sentences."""
    if rule == GUT_ALWAYS:
        return True
    if rule == GUT_NEVER:
        return False
    if cues & ORAL:
        return True
    if rule == GUT_UNLESS_TOPICAL:
        if cues & TOPICAL:
            return False
        return not (facts.title_cues & TOPICAL and not facts.own_cues & ORAL)
    # if_oral: an oral mention, or an unqualified one in a paper whose work is oral use and never topical
    if cues & (TOPICAL | BLOOD):
        return False
    return bool(facts.done_cues & ORAL) and not facts.paper_cues & TOPICAL


# ──────────────────────────────────────────── decisions ─────────────────────────────────────────────────


def _score(places: Mapping[Hashable, Slot], strong: bool) -> tuple[float, bool]:
    """(score, has a counted mention outside context) of one tag; with ``strong``, generic mentions do
    not count (the tag yields them to another that is given: the "diet" of a gluten-free diet study)."""
    score = 0.0
    own = False
    for slot in places.values():
        weight = slot.strong_weight if strong else slot.weight
        score += weight
        if weight > 0.0 and not slot.context:
            own = True
    return score, own


def _provisional(found: Mapping[str, Mapping[Hashable, Slot]], tags: Mapping[str, TagDef]) -> set[str]:
    """Tags whose mentions so far reach their minimum score with a mention outside context."""
    given = set()
    for tag_id, places in found.items():
        score, own = _score(places, False)
        if own and score >= tags[tag_id].min_score:
            given.add(tag_id)
    return given


def _decide(found: Mapping[str, Mapping[Hashable, Slot]], tags: Mapping[str, TagDef]) -> dict[str, bool]:
    """The tags given (per tag: whether it counted only non-generic mentions). A tag is given when its
    best mentions per place sum to its ``min_score`` and one of them is outside context; a tag whose
    ``yields_to`` tags are given loses its generic mentions."""
    provisional = _provisional(found, tags)
    final: dict[str, bool] = {}
    for tag_id, places in found.items():
        td = tags[tag_id]
        if td.yields_to and not provisional.isdisjoint(td.yields_to):
            score, own = _score(places, True)
            if own and score >= td.min_score:
                final[tag_id] = True
        elif tag_id in provisional:
            final[tag_id] = False
    return final


def _verdicts(found: Mapping[str, Mapping[Hashable, Slot]], tags: Mapping[str, TagDef]) -> list[Verdict]:
    """The verdict on every tag with mentions, with the reason a tag is not given (as :func:`_decide`)."""
    provisional = _provisional(found, tags)
    verdicts = []
    for tag_id, places in found.items():
        td = tags[tag_id]
        yielded = tuple(t for t in td.yields_to if t in provisional)
        score, own = _score(places, bool(yielded))
        if own and score >= td.min_score:
            verdicts.append(Verdict(tag_id, score, True, yielded))
        elif yielded and tag_id in provisional:
            verdicts.append(Verdict(tag_id, score, False, yielded, YIELDS.format(tags=", ".join(yielded))))
        elif score >= td.min_score:
            verdicts.append(Verdict(tag_id, score, False, yielded, CONTEXT_ONLY))
        else:
            verdicts.append(Verdict(tag_id, score, False, yielded,
                                    PASSING.format(score=round(score, 2), minimum=td.min_score)))
    return verdicts


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
