"""A stand-in for NCBI E-utilities (esearch + efetch on db=pubmed): the monitor's tests run against it, and so
do ``monitor demo`` (in-process) and anyone without NCBI access (``python -m monitor.standin``).

It answers as NCBI does, from real PubMed records: :class:`StandIn` (:mod:`.service`) composes the scriptable
PubMed (:mod:`.world`, with the PubMed-syntax :mod:`.matcher`), fault injection (:mod:`.faults`), the request
handling and its log (:mod:`.eutils`, NCBI's byte formats in :mod:`.ncbi`), record loading (:mod:`.corpus`)
and the loopback server and in-process transport (:mod:`.server`). Nothing here imports the rest of the
monitor (except ``--config`` in :mod:`.cli`): it must stay an independent emulation of NCBI.
"""

from .corpus import DEFAULT_CORPUS, RecordDates, iter_records, load_corpus, record_dates
from .eutils import LoggedRequest
from .ncbi import (
    DATE_FIELDS,
    DATETYPES,
    DEFAULT_ERROR_BODY,
    EFETCH_EPILOG,
    EFETCH_ERROR_PROLOG,
    EFETCH_PROLOG,
    EMPTY_ID_MESSAGE,
    EMPTY_TERM_MESSAGE,
    ENDPOINTS,
    ESEARCH_PROLOG,
    FAULT_KINDS,
    HTML_TYPE,
    IN_PROCESS_URL,
    NCBI_HEADERS,
    NO_ITEMS_MESSAGE,
    PUBMED_SEARCH_CAP,
    RETSTART_CAP_MESSAGE,
    XML_TYPE,
    efetch_error_body,
    esearch_error_body,
    max_in_window,
    parse_entrez_date,
    rate_limit_body,
)
from .service import StandIn

__all__ = [
    "DATETYPES", "DATE_FIELDS", "DEFAULT_CORPUS", "DEFAULT_ERROR_BODY", "EFETCH_EPILOG", "EFETCH_ERROR_PROLOG",
    "EFETCH_PROLOG", "EMPTY_ID_MESSAGE", "EMPTY_TERM_MESSAGE", "ENDPOINTS", "ESEARCH_PROLOG", "FAULT_KINDS",
    "HTML_TYPE", "IN_PROCESS_URL", "NCBI_HEADERS", "NO_ITEMS_MESSAGE", "PUBMED_SEARCH_CAP",
    "RETSTART_CAP_MESSAGE", "XML_TYPE", "LoggedRequest", "RecordDates", "StandIn", "efetch_error_body",
    "esearch_error_body", "iter_records", "load_corpus", "max_in_window", "parse_entrez_date",
    "rate_limit_body", "record_dates",
]
