"""The errors a user can cause or fix: bad input, a missing file, an unreachable service.

``searchr1`` prints them as one ``error: …`` line (``searchr1.cli.main``) and exits with
``exit_code``; anything else is a bug and keeps its traceback. Messages name the file, line,
field or flag at fault and say how to fix it.

Areas subclass these next to their code (``search.corpus.CorpusError``, ``data.qa.DataError``,
``search.base.SearchError`` …), keeping the built-in base class callers may already catch
(``ValueError``, ``RuntimeError``).
"""
from __future__ import annotations


class SearchR1Error(Exception):
    """An expected failure with a message for the user; ``exit_code`` 1 (a runtime failure)."""

    exit_code = 1


class UsageError(SearchR1Error, ValueError):
    """Bad arguments, options or configuration values (exit code 2)."""

    exit_code = 2


class ConfigError(UsageError):
    """A configuration file or override that cannot be used: names the file/key and the fix."""
