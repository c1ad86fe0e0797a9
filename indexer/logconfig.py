"""structlog set-up: JSON lines when stderr is not a terminal, coloured console when it is.

Context (chain, mode) is bound with ``structlog.contextvars`` so every line of a chain's task
carries it. Logs go to stderr; stdout is for command output (tables, reports). Records of
stdlib logging (asyncpg, aiohttp), Python warnings and unraisable exceptions are rendered by
the same processors: under JSON every line of stderr is one JSON object.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any


def _import_structlog() -> Any:
    """structlog, without the rich and pygments it imports for pretty tracebacks when rich is
    installed (0.05 s of every command's start-up; our failures are one line, never a
    traceback). A None in sys.modules makes that optional import fail as if rich were absent;
    rich stays importable afterwards (the demo uses it)."""
    if "structlog" in sys.modules or "rich" in sys.modules:
        import structlog
        return structlog
    sys.modules["rich"] = None  # type: ignore[assignment]
    try:
        import structlog
    finally:
        del sys.modules["rich"]
    return structlog


structlog = _import_structlog()


def configure(level: str = "info", json: bool | None = None) -> None:
    """Idempotent. ``json=None`` picks JSON unless stderr is a TTY."""
    use_json = (not sys.stderr.isatty()) if json is None else json
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info if use_json else structlog.processors.StackInfoRenderer(),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    _route_stdlib(level, renderer)


def _one_line_exc(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A third-party record's exception as one field (type and first line), no traceback, so
    the stream stays one event per line."""
    exc_info = event.pop("exc_info", None)
    if exc_info and not isinstance(exc_info, bool) and isinstance(exc_info, tuple) and exc_info[1] is not None:
        exc = exc_info[1]
        event["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return event


def _route_stdlib(level: str, renderer: Any) -> None:
    """Libraries (asyncpg's pool, aiohttp) log through stdlib logging, and Python warnings go
    there too (captureWarnings): render them with the same processors, so under JSON every line
    of stderr is a JSON object with ``event``, ``level``, ``logger`` and ``timestamp``."""
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _one_line_exc,
        ],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(logging.getLevelName(level.upper()), logging.WARNING))
    logging.captureWarnings(True)
    sys.unraisablehook = _unraisable


def _unraisable(info: Any) -> None:
    """An exception Python cannot raise (in a finalizer: an unclosed socket, a pool closed
    late) is logged like any other event instead of printed as a traceback."""
    exc = info.exc_value
    logging.getLogger("python").warning("unraisable: %s%s", info.err_msg or "exception ignored",
                                        f" ({type(exc).__name__}: {exc})" if exc is not None else "")


def get(name: str | None = None) -> Any:
    return structlog.get_logger(name) if name else structlog.get_logger()
