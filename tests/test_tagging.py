"""Tagger and taxonomy: every tag id with a positive and a near-miss negative case, the studied-vs-passing
rules (section weighting, negation, exclusion criteria, confounders, adverse events, composition findings),
topical vs oral, abbreviations, designs from publication types vs text, relevance near-misses,
determinism, taxonomy validation, retag-by-synonym, and quality floors on the labelled set.

The article snippets are written for these tests (short, realistic, not copied from any abstract).
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from monitor import pubmed
from monitor.errors import ConfigError
from monitor.tagging import DEFAULT_TAXONOMY, load_taxonomy, tag
from monitor.types import (
    AbstractSection,
    Article,
    MeshHeading,
    PublicationType,
    Tagging,
)
from tests.tagging_data import (
    DEV2,
    LABELLED,
    evaluate,
    load_records,
    row_to_article,
    split_halves,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tx():
    return load_taxonomy(DEFAULT_TAXONOMY)


def art(title: str = "", abstract: str = "", *, sections: tuple[tuple[str, str], ...] = (),
        mesh: tuple[str, ...] = (), pts: tuple[str, ...] = (), keywords: tuple[str, ...] = ()) -> Article:
    """An article: ``abstract`` is one unlabelled section; ``sections`` are (NlmCategory, text) pairs;
    a MeSH name ending in ``*`` is a major topic."""
    parts = tuple(AbstractSection(text=t, label=c.title(), category=c) for c, t in sections)
    if abstract:
        parts = (AbstractSection(text=abstract),) + parts
    return Article(
        pmid="1",
        title=title,
        abstract=parts,
        mesh=tuple(MeshHeading(descriptor=m.rstrip("*"), major=m.endswith("*")) for m in mesh),
        publication_types=tuple(PublicationType(name=p) for p in pts),
        keywords=keywords,
    )


def tags_of(article: Article, taxonomy) -> set[str]:
    return set(tag(article, taxonomy).tags)


# ───────────────────────────────────────────── every tag id ─────────────────────────────────────────────
# (tag id, positive article, negative article). Negatives are near-misses: the word is there, or a
# neighbour of it, but the paper does not study the thing.

CASES = [
    # conditions
    ("atopic_dermatitis",
     art("Oral Lactobacillus supplementation for infants with eczema: a randomised trial"),
     art("Allergic contact dermatitis to nickel among metal workers",
         "Patch testing confirmed nickel sensitisation in 40 workers with hand eczema.")),
    ("psoriasis",
     art("Faecal microbiota composition in plaque psoriasis",
         "We compared stool samples of 30 patients with psoriasis and 30 controls by 16S sequencing."),
     art("Gut microbiota in adults with atopic dermatitis",
         sections=(("BACKGROUND", "Like psoriasis, atopic dermatitis is an immune-mediated skin disease."),
                   ("METHODS", "Stool from 40 adults with atopic dermatitis was sequenced.")))),
    ("rosacea",
     art("Small intestinal bacterial overgrowth in patients with rosacea"),
     art("Diet and acne in adolescents",
         sections=(("BACKGROUND", "Acne shares some triggers with rosacea."),
                   ("RESULTS", "Dairy intake was associated with acne severity.")))),
    ("acne",
     art("Dietary glycaemic load and acne vulgaris: a cross-sectional study"),
     art("Cutibacterium acnes biofilm on shoulder implants after arthroplasty")),
    ("urticaria",
     art("Gut dysbiosis in chronic spontaneous urticaria (CSU)",
         "Stool from 25 CSU patients and 20 controls was analysed. CSU activity correlated with diversity."),
     art("Rifaximin for small intestinal bacterial overgrowth",
         sections=(("METHODS", "Patients with SIBO received rifaximin for 14 days."),
                   ("RESULTS", "SIBO was eradicated in 60%. Adverse events included hives and nausea.")))),
    ("lichen_planus",
     art("Helicobacter pylori infection in oral lichen planus: a case-control study"),
     art("Vulvar lichen sclerosus and gut microbiota")),
    ("lupus",
     art("Gut microbiota and disease activity in systemic lupus erythematosus (SLE)",
         "Faecal microbiota of 40 SLE patients differed from controls."),
     art("Lupus anticoagulant and thrombosis risk in pregnancy")),
    ("vitiligo",
     art("Vitiligo and the gut microbiome: a systematic review"),
     art("Gut microbiome in alopecia areata",
         sections=(("BACKGROUND", "Autoimmune skin diseases such as vitiligo have been linked to dysbiosis."),
                   ("RESULTS", "Patients with alopecia areata had lower alpha diversity.")))),
    ("bullous_disorders",
     art("Dermatitis herpetiformis: skin and small bowel response to a gluten-free diet"),
     art("Skin fragility in epidermolysis bullosa simplex: a genotype study")),
    ("hidradenitis_suppurativa",
     art("Brewer's yeast exclusion diet in acne inversa"),
     art("Acne and diet in young adults",
         sections=(("BACKGROUND", "Follicular occlusion also underlies hidradenitis suppurativa."),
                   ("RESULTS", "Milk intake was associated with acne.")))),
    ("seborrheic_dermatitis",
     art("Oral probiotic supplementation reduces dandruff severity: a placebo-controlled trial"),
     art("Dermoscopy of seborrheic keratosis in older adults")),
    ("alopecia_areata",
     art("Hair regrowth in alopecia areata after faecal microbiota transplantation"),
     art("Oral minoxidil for androgenetic alopecia in women")),
    ("skin_aging",
     art("Oral collagen peptides and a Lactobacillus strain improve facial wrinkles and photoaging"),
     art("Healthy ageing and the gut microbiome in centenarians")),
    # interventions
    ("probiotics",
     art("Lactobacillus rhamnosus GG in children with atopic dermatitis: a double-blind trial"),
     art("Gut microbiota in psoriasis",
         sections=(("METHODS", ("Patients who had taken probiotics or antibiotics within 3 months were excluded. "
                                "Stool samples were sequenced.")),
                   ("RESULTS", "Lactobacillus and Bifidobacterium were depleted in psoriasis patients.")))),
    ("prebiotics",
     art("Galacto-oligosaccharide supplementation and eczema in infants",
         "Infants received formula supplemented with galacto-oligosaccharides or placebo for 6 months."),
     art("Dietary fibre intake and psoriasis severity",
         "Higher fibre intake was associated with milder psoriasis in 300 adults.")),
    ("synbiotics",
     art("Eczema in infants given Bifidobacterium breve plus galacto-oligosaccharides",
         "Infants received a probiotic combined with a prebiotic oligosaccharide mixture for 12 weeks."),
     art("The gut–skin axis in acne: a narrative review",
         "This review discusses probiotics and prebiotics as possible adjuncts in acne care.")),
    ("postbiotics",
     art("Heat-killed Lactobacillus paracasei for adult atopic dermatitis: a randomised trial"),
     art("Live Lactobacillus paracasei capsules in adult atopic dermatitis: a randomised trial")),
    ("fecal_microbiota_transplant",
     art("Psoriasis remission after fecal microbiota transplantation (FMT)",
         "A man with plaque psoriasis received FMT by colonoscopy. After two FMT sessions PASI improved."),
     art("Faecal microbiota composition in rosacea",
         "Fecal microbiota of 30 rosacea patients was profiled by 16S rRNA sequencing.")),
    ("elimination_diet",
     art("A low-histamine diet in chronic spontaneous urticaria: a prospective study"),
     art("Dietary habits of adolescents with acne: a questionnaire study",
         "Acne was associated with chocolate and dairy intake.")),
    ("gluten_free_diet",
     art("Response of psoriasis to a gluten-free diet in patients with antigliadin antibodies"),
     art("Transglutaminase antibodies in dermatitis herpetiformis",
         "Serum tissue transglutaminase IgA was measured in 50 patients.")),
    ("dietary_pattern",
     art("Mediterranean diet adherence and psoriasis severity: a cross-sectional study"),
     art("Refractory dermatitis herpetiformis on a gluten-free diet",
         "Patients had followed a strict gluten-free diet for years; the rash persisted despite the diet.")),
    ("vitamin_d",
     art("Cholecalciferol 2000 IU/day for atopic dermatitis in children: a randomised trial"),
     art("Vitamin D receptor gene polymorphisms in vitiligo")),
    ("zinc",
     art("Oral zinc sulphate in acne vulgaris: a randomised comparison with minocycline"),
     art("A zinc finger protein regulates keratinocyte differentiation")),
    ("omega_3",
     art("Fish oil supplementation in plaque psoriasis: a double-blind trial"),
     art("Psoriasis and fish allergy: a case report")),
    ("l_glutamine",
     art("L-glutamine supplementation, intestinal permeability and acne"),
     art("Glutamine synthetase expression in psoriatic keratinocytes")),
    ("digestive_enzymes",
     art("Digestive enzyme supplementation in rosacea with dyspepsia: an open-label pilot study",
         "Patients received pancreatic enzyme supplements with meals for 8 weeks."),
     art("Gut microbiota in rosacea",
         sections=(("BACKGROUND", "Digestive enzymes and bile acids shape the gut environment."),
                   ("RESULTS", "Rosacea patients had lower microbial diversity.")))),
    ("herbal_antimicrobials",
     art("Herbal antimicrobials versus rifaximin for SIBO in rosacea"),
     art("Herbal cosmetics and contact dermatitis")),
    ("antibiotics",
     art("Helicobacter pylori eradication and chronic urticaria remission"),
     art("Gut microbiota of adults with atopic dermatitis",
         sections=(("METHODS", "Participants were excluded if they had used antibiotics in the previous month."),
                   ("RESULTS", "Atopic dermatitis was associated with reduced Faecalibacterium.")))),
    ("lifestyle",
     art("Smoking, alcohol and psoriasis",
         sections=(("RESULTS", "Current smoking and heavy alcohol consumption were associated with severe psoriasis."),
                   ("CONCLUSIONS", "Lifestyle factors shape psoriasis severity."))),
     art("Gut microbiota in psoriasis",
         sections=(("METHODS", "Analyses were adjusted for age, sex, smoking status and alcohol use."),
                   ("RESULTS", "Oxidative stress markers and dysbiosis were higher in psoriasis.")))),
    # designs
    ("rct",
     art("Probiotics for eczema", "In this randomized, double-blind, placebo-controlled trial, 120 infants "
         "received a probiotic or placebo."),
     art("Probiotics for eczema: a meta-analysis of randomized controlled trials")),
    ("meta_analysis",
     art("Vitamin D and atopic dermatitis", pts=("Meta-Analysis",)),
     art("Vitamin D and atopic dermatitis",
         sections=(("BACKGROUND", "A previous meta-analysis suggested a benefit."),
                   ("METHODS", "We measured serum 25(OH)D in 80 children.")))),
    ("systematic_review",
     art("Diet and acne: a systematic review following PRISMA"),
     art("Diet and acne in students",
         sections=(("BACKGROUND", "A systematic review found weak evidence."),
                   ("METHODS", "We surveyed 500 students about dairy intake.")))),
    ("review",
     art("The gut–skin axis in psoriasis", pts=("Review",)),
     art("Rosacea outcomes", "We reviewed the charts of 120 patients with rosacea treated with doxycycline.")),
    ("clinical_trial",
     art("Synbiotics in psoriasis", "An open-label single-arm trial in 30 patients.", pts=("Clinical Trial, Phase II",)),
     art("Synbiotics in psoriasis", "A randomized, double-blind, placebo-controlled clinical trial in 60 adults.")),
    ("observational",
     art("Gut microbiota and acne: a case-control study"),
     art("Probiotics and acne: a systematic review",
         "We included randomized trials; case-control and cohort studies were excluded.")),
    ("mendelian_randomization",
     art("Gut microbiota and rosacea: a two-sample Mendelian randomization study"),
     art("Gut microbiota and rosacea: a case-control study")),
    ("case_report",
     art("Psoriasis after fecal microbiota transplantation", "We report a 45-year-old man who developed psoriasis."),
     art("Probiotics in atopic dermatitis: a systematic review",
         "Case reports and case series were excluded from this review.")),
    ("animal",
     art("Lactobacillus reuteri attenuates imiquimod-induced psoriasiform dermatitis in mice"),
     art("The gut–skin axis in psoriasis: a review", "Studies in mice suggest that butyrate modulates Th17 cells.",
         pts=("Review",))),
    ("in_vitro",
     art("Postbiotic supernatants reduce cytokine release from HaCaT keratinocytes in vitro"),
     art("The gut–skin axis: a review", "In vitro studies of keratinocytes support a role for metabolites.",
         pts=("Review",))),
]


@pytest.mark.parametrize("tag_id,positive,negative", CASES, ids=[c[0] for c in CASES])
def test_each_tag_positive_and_negative(tx, tag_id, positive, negative):
    assert tag_id in tags_of(positive, tx), tag(positive, tx)
    assert tag_id not in tags_of(negative, tx), tag(negative, tx)


def test_every_tag_id_of_the_guide_is_covered(tx):
    guide = {
        "atopic_dermatitis", "psoriasis", "rosacea", "acne", "urticaria", "lichen_planus", "lupus", "vitiligo",
        "bullous_disorders", "hidradenitis_suppurativa", "seborrheic_dermatitis", "alopecia_areata", "skin_aging",
        "probiotics", "prebiotics", "synbiotics", "postbiotics", "fecal_microbiota_transplant", "elimination_diet",
        "gluten_free_diet", "dietary_pattern", "vitamin_d", "zinc", "omega_3", "l_glutamine", "digestive_enzymes",
        "herbal_antimicrobials", "antibiotics", "lifestyle", "rct", "meta_analysis", "systematic_review", "review",
        "clinical_trial", "observational", "mendelian_randomization", "case_report", "animal", "in_vitro",
    }
    assert set(tx.tags) == guide
    assert {c[0] for c in CASES} == guide


# ───────────────────────────────────────── studied vs in passing ─────────────────────────────────────────


def test_probiotic_named_once_in_background_of_observational_study_is_not_a_tag(tx):
    a = art("Gut microbiota composition in rosacea",
            sections=(("BACKGROUND", "Probiotics have been proposed for many skin diseases."),
                      ("METHODS", "Stool samples from 40 patients and 40 controls were sequenced."),
                      ("RESULTS", "Rosacea was associated with lower diversity.")))
    t = tag(a, tx)
    assert t.interventions == ()
    assert t.conditions == ("rosacea",)
    assert t.gut_skin_relevant


def test_same_mention_in_methods_is_a_tag(tx):
    a = art("Gut microbiota composition in rosacea",
            sections=(("BACKGROUND", "Rosacea is a chronic facial dermatosis."),
                      ("METHODS", "Patients received a probiotic capsule daily for 8 weeks.")))
    assert "probiotics" in tag(a, tx).interventions


def test_unstructured_abstract_sentences_before_the_aim_are_background(tx):
    passing = art("Gut microbiota in vitiligo",
                  "Probiotics are popular supplements. We aimed to compare the gut microbiota of 30 patients "
                  "with vitiligo and 30 controls. Patients had lower diversity. Bacteroides were enriched.")
    studied = art("Gut microbiota in vitiligo",
                  "Vitiligo is an autoimmune disease. We aimed to test whether probiotics change the gut "
                  "microbiota of 30 patients with vitiligo. Patients had lower diversity.")
    assert "probiotics" not in tag(passing, tx).interventions
    assert "probiotics" in tag(studied, tx).interventions


def test_inline_headings_of_an_unlabelled_abstract_are_sections(tx):
    a = art("Gut microbiota in lichen planus",
            "Background: Probiotics have been tried in many diseases. Methods: We sequenced stool from 20 "
            "patients with lichen planus. Results: Diversity was lower.")
    t = tag(a, tx)
    assert "probiotics" not in t.interventions
    assert any(e.source == "abstract:METHODS" for e in t.evidence if e.tag == "lichen_planus")


def test_negation_prefix_removes_a_mention(tx):
    a = art("Gut microbiota in adults",
            sections=(("METHODS", "We enrolled 50 adults without psoriasis and 50 adults with no history of acne."),))
    assert tag(a, tx).conditions == ()


def test_negated_outcome_is_still_studied(tx):
    a = art("Probiotic formula in infants",
            sections=(("RESULTS", "The probiotic formula did not prevent eczema during the first year."),))
    assert "atopic_dermatitis" in tag(a, tx).conditions


def test_confounder_list_is_not_an_exposure(tx):
    a = art("Gut microbiota in hidradenitis suppurativa",
            sections=(("METHODS", "Models were adjusted for age, sex, smoking and alcohol intake."),
                      ("RESULTS", "Hidradenitis suppurativa was associated with lower diversity.")))
    assert "lifestyle" not in tag(a, tx).interventions


def test_ignore_phrase_hides_the_terms_inside_it(tx):
    a = art("Oxidative stress in psoriasis",
            sections=(("RESULTS", "Oxidative stress levels were higher in 40 patients with psoriasis."),))
    assert "lifestyle" not in tag(a, tx).interventions
    b = art("Perceived stress in psoriasis",
            sections=(("RESULTS", "Perceived stress levels were higher in 40 patients with psoriasis."),))
    assert "lifestyle" in tag(b, tx).interventions


def test_mendelian_randomization_genera_are_not_probiotics(tx):
    a = art("Gut microbiota and acne: a Mendelian randomization study",
            sections=(("RESULTS", ("Genetically predicted Lactobacillus abundance was associated with lower "
                                   "acne risk (OR = 0.72).")),))
    t = tag(a, tx)
    assert "probiotics" not in t.interventions
    assert "mendelian_randomization" in t.designs


def test_generic_phrases_get_no_intervention(tx):
    a = art("Gut microbiota in lupus", "This review summarises microbiota-based treatments and interventions "
            "targeting the gut microbiota in systemic lupus erythematosus.")
    assert tag(a, tx).interventions == ()


def test_rifaximin_and_eradication_are_antibiotics(tx):
    assert "antibiotics" in tags_of(art("Rifaximin for SIBO in rosacea"), tx)
    assert "antibiotics" in tags_of(art("Outcome of H. pylori eradication in chronic urticaria"), tx)
    assert "antibiotics" not in tags_of(art("Helicobacter pylori seroprevalence in lichen planus"), tx)


def test_exposures_count_as_interventions(tx):
    a = art("Early-life antibiotic exposure and childhood eczema: a birth cohort",
            sections=(("RESULTS", "Antibiotic exposure in the first year was associated with eczema at age 5."),))
    t = tag(a, tx)
    assert "antibiotics" in t.interventions
    assert "observational" in t.designs


def test_fibre_is_not_a_prebiotic_unless_called_one(tx):
    a = art("Dietary fibre and acne", sections=(("RESULTS", "A prebiotic fibre, inulin, reduced lesion counts."),))
    assert "prebiotics" in tag(a, tx).interventions


# ─────────────────────────────────────────── topical vs oral ────────────────────────────────────────────


def test_topical_zinc_is_tagged_but_not_gut_skin_relevant(tx):
    a = art("Topical zinc sulphate solution for acne vulgaris",
            sections=(("METHODS", "Patients applied 5% zinc sulfate solution twice daily for 8 weeks."),))
    t = tag(a, tx)
    assert "zinc" in t.interventions and "acne" in t.conditions
    assert not t.gut_skin_relevant


def test_oral_zinc_is_gut_skin_relevant(tx):
    a = art("Oral zinc gluconate for acne vulgaris",
            sections=(("METHODS", "Patients took 30 mg zinc gluconate capsules orally every day."),))
    t = tag(a, tx)
    assert "zinc" in t.interventions and t.gut_skin_relevant


def test_topical_calcitriol_vs_oral_vitamin_d(tx):
    topical = tag(art("Calcitriol ointment in plaque psoriasis: a review"), tx)
    oral = tag(art("Oral vitamin D3 supplementation in plaque psoriasis: a randomised trial"), tx)
    assert "vitamin_d" in topical.interventions and not topical.gut_skin_relevant
    assert "vitamin_d" in oral.interventions and oral.gut_skin_relevant
    assert oral.relevance > topical.relevance


def test_serum_levels_only_are_not_relevant(tx):
    a = art("Serum 25-hydroxyvitamin D levels in vitiligo: a case-control study",
            sections=(("RESULTS", "Serum vitamin D levels were lower in patients with vitiligo."),))
    t = tag(a, tx)
    assert "vitamin_d" in t.interventions
    assert not t.gut_skin_relevant


def test_topical_probiotic_is_not_relevant(tx):
    a = art("A topical probiotic lotion for atopic dermatitis",
            sections=(("METHODS", "A cream containing heat-killed bacteria was applied to lesional skin."),))
    t = tag(a, tx)
    assert not t.gut_skin_relevant


# ─────────────────────────────────────────── relevance ──────────────────────────────────────────────────


def test_skin_microbiome_only_is_not_relevant(tx):
    a = art("The skin microbiome in atopic dermatitis",
            "Staphylococcus aureus colonization of lesional skin increases during flares. This review covers "
            "skin microbiome changes and microbial diversity in atopic dermatitis.")
    assert not tag(a, tx).gut_skin_relevant


def test_gut_only_is_not_relevant(tx):
    a = art("Fecal calprotectin and gut microbiota in Crohn disease",
            "We sequenced stool samples from 60 patients with Crohn disease and 40 controls.")
    t = tag(a, tx)
    assert not t.gut_skin_relevant and t.conditions == ()


def test_gut_study_with_skin_only_as_adverse_event_is_not_relevant(tx):
    a = art("Rifaximin versus herbal therapy for SIBO",
            sections=(("RESULTS", "SIBO was eradicated in 40%. Adverse events were rash and diarrhoea."),))
    t = tag(a, tx)
    assert not t.gut_skin_relevant


@pytest.mark.parametrize("title", [
    "Small intestinal bacterial overgrowth in rosacea",
    "Helicobacter pylori eradication and chronic urticaria remission",  # gut word under a longer tag term
    "Coeliac serology in dermatitis herpetiformis",
    "Inflammatory bowel disease in hidradenitis suppurativa: a cohort study",
    "Western diet and acne in adolescents",
    "Gut microbiota in psoriasis",
])
def test_gut_side_kinds_make_relevant(tx, title):
    assert tag(art(title), tx).gut_skin_relevant


def test_relevance_is_a_score_in_unit_interval_that_orders_borderline_papers(tx):
    strong = tag(art("Probiotics and the gut microbiota in atopic dermatitis: a randomised trial"), tx)
    weak = tag(art("Skin barrier in atopic dermatitis",
                   sections=(("BACKGROUND", "The gut may also matter."),)), tx)
    none = tag(art("Keratinocyte proliferation in psoriasis"), tx)
    assert 0.0 <= none.relevance < weak.relevance < strong.relevance <= 1.0
    assert strong.gut_skin_relevant and not weak.gut_skin_relevant and not none.gut_skin_relevant


# ───────────────────────────────────────────── abbreviations ────────────────────────────────────────────


def test_abbreviation_defined_in_text_counts(tx):
    a = art("Dysbiosis in adults",
            "Atopic dermatitis (AD) affects 10% of adults. We aimed to compare the gut microbiota of AD patients "
            "with controls. AD patients had lower diversity.")
    t = tag(a, tx)
    assert "atopic_dermatitis" in t.conditions
    assert any(e.text == "AD" for e in t.evidence)


def test_abbreviation_defined_for_something_else_does_not_count(tx):
    a = art("Gut microbiota in older adults",
            "Alzheimer's disease (AD) is common. We compared the gut microbiota of AD patients with controls. "
            "AD patients had lower diversity.")
    assert "atopic_dermatitis" not in tag(a, tx).conditions


def test_undefined_abbreviation_does_not_count(tx):
    a = art("Gut microbiota and AD", "We compared the gut microbiota of 20 AD patients with 20 controls.")
    assert "atopic_dermatitis" not in tag(a, tx).conditions


def test_fmt_abbreviation_and_plural(tx):
    a = art("Hair regrowth in an older man",
            "Fecal microbiota transplantation (FMT) was given for diarrhoea. After two FMTs, patches of alopecia "
            "areata regrew.")
    t = tag(a, tx)
    assert "fecal_microbiota_transplant" in t.interventions
    assert sum(1 for e in t.evidence if e.tag == "fecal_microbiota_transplant") == 2


# ───────────────────────────────────────────── designs ──────────────────────────────────────────────────


def test_designs_from_publication_types_first(tx):
    a = art("Probiotics in atopic dermatitis", pts=("Randomized Controlled Trial", "Clinical Trial"))
    t = tag(a, tx)
    assert {"rct", "clinical_trial"} <= set(t.designs)
    assert any(e.source == "publication_type" and e.text == "Randomized Controlled Trial" for e in t.evidence)


def test_designs_from_text(tx):
    assert "rct" in tag(art("Oral probiotics in acne: a randomised, double-blind, placebo-controlled study"), tx).designs
    assert "meta_analysis" in tag(art("Zinc for acne: a meta-analysis"), tx).designs
    assert "observational" in tag(art("Diet and rosacea: a cross-sectional study"), tx).designs
    assert "case_report" in tag(art("Rosacea after FMT: a case report"), tx).designs
    assert "animal" in tag(art("Butyrate reduces dermatitis in murine models"), tx).designs
    assert "in_vitro" in tag(art("Lactobacillus lysate on keratinocytes in cell culture"), tx).designs


def test_review_of_trials_is_not_itself_a_trial(tx):
    t = tag(art("Probiotics for eczema: a systematic review and meta-analysis of randomized controlled trials"), tx)
    assert {"systematic_review", "meta_analysis"} <= set(t.designs)
    assert "rct" not in t.designs


def test_mesh_major_counts_more_than_minor(tx):
    major = tag(art("Clinical observations", mesh=("Psoriasis*",)), tx)
    minor = tag(art("Clinical observations", mesh=("Psoriasis",)), tx)
    assert major.evidence_for("psoriasis")[0].weight > minor.evidence_for("psoriasis")[0].weight
    assert "psoriasis" in major.conditions and "psoriasis" in minor.conditions


def test_author_keywords_count(tx):
    t = tag(art("Gut microbes and skin", keywords=("rosacea", "small intestinal bacterial overgrowth")), tx)
    assert "rosacea" in t.conditions
    assert t.evidence_for("rosacea")[0].source == "keyword"
    assert t.gut_skin_relevant


# ─────────────────────────────────────── evidence, determinism, storage ─────────────────────────────────


def test_every_tag_has_evidence(tx):
    for rec in load_records()[:20]:
        t = tag(rec.article, tx)
        for tag_id in t.tags:
            ev = t.evidence_for(tag_id)
            assert ev, (rec.id, tag_id)
            assert all(e.weight > 0 and e.text and re.match(r"^(mesh|title|keyword|publication_type|abstract:[A-Z]+)$",
                                                            e.source) for e in ev)


def test_deterministic_and_round_trips(tx):
    rec = load_records()[3]
    first, second = tag(rec.article, tx), tag(rec.article, tx)
    assert first == second
    again = tag(rec.article, load_taxonomy(DEFAULT_TAXONOMY))
    assert again == first
    data = first.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert Tagging.from_dict(data) == first
    assert first.taxonomy_version == tx.version


def test_tagging_ids_are_sorted_tuples(tx):
    t = tag(art("Probiotics, zinc and vitamin D in acne and rosacea"), tx)
    assert t.interventions == tuple(sorted(t.interventions)) and len(t.interventions) == 3
    assert t.conditions == ("acne", "rosacea")


def test_empty_article(tx):
    t = tag(Article(pmid="9"), tx)
    assert t.tags == () and t.relevance == 0.0 and not t.gut_skin_relevant


# ───────────────────────────────────────────── taxonomy file ────────────────────────────────────────────


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "taxonomy.toml"
    path.write_text(text, encoding="utf-8")
    return path


def shipped() -> str:
    return DEFAULT_TAXONOMY.read_text(encoding="utf-8")


def test_version_is_file_version_plus_content_hash(tmp_path, tx):
    assert tx.version.startswith("2026.1+")
    edited = shipped().replace("'dandruff'", "'dandruff', 'scalp flaking'")
    other = load_taxonomy(write(tmp_path, edited))
    assert other.version != tx.version and other.version.startswith("2026.1+")
    assert load_taxonomy(write(tmp_path, shipped())).version == tx.version


def test_invalid_regex_names_file_and_key_path(tmp_path):
    text = shipped().replace("  'pro-biotics?',\n", "  'pro-biotics?',\n  'lacto(bacillus',\n", 1)
    with pytest.raises(ConfigError) as err:
        load_taxonomy(write(tmp_path, text))
    assert str(err.value).startswith(
        "taxonomy.toml: interventions.probiotics.patterns[2]: not a valid regular expression: ")
    assert err.value.exit_code == 2


@pytest.mark.parametrize("old,new,message", [
    ('label = "Rosacea"\n', "", "taxonomy.toml: conditions.rosacea.label: is required"),
    ('label = "Rosacea"\n', 'label = "Rosacea"\npattern = ["x"]\n', "taxonomy.toml: conditions.rosacea.pattern: unknown key"),
    ('gut_side = "never"\nmin_score = 1.5', 'gut_side = "sometimes"\nmin_score = 1.5',
     "taxonomy.toml: interventions.lifestyle.gut_side: must be one of always, unless_topical, if_oral, never"),
    ('yields_to = ["elimination_diet", "gluten_free_diet"]', 'yields_to = ["elimination_diet", "paleo"]',
     "taxonomy.toml: interventions.dietary_pattern.yields_to[1]: unknown tag id 'paleo'"),
    ("patterns = ['vitiligo\\w*']", "patterns = ['(?:vitiligo)?']",
     "taxonomy.toml: conditions.vitiligo.patterns[0]: matches the empty string"),
    ("patterns = ['vitiligo\\w*']", "patterns = ['(?P<v>vitiligo)']",
     "taxonomy.toml: conditions.vitiligo.patterns[0]: named groups"),
    ("patterns = ['vitiligo\\w*']", "patterns = 'vitiligo'",
     "taxonomy.toml: conditions.vitiligo.patterns: must be an array of strings"),
    ('version = "2026.1"\n', "", "taxonomy.toml: version: is required"),
    ("[conditions.vitiligo]", "[conditions.Vitiligo]", "taxonomy.toml: conditions.Vitiligo: tag ids must be lowercase"),
    ("[conditions.vitiligo]", "[conditions.psoriasis_]\n[conditions.vitiligo]", "taxonomy.toml: conditions.psoriasis_.label"),
    ('abbreviations = ["HS"]', 'abbreviations = ["hs"]',
     "taxonomy.toml: conditions.hidradenitis_suppurativa.abbreviations[0]: 'hs' is not an abbreviation"),
    ("threshold = 0.5", "threshold = 2", "taxonomy.toml: relevance.threshold: must be between 0 and 1"),
])
def test_validation_errors(tmp_path, old, new, message):
    text = shipped()
    assert old in text, old
    with pytest.raises(ConfigError) as err:
        load_taxonomy(write(tmp_path, text.replace(old, new, 1)))
    assert str(err.value).startswith(message), str(err.value)


def test_ignore_phrase_may_not_repeat_a_pattern(tmp_path):
    text = shipped().replace("  'oxidative stress',", "  'dandruff', 'oxidative stress',", 1)
    with pytest.raises(ConfigError, match=r"ignore\.patterns\[0\]: 'dandruff' is also listed in "
                                          r"conditions\.seborrheic_dermatitis\.patterns"):
        load_taxonomy(write(tmp_path, text))


def test_duplicate_tag_id_across_kinds(tmp_path):
    text = shipped() + '\n[designs.zinc]\nlabel = "Zinc design"\npatterns = ["zinc study"]\n'
    with pytest.raises(ConfigError, match=r"designs\.zinc: duplicate tag id \(also interventions\.zinc\)"):
        load_taxonomy(write(tmp_path, text))


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_taxonomy(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match=r"taxonomy.toml: not valid TOML"):
        load_taxonomy(write(tmp_path, "version = \n"))


def test_a_user_can_add_a_tag_without_code(tmp_path):
    text = shipped() + '\n[conditions.lichen_sclerosus]\nlabel = "Lichen sclerosus"\npatterns = [\'lichen sclerosus\']\n'
    custom = load_taxonomy(write(tmp_path, text))
    t = tag(art("Gut microbiota in vulvar lichen sclerosus"), custom)
    assert t.conditions == ("lichen_sclerosus",)
    assert t.gut_skin_relevant


def test_adding_a_synonym_changes_exactly_the_affected_article(tmp_path, tx):
    articles = {
        "kefir": art("Daily kefir drinks in adults with acne: a pilot trial",
                     sections=(("METHODS", "Participants drank 200 ml of kefir daily for 12 weeks."),)),
        "zinc": art("Oral zinc in adults with acne: a pilot trial"),
        "probiotic": art("Probiotic capsules in adults with acne: a pilot trial"),
        "none": art("Isotretinoin in adults with acne: a pilot trial"),
    }
    before = {k: tag(a, tx) for k, a in articles.items()}
    text = shipped().replace("  'pro-biotics?',\n", "  'pro-biotics?',\n  'kefir',\n", 1)
    edited = load_taxonomy(write(tmp_path, text))
    after = {k: tag(a, edited) for k, a in articles.items()}
    changed = {k for k in articles if before[k].tags != after[k].tags}
    assert changed == {"kefir"}
    assert "probiotics" in after["kefir"].interventions and "probiotics" not in before["kefir"].interventions
    assert all(after[k].taxonomy_version == edited.version != tx.version for k in articles)


def test_shipped_file_documents_the_pattern_syntax():
    head = shipped().split("version =")[0]
    assert "Pattern syntax" in head and "case-insensitively" in head


# ───────────────────────────────────────────── quality floors ───────────────────────────────────────────
# Figures on tests/data/tagging/labelled.jsonl and dev2.jsonl (copies of ../shared/tagging-dev/dev.jsonl and
# dev2.jsonl; see SOURCES.md). Floors sit a little under what the tagger reaches (bench/RESULTS.md), so a
# rule change that loses quality on either set fails here; the issue's targets are for a hidden set.
FLOORS = {
    "dev": {"conditions_micro_f1": 0.98, "interventions_micro_f1": 0.93, "relevance_precision": 0.97,
            "relevance_recall": 0.97},
    "dev2": {"conditions_micro_f1": 0.96, "interventions_micro_f1": 0.96, "relevance_precision": 0.94,
             "relevance_recall": 0.97},
    "both": {"conditions_micro_f1": 0.97, "interventions_micro_f1": 0.95, "relevance_precision": 0.96,
             "relevance_recall": 0.97},
}


@pytest.mark.parametrize("name", sorted(FLOORS))
def test_quality_floors_on_the_labelled_sets(tx, name):
    records = {"dev": load_records(LABELLED), "dev2": load_records(DEV2),
               "both": load_records(LABELLED) + load_records(DEV2)}[name]
    report, _ = evaluate(records, tx)
    assert report.n == {"dev": 50, "dev2": 70, "both": 120}[name]
    figures = report.figures()
    low = {k: round(figures[k], 3) for k, floor in FLOORS[name].items() if figures[k] < floor}
    assert not low, f"below the floor on {name}: {low} (floors {FLOORS[name]}); run bench/tagging_eval.py --errors"


def test_quality_on_the_held_out_half_meets_the_issue_targets(tx):
    _, half_b = split_halves(load_records(LABELLED))
    figures = evaluate(half_b, tx)[0].figures()
    assert figures["conditions_micro_f1"] >= 0.96
    assert figures["interventions_micro_f1"] >= 0.90
    assert figures["relevance_precision"] >= 0.97
    assert figures["relevance_recall"] >= 0.97


def test_unrelated_real_records_are_rarely_relevant(tx):
    """The ~1,550 real PubMed records in tests/data/efetch are about other subjects: at most 1% of them
    may be flagged gut–skin relevant (issue 17)."""
    articles = []
    for path in sorted((ROOT / "tests" / "data" / "efetch").rglob("*.xml*")):
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        articles += [a for a in pubmed.parse(data) if isinstance(a, Article) and (a.title or a.abstract)]
    assert len(articles) > 1000
    flagged = [a.pmid for a in articles if tag(a, tx).gut_skin_relevant]
    assert len(flagged) <= 0.01 * len(articles), flagged


def test_labelled_row_adapter():
    row = {"id": "x-1", "pmid": None, "title": "T", "abstract": "A", "mesh_terms":
           ["Fecal Microbiota Transplantation* / trends", "Glutamine / metabolism*", "Adult"],
           "publication_types": ["Case Reports"]}
    a = row_to_article(row)
    assert a.pmid == "x-1" and a.abstract == (AbstractSection(text="A"),)
    assert [(m.descriptor, m.major) for m in a.mesh] == [
        ("Fecal Microbiota Transplantation", True), ("Glutamine", False), ("Adult", False)]
    assert a.mesh[1].qualifiers[0].major
    assert a.publication_types == (PublicationType(name="Case Reports"),)


def test_labelled_set_provenance_is_recorded():
    sources = (LABELLED.parent / "SOURCES.md").read_text(encoding="utf-8")
    assert "tagging-dev/dev.jsonl" in sources
