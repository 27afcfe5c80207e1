"""The PubMed-like matcher the stand-in and bench/query_recall.py rely on (tests/pubmed_query.py): PubMed's
reading of a term (left to right, phrases, truncation, proximity, fields) and its phrase-index behaviour."""

from __future__ import annotations

import pytest

from tests.pubmed_query import Doc, Matcher, PhraseIndex, QuerySyntaxError, Unsupported, parse

DOCS = [
    Doc("1", "Gut microbiota in psoriasis", "The gut-skin axis links intestinal dysbiosis with skin disease.",
        mesh=("Psoriasis", "Gastrointestinal Microbiome"), major=("Psoriasis",), keywords=("probiotics",)),
    Doc("2", "Oral probiotic supplementation and skin ageing", "Wrinkles decreased. The skin of the gut? No.",
        pub_types=("Randomized Controlled Trial",), languages=("eng",)),
    Doc("3", "Topical zinc for acne", "A cream of zinc sulphate reduced acne lesions in adolescents.",
        languages=("fre",)),
    Doc("4", "Acne and the Cutibacterium acnes skin microbiome", "Skin microbiome, not the gut, was studied."),
    Doc("5", "Axis of skin and gut", "Crohn's disease and skin manifestations: Köbner phenomenon."),
]


def ids(term: str, index: PhraseIndex | None = None) -> list[str]:
    return Matcher(DOCS, index).search(term).ids


def test_fields_phrases_and_truncation() -> None:
    assert ids('"gut microbiota"[tiab]') == ["1"]
    assert ids("gut microbiota[tiab]") == ["1"]  # unquoted words before a tag are one phrase, as in PubMed
    assert ids('"skin gut"[tiab]') == []  # word order matters in a phrase
    assert ids("acne[tiab]") == ["3", "4"]  # acne, not acnes
    assert ids("acne*[tiab]") == ["3", "4"]
    assert ids("acne*[ti]") == ["3", "4"]
    assert ids("probiotic*[tiab]") == ["1", "2"]  # doc 1 by its author keyword (PubMed's [tiab] has them)
    assert ids("probiotic*[ti]") == ["2"]
    assert ids('"gut-skin axis"[tiab]') == ["1"]
    assert ids('"gut skin axis"[tiab]') == ["1"]  # a hyphen separates words
    assert ids("crohn*[tiab]") == ["5"]  # "Crohn's": the apostrophe separates too
    assert ids("kobner[tiab]") == ["5"]  # accents are folded
    assert ids('"Psoriasis"[mh]') == ["1"]
    assert ids('"psoriasis"[majr]') == ["1"]
    assert ids('"Gastrointestinal Microbiome"[mh]') == ["1"]
    assert ids('"Randomized Controlled Trial"[pt]') == ["2"]
    assert ids("english[la]") == ["2"]
    assert ids("3[uid] OR 5[pmid]") == ["3", "5"]
    assert ids("microbiome") == ["1", "4"]  # untagged: all fields, MeSH included (doc 1)


def test_operators_run_left_to_right_without_precedence() -> None:
    # PubMed: a OR b AND c is (a OR b) AND c, not a OR (b AND c).
    assert ids("zinc[tiab] OR psoriasis[tiab] AND gut[tiab]") == ["1"]
    assert ids("zinc[tiab] OR (psoriasis[tiab] AND gut[tiab])") == ["1", "3"]
    assert ids("skin[tiab] NOT gut[tiab]") == []  # every skin doc also says gut, except...
    assert ids("acne[tiab] NOT microbiome[tiab]") == ["3"]
    assert ids("acne[tiab] zinc[tiab]") == ["3"]  # adjacent terms are ANDed


def test_proximity_any_order_within_n_words() -> None:
    assert ids('"skin gut"[tiab:~0]') == ["1"]  # "gut-skin", reversed but adjacent
    assert ids('"skin gut"[tiab:~1]') == ["1", "5"]  # + "skin and gut"
    assert ids('"skin gut"[tiab:~2]') == ["1", "2", "5"]  # + "skin of the gut"; doc 4 has three words between
    assert ids('"axis gut"[ti:~2]') == []
    assert ids('"axis gut"[ti:~3]') == ["5"]


def test_a_phrase_the_index_does_not_know_is_searched_word_by_word() -> None:
    index = PhraseIndex.without(["skin microbiome"])
    out = Matcher(DOCS, index).search('"skin microbiome"[tiab] AND acnes[tiab]')
    assert out.ids == ["4"]
    assert out.warnings == [("QuotedPhraseNotFound", '"skin microbiome"')]
    assert out.translation == '("skin"[Title/Abstract] AND "microbiome"[Title/Abstract]) AND "acnes"[Title/Abstract]'
    assert ids('"skin disease"[tiab]') == ["1"]
    broad = Matcher(DOCS, PhraseIndex.without(["skin disease"])).search('"skin disease"[tiab]')
    assert broad.ids == ["1", "5"]  # doc 5 has both words apart: broader than the phrase
    proximity = Matcher(DOCS, PhraseIndex.without(["skin disease"])).search('"skin disease"[tiab:~0]')
    assert (proximity.ids, proximity.warnings) == (["1"], [])  # proximity does not use the phrase index


def test_unknown_hyphenated_phrase_single_word_or_heading_finds_nothing() -> None:
    index = PhraseIndex.without(["gut-skin axis", "wrinkles", "Psoriasis"])
    m = Matcher(DOCS, index)
    out = m.search('"gut-skin axis"[tiab] OR wrinkles[tiab] OR "Psoriasis"[mh] OR zinc[tiab]')
    assert out.ids == ["3"]
    assert out.errors == [("PhraseNotFound", "gut-skin axis"), ("PhraseNotFound", "wrinkles"),
                          ("PhraseNotFound", "Psoriasis")]


def test_unknown_field_and_unsupported_fields_and_syntax_errors() -> None:
    out = Matcher(DOCS).search("zinc[tiabx]")
    assert (out.ids, out.errors) == (["3"], [("FieldNotFound", "tiabx")])
    with pytest.raises(Unsupported):
        Matcher(DOCS).search("2024[dp]")
    for bad in ("(zinc[tiab]", "zinc[tiab])", "AND zinc[tiab]", "zinc[tiab] OR", '"zinc[tiab]'):
        with pytest.raises(QuerySyntaxError):
            parse(bad)


def test_wildcard_cap_uses_the_first_variants_and_says_so() -> None:
    docs = [Doc(str(i), f"word skinword{i:02d}") for i in range(12)]
    out = Matcher(docs, PhraseIndex(wildcard_cap=5)).search("skinword*[tiab]")
    assert out.ids == ["0", "1", "2", "3", "4"]
    assert out.warnings == [("OutputMessage", "Wildcard search for 'skinword*' used only the first 5 variations. "
                                              "Lengthen root word to search for all endings.")]
