"""A LangGraph checkpointer that keeps its data in files beside the sidecar.

Layout: one append-only log per thread in `<project>/.training-pipeline/checkpoints/`.
Each line is one record, `<crc32 as 8 hex digits> <compact JSON>\\n`, with the
serializer's bytes in base64.

- `put` appends the checkpoint without its channel values, plus blobs for the
  channels in `new_versions` only (as the Postgres saver does): unchanged channels
  are referenced by version, so a write costs the size of what changed, not the
  length of the session. `put_writes` appends one record of task writes. Every
  append is fsync'd before the call returns.
- A record cut short by a crash (kill -9, power loss) has no newline or a bad
  checksum: loading skips it, and the next append first truncates it away.
- The in-memory index of a thread is built by replaying its log the first time
  the thread is used, then kept current by reading only what was appended since
  (by this instance or another one on the same folder; appends hold an flock).
- delete_thread removes the thread's file; prune, delete_for_runs and copy_thread
  rewrite or extend whole files.

Async methods run the file work in a worker thread, so the event loop never
blocks (the LangGraph dev server rejects blocking calls).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import os
import random
import re
import threading
import zlib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_serializable_checkpoint_metadata,
    writes_sort_key,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from agent.fsutil import atomic_write_text, fsync_dir, safe_mkdir
from agent.lock import STATE_DIR, ensure_state_dir

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: one process per folder is assumed
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

CHECKPOINT_SUBDIR = f"{STATE_DIR}/checkpoints"  # beside the lock, under the same .gitignore
ENV_DIR = "TRAINING_PIPELINE_CHECKPOINT_DIR"
DEFAULT_SERVER_DIR = ".langgraph_api/training-pipeline"

Typed = tuple[str, bytes]  # what serde.dumps_typed returns
_EMPTY: Typed = ("empty", b"")  # a channel in new_versions with no value (it was cleared)
_UNCHANGED: Any = object()  # a rewrite that would change nothing leaves the file alone


# --- records ---------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _typed(pair: Sequence[str]) -> Typed:
    return (pair[0], base64.b64decode(pair[1]))


def _encode(record: dict[str, Any]) -> bytes:
    payload = json.dumps(record, separators=(",", ":")).encode("ascii")
    return b"%08x %s\n" % (zlib.crc32(payload), payload)


def _decode(data: bytes) -> tuple[list[dict[str, Any]], int, int]:
    """Records in `data`, bytes consumed (complete lines only), corrupt lines skipped."""
    records: list[dict[str, Any]] = []
    pos = bad = 0
    while (end := data.find(b"\n", pos)) >= 0:
        line, pos = data[pos:end], end + 1
        record = _parse(line)
        if record is None:
            bad += 1
        else:
            records.append(record)
    return records, pos, bad


def _parse(line: bytes) -> dict[str, Any] | None:
    if len(line) < 10 or line[8:9] != b" ":
        return None
    try:
        crc = int(line[:8], 16)
    except ValueError:
        return None
    payload = line[9:]
    if zlib.crc32(payload) != crc:
        return None
    try:
        record = json.loads(payload)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


@dataclass
class _Thread:
    """One thread's index, as replayed from its log. Values stay serialized until read."""

    tid: str
    ident: tuple[int, int]  # (st_dev, st_ino): a rewrite gives the file a new inode
    offset: int = 0  # bytes of the log applied so far
    # ns -> checkpoint id -> (checkpoint without values, metadata, parent checkpoint id)
    checkpoints: dict[str, dict[str, tuple[Typed, Typed, str | None]]] = field(default_factory=dict)
    blobs: dict[tuple[str, str, Any], Typed] = field(default_factory=dict)  # (ns, channel, version)
    # (ns, checkpoint id) -> (task id, write idx) -> (task id, channel, value, task path)
    writes: dict[tuple[str, str], dict[tuple[str, int], tuple[str, str, Typed, str]]] = field(default_factory=dict)
    # (ns, checkpoint id) -> channel_versions, decoded once (delta-channel history walks read them often)
    versions: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def apply(self, rec: dict[str, Any]) -> None:
        if rec.get("t") != self.tid:  # a record that does not belong here (a digest collision)
            return
        ns = rec["ns"]
        if rec["op"] == "checkpoint":
            for channel, version, kind, data in rec["blobs"]:
                self.blobs[(ns, channel, version)] = (kind, base64.b64decode(data))
            self.checkpoints.setdefault(ns, {})[rec["id"]] = (
                _typed(rec["checkpoint"]),
                _typed(rec["metadata"]),
                rec["parent"],
            )
        elif rec["op"] == "writes":
            bucket = self.writes.setdefault((ns, rec["checkpoint_id"]), {})
            for idx, channel, kind, data in rec["items"]:
                key = (rec["task"], idx)
                if idx >= 0 and key in bucket:  # regular writes are kept once; special ones replaced
                    continue
                bucket[key] = (rec["task"], channel, (kind, base64.b64decode(data)), rec["path"])

    def records(self, tid: str, serde: SerializerProtocol, keep: set[tuple[str, str]] | None = None) -> list[dict]:
        """Records that rebuild this thread (or the `keep` checkpoints of it) under `tid`."""
        out: list[dict[str, Any]] = []
        emitted: set[tuple[str, str, Any]] = set()
        for ns, by_id in self.checkpoints.items():
            for cid in sorted(by_id):
                if keep is not None and (ns, cid) not in keep:
                    continue
                ck, md, parent = by_id[cid]
                if tid != self.tid:
                    md = _retarget_metadata(serde, md, tid)
                blobs = []
                for channel, version in serde.loads_typed(ck)["channel_versions"].items():
                    key = (ns, channel, version)
                    if key in self.blobs and key not in emitted:
                        emitted.add(key)
                        kind, data = self.blobs[key]
                        blobs.append([channel, version, kind, _b64(data)])
                out.append(_checkpoint_record(tid, ns, cid, parent, ck, md, blobs))
        for (ns, cid), bucket in self.writes.items():
            if keep is not None and (ns, cid) not in keep:
                continue
            by_task: dict[tuple[str, str], list[list[Any]]] = {}
            for (task, idx), (_, channel, (kind, data), path) in bucket.items():
                by_task.setdefault((task, path), []).append([idx, channel, kind, _b64(data)])
            for (task, path), items in by_task.items():
                out.append(_writes_record(tid, ns, cid, task, path, items))
        return out


def _checkpoint_record(tid: str, ns: str, cid: str, parent: str | None, ck: Typed, md: Typed, blobs: list) -> dict:
    return {
        "op": "checkpoint", "t": tid, "ns": ns, "id": cid, "parent": parent,
        "checkpoint": [ck[0], _b64(ck[1])], "metadata": [md[0], _b64(md[1])], "blobs": blobs,
    }  # fmt: skip


def _writes_record(tid: str, ns: str, cid: str, task: str, path: str, items: list) -> dict:
    return {"op": "writes", "t": tid, "ns": ns, "checkpoint_id": cid, "task": task, "path": path, "items": items}


def _retarget_metadata(serde: SerializerProtocol, md: Typed, tid: str) -> Typed:
    """A copied checkpoint's metadata names its new thread (as the API server's copy does)."""
    metadata = serde.loads_typed(md)
    if isinstance(metadata, dict) and "thread_id" in metadata:
        return serde.dumps_typed({**metadata, "thread_id": tid})
    return md


# --- the saver -------------------------------------------------------------------------


class ProjectCheckpointer(BaseCheckpointSaver[str]):
    """Checkpoints in `<root>/<subdir>`: by default `<project>/.training-pipeline/checkpoints`.

    Creating one does no I/O (the API server builds it on its event loop); the folder
    is created and each thread's log replayed on first use.
    """

    def __init__(
        self,
        root: Path | str,
        *,
        subdir: str = CHECKPOINT_SUBDIR,
        serde: SerializerProtocol | None = None,
    ) -> None:
        super().__init__(serde=serde)
        self.root = Path(root)
        self.subdir = subdir
        self._folder: Path | None = None
        self._lock = threading.RLock()
        self._threads: dict[str, _Thread] = {}
        self._names: dict[str, str] = {}  # log file name -> thread id, for listing every thread

    # -- files

    @property
    def folder(self) -> Path:
        with self._lock:
            if self._folder is None:
                if Path(self.subdir).parts[:1] == (STATE_DIR,):  # the project's state folder: keep it out of git
                    ensure_state_dir(self.root)
                self._folder = safe_mkdir(self.root, self.subdir)
            return self._folder

    def _path(self, tid: str) -> Path:
        slug = re.sub(r"[^A-Za-z0-9_-]+", "-", tid).strip("-")[:40]  # readable, for people browsing the folder
        digest = hashlib.sha256(tid.encode("utf-8")).hexdigest()[:24]
        return self.folder / (f"{slug}-{digest}.log" if slug else f"{digest}.log")

    def _sync(self, tid: str) -> _Thread | None:
        """The thread's index, brought up to date with its log; None if it has none."""
        path = self._path(tid)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            self._threads.pop(tid, None)
            return None
        ident = (st.st_dev, st.st_ino)
        thread = self._threads.get(tid)
        if thread is None or thread.ident != ident or st.st_size < thread.offset:
            thread = self._threads[tid] = _Thread(tid, ident)
        if st.st_size > thread.offset:
            with open(path, "rb") as fh:
                fh.seek(thread.offset)
                data = fh.read(st.st_size - thread.offset)
            records, used, bad = _decode(data)
            if bad:
                logger.warning("%s: skipped %d damaged record(s)", path, bad)
            for rec in records:
                thread.apply(rec)
            thread.offset += used
        self._names.setdefault(path.name, tid)
        return thread

    def _thread_ids(self) -> list[str]:
        present = [p.name for p in self.folder.glob("*.log")]
        for name in present:
            if name not in self._names:  # written by another instance: its first record names it
                with contextlib.suppress(OSError), open(self.folder / name, "rb") as fh:
                    first = _parse(fh.readline().rstrip(b"\n"))
                    if first and isinstance(first.get("t"), str):
                        self._names[name] = first["t"]
        return sorted({self._names[n] for n in present if n in self._names})

    def _append(self, tid: str, records: list[dict[str, Any]]) -> None:
        """Append records to the thread's log durably, then apply them to the index."""
        data = b"".join(_encode(r) for r in records)
        path = self._path(tid)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                _flock(fd)
                st = os.fstat(fd)
                try:
                    same_file = os.stat(path).st_ino == st.st_ino
                except FileNotFoundError:
                    same_file = False
                if not same_file:  # deleted or rewritten while we waited: open it again
                    continue
                thread = self._sync(tid)
                assert thread is not None
                if st.st_size > thread.offset:  # a record torn by a crash: cut it off first
                    logger.warning("%s: dropping %d bytes of an incomplete record", path, st.st_size - thread.offset)
                    os.ftruncate(fd, thread.offset)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
                if st.st_size == 0:
                    fsync_dir(path.parent)  # a new file: make its name durable too
                thread.offset += len(data)
                for rec in records:
                    thread.apply(rec)
                return
            finally:
                os.close(fd)

    def _rewrite(self, tid: str, build: Callable[[_Thread], list[dict] | None]) -> None:
        """Replace the thread's log with `build(thread)`'s records (None or []: delete it)."""
        path = self._path(tid)
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return
        try:
            _flock(fd)  # appenders wait, then notice the new inode and reopen
            thread = self._sync(tid)
            records = build(thread) if thread is not None else _UNCHANGED
            if records is _UNCHANGED:
                return
            if records:
                text = b"".join(_encode(r) for r in records).decode("ascii")
                atomic_write_text(path.name, text, root=path.parent)
            else:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                fsync_dir(path.parent)
        finally:
            os.close(fd)
        self._threads.pop(tid, None)

    # -- reading

    def _tuple(self, thread: _Thread, ns: str, cid: str) -> CheckpointTuple:
        ck, md, parent = thread.checkpoints[ns][cid]
        checkpoint: Checkpoint = self.serde.loads_typed(ck)
        values = {}
        for channel, version in checkpoint["channel_versions"].items():
            blob = thread.blobs.get((ns, channel, version))
            if blob is not None and blob[0] != _EMPTY[0]:
                values[channel] = self.serde.loads_typed(blob)
        bucket = thread.writes.get((ns, cid), {})
        ordered = sorted(bucket.items(), key=lambda kv: writes_sort_key(kv[1][3], kv[0][0], kv[0][1]))

        def config(checkpoint_id: str) -> RunnableConfig:
            return {"configurable": {"thread_id": thread.tid, "checkpoint_ns": ns, "checkpoint_id": checkpoint_id}}

        return CheckpointTuple(
            config=config(cid),
            checkpoint={**checkpoint, "channel_values": values},
            metadata=self.serde.loads_typed(md),
            parent_config=config(parent) if parent else None,
            pending_writes=[(task, channel, self.serde.loads_typed(v)) for (task, channel, v, _) in (w for _, w in ordered)],
        )

    def _locate(self, config: RunnableConfig) -> tuple[_Thread, str, str] | None:
        """The thread, namespace and checkpoint id `config` names (the latest if none); call under the lock."""
        conf = config["configurable"]
        tid, ns = str(conf["thread_id"]), conf.get("checkpoint_ns", "")
        thread = self._sync(tid)
        by_id = thread.checkpoints.get(ns) if thread else None
        if not by_id:
            return None
        cid = get_checkpoint_id(config) or max(by_id)
        return (thread, ns, cid) if cid in by_id else None

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        with self._lock:
            found = self._locate(config)
            return self._tuple(*found) if found else None

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        conf = config["configurable"] if config else {}
        ns_wanted = conf.get("checkpoint_ns")
        id_wanted = get_checkpoint_id(config) if config else None
        before_id = get_checkpoint_id(before) if before else None
        with self._lock:
            tids = [str(conf["thread_id"])] if conf.get("thread_id") is not None else self._thread_ids()
            found: list[tuple[str, str, str]] = []
            for tid in tids:
                thread = self._sync(tid)
                for ns, by_id in (thread.checkpoints if thread else {}).items():
                    if ns_wanted is not None and ns != ns_wanted:
                        continue
                    found.extend(
                        (cid, tid, ns)
                        for cid in by_id
                        if (not id_wanted or cid == id_wanted) and (not before_id or cid < before_id)
                    )
        found.sort(reverse=True)  # newest first: checkpoint ids sort by time
        remaining = limit
        for cid, tid, ns in found:
            if remaining is not None and remaining <= 0:
                return
            with self._lock:  # built one at a time, so the caller's loop runs unlocked
                thread = self._sync(tid)
                if thread is None or cid not in thread.checkpoints.get(ns, {}):
                    continue  # deleted meanwhile
                if filter:
                    metadata = self.serde.loads_typed(thread.checkpoints[ns][cid][1])
                    if not all(metadata.get(k) == v for k, v in filter.items()):
                        continue
                item = self._tuple(thread, ns, cid)
            if remaining is not None:
                remaining -= 1
            yield item

    # -- writing

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        conf = config["configurable"]
        tid, ns = str(conf["thread_id"]), conf.get("checkpoint_ns", "")
        stored = checkpoint.copy()
        values: dict[str, Any] = stored.pop("channel_values", {})  # type: ignore[misc]
        blobs = []
        for channel, version in new_versions.items():  # only what changed; the rest is referenced
            kind, data = self.serde.dumps_typed(values[channel]) if channel in values else _EMPTY
            blobs.append([channel, version, kind, _b64(data)])
        record = _checkpoint_record(
            tid, ns, checkpoint["id"], conf.get("checkpoint_id"),
            self.serde.dumps_typed(stored),
            self.serde.dumps_typed(get_serializable_checkpoint_metadata(config, metadata)),
            blobs,
        )  # fmt: skip
        with self._lock:
            self._append(tid, [record])
        return {"configurable": {"thread_id": conf["thread_id"], "checkpoint_ns": ns, "checkpoint_id": checkpoint["id"]}}

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        conf = config["configurable"]
        tid, ns, cid = str(conf["thread_id"]), conf.get("checkpoint_ns", ""), conf["checkpoint_id"]
        items = []
        for idx, (channel, value) in enumerate(writes):
            kind, data = self.serde.dumps_typed(value)
            items.append([WRITES_IDX_MAP.get(channel, idx), channel, kind, _b64(data)])
        with self._lock:
            thread = self._sync(tid)
            stored = thread.writes.get((ns, cid), {}) if thread else {}
            items = [i for i in items if i[0] < 0 or (task_id, i[0]) not in stored]  # a retried task: already saved
            if items:
                self._append(tid, [_writes_record(tid, ns, cid, task_id, task_path, items)])

    def delete_thread(self, thread_id: str) -> None:
        with self._lock:
            self._rewrite(str(thread_id), lambda thread: None)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Remove the checkpoints (and their writes) whose metadata `run_id` is in `run_ids`."""
        doomed = {str(r) for r in run_ids}
        if not doomed:
            return
        with self._lock:
            for tid in self._thread_ids():
                self._rewrite(tid, lambda thread: self._keep(thread, lambda md: md.get("run_id") not in doomed))

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """`keep_latest`: keep each namespace's newest checkpoint; `delete`: drop the threads.

        Not DeltaChannel-aware (the graph here uses none): keep_latest drops the history
        a delta channel would be rebuilt from.
        """
        if strategy not in ("keep_latest", "delete", "delete_all"):
            raise ValueError(f"unknown prune strategy {strategy!r}: use 'keep_latest' or 'delete'")
        with self._lock:
            for tid in map(str, thread_ids):
                if strategy == "keep_latest":
                    self._rewrite(tid, self._keep_latest)
                else:
                    self._rewrite(tid, lambda thread: None)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint and write of one thread to another (appended to it)."""
        src, dst = str(source_thread_id), str(target_thread_id)
        with self._lock:
            thread = self._sync(src)
            if thread is None or src == dst:
                return
            records = thread.records(dst, self.serde)
            if records:
                self._append(dst, records)

    def _keep(self, thread: _Thread, wanted: Callable[[dict], bool]) -> list[dict] | None:
        keep = {
            (ns, cid)
            for ns, by_id in thread.checkpoints.items()
            for cid, (_, md, _) in by_id.items()
            if wanted(self.serde.loads_typed(md))
        }
        return self._records_keeping(thread, keep)

    def _keep_latest(self, thread: _Thread) -> list[dict] | None:
        keep = {(ns, max(by_id)) for ns, by_id in thread.checkpoints.items() if by_id}
        return self._records_keeping(thread, keep)

    def _records_keeping(self, thread: _Thread, keep: set[tuple[str, str]]) -> list[dict] | None:
        if len(keep) == sum(len(by_id) for by_id in thread.checkpoints.values()):
            return _UNCHANGED
        return thread.records(thread.tid, self.serde, keep)

    def get_next_version(self, current: str | int | None, channel: None) -> str:
        """Zero-padded counter plus a random fraction: ordered as strings, and distinct per fork.

        Blobs are stored by (channel, version); two forks of one thread writing "version 5"
        of a channel must not overwrite each other's value.
        """
        if current is None:
            number = 0
        elif isinstance(current, int):
            number = current
        else:
            number = int(str(current).split(".")[0])
        return f"{number + 1:032d}.{random.random():.16f}"

    def get_delta_channel_history(self, *, config: RunnableConfig, channels: Sequence[str]) -> dict[str, Any]:
        """Writes to `channels` along the parent chain, and the nearest stored value (seed).

        Same contract as the base class, which loads every ancestor in full; here the index
        is walked and only the requested channels' writes and seeds are decoded, so loading
        a thread with delta channels stays cheap however long the session.
        """
        result: dict[str, Any] = {ch: {"writes": []} for ch in channels}
        if not channels:
            return {}
        with self._lock:
            found = self._locate(config)
            if found is None:
                return result
            thread, ns, cid = found
            by_id = thread.checkpoints[ns]
            remaining = set(channels)
            collected: dict[str, list] = {ch: [] for ch in channels}
            cursor = by_id[cid][2]  # the target's own writes are pending for its next step: excluded
            while cursor is not None and remaining and cursor in by_id:
                ck, _, parent = by_id[cursor]
                bucket = thread.writes.get((ns, cursor), {})
                ordered = sorted(bucket.items(), key=lambda kv: writes_sort_key(kv[1][3], kv[0][0], kv[0][1]))
                for _, (task, channel, value, _) in reversed(ordered):
                    if channel in remaining:
                        collected[channel].append((task, channel, self.serde.loads_typed(value)))
                versions = thread.versions.get((ns, cursor))
                if versions is None:
                    versions = thread.versions[(ns, cursor)] = self.serde.loads_typed(ck)["channel_versions"]
                for ch in list(remaining):
                    blob = thread.blobs.get((ns, ch, versions.get(ch)))
                    if blob is not None and blob[0] != _EMPTY[0]:
                        result[ch]["seed"] = self.serde.loads_typed(blob)
                        remaining.discard(ch)
                cursor = parent
            for ch in channels:
                result[ch]["writes"] = list(reversed(collected[ch]))
            return result

    # -- async: the same work in a worker thread

    async def aget_delta_channel_history(self, *, config: RunnableConfig, channels: Sequence[str]) -> dict[str, Any]:
        return await asyncio.to_thread(self.get_delta_channel_history, config=config, channels=channels)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await asyncio.to_thread(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        items = await asyncio.to_thread(lambda: [*self.list(config, filter=filter, before=before, limit=limit)])
        for item in items:
            yield item

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return await asyncio.to_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        await asyncio.to_thread(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await asyncio.to_thread(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await asyncio.to_thread(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await asyncio.to_thread(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await asyncio.to_thread(lambda: self.prune(thread_ids, strategy=strategy))


def _flock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX)


def make_checkpointer() -> ProjectCheckpointer:
    """Factory for langgraph.json's `checkpointer.path` (the LangGraph API server).

    Stores in `$TRAINING_PIPELINE_CHECKPOINT_DIR`, default `.langgraph_api/training-pipeline`
    under the server's working directory (resolved on first use).
    """
    folder = os.environ.get(ENV_DIR) or DEFAULT_SERVER_DIR
    return ProjectCheckpointer(folder, subdir=".")
