r"""Reference-manager formats: stored papers → RIS, BibTeX and CSL-JSON. Pure formatting, no I/O but the
stream it is handed.

Each format carries what a reference manager needs to cite and find a paper: type, title, authors, journal
(full and abbreviated), year and date, volume, issue, pages, DOI, PMID (and PMCID), ISSN, PubMed URL,
abstract, language and keywords. Keywords (which Zotero turns into tags) are the author keywords, the MeSH
descriptors and the monitor's own tags as ``condition:psoriasis``, ``intervention:probiotics``,
``design:rct`` and ``gut-skin-relevant``. Field choices follow Zotero's importers: RIS ``T2`` is the
journal and ``J2`` its abbreviation, ``AN`` the PMID; BibTeX values are LaTeX-escaped UTF-8.

What citeproc (pandoc, Zotero, citation-js) does to BibTeX, and what we write against it:

- Titles (and journal names) are sentence-cased: a capitalised word is lowercased unless braced, and the
  first word and the word after ``.``/``:``/``?``/``!`` are capitalised. So every title word with a capital
  letter (acronyms,
  genes, species, chemical prefixes: ``{K-ras}``, ``{IL-17}``, ``{Lactobacillus}``, ``{SCORAD}``,
  ``{D-glucose}``) and every word that starts a sentence is braced; the title then comes out as written.
  A journal's name is braced whole.
- ``--`` and ``---`` are TeX's en and em dashes: written ``-{}-`` so two hyphens stay two hyphens.
- ``doi`` and ``url`` are read verbatim (``\_`` would stay a backslash and an underscore): written as they
  are, never escaped.
- A family name BibTeX would split ("van der Berg": "van der" taken as a particle) is braced.
- A collective author is one braced name; in RIS, where a comma splits family from given names, a
  collective name's commas are written as semicolons.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any, TextIO

from .formats import pubmed_url
from .types import Article, Author, StoredPaper

_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1)}
_PUB_DATE = re.compile(r"^(\d{4})(?:\s+([A-Z][a-z]{2})(?:\s+(\d{1,2}))?)?(?![-\w])")
_LATEX = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "&": r"\&", "%": r"\%", "$": r"\$",
          "#": r"\#", "_": r"\_", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\u00a0": "~"}
_LATEX_RE = re.compile("|".join(re.escape(c) for c in _LATEX))
_DOUBLE_HYPHEN = re.compile(r"-(?=-)")
# A title word that ends a sentence: citeproc capitalises the word after it (closing quotes and brackets may
# follow the punctuation).
_ENDS_SENTENCE = re.compile(r"[.:?!][\"')\]}’”]*$")


# ------------------------------------------------------------------ shared field helpers


def date_parts(article: Article) -> list[int]:
    """``[year, month, day]`` as far as PubMed's printed date gives them ("2019 Mar 5" → [2019, 3, 5];
    "2021 Spring" or "1998 Dec-1999 Jan" → [2021] / [1998]); else the year of ``sort_date``; else []."""
    m = _PUB_DATE.match(article.pub_date or "")
    if m:
        parts = [int(m.group(1))]
        if m.group(2) in _MONTHS:
            parts.append(_MONTHS[m.group(2)])
            if m.group(3):
                parts.append(int(m.group(3)))
        return parts
    return [article.sort_date.year] if article.sort_date else []


def page_range(pages: str | None) -> tuple[str | None, str | None]:
    """First and last page of MEDLINE's abbreviated pagination ("123-30" → ("123", "130"), "e1234" →
    ("e1234", None)); anything after ``;`` or ``,`` (", discussion 131") is dropped."""
    if not pages:
        return None, None
    first = re.split(r"[;,]", pages, maxsplit=1)[0].strip()
    if "-" not in first:
        return first or None, None
    start, end = (x.strip() for x in first.split("-", 1))
    if start.isdigit() and end.isdigit() and len(end) < len(start):
        end = start[:len(start) - len(end)] + end  # MEDLINE drops the leading digits the two share
    return start or None, end or None


def keywords(paper: StoredPaper) -> list[str]:
    """Author keywords, MeSH descriptors and the monitor's tags, each once, in that order."""
    out = list(paper.article.keywords) + [m.descriptor for m in paper.article.mesh]
    t = paper.tagging
    if t is not None:
        out += [f"condition:{x}" for x in t.conditions] + [f"intervention:{x}" for x in t.interventions]
        out += [f"design:{x}" for x in t.designs] + (["gut-skin-relevant"] if t.gut_skin_relevant else [])
    return list(dict.fromkeys(k.strip() for k in out if k.strip()))


def _family_given(author: Author) -> tuple[str, str | None]:
    """(family name, given names) — a collective name is all family; initials stand in for missing
    given names."""
    if author.collective_name:
        return author.collective_name, None
    return author.last_name or author.display_name, author.fore_name or author.initials


# Whitespace that breaks a line or is plain spacing; a no-break space (U+00A0, "de\u00a0novo") is part of
# the text and stays (BibTeX writes it as "~").
_SPACING = re.compile(r"[ \t\n\r\f\v\x1c-\x1f\x85\u2028\u2029]+")


def _one_line(text: str) -> str:
    return _SPACING.sub(" ", text).strip(" ")


# ------------------------------------------------------------------ RIS


def write_ris(papers: Iterable[StoredPaper], out: TextIO) -> int:
    """RIS (``TY  - JOUR`` … ``ER  -``), one record per paper, UTF-8, every value on one line."""
    n = 0
    for paper in papers:
        for tag, value in ris_fields(paper):
            out.write(f"{tag}  - {value}\n" if value != "" else f"{tag}  -\n")
        out.write("\n")
        n += 1
    return n


def ris_fields(paper: StoredPaper) -> list[tuple[str, str]]:
    a = paper.article
    j = a.journal
    fields: list[tuple[str, str]] = [("TY", "BOOK" if a.kind == "book" else "JOUR"), ("TI", _one_line(a.title))]
    for author in a.authors:
        family, given = _family_given(author)
        if author.collective_name:
            # One name: RIS readers split "family, given" at the comma, so a collective name keeps none.
            fields.append(("AU", ris_collective(family)))
        else:
            fields.append(("AU", _one_line(f"{family}, {given}" if given else family)))
    parts = date_parts(a)
    if parts:
        fields.append(("PY", str(parts[0])))
        fields.append(("DA", "/".join(f"{p:02d}" if i else str(p) for i, p in enumerate(parts))))
    if j.title:
        fields.append(("T2", _one_line(j.title)))
    if j.iso_abbreviation:
        fields.append(("J2", _one_line(j.iso_abbreviation)))
    start, end = page_range(j.pages)
    for tag, value in (("VL", j.volume), ("IS", j.issue), ("SP", start), ("EP", end), ("SN", j.issn),
                       ("DO", a.doi), ("AN", a.pmid)):
        if value:
            fields.append((tag, _one_line(value)))
    fields.append(("UR", pubmed_url(a.pmid)))
    if a.pmcid:
        fields.append(("C2", a.pmcid))  # EndNote's place for the PMCID
    for language in a.languages:
        fields.append(("LA", language))
    if a.abstract:
        fields.append(("AB", _one_line(a.abstract_text)))
    for keyword in keywords(paper):
        fields.append(("KW", _one_line(keyword)))
    fields.append(("ER", ""))
    return fields


def ris_collective(name: str) -> str:
    """A collective author as one RIS name: its commas (which readers take as the family/given split, e.g.
    "COVIDSurg Collaborative, GlobalSurg Collaborative") written as semicolons."""
    return _one_line(name).replace(", ", "; ").replace(",", ";")


# ------------------------------------------------------------------ BibTeX


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters; everything else (ö, ß, α, –) stays as UTF-8. ``--`` is written
    ``-{}-`` (TeX would make it an en dash)."""
    escaped = _LATEX_RE.sub(lambda m: _LATEX[m.group(0)], _one_line(text))
    return _DOUBLE_HYPHEN.sub("-{}", escaped) if "--" in escaped else escaped


def bibtex_title(text: str) -> str:
    """A title LaTeX-escaped with the words citeproc would re-case braced (see the module docstring):
    every word with a capital letter, and a word that starts a sentence."""
    words = []
    sentence_start = True
    for word in _one_line(text).split(" "):  # no-break spaces stay inside a word
        escaped = latex_escape(word)
        has_letter = any(c.isalpha() for c in word)
        if any(c.isupper() for c in word) or (sentence_start and has_letter):
            # A group that starts with a command ({\$IL}) is a "special character" to BibTeX, whose
            # letters it would still re-case: brace it twice.
            escaped = f"{{{{{escaped}}}}}" if escaped.startswith("\\") else f"{{{escaped}}}"
        words.append(escaped)
        if has_letter or _ENDS_SENTENCE.search(word):
            sentence_start = bool(_ENDS_SENTENCE.search(word))
    return " ".join(words)


def bibtex_family(family: str) -> str:
    """A family name as written: braced when BibTeX would otherwise take part of it for a particle or a given
    name ("van der Berg", "Caron de Fromentel", a family name alone with spaces)."""
    escaped = latex_escape(family)
    plain = escaped[:1].isupper() and " " not in escaped and "," not in escaped and "~" not in escaped
    return escaped if plain else "{" + escaped + "}"


def bibtex_name(text: str) -> str:
    """A journal's name, braced whole: it is a name, kept as written (citeproc would sentence-case it)."""
    return "{" + latex_escape(text) + "}"


def bibtex_verbatim(value: str) -> str:
    """A ``doi`` or ``url`` value as written: citeproc reads these fields verbatim, so escaping would add
    characters. Only what cannot stand in a braced BibTeX value is percent-encoded (a DOI or URL means the
    same with ``%7B``): unbalanced braces and backslashes; whitespace is removed."""
    value = "".join(value.split())
    depth = 0
    for c in value:
        depth += {"{": 1, "}": -1}.get(c, 0)
        if depth < 0:
            break
    if depth == 0 and "\\" not in value:
        return value
    return value.replace("%", "%25").replace("\\", "%5C").replace("{", "%7B").replace("}", "%7D")


def write_bibtex(papers: Iterable[StoredPaper], out: TextIO) -> int:
    """BibTeX ``@article`` entries (``@book`` for PubMed books) keyed ``pmidNNNN``, UTF-8."""
    n = 0
    for paper in papers:
        a = paper.article
        lines = [f"@{'book' if a.kind == 'book' else 'article'}{{pmid{a.pmid},"]
        for name, value in bibtex_fields(paper):
            lines.append(f"  {name} = {{{value}}},")
        lines.append("}")
        out.write("\n".join(lines) + "\n\n")
        n += 1
    return n


def bibtex_fields(paper: StoredPaper) -> list[tuple[str, str]]:
    a = paper.article
    j = a.journal
    names = []
    for author in a.authors:
        family, given = _family_given(author)
        if author.collective_name:
            names.append("{" + latex_escape(family) + "}")  # braced: never split into first/last names
        else:
            names.append(bibtex_family(family) + (f", {latex_escape(given)}" if given else ""))
    fields: list[tuple[str, str]] = [("title", bibtex_title(a.title))]
    if names:
        fields.append(("author", " and ".join(names)))
    if j.title:
        fields.append(("journal", bibtex_name(j.title)))
    if j.iso_abbreviation:
        fields.append(("shortjournal", bibtex_name(j.iso_abbreviation)))
    parts = date_parts(a)
    if parts:
        fields.append(("year", str(parts[0])))
        if len(parts) > 1:
            fields.append(("month", str(parts[1])))
    start, end = page_range(j.pages)
    pages = f"{latex_escape(start)}--{latex_escape(end)}" if start and end else start and latex_escape(start)
    for name, value in (("volume", j.volume), ("number", j.issue)):
        if value:
            fields.append((name, latex_escape(value)))
    if pages:
        fields.append(("pages", pages))
    if j.issn:
        fields.append(("issn", latex_escape(j.issn)))
    if a.doi:
        fields.append(("doi", bibtex_verbatim(a.doi)))
    for name, value in (("pmid", a.pmid), ("pmcid", a.pmcid)):
        if value:
            fields.append((name, latex_escape(value)))
    fields.append(("url", bibtex_verbatim(pubmed_url(a.pmid))))
    if a.languages:
        fields.append(("language", latex_escape(", ".join(a.languages))))
    if a.abstract:
        fields.append(("abstract", latex_escape(a.abstract_text)))
    tags = keywords(paper)
    if tags:
        # Keywords are comma-separated (BibTeX's and Zotero's convention), so a comma inside one
        # ("Dermatitis, Atopic") is dropped; RIS and CSL-JSON keep it.
        fields.append(("keywords", ", ".join(latex_escape(k.replace(",", "")) for k in tags)))
    return fields


# ------------------------------------------------------------------ CSL-JSON


def csl_item(paper: StoredPaper) -> dict[str, Any]:
    """One CSL-JSON item (the format of citeproc, Zotero, Pandoc)."""
    a = paper.article
    j = a.journal
    item: dict[str, Any] = {"id": f"pmid{a.pmid}", "type": "book" if a.kind == "book" else "article-journal",
                            "title": a.title}
    authors = []
    for author in a.authors:
        family, given = _family_given(author)
        if author.collective_name:
            authors.append({"literal": family})
        else:
            authors.append({"family": family, **({"given": given} if given else {})})
    if authors:
        item["author"] = authors
    start, end = page_range(j.pages)
    optional = {
        "container-title": j.title, "container-title-short": j.iso_abbreviation, "volume": j.volume,
        "issue": j.issue, "page": f"{start}-{end}" if start and end else start, "ISSN": j.issn,
        "DOI": a.doi, "PMID": a.pmid, "PMCID": a.pmcid, "URL": pubmed_url(a.pmid),
        "language": ", ".join(a.languages) or None, "abstract": a.abstract_text or None,
    }
    item.update({k: v for k, v in optional.items() if v})
    parts = date_parts(a)
    if parts:
        item["issued"] = {"date-parts": [parts]}
    tags = keywords(paper)
    if tags:
        item["keyword"] = ", ".join(k.replace(",", "") for k in tags)  # CSL's keyword is one string
    return item


def write_csl_json(papers: Iterable[StoredPaper], out: TextIO) -> int:
    """A CSL-JSON array, written item by item (an export of the whole collection never sits in memory)."""
    n = 0
    out.write("[")
    for paper in papers:
        out.write(",\n" if n else "\n")
        out.write(json.dumps(csl_item(paper), ensure_ascii=False))
        n += 1
    out.write("\n]\n" if n else "]\n")
    return n
