"""The HTML pages: ``/`` (the newest relevant papers), ``/search`` (with facets and export links),
``/paper/<pmid>``, ``/map`` (the evidence map), ``/trends``, ``/status``, and ``/export`` (the current
search as RIS, BibTeX, CSL-JSON, CSV or JSONL). Each page reads through the same functions as its JSON
twin in :mod:`.api`; the templates are Jinja2 with autoescaping, so no stored string is ever markup.
"""

from __future__ import annotations

import io
from typing import Any

from flask import Blueprint, Response, abort, render_template, request

from ..errors import ParameterError
from ..search import SearchRequest, search, write_hits
from ..types import PaperFilter
from . import params, present
from .api import map_filter_args, trends_json
from .charts import bar_chart
from .context import WebContext

EXPORT_LIMIT = 5000  # papers in one export from the web app (monitor search --limit 0 has no limit)
EXPORT_TYPES = {"ris": ("application/x-research-info-systems", "ris"), "bibtex": ("application/x-bibtex", "bib"),
                "csl-json": ("application/vnd.citationstyles.csl+json", "json"), "csv": ("text/csv", "csv"),
                "jsonl": ("application/x-ndjson", "jsonl")}
HOME_PER_PAGE = 20


def blueprint(ctx: WebContext) -> Blueprint:
    bp = Blueprint("pages", __name__)

    @bp.app_context_processor
    def shared() -> dict[str, Any]:
        args = request.args.to_dict(flat=False)

        def values(name: str) -> list[str]:
            """A list parameter's values (repeated or comma-separated), as the filters read them."""
            return [x.strip() for v in args.get(name, []) for x in v.split(",") if x.strip()]

        return {"labels": ctx.labels, "site_title": ctx.title, "p": present, "args": args, "values": values,
                "nav": request.endpoint}

    _lists(bp, ctx)
    _views(bp, ctx)
    return bp


def _lists(bp: Blueprint, ctx: WebContext) -> None:
    """The pages that list papers: home, search, and the export of a search."""

    @bp.get("/")
    def home() -> str:
        args = request.args.to_dict(flat=False)
        params.check_known(args, params.HOME)
        page = params.number(args, "page", 1, 1, 100_000)
        filters = PaperFilter(relevant_only=True)
        total = ctx.store.count_matching(None, filters)
        papers = ctx.store.recent_papers(filters, limit=HOME_PER_PAGE, offset=(page - 1) * HOME_PER_PAGE)
        return render_template("home.html", papers=papers, total=total, page=page,
                               pages=present.pages(total, HOME_PER_PAGE))

    @bp.get("/search")
    def search_page() -> str:
        args = request.args.to_dict(flat=False)
        q = params.papers_query(args, ctx.labels, ctx.known_queries)
        hits = search(ctx.store, q.request)
        facets = ctx.store.facets(q.node, q.request.filters)
        return render_template("search.html", q=q, hits=hits, facets=facets, query_names=ctx.query_names,
                               pages=present.pages(facets.total, q.per_page), export_formats=EXPORT_TYPES,
                               export_limit=EXPORT_LIMIT)

    @bp.get("/export")
    def export() -> Response:
        args = request.args.to_dict(flat=False)
        fmt = params.choice(args, "format", tuple(EXPORT_TYPES), None)
        if fmt is None:
            raise ParameterError(f"format: expected one of {', '.join(EXPORT_TYPES)}", parameter="format")
        q = params.papers_query(args, ctx.labels, ctx.known_queries, params.EXPORT, limit=EXPORT_LIMIT)
        hits = search(ctx.store, SearchRequest(q.request.text, q.request.filters, q.request.sort, EXPORT_LIMIT))
        out = io.StringIO()
        write_hits(hits, fmt, out)
        mime, ext = EXPORT_TYPES[fmt]
        return Response(out.getvalue(), content_type=f"{mime}; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="gut-skin-papers.{ext}"'})



def _views(bp: Blueprint, ctx: WebContext) -> None:
    """The paper page, the evidence map, trends and status."""

    @bp.get("/paper/<pmid>")
    def paper(pmid: str) -> str:
        params.check_known(request.args.to_dict(flat=False), ())
        if not pmid.isdigit() or len(pmid) > 10:
            abort(404)
        detail = ctx.store.paper_detail(pmid)
        if detail is None:
            abort(404)
        why = ctx.explain(detail.paper) if ctx.explain is not None else None
        return render_template("paper.html", d=detail, a=detail.paper.article, t=detail.paper.tagging, why=why)

    @bp.get("/map")
    def evidence_map() -> str:
        filters = map_filter_args(ctx)
        m = ctx.store.evidence_map(filters)
        cells = present.cell_index(m.cells)
        most = max((c.papers for c in m.cells), default=0)
        base = {k: v for k, v in request.args.to_dict(flat=False).items() if k in params.MAP}
        return render_template("map.html", m=m, cells=cells, most=most, base=base)

    @bp.get("/trends")
    def trends() -> str:
        q = params.trends_query(request.args.to_dict(flat=False), ctx.labels, ctx.today())
        data = trends_json(ctx, q)
        charts = [(s, bar_chart(f"c-{s['tag']}", f"{s['label']}: papers per month", data["months"], s["counts"]))
                  for s in data["series"] if s["total"]]
        total_chart = bar_chart("c-all", "All relevant papers per month", data["months"], data["total"])
        return render_template("trends.html", q=q, data=data, charts=charts, total_chart=total_chart)

    @bp.get("/status")
    def status() -> str:
        params.check_known(request.args.to_dict(flat=False), ())
        return render_template("status.html", s=ctx.status())
