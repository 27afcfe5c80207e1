"""The tagger's rule classes (issue 17), each tested from the rule with sentences written for these tests
(none is copied from a labelled record): abstract structure (context sentences), subject lists, exposures,
combinations and their components, taxa, thin tags, qualifiers, relevance near-misses, calibration.
"""

from __future__ import annotations

import itertools
import math

import pytest

from monitor.tagging import DEFAULT_TAXONOMY, analyse, calibrate, load_taxonomy, tag
from monitor.taxonomy import Calibration, Taxonomy
from monitor.types import AbstractSection, Article, PublicationType, Tagging


@pytest.fixture(scope="module")
def tx() -> Taxonomy:
    return load_taxonomy(DEFAULT_TAXONOMY)


def paper(title: str, abstract: str = "", *, sections: tuple[tuple[str, str], ...] = (),
          pts: tuple[str, ...] = ()) -> Article:
    """``abstract`` is one unlabelled section; ``sections`` are (NlmCategory, text) pairs."""
    parts = tuple(AbstractSection(text=t, label=c.title(), category=c) for c, t in sections)
    if abstract:
        parts = (AbstractSection(text=abstract),) + parts
    return Article(pmid="7", title=title, abstract=parts,
                   publication_types=tuple(PublicationType(name=p) for p in pts))


def run(article: Article, taxonomy: Taxonomy) -> Tagging:
    return tag(article, taxonomy)


# ─────────────────────────────────────── structure: context sentences ───────────────────────────────────


def test_intervention_only_in_background_section_is_not_studied(tx):
    t = run(paper("Faecal microbiota in hidradenitis suppurativa", sections=(
        ("BACKGROUND", "Omega-3 fatty acids and probiotics have been proposed for inflammatory skin disease."),
        ("METHODS", "We sequenced stool from 35 patients and 35 matched controls."),
        ("RESULTS", "Patients had fewer butyrate producers."))), tx)
    assert "omega_3" not in t.interventions and "probiotics" not in t.interventions
    assert "hidradenitis_suppurativa" in t.conditions


def test_two_background_mentions_do_not_add_up_to_a_tag(tx):
    t = run(paper("Skin barrier genes in adults with eczema",
                  "Probiotics are widely sold. Probiotics are also popular with parents. We aimed to sequence "
                  "filaggrin in 80 adults with eczema. Loss-of-function variants were common."), tx)
    assert "probiotics" not in t.interventions


def test_same_intervention_in_the_methods_is_studied(tx):
    t = run(paper("Skin barrier in adults with eczema", sections=(
        ("BACKGROUND", "Eczema is common."),
        ("METHODS", "Participants took a probiotic capsule every morning for ten weeks."))), tx)
    assert "probiotics" in t.interventions


def test_future_research_sentence_gives_no_intervention(tx):
    t = run(paper("Gut microbiota diversity in chronic urticaria", sections=(
        ("METHODS", "Stool from 30 patients was sequenced."),
        ("CONCLUSIONS", "Further trials of prebiotic supplementation are needed."))), tx)
    assert "prebiotics" not in t.interventions


def test_recommendation_is_not_what_the_paper_did(tx):
    t = run(paper("Serum zinc in adults with rosacea", sections=(
        ("METHODS", "Serum zinc was measured in 50 patients and 50 controls."),
        ("CONCLUSIONS", "Zinc supplements should be considered for patients with low levels."))), tx)
    assert "zinc" in t.interventions  # serum zinc is the studied exposure
    assert not t.gut_skin_relevant  # but nobody took any


def test_condition_named_only_in_a_case_reports_background_is_not_studied(tx):
    t = run(paper("Remission of vitiligo after treatment of small intestinal bacterial overgrowth",
                  "Autoimmune diseases such as lupus often cluster. We report a 50-year-old woman whose vitiligo "
                  "repigmented after rifaximin. Breath testing had shown overgrowth."), tx)
    assert "lupus" not in t.conditions and "vitiligo" in t.conditions


# ───────────────────────────────────────────── subject lists ────────────────────────────────────────────


def test_group_in_the_title_makes_every_listed_condition_a_subject(tx):
    t = run(paper("The gut microbiome in inflammatory skin diseases",
                  "Inflammatory skin diseases such as acne, psoriasis and atopic dermatitis share immune pathways. "
                  "This review summarises how gut bacteria shape them."), tx)
    assert {"acne", "psoriasis", "atopic_dermatitis"} <= set(t.conditions)


def test_review_sentence_naming_the_group_and_its_members_lists_subjects(tx):
    t = run(paper("Diet and the skin", "Several common dermatoses, namely rosacea, acne and seborrheic dermatitis, "
                  "respond to what patients eat. We summarise the trials.", pts=("Review",)), tx)
    assert {"rosacea", "acne", "seborrheic_dermatitis"} <= set(t.conditions)


def test_a_primary_studys_background_list_is_not_its_subject(tx):
    t = run(paper("Stool microbiota in rosacea", sections=(
        ("BACKGROUND", "Like other skin disorders such as psoriasis and acne, rosacea has been linked to the gut."),
        ("METHODS", "We compared stool of 40 rosacea patients with 40 controls."))), tx)
    assert t.conditions == ("rosacea",)


# ─────────────────────────────────────────────── exposures ──────────────────────────────────────────────


def test_lifestyle_exposures_studied_as_variables(tx):
    t = run(paper("Smoking, drinking and severity of hidradenitis suppurativa", sections=(
        ("METHODS", "Current smoking and weekly alcohol intake were recorded in 300 patients."),
        ("RESULTS", "Smoking was associated with a higher Hurley stage."))), tx)
    assert "lifestyle" in t.interventions


def test_perceived_stress_as_the_exposure(tx):
    t = run(paper("Perceived stress and flares of psoriasis", sections=(
        ("RESULTS", "Higher perceived stress scores predicted flares within four weeks."),)), tx)
    assert "lifestyle" in t.interventions


def test_dietary_exposure_as_the_variable(tx):
    t = run(paper("Glycaemic load and acne in young adults", sections=(
        ("RESULTS", "Acne severity rose with dietary glycaemic load (odds ratio 1.8)."),)), tx)
    assert "dietary_pattern" in t.interventions


def test_adjustment_variables_are_not_exposures(tx):
    t = run(paper("Gut dysbiosis in vitiligo", sections=(
        ("METHODS", "Models were adjusted for smoking, alcohol use and sleep duration."),
        ("RESULTS", "Vitiligo was associated with lower diversity."))), tx)
    assert "lifestyle" not in t.interventions


# ───────────────────────────────────────── combinations and components ──────────────────────────────────


def test_synbiotic_study_naming_its_components_carries_them(tx):
    t = run(paper("A synbiotic for infants with eczema",
                  "We gave a synbiotic made of Bifidobacterium breve and fructo-oligosaccharides to 90 infants "
                  "with eczema for 12 weeks."), tx)
    assert {"synbiotics", "probiotics", "prebiotics"} <= set(t.interventions)


def test_probiotic_plus_prebiotic_is_a_synbiotic(tx):
    t = run(paper("Eczema in toddlers", "Toddlers received a probiotic plus a prebiotic fibre blend daily for 8 weeks."),
            tx)
    assert "synbiotics" in t.interventions


# ───────────────────────────────────────────────── taxa ─────────────────────────────────────────────────


def test_taxa_depleted_in_a_composition_study_are_not_probiotics(tx):
    t = run(paper("Stool bacteria in lichen planus", sections=(
        ("RESULTS", "Bifidobacterium and Lactobacillus were depleted in patients compared with controls."),)), tx)
    assert "probiotics" not in t.interventions


def test_named_strain_found_by_mendelian_randomization_is_not_an_intervention(tx):
    t = run(paper("Gut bacteria and vitiligo risk: a Mendelian randomization study", sections=(
        ("RESULTS", "Lactobacillus rhamnosus GG abundance was inversely related to vitiligo in the genetic "
                    "analysis."),)), tx)
    assert "probiotics" not in t.interventions


def test_heat_killed_strain_is_a_postbiotic_not_a_probiotic(tx):
    t = run(paper("Lactobacillus plantarum K8 for dry skin", sections=(
        ("METHODS", "Adults took tablets of heat-killed Lactobacillus plantarum K8 for 12 weeks."),)), tx)
    assert "postbiotics" in t.interventions and "probiotics" not in t.interventions


def test_live_and_killed_arms_are_both(tx):
    t = run(paper("Live or killed Lactobacillus paracasei GM-080 in eczema", sections=(
        ("METHODS", "Children received live Lactobacillus paracasei GM-080, heat-killed cells of the same strain, "
                    "or placebo."),)), tx)
    assert {"postbiotics", "probiotics"} <= set(t.interventions)


def test_named_strain_given_by_mouth_is_a_probiotic(tx):
    t = run(paper("Lactobacillus reuteri DSM 17938 in infant eczema",
                  "Infants were given drops of the strain for eight weeks."), tx)
    assert "probiotics" in t.interventions


# ─────────────────────────────────────────────── thin tags ──────────────────────────────────────────────


@pytest.mark.parametrize("text,tag_id", [
    ("Patients took berberine capsules twice daily for rosacea.", "herbal_antimicrobials"),
    ("Patients took oral barberry extract for acne for four weeks.", "herbal_antimicrobials"),
    ("Pancreatic enzyme replacement therapy was given with each meal to patients with psoriasis.",
     "digestive_enzymes"),
    ("Adults with eczema took a tyndallized Lactobacillus preparation daily.", "postbiotics"),
    ("A paraprobiotic made of inactivated lactic acid bacteria was given to adults with acne.", "postbiotics"),
    ("Patients with psoriasis underwent washed microbiota transplantation three times.",
     "fecal_microbiota_transplant"),
    ("Adults with urticaria followed a diet low in histamine for four weeks.", "elimination_diet"),
    ("Ultra-processed food intake was recorded in 400 adolescents with acne.", "dietary_pattern"),
])
def test_thin_tags_are_found(tx, text, tag_id):
    assert tag_id in run(paper("A trial in skin disease", sections=(("METHODS", text),)), tx).interventions


# ─────────────────────────────────────────────── qualifiers ─────────────────────────────────────────────


def test_diet_word_qualifying_a_supplement_is_not_a_dietary_pattern(tx):
    t = run(paper("Dietary galacto-oligosaccharides and skin hydration", sections=(
        ("METHODS", "Women took dietary galacto-oligosaccharides or a placebo for 8 weeks."),)), tx)
    assert "prebiotics" in t.interventions and "dietary_pattern" not in t.interventions


def test_diet_and_a_supplement_side_by_side_are_both(tx):
    t = run(paper("Diet and probiotics in acne", sections=(
        ("OBJECTIVE", "To review diet and probiotics as adjuncts in acne."),)), tx)
    assert {"dietary_pattern", "probiotics"} <= set(t.interventions)


def test_exclusion_diet_named_by_what_it_excludes(tx):
    t = run(paper("An egg-free and peanut-free diet in infants with eczema", sections=(
        ("METHODS", "Infants followed a peanut-free diet for three months."),)), tx)
    assert "elimination_diet" in t.interventions and "dietary_pattern" not in t.interventions


# ─────────────────────────────────────────── relevance near-misses ──────────────────────────────────────


@pytest.mark.parametrize("article", [
    paper("Serum 25-hydroxyvitamin D in alopecia areata", sections=(
        ("METHODS", "Serum vitamin D was measured in 90 patients and 90 controls."),
        ("RESULTS", "Vitamin D deficiency was more frequent in patients."),
        ("CONCLUSIONS", "Vitamin D supplementation deserves further study."))),
    paper("Topical zinc oxide cream for acne", sections=(
        ("METHODS", "A 5% zinc cream was applied to the face twice daily."),)),
    paper("The skin microbiome in atopic dermatitis", sections=(
        ("RESULTS", "Lesional skin carried more Staphylococcus aureus and lower bacterial diversity."),)),
    paper("The oral microbiome in oral lichen planus", sections=(
        ("RESULTS", "The salivary microbiome of patients with oral lichen planus showed more Fusobacterium."),)),
    paper("Glutamine for irritable bowel syndrome", sections=(
        ("METHODS", "Adults with irritable bowel syndrome took oral glutamine for 8 weeks."),)),
])
def test_near_misses_are_not_relevant(tx, article):
    assert not run(article, tx).gut_skin_relevant


@pytest.mark.parametrize("article", [
    paper("Oral vitamin D3 in children with atopic dermatitis", sections=(
        ("METHODS", "Children took 1000 IU vitamin D3 capsules daily for 3 months."),)),
    paper("Oral glutamine and healing of pressure ulcers", sections=(
        ("METHODS", "Residents with pressure ulcers drank a glutamine-enriched supplement twice daily."),)),
    paper("Fecal microbiota transplantation in psoriasis", sections=(
        ("RESULTS", "After transplantation the psoriasis area and severity index fell by half."),)),
])
def test_gut_skin_papers_are_relevant(tx, article):
    assert run(article, tx).gut_skin_relevant


# ───────────────────────────────────────────── relevance score ──────────────────────────────────────────


def test_calibration_is_monotone_and_keeps_the_ends():
    cal = Calibration(1.7, 0.3)
    values = [calibrate(x / 100, cal) for x in range(101)]
    assert values[0] == 0.0 and values[-1] == 1.0
    assert all(a <= b for a, b in itertools.pairwise(values))
    assert calibrate(0.5, Calibration(1.0, 0.0)) == pytest.approx(0.5)
    assert calibrate(0.5, cal) == pytest.approx(1 / (1 + math.exp(-0.3)))


def test_relevance_is_in_the_unit_interval_and_matches_the_threshold(tx):
    for article in (paper("Probiotics for eczema: a randomised trial"), paper("Keratinocytes in psoriasis"),
                    paper("Gut microbiota in Crohn disease")):
        t = run(article, tx)
        assert 0.0 <= t.relevance <= 1.0
        assert t.gut_skin_relevant == (t.relevance >= tx.relevance_threshold)


def test_analysis_explains_each_discount(tx):
    a = analyse(paper("Gut microbiota in psoriasis", sections=(
        ("METHODS", "Patients who had taken probiotics were excluded. Stool was sequenced."),)), tx)
    reasons = {c.reason for c in a.considered if c.target == "probiotics"}
    assert reasons == {"inside exclusion criteria"}
    assert all(c.weight == 0.0 for c in a.considered if c.reason)


@pytest.mark.parametrize("conclusion", [
    "Zinc supplementation may be beneficial for these patients.",
    "Oral zinc could help patients with low levels.",
    "These results support dietary zinc intake in acne.",
])
def test_serum_level_study_with_an_intake_implication_is_not_relevant(tx, conclusion):
    t = run(paper("Serum zinc in acne vulgaris", sections=(
        ("METHODS", "Serum zinc was measured in 60 patients with acne and 60 controls."),
        ("RESULTS", "Zinc levels were lower in patients with severe acne."),
        ("CONCLUSIONS", conclusion))), tx)
    assert "zinc" in t.interventions and not t.gut_skin_relevant


def test_trial_whose_methods_give_the_nutrient_by_mouth_stays_relevant(tx):
    t = run(paper("Zinc in acne vulgaris", sections=(
        ("METHODS", "Patients took zinc gluconate capsules daily for 12 weeks."),
        ("CONCLUSIONS", "Oral zinc reduced inflammatory lesions."))), tx)
    assert t.gut_skin_relevant


def test_skin_study_with_gut_only_as_adverse_event_is_not_relevant(tx):
    t = run(paper("Oral antihistamine for chronic pruritus", sections=(
        ("METHODS", "Adults with chronic pruritus took the drug for 8 weeks."),
        ("RESULTS", "Itch fell; drowsiness and constipation were the common adverse events."))), tx)
    assert not t.gut_skin_relevant
