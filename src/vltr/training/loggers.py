"""Experiment loggers built from config."""

from __future__ import annotations

import csv
import json
import os
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment

from vltr.utils.io import atomic_path


class _AppendingExperimentWriter(ExperimentWriter):
    """Lightning's CSV writer, but it keeps a run's earlier rows.

    Lightning's writer deletes an existing ``metrics.csv`` when it is created and forgets the
    file's header. Both break a vltr run, whose fit, validate and test phases each create a
    writer under ``ddp_spawn`` (and a resumed run creates a new one): the validate phase would
    erase the training curves, or fail with "dict contains fields not in fieldnames".

    When a new metric appears, Lightning rewrites the whole file in place under the new header;
    a run killed during that rewrite lost every earlier row. Here the rewrite goes to a
    temporary file renamed over the old one, so a kill leaves the previous complete file.
    """

    def _check_log_dir_exists(self) -> None:
        self._fs.makedirs(self.log_dir, exist_ok=True)

    def _record_new_keys(self) -> set[str]:
        if not self.metrics_keys and self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                self.metrics_keys.extend(next(csv.reader(f), []))
        return super()._record_new_keys()

    def _rewrite_with_new_header(self, fieldnames: list[str]) -> None:
        with open(self.metrics_file_path, newline="") as f:
            rows = list(csv.DictReader(f))
        with atomic_path(self.metrics_file_path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fieldnames)
            writer.writeheader()
            writer.writerows(rows)


class RunCSVLogger(CSVLogger):
    """:class:`CSVLogger` that appends to the run's ``metrics.csv`` instead of replacing it."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingExperimentWriter(log_dir=self.log_dir)
        return self._experiment


def wandb_has_credentials() -> bool:
    """True when W&B can authenticate without asking: WANDB_API_KEY or a stored login."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        import wandb

        return bool(wandb.Api(timeout=1).api_key)  # reads the netrc/settings, no network
    except Exception:
        return False


def wandb_logger(
    project: str = "vltr",
    name: str | None = None,
    group: str | None = None,
    tags: Sequence[str] = (),
    save_dir: str = ".",
    mode: str = "auto",
    **kwargs: Any,
) -> WandbLogger:
    """A :class:`WandbLogger` whose ``mode`` may be ``auto``: online with credentials, else offline.

    ``WANDB_MODE`` in the environment wins over the config (``disabled`` in tests, ``offline``
    on clusters without network). Offline runs land in ``save_dir/wandb/offline-run-*``; upload
    them later with ``wandb sync``.

    The run id is kept in ``save_dir/wandb_run_id`` (the run's output directory): a run resumed
    there (``ckpt_path=last``) continues the same W&B run (``resume="allow"``). An explicit
    ``id``/``version`` wins.
    """
    if mode not in ("auto", "online", "offline", "disabled"):
        raise ValueError(f"logger.wandb.mode must be auto/online/offline/disabled, got {mode!r}")
    mode = os.environ.get("WANDB_MODE", mode)
    if mode == "auto":
        mode = "online" if wandb_has_credentials() else "offline"
    os.makedirs(save_dir, exist_ok=True)
    if mode != "disabled" and kwargs.get("id") is None and kwargs.get("version") is None:
        from vltr.training.resume import wandb_run_id

        kwargs["id"] = wandb_run_id(save_dir)
        kwargs.setdefault("resume", "allow")
    # mode goes to wandb.init explicitly, "offline" too: Lightning's offline flag only sets
    # WANDB_MODE, which W&B ignores once its settings are loaded (wandb_has_credentials loads
    # them), and the run would then ask for a login
    return WandbLogger(
        project=project,
        name=name,
        group=group,
        tags=list(tags),
        save_dir=save_dir,
        offline=mode == "offline",
        mode=mode,
        **kwargs,
    )


def finish_wandb() -> None:
    """Close the active W&B run, so consecutive multirun jobs do not merge into one run."""
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


# W&B writes an offline run as one ``run-*.wandb`` file in LevelDB's log format: a 7-byte file
# header, then 32 KiB blocks of records, each with a 7-byte header (crc32c, uint16 length,
# uint8 type: 1 full, 2 first, 3 middle, 4 last) and a protobuf ``Record`` payload. Reading it
# back lets tests and reports check what a run logged without network or a W&B server.
_BLOCK = 32 * 1024
_HEADER = 7


def _wandb_records(path: Path) -> Iterator[bytes]:
    data = path.read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path}: not a W&B run file")
    pos, pending = _HEADER, b""
    while pos + _HEADER <= len(data):
        left_in_block = _BLOCK - pos % _BLOCK
        if left_in_block < _HEADER:  # zero padding at a block's end
            pos += left_in_block
            continue
        length, kind = struct.unpack_from("<HB", data, pos + 4)
        payload = data[pos + _HEADER : pos + _HEADER + length]
        pos += _HEADER + length
        if kind == 0 and length == 0:
            break
        if kind == 1:
            yield payload
        elif kind == 2:
            pending = payload
        elif kind == 3:
            pending += payload
        elif kind == 4:
            yield pending + payload
            pending = b""


def read_wandb_offline_run(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """What an offline run dir holds, read without network or a W&B server.

    ``{"run": {"id", "name", "project", "group", "tags"}, "history": [step dicts],
    "summary": {...}, "config": {...}, "tables": {key: {"columns", "data"}},
    "charts": {key: panel spec}}``. Nested values (a logged table's metadata) appear in
    history/summary/config under their joined key (``"a/b/_type"``); ``tables`` holds the last
    logged content of each ``wandb.Table`` (read from the run's ``files/``, custom charts' data
    included as ``<chart key>_table``), ``charts`` the ``wandb.plot`` panels by key.
    """
    from wandb.proto import wandb_internal_pb2 as pb

    root = Path(run_dir)
    files = sorted(root.glob("run-*.wandb"))
    if not files:
        raise FileNotFoundError(f"{run_dir}: no run-*.wandb file")
    out: dict[str, Any] = {
        "run": {},
        "history": [],
        "summary": {},
        "config": {},
        "tables": {},
        "charts": {},
    }

    def key_of(item: Any) -> str:
        return item.key or "/".join(item.nested_key)

    def collect_tables(items: Any) -> None:
        # a logged table is a dict value: nested keys (<key>, "_type") = "table-file", ...
        fields: dict[tuple[str, ...], dict[str, Any]] = {}
        for i in items:
            if len(i.nested_key) >= 2:
                fields.setdefault(tuple(i.nested_key[:-1]), {})[i.nested_key[-1]] = json.loads(
                    i.value_json
                )
        for prefix, value in fields.items():
            if value.get("_type") == "table-file" and "path" in value:
                table = json.loads((root / "files" / value["path"]).read_text())
                out["tables"]["/".join(prefix)] = {
                    "columns": table["columns"],
                    "data": table["data"],
                }

    for raw in _wandb_records(files[0]):
        record = pb.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            out["run"] = {
                "id": r.run_id,
                "name": r.display_name,
                "project": r.project,
                "group": r.run_group,
                "tags": list(r.tags),
            }
            for i in r.config.update:  # wandb.init(config=...)
                out["config"][key_of(i)] = json.loads(i.value_json)
        elif kind == "history":
            out["history"].append(
                {key_of(i): json.loads(i.value_json) for i in record.history.item}
            )
            collect_tables(record.history.item)
        elif kind == "summary":
            for i in record.summary.update:
                out["summary"][key_of(i)] = json.loads(i.value_json)
        elif kind == "config":
            for i in record.config.update:
                value = json.loads(i.value_json)
                out["config"][key_of(i)] = value
                if list(i.nested_key[:2]) == ["_wandb", "visualize"] and len(i.nested_key) > 2:
                    out["charts"]["/".join(i.nested_key[2:])] = value
    return out
