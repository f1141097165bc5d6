"""The Optuna storage of a sweep, and its trials as a file.

A spec's `storage` is a database URL (`sqlite:///PATH`, `postgresql://USER:PASS@HOST/DB`), or `${NAME}`: the URL in
environment variable NAME, so that no password need be in the spec. Without one the study lives in a journal file in
the sweep directory. Every URL written anywhere (spec.json, messages) goes through `redact`.

The search writes the study's trials to `optuna_trials.json` in the sweep directory (`write_trials`); the report reads
that file (`reports/` reads files only, never a database).
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

from harness.config import ConfigError
from harness.sweep.store import atomic_write

ENV_REFERENCE = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
"""`${NAME}`: the storage URL is in environment variable NAME."""
QUERY_PASSWORD = re.compile(r"(?P<key>[?&]password=)[^&]*", re.IGNORECASE)
"""A `password=` query parameter of a URL."""
HIDDEN = "***"
RDB_OPEN_TRIES = 5
"""Attempts to open a database storage whose schema other drivers are creating at the same moment."""
TRIALS_FILE = "optuna_trials.json"
"""The study's trials, written by the search into the sweep directory for the report."""


def redact(url: str) -> str:
    """`url` with its password (in the user info and in a `password` query parameter) replaced by `***`: parsed by
    SQLAlchemy's `make_url` (a password may hold `/`, as in `postgresql://u:se/cret@h/db`), or by `redact_userinfo`
    when it cannot parse `url` or finds an `@` in the host (an unencoded `@` in the password: `u:p@ss@h`)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return redact_userinfo(url)
    if "@" in (parsed.host or "") or "@" in (parsed.database or "") and parsed.password is not None:
        return redact_userinfo(url)
    if parsed.password is None and not any(key.lower() == "password" for key in parsed.query):
        return url
    return QUERY_PASSWORD.sub(lambda m: m["key"] + HIDDEN, parsed.render_as_string(hide_password=True))


def redact_userinfo(text: str) -> str:
    """`text` with everything between the first `:` of its user info and the user info's last `@` replaced by `***`
    (the user info runs from `://`, or the start, to the last `@` before any `?`), and any `password=` query value
    hidden: the fallback of `redact` for strings that are not parseable URLs."""
    head, mark, query = text.partition("?")
    start = head.find("://") + 3 if "://" in head else 0
    at = head.rfind("@")
    if at > start and ":" in head[start:at]:
        user = head[start:at].split(":", 1)[0]
        head = f"{head[:start]}{user}:{HIDDEN}{head[at:]}"
    return head + QUERY_PASSWORD.sub(lambda m: m["key"] + HIDDEN, mark + query)


def resolve_url(storage: str) -> str:
    """The database URL of a spec's `storage`: itself, or the value of the environment variable `${NAME}` names
    (`ConfigError` when unset or not a URL)."""
    match = ENV_REFERENCE.match(storage)
    if match is None:
        return storage
    url = os.environ.get(match[1])
    if not url:
        raise ConfigError(f"storage {storage}: environment variable {match[1]} is not set (it holds the database URL)")
    if "://" not in url:
        raise ConfigError(f"storage {storage}: {match[1]} is not a database URL such as sqlite:///PATH or "
                          "postgresql://USER:PASS@HOST:PORT/DB")
    return url


def sqlalchemy_url(url: str) -> str:
    """SQLAlchemy URL of a storage URL: plain `postgresql://` (and `postgres://`) use psycopg 3, the driver of the
    `postgres` extra; URLs naming a driver (`postgresql+psycopg2://`) are kept."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url.removeprefix(scheme)
    return url


def study_storage(storage: str | None, root: Path) -> Any:
    """The study storage of a spec's `storage` (a URL or `${NAME}`), or a journal file in the sweep dir `root`."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    if storage:
        import sqlalchemy.exc

        url = resolve_url(storage)
        try:
            return rdb_storage(sqlalchemy_url(url))
        except ModuleNotFoundError as error:
            raise ConfigError(f"storage {redact(url)}: the database driver {error.name!r} is not installed "
                              "(PostgreSQL: pip install -e '.[postgres]')") from None
        except sqlalchemy.exc.OperationalError as error:
            reason = redact(str(error.orig or error).strip().splitlines()[0])
            raise ConfigError(f"storage {redact(url)}: cannot open the database ({reason})") from None
    root.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(root / "optuna.journal")))


def rdb_storage(url: str, tries: int = RDB_OPEN_TRIES) -> Any:
    """Optuna's RDBStorage of `url`. Drivers that open a new database at the same moment race to create its schema:
    the losers get "table ... already exists" or a duplicate key (SQLite and PostgreSQL alike) and try again, after
    0.2, 0.4, ... s, and then find the tables made; any other error, or the same one at the last try, is raised."""
    import optuna
    import sqlalchemy.exc

    for attempt in range(1, tries):
        try:
            return optuna.storages.RDBStorage(url)
        except sqlalchemy.exc.DatabaseError as error:
            if not (isinstance(error, sqlalchemy.exc.IntegrityError) or "already exists" in str(error)):
                raise
        time.sleep(0.2 * attempt)
    return optuna.storages.RDBStorage(url)


def write_trials(study: Any, root: Path) -> None:
    """Write `study`'s direction and trials (number, state, params with their distributions, value, start and end)
    to `root/optuna_trials.json`, atomically."""
    from optuna.distributions import distribution_to_json

    trials = [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
               "distributions": {k: distribution_to_json(d) for k, d in t.distributions.items()},
               "start": t.datetime_start.isoformat() if t.datetime_start else None,
               "complete": t.datetime_complete.isoformat() if t.datetime_complete else None}
              for t in study.get_trials(deepcopy=False)]
    document = {"study": study.study_name, "direction": study.direction.name, "trials": trials}
    atomic_write(root / TRIALS_FILE, json.dumps(document, indent=2).encode())
