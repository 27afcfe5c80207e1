"""The names of the output formats, in a module that imports nothing, so the command line can offer them
without loading the writers (``monitor --help`` stays fast). :mod:`monitor.export` maps each to its writer;
``tests/test_cli.py`` checks the two agree."""

EXPORT_FORMATS = ("jsonl", "json", "csv", "ris", "bibtex", "csl-json")
SEARCH_FORMATS = ("table", *EXPORT_FORMATS)  # table: for reading in a terminal
