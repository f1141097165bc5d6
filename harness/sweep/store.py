"""The results store of a sweep, on a (shared) filesystem:

    runs/<name>/trials/<trial_id>/      run directory of one trial (metrics.jsonl, checkpoint/, ...)
    runs/<name>/trials/<trial_id>/claim  which process runs it (created exclusively: one runner per trial)
    runs/<name>/trials/<trial_id>/attempts.log  one line per start of the trial
    runs/<name>/trials/<trial_id>/result.json  status, params, seed, metrics or traceback (written atomically)
    runs/<name>/results.parquet         one row per trial, rebuilt atomically from the result files

A trial is finished when its result says `done`; a failed or missing one is run again by the next sweep. A claim
whose process is gone (same host, dead pid) or older than the trial timeout is stale and may be taken over.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import pandas as pd


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file and `os.replace` (readers never see a partial file). On a
    failed write the temporary file is removed and `path` keeps its old content; a full disk raises
    `OSError(ENOSPC)` whose `filename` is `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.time_ns()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        if error.errno == errno.ENOSPC:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from None
        raise


@dataclass(frozen=True)
class TrialRecord:
    """What a trial hands back to its sweep and the store keeps as its result.json: `status` "done" with the
    trial's metrics (`final` training metrics, `eval` held-out metrics), or "failed" with the `error` (and the
    `traceback` when the trial itself caught it)."""

    trial_id: str
    params: dict[str, Any]
    seed: int
    status: Literal["done", "failed"]
    run_dir: str | None = None
    task: str | None = None
    host: str | None = None
    lock: str | None = None
    error: str | None = None
    traceback: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    wall_seconds: float | None = None
    train_seconds: float | None = None
    final: dict[str, float] = field(default_factory=dict)
    eval: dict[str, Any] = field(default_factory=dict)
    reward_failures: dict[str, int] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.status == "done"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrialRecord:
        """The record of a result.json's content (keys this version does not know are left out)."""
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


class ResultStore:
    """Trial results of the sweep rooted at `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def trial_dir(self, trial_id: str) -> Path:
        return self.root / "trials" / trial_id

    def result(self, trial_id: str) -> dict[str, Any] | None:
        """The trial's result record, or None when it has none (yet)."""
        path = self.trial_dir(trial_id) / "result.json"
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def record(self, trial_id: str) -> TrialRecord | None:
        """The trial's result as a `TrialRecord`, or None when it has none (yet)."""
        result = self.result(trial_id)
        return None if result is None else TrialRecord.from_json(result)

    def is_done(self, trial_id: str) -> bool:
        result = self.result(trial_id)
        return result is not None and result.get("status") == "done"

    def record_attempt(self, trial_id: str) -> None:
        """Append one line (host, pid, time) to the trial's attempts.log each time a runner starts it."""
        path = self.trial_dir(trial_id) / "attempts.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            f.write(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}) + "\n")

    def attempts(self, trial_id: str) -> int:
        """How many times the trial was started."""
        path = self.trial_dir(trial_id) / "attempts.log"
        return len(path.read_text().splitlines()) if path.exists() else 0

    def write_result(self, record: TrialRecord) -> None:
        """Write the trial's result.json (atomically)."""
        data = json.dumps(asdict(record), indent=2, default=str).encode()
        atomic_write(self.trial_dir(record.trial_id) / "result.json", data)

    def claim(self, trial_id: str, stale_after_s: float) -> bool:
        """Take the trial for this process; False when it is done or a live runner holds it."""
        if self.is_done(trial_id):
            return False
        path = self.trial_dir(trial_id) / "claim"
        path.parent.mkdir(parents=True, exist_ok=True)
        mine = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()})
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                if not self._stale(path, stale_after_s):
                    return False
                path.unlink(missing_ok=True)
                continue
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(mine)
            except OSError as error:  # a full disk: no half-written claim, and the error names the file
                path.unlink(missing_ok=True)
                raise OSError(error.errno, error.strerror, str(path)) from None
            return not self.is_done(trial_id)
        return False

    def release(self, trial_id: str) -> None:
        (self.trial_dir(trial_id) / "claim").unlink(missing_ok=True)

    @staticmethod
    def _stale(path: Path, stale_after_s: float) -> bool:
        try:
            holder = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return time.time() - path.stat().st_mtime > 5 if path.exists() else True
        if holder.get("host") == socket.gethostname():
            try:
                os.kill(int(holder["pid"]), 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False
        return time.time() - float(holder.get("time", 0)) > stale_after_s

    def records(self) -> list[dict[str, Any]]:
        """Every trial's result record."""
        found = []
        trials = self.root / "trials"
        for directory in sorted(trials.iterdir()) if trials.is_dir() else []:
            result = self.result(directory.name)
            if result is not None:
                found.append(result)
        return found

    def write_table(self) -> pd.DataFrame:
        """Rebuild results.parquet (atomically) from the result files; returns the table."""
        table = results_frame(self.records())
        atomic_write(self.root / "results.parquet", table.to_parquet(index=False))
        return table


BASE_COLUMNS = ("trial_id", "status", "task", "seed", "wall_seconds", "error", "run_dir", "lock")


def results_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per trial: id, status, seed, `param.<key>` columns, `train.<metric>` and `eval.<metric>` columns."""
    rows = []
    for record in records:
        row = {k: record.get(k) for k in BASE_COLUMNS}
        row.update({f"param.{k}": _scalar(v) for k, v in record.get("params", {}).items()})
        row.update({f"train.{k}": v for k, v in record.get("final", {}).items()})
        row.update({f"eval.{k}": v for k, v in record.get("eval", {}).items() if isinstance(v, (int, float))})
        rows.append(row)
    return pd.DataFrame(rows, columns=None if rows else list(BASE_COLUMNS))


def _scalar(value: Any) -> Any:
    """Parquet-friendly cell: lists and mappings as JSON text."""
    return json.dumps(value, sort_keys=True) if isinstance(value, (list, dict)) else value
