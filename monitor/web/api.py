"""The JSON API behind each page (documented in the README's "Web app" section):

- ``GET /api/papers`` — a search (the `monitor search` language and filters), one page of it, and facet
  counts over the whole result;
- ``GET /api/papers/<pmid>`` — one paper's full record with tags, evidence and history;
- ``GET /api/map`` — the evidence map over relevant papers;
- ``GET /api/trends`` (and ``/api/trends.csv``) — relevant papers per month per condition or intervention.

A bad parameter is answered 400 with ``{"error": …, "parameter": …}``.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from flask import Blueprint, Response, jsonify, request

from ..errors import ParameterError
from ..search import search
from ..types import EvidenceMap, Facets
from . import params
from .context import Labels, WebContext
from .present import pages, paper_item, paper_json


def error(message: str, status: int, parameter: str | None) -> Response:
    response = jsonify({"error": message, "parameter": parameter})
    response.status_code = status
    return response


def facets_json(f: Facets) -> dict[str, dict[str, int]]:
    return {"conditions": dict(f.conditions), "interventions": dict(f.interventions), "designs": dict(f.designs)}


def map_json(m: EvidenceMap, labels: Labels) -> dict[str, Any]:
    return {
        "papers": m.papers,
        "conditions": [{"id": c, "label": labels.label(c), "papers": m.conditions.get(c, 0)}
                       for c in labels.conditions],
        "interventions": [{"id": i, "label": labels.label(i), "papers": m.interventions.get(i, 0)}
                          for i in labels.interventions],
        "cells": [{"condition": c.condition, "intervention": c.intervention, "papers": c.papers,
                   "designs": dict(c.designs)} for c in m.cells],
    }


def trends_json(ctx: WebContext, q: params.TrendsQuery) -> dict[str, Any]:
    counts = ctx.store.trend_counts(q.by, q.filters)
    series: list[dict[str, Any]] = []
    for tag in ctx.labels.ids(q.by):
        per_month = [counts.by_tag.get(tag, {}).get(m, 0) for m in q.months]
        series.append({"tag": tag, "label": ctx.labels.label(tag), "counts": per_month, "total": sum(per_month)})
    return {"by": q.by, "date": q.date_field, "months": list(q.months),
            "total": [counts.total.get(m, 0) for m in q.months], "series": series}


def map_filter_args(ctx: WebContext) -> Any:
    params.check_known(request.args.to_dict(flat=False), params.MAP)
    return params.paper_filter(request.args.to_dict(flat=False), ctx.labels, ctx.known_queries, relevant=True)


def blueprint(ctx: WebContext) -> Blueprint:
    bp = Blueprint("api", __name__, url_prefix="/api")

    @bp.get("/papers")
    def papers() -> Response:
        q = params.papers_query(request.args.to_dict(flat=False), ctx.labels, ctx.known_queries)
        hits = search(ctx.store, q.request)
        facets = ctx.store.facets(q.node, q.request.filters)
        return jsonify({"total": facets.total, "page": q.page, "per_page": q.per_page,
                        "pages": pages(facets.total, q.per_page), "sort": q.request.effective_sort,
                        "papers": [paper_item(h.paper, score=h.score, snippet=h.snippet) for h in hits],
                        "facets": facets_json(facets)})

    @bp.get("/papers/<pmid>")
    def paper(pmid: str) -> Response:
        params.check_known(request.args.to_dict(flat=False), ())
        if not pmid.isdigit() or len(pmid) > 10:
            raise ParameterError(f"pmid: expected a PubMed id (digits), got {pmid!r}", parameter="pmid")
        detail = ctx.store.paper_detail(pmid)
        if detail is None:
            return error(f"no stored paper has PMID {pmid}", 404, "pmid")
        return jsonify(paper_json(detail))

    @bp.get("/map")
    def evidence_map() -> Response:
        return jsonify(map_json(ctx.store.evidence_map(map_filter_args(ctx)), ctx.labels))

    @bp.get("/trends")
    def trends() -> Response:
        q = params.trends_query(request.args.to_dict(flat=False), ctx.labels, ctx.today())
        return jsonify(trends_json(ctx, q))

    @bp.get("/trends.csv")
    def trends_csv() -> Response:
        q = params.trends_query(request.args.to_dict(flat=False), ctx.labels, ctx.today())
        data = trends_json(ctx, q)
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["month", *(s["tag"] for s in data["series"]), "all_relevant"])
        for n, month in enumerate(data["months"]):
            writer.writerow([month, *(s["counts"][n] for s in data["series"]), data["total"][n]])
        name = f"trends-{q.by}-{q.date_field}.csv"
        return Response(out.getvalue(), content_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @bp.get("/<path:rest>")
    def unknown(rest: str) -> Response:
        return error(f"no such endpoint: /api/{rest}", 404, None)

    return bp
