"""monitor/terms.py: named blocks, where a phrase sits in a term, fallbacks and the fixes suggested."""

from __future__ import annotations

import pytest

from monitor.terms import (
    Fallback,
    TermError,
    apply_fallbacks,
    atoms,
    expand,
    find_phrase,
    fixes,
    phrase_key,
    problem_phrase,
    references,
    refusal,
    resolve_blocks,
)


def test_blocks_expand_in_parentheses_and_may_use_other_blocks() -> None:
    blocks = resolve_blocks({"skin": "psoria*[tiab] OR {rare}", "rare": '"lichen sclerosus"[tiab]'})
    assert blocks == {"rare": '"lichen sclerosus"[tiab]', "skin": 'psoria*[tiab] OR ("lichen sclerosus"[tiab])'}
    term = "probiotic*[tiab]\n AND\n ({skin})"
    assert expand(term, blocks) == 'probiotic*[tiab] AND ((psoria*[tiab] OR ("lichen sclerosus"[tiab])))'
    assert references(term) == ("skin",)
    # Braces inside a quoted phrase are text, not references.
    assert expand('"a {b} c"[tiab]', {}) == '"a {b} c"[tiab]'


@pytest.mark.parametrize(("raw", "block", "message"), [
    ({"a": "{b}", "b": "x[tiab] OR {a}"}, "a", "blocks refer to each other in a cycle: a -> b -> a"),
    ({"a": "{a}"}, "a", "blocks refer to each other in a cycle: a -> a"),
    ({"a": "(x[tiab]"}, "a", "has an unclosed '('"),
    ({"a": "{missing}"}, "a", "unknown block {missing} (known: a)"),
    ({"Skin": "x"}, "Skin", "block names are lowercase letters, digits and '_' (starting with a letter), not 'Skin'"),
    ({"a": "x[tiab] OR {Skin Block}"}, "a", "'{Skin Block}' is not a block reference: write {name} with a block "
                                            "name of lowercase letters, digits and '_'"),
])
def test_bad_blocks_name_the_block(raw: dict[str, str], block: str, message: str) -> None:
    with pytest.raises(TermError) as err:
        resolve_blocks(raw)
    assert (err.value.block, str(err.value)) == (block, message)


def test_bad_terms() -> None:
    blocks = {"skin": "psoria*[tiab]"}
    for term, message in [
        ("{skn} AND x[tiab]", "unknown block {skn} (known: skin)"),
        ("x[tiab] AND {skin", "has a stray '{' (block references look like {skin_conditions})"),
        ("(x[tiab] AND {skin}", "has an unclosed '(' (after expanding blocks)"),
        ('x[tiab] AND "y', "has an unmatched double quote"),
    ]:
        with pytest.raises(TermError) as err:
            expand(term, blocks)
        assert str(err.value) == message


def test_atoms_keep_the_tag_and_span() -> None:
    term = '("gut-skin axis"[tiab] OR gut microbiome[tiab]) AND acne[ti] NOT "Psoriasis"[mh]'
    found = [(a.text, a.tag, term[a.start:a.end]) for a in atoms(term)]
    assert found == [("gut-skin axis", "tiab", '"gut-skin axis"[tiab]'),
                     ("gut microbiome", "tiab", "gut microbiome[tiab]"),
                     ("acne", "ti", "acne[ti]"), ("Psoriasis", "mh", '"Psoriasis"[mh]')]
    assert [a.text for a in find_phrase(term, '"Gut-Skin Axis"[All Fields]')] == ["gut-skin axis"]
    assert phrase_key('"Gut skin axis"[All Fields]') == phrase_key("gut-skin axis") == "gut skin axis"
    assert problem_phrase('"qwerty asdfg"[All Fields]') == "qwerty asdfg"


def test_fallback_replaces_every_occurrence_of_the_phrase() -> None:
    term = '("gut-brain-skin axis"[tiab] OR probiotic*[tiab]) AND (acne[tiab] OR "gut-brain-skin axis"[ti])'
    fb = Fallback("gut-brain-skin axis", '"gut brain skin axis"[tiab:~0]')
    rewrite = apply_fallbacks(term, [("QuotedPhraseNotFound", '"gut-brain-skin axis"'),
                                     ("PhraseNotFound", "gut-brain-skin")], [fb])
    assert rewrite.term == ('(("gut brain skin axis"[tiab:~0]) OR probiotic*[tiab]) AND '
                            '(acne[tiab] OR ("gut brain skin axis"[tiab:~0]))')
    assert rewrite.complete  # the single word NCBI also reported lies inside the replaced phrase
    assert [(u.phrase, u.occurrences) for u in rewrite.used] == [("gut-brain-skin axis", 2)]


def test_problems_without_a_fallback_stay_uncovered() -> None:
    term = '"rare phrase"[tiab] OR x[tiabx] OR "other phrase"[tiab]'
    fb = [Fallback("rare phrase", '"rare phrase"[tiab:~1]'), Fallback("not in term", "y[tiab]")]
    rewrite = apply_fallbacks(term, [("QuotedPhraseNotFound", '"rare phrase"'), ("FieldNotFound", "tiabx"),
                                     ("PhraseNotFound", "other phrase"), ("OutputMessage", "No items found.")], fb)
    assert not rewrite.complete
    assert rewrite.uncovered == (("FieldNotFound", "tiabx"), ("PhraseNotFound", "other phrase"))
    # A fallback whose phrase the term does not contain covers nothing.
    missing = apply_fallbacks('"z w"[tiab]', [("PhraseNotFound", "not in term")], fb)
    assert (missing.used, missing.uncovered) == ((), (("PhraseNotFound", "not in term"),))


def test_fixes_offer_proximity_alternatives_and_mesh() -> None:
    term = '"microbiota transfer"[ti] OR "skin-gut axis"[tiab] OR zzqx[tiab] OR a[tiabx]'
    prox = fixes("QuotedPhraseNotFound", '"microbiota transfer"', term)
    assert prox[0].startswith('proximity search (no phrase index needed; any order, adjacent): '
                              '"microbiota transfer"[ti:~0]')
    assert prox[1] == ("or keep the phrase and add a fallback to queries.toml: [fallbacks] "
                       "\"microbiota transfer\" = '\"microbiota transfer\"[ti:~0]'")
    assert 'an alternative phrase: "microbiota transfers"[ti]' in prox
    assert any(f.startswith("a MeSH heading for the concept (look it up: https://meshb.nlm.nih.gov/search?"
                            "searchType=allWords&q=microbiota+transfer)") for f in prox)
    hyphen = fixes("PhraseNotFound", "skin-gut axis", term)
    assert '"skin gut axis"[tiab:~0]' in hyphen[0]
    assert any(f.startswith('without the hyphen: "skin gut axis"[tiab]') for f in hyphen)
    configured = fixes("PhraseNotFound", "skin-gut axis", term,
                       [Fallback("skin-gut axis", "x[tiab]", 'fallbacks."skin-gut axis"')])
    assert configured[0].startswith('a fallback is configured (fallbacks."skin-gut axis"): (x[tiab])')
    assert not any("add a fallback" in f for f in configured)
    assert fixes("PhraseNotFound", "zzqx", term)[0].startswith("check the spelling")
    assert fixes("FieldNotFound", "tiabx", term)[0].startswith("[tiabx] is not a PubMed field tag")
    assert fixes("PhraseIgnored", "and", term) == (
        "'and' was read as a word and ignored: write the operator in capitals (AND)",)
    assert fixes("OutputMessage", "No items found.", term) == ()
    wild = fixes("OutputMessage", "Wildcard search for 'ski*' used only the first 600 variations. Lengthen "
                                  "root word to search for all endings.", term)
    assert wild[0].startswith("ski* has more than 600 endings in PubMed")


def test_refusal_names_the_phrase_and_the_first_fix() -> None:
    line = refusal([("QuotedPhraseNotFound", '"food avoidance"')], '"food avoidance"[tiab] OR diet[tiab]')
    assert line == ("NCBI would run a broader search than written (QuotedPhraseNotFound '\"food avoidance\"'); "
                    "nothing stored; fix: proximity search (no phrase index needed; any order, adjacent): "
                    '"food avoidance"[tiab:~0] (loosen with ~1, ~2) (`monitor queries check` lists every fix)')
