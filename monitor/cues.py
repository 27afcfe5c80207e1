"""Codes shared by the taxonomy compiler and the tagger (:mod:`monitor.taxonomy`, :mod:`monitor.document`,
:mod:`monitor.tagging`).

Owns the bit of each sentence cue and relevance vocabulary (:data:`CUE_BITS`: a sentence's cues are one
int, tested with ``&`` in the tagger's innermost loop) and the integer codes of a tag action's kind,
strength and gut-side rule.
"""

from __future__ import annotations

__all__ = ["CUE_BITS", "GUT_RULES"]

CUE_BITS = {name: 1 << i for i, name in enumerate(
    ("aim", "conclusion", "future", "confounder", "exclusion", "adverse", "composition", "intervention",
     "combination", "topical", "oral", "blood", "negation", "skin", "skin_microbiome", "gut", "gut_weak",
     "diet", "subject_group", "live", "nongut_microbiome"))}
AIM, CONCLUSION, FUTURE, CONFOUNDER, EXCLUSION, ADVERSE, COMPOSITION, INTERVENTION, COMBINATION, \
    TOPICAL, ORAL, BLOOD, NEGATION, SKIN, SKIN_MICROBIOME, GUT, GUT_WEAK, DIET, SUBJECT_GROUP, LIVE, \
    NONGUT_MICROBIOME = CUE_BITS.values()

# What a tag pattern's match is: its tag's kind, how strongly the pattern names the tag, and how the tag
# counts towards the gut side of relevance (the taxonomy's gut_side).
K_CONDITION, K_INTERVENTION, K_DESIGN = range(3)
STRONG, GENERIC, WEAK, STRAIN = range(4)
GUT_ALWAYS, GUT_UNLESS_TOPICAL, GUT_IF_ORAL, GUT_NEVER = range(4)
GUT_RULES = {"always": GUT_ALWAYS, "unless_topical": GUT_UNLESS_TOPICAL, "if_oral": GUT_IF_ORAL,
             "never": GUT_NEVER}
