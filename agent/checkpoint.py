"""The LangGraph checkpointer: langgraph-checkpoint-sqlite's SqliteSaver, in the project folder.

The database is `<project>/.training-pipeline/checkpoints/checkpoints.sqlite`, in WAL mode with
`synchronous=NORMAL`: a checkpoint is in the write-ahead log when `put` returns, so a killed
process (kill -9, a closed terminal) loses nothing and the database is never left corrupt. A power
cut may lose the last checkpoints (the log is synced at SQLite's own checkpoints, not at every
commit), never a decision: those are in sidecar.yaml, written with fsync, and a restarted session
takes them from there. Syncing every commit (`FULL`) cost more than the rest of an answer.
Copy or move the project folder and its history goes with it.
The library stores and reads; this module adds what the terminal, the tests and the LangGraph
API server need around it:

- the connection is opened on first use: building a saver does no I/O (the API server builds
  it on its event loop), and one saver serves every thread of a process under the library's lock;
- async methods run the library's sync ones in a worker thread, so an event loop never waits on
  the disk (the dev server rejects blocking calls) and sync callers work from any thread (the
  library's AsyncSqliteSaver belongs to one event loop and cannot serve `get_state` outside it);
- `delete_for_runs`, `copy_thread` and a DeltaChannel-aware `prune`, which the library lacks.
- `get_delta_channel_history` (how a run rebuilds its delta channels) in three queries, where the
  library reads every ancestor checkpoint whole.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata, CheckpointTuple, DeltaChannelHistory
from langgraph.checkpoint.serde.base import SerializerProtocol
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.checkpoint.sqlite.utils import load_pending_writes

from agent.fsutil import safe_mkdir
from agent.lock import STATE_DIR, ensure_state_dir

CHECKPOINT_SUBDIR = f"{STATE_DIR}/checkpoints"  # beside the lock, under the same .gitignore
DATABASE_NAME = "checkpoints.sqlite"
ENV_DIR = "TRAINING_PIPELINE_CHECKPOINT_DIR"
DEFAULT_SERVER_DIR = ".langgraph_api/training-pipeline"
# How long a writer waits for another connection's transaction (another process on the
# project, another event loop of the API server) before it gives up: generous, the machine may be busy.
BUSY_TIMEOUT_S = 60.0
PRUNE_STRATEGIES = ("keep_latest", "delete", "delete_all")
# SQLite's result codes for a folder or disk that refuses the write, as the OSError the
# rest of the program (and the user) knows them by.
_DISK_ERRORS = {
    "SQLITE_FULL": (errno.ENOSPC, "No space left on device"),
    "SQLITE_READONLY": (errno.EROFS, "Read-only file system"),
    "SQLITE_IOERR": (errno.EIO, "Input/output error"),
    "SQLITE_CANTOPEN": (errno.EACCES, "Cannot open the file"),
}


class ProjectCheckpointer(SqliteSaver):
    """Checkpoints in `<root>/<subdir>/checkpoints.sqlite`; by default in the project's state folder."""

    def __init__(self, root: Path | str, *, subdir: str = CHECKPOINT_SUBDIR, serde: SerializerProtocol | None = None) -> None:
        super().__init__(None, serde=serde)  # type: ignore[arg-type]  # connected on first use
        self.root = Path(root)
        self.subdir = subdir
        self._folder: Path | None = None
        self._open_lock = threading.Lock()

    # -- the database

    @property
    def folder(self) -> Path:
        with self._open_lock:
            if self._folder is None:
                if Path(self.subdir).parts[:1] == (STATE_DIR,):  # the project's state folder: keep it out of git
                    ensure_state_dir(self.root)
                self._folder = safe_mkdir(self.root, self.subdir)
            return self._folder

    @property
    def path(self) -> Path:
        return self.folder / DATABASE_NAME

    @staticmethod
    def database_in(root: Path | str, subdir: str = CHECKPOINT_SUBDIR) -> Path:
        """Where the database of a project is, without making any folder."""
        return Path(root) / subdir / DATABASE_NAME

    def _connect(self) -> None:
        path = self.path
        with self._open_lock:
            if self.conn is None:
                conn = sqlite3.connect(path, check_same_thread=False, timeout=BUSY_TIMEOUT_S)
                conn.execute("PRAGMA synchronous=NORMAL")  # per connection; WAL keeps commits atomic (see above)
                self.conn = conn

    @contextmanager
    def _disk_errors(self) -> Iterator[None]:
        """A full disk or a read-only folder surfaces as the OSError it is, naming the database."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            primary = "_".join((getattr(exc, "sqlite_errorname", None) or "").split("_")[:2])  # SQLITE_IOERR_WRITE: SQLITE_IOERR
            if primary not in _DISK_ERRORS:
                raise
            number, text = _DISK_ERRORS[primary]
            raise OSError(number, f"{text} (the session's checkpoint database: {exc})", str(self._folder or self.root)) from exc

    @contextmanager
    def cursor(self, transaction: bool = True) -> Iterator[sqlite3.Cursor]:
        with self._disk_errors():
            if self.conn is None:
                self._connect()
            with super().cursor(transaction) as cur:
                yield cur

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Cursor]:
        """One write transaction, taken before the first read: all of it or nothing."""
        with self._disk_errors():
            if self.conn is None:
                self._connect()
            with self._locked_transaction() as cur:
                yield cur

    @contextmanager
    def _locked_transaction(self) -> Iterator[sqlite3.Cursor]:
        with self.lock:
            self.setup()
            cur = self.conn.cursor()
            try:
                cur.execute("BEGIN IMMEDIATE")
                yield cur
                self.conn.commit()
            except BaseException:
                self.conn.rollback()
                raise
            finally:
                cur.close()

    def setup(self) -> None:
        """The library's setup, tried again while another process holds the database.

        Two processes opening a new database at once: turning on WAL (the first statement of the
        setup) needs the database to itself, and SQLite answers "database is locked" at once there
        instead of waiting out the busy timeout (about one start in a hundred, four at a time)."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                return super().setup()
            except sqlite3.OperationalError as exc:
                busy = (getattr(exc, "sqlite_errorname", None) or "").startswith("SQLITE_BUSY")
                if not busy or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)  # the setup is idempotent: CREATE ... IF NOT EXISTS

    def close(self) -> None:
        with self._open_lock, self.lock:
            if self.conn is not None:
                self.conn.close()
                self.conn = None
                self.is_setup = False

    def __enter__(self) -> ProjectCheckpointer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        # Read whole, then yielded: the library yields while holding its lock, and a caller that
        # reads more in its loop (get_state_history rebuilding delta channels) would wait on itself.
        yield from [*super().list(config, filter=filter, before=before, limit=limit)]

    # -- what the library lacks

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Remove the checkpoints (and their writes) whose metadata `run_id` is in `run_ids`."""
        runs = [str(r) for r in run_ids]
        if not runs:
            return
        marks = ",".join("?" * len(runs))
        with self._transaction() as cur:
            doomed = cur.execute(
                f"SELECT thread_id, checkpoint_ns, checkpoint_id FROM checkpoints "
                f"WHERE json_extract(CAST(metadata AS TEXT), '$.run_id') IN ({marks})",
                runs,
            ).fetchall()
            _delete_checkpoints(cur, doomed)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint and write of one thread to another; the metadata names the new thread."""
        src, dst = str(source_thread_id), str(target_thread_id)
        if src == dst:
            return
        with self._transaction() as cur:
            rows = cur.execute(
                "SELECT checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata "
                "FROM checkpoints WHERE thread_id = ?",
                (src,),
            ).fetchall()
            cur.executemany(
                "INSERT OR REPLACE INTO checkpoints (thread_id, checkpoint_ns, checkpoint_id, parent_checkpoint_id, "
                "type, checkpoint, metadata) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(dst, ns, cid, parent, kind, blob, _retarget(metadata, dst)) for ns, cid, parent, kind, blob, metadata in rows],
            )
            cur.execute(
                "INSERT OR REPLACE INTO writes (thread_id, checkpoint_ns, checkpoint_id, task_id, task_path, idx, "
                "channel, type, value) SELECT ?, checkpoint_ns, checkpoint_id, task_id, task_path, idx, channel, "
                "type, value FROM writes WHERE thread_id = ?",
                (dst, src),
            )

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """`keep_latest`: each namespace keeps its newest checkpoint, and what its delta channels need.

        A DeltaChannel stores only its new writes in most checkpoints and is rebuilt by walking
        back to the nearest checkpoint that holds a snapshot of it. So the newest checkpoint keeps
        its ancestors, with their writes, up to the one holding a value for each delta channel it
        lacks (the checkpoint metadata's `counters_since_delta_snapshot` names them); older ones go.
        `delete` (or `delete_all`): the threads are removed.
        """
        if strategy not in PRUNE_STRATEGIES:
            raise ValueError(f"unknown prune strategy {strategy!r}: use 'keep_latest' or 'delete'")
        with self._transaction() as cur:
            for tid in map(str, thread_ids):
                if strategy != "keep_latest":
                    cur.execute("DELETE FROM checkpoints WHERE thread_id = ?", (tid,))
                    cur.execute("DELETE FROM writes WHERE thread_id = ?", (tid,))
                    continue
                stored = cur.execute("SELECT checkpoint_ns, checkpoint_id FROM checkpoints WHERE thread_id = ?", (tid,)).fetchall()
                newest: dict[str, str] = {}
                for ns, cid in stored:
                    newest[ns] = max(cid, newest.get(ns, cid))
                keep: set[tuple[str, str]] = set()
                for ns, cid in newest.items():
                    keep |= self._needed_chain(cur, tid, ns, cid)
                _delete_checkpoints(cur, [(tid, ns, cid) for ns, cid in stored if (ns, cid) not in keep])

    def _needed_chain(self, cur: sqlite3.Cursor, tid: str, ns: str, cid: str) -> set[tuple[str, str]]:
        """`cid` and the ancestors its delta channels are rebuilt from."""
        checkpoint, metadata = self._load(cur, tid, ns, cid)
        versions = checkpoint.get("channel_versions") or {}
        delta = set((metadata.get("counters_since_delta_snapshot") or {})) & set(versions)
        missing = delta - set(checkpoint.get("channel_values") or {})
        walked, _ = self._walk(cur, tid, ns, cid, missing)
        return {(ns, cid)} | {(ns, ancestor) for ancestors in walked.values() for ancestor in ancestors}

    def get_delta_channel_history(self, *, config: RunnableConfig, channels: Sequence[str]) -> Mapping[str, DeltaChannelHistory]:
        """The library's walk up the parent chain (same result), in three reads instead of one per
        ancestor: the chain's metadata in one query, a checkpoint only where one of the channels
        may be stored (the metadata's `counters_since_delta_snapshot` names the delta channels
        with writes since their last snapshot; one it does not name was snapshotted there, or
        never written), and the chain's writes to these channels in one query. The library reads
        every ancestor whole, all its writes included: a channel that changes rarely (knowledge)
        made every run of a long session read hundreds of checkpoints."""
        if not channels:
            return {}
        tid, ns = str(config["configurable"]["thread_id"]), config["configurable"].get("checkpoint_ns", "")
        with self.cursor(transaction=False) as cur:
            cid = config["configurable"].get("checkpoint_id") or _latest_id(cur, tid, ns)
            walked, seeds = self._walk(cur, tid, ns, cid, channels) if cid else ({c: [] for c in channels}, {})
            writes = self._writes_of(cur, tid, ns, walked)
        result: dict[str, DeltaChannelHistory] = {}
        for ch in channels:
            newest_first = [w for ancestor in walked[ch] for w in reversed(writes.get((ancestor, ch), []))]
            entry: DeltaChannelHistory = {"writes": list(reversed(newest_first))}
            if ch in seeds:
                entry["seed"] = seeds[ch]
            result[ch] = entry
        return result

    def _walk(self, cur: sqlite3.Cursor, tid: str, ns: str, cid: str, channels: Iterable[str]) -> tuple[dict[str, list[str]], dict[str, Any]]:
        """Per channel, the ancestors of `cid` a run rebuilds it from (newest first, down to the one
        holding its value), and that value where one was found."""
        remaining = set(channels)
        walked: dict[str, list[str]] = {c: [] for c in remaining}
        seeds: dict[str, Any] = {}
        if not remaining:
            return walked, seeds
        count = cur.execute("SELECT count(*) FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ?", (tid, ns)).fetchone()[0]
        for ancestor, metadata in cur.execute(_CHAIN_SQL, (tid, ns, cid, count)).fetchall():
            if not remaining:
                break
            for ch in remaining:
                walked[ch].append(ancestor)
            counting = (json.loads(metadata) if metadata else {}).get("counters_since_delta_snapshot") or {}
            candidates = [ch for ch in remaining if ch not in counting]
            if candidates:
                values = self._load(cur, tid, ns, ancestor)[0].get("channel_values") or {}
                for ch in candidates:
                    if ch in values:
                        seeds[ch] = values[ch]
                        remaining.discard(ch)
        return walked, seeds

    def _writes_of(self, cur: sqlite3.Cursor, tid: str, ns: str, walked: dict[str, list[str]]) -> dict[tuple[str, str], list]:
        """(checkpoint, channel) -> its writes, in the library's order, for the walked ancestors."""
        wanted = {(ancestor, ch) for ch, ancestors in walked.items() for ancestor in ancestors}
        if not wanted:
            return {}
        names = sorted({ch for _, ch in wanted})
        task_path = "task_path" if self._has_task_path else "''"  # a database from before the column
        rows = cur.execute(
            f"SELECT checkpoint_id, task_id, channel, type, value, {task_path}, idx FROM writes "
            f"WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id >= ? AND channel IN ({', '.join('?' * len(names))})",
            (tid, ns, min(ancestor for ancestor, _ in wanted), *names),
        ).fetchall()
        grouped: dict[tuple[str, str], list] = {}
        for cid, *row in rows:
            if (cid, row[1]) in wanted:
                grouped.setdefault((cid, row[1]), []).append(row)
        return {key: load_pending_writes(group, self.serde) for key, group in grouped.items()}

    def _load(self, cur: sqlite3.Cursor, tid: str, ns: str, cid: str) -> tuple[dict, dict]:
        kind, blob, metadata = cur.execute(
            "SELECT type, checkpoint, metadata FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?",
            (tid, ns, cid),
        ).fetchone()
        return self.serde.loads_typed((kind, blob)), (json.loads(metadata) if metadata else {})

    # -- async: the same work in a worker thread

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
        self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata, new_versions: ChannelVersions
    ) -> RunnableConfig:
        return await asyncio.to_thread(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = "") -> None:
        await asyncio.to_thread(self.put_writes, config, writes, task_id, task_path)

    async def aget_delta_channel_history(self, *, config: RunnableConfig, channels: Sequence[str]) -> Any:
        return await asyncio.to_thread(lambda: self.get_delta_channel_history(config=config, channels=channels))

    async def adelete_thread(self, thread_id: str) -> None:
        await asyncio.to_thread(self.delete_thread, thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await asyncio.to_thread(self.delete_for_runs, run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await asyncio.to_thread(self.copy_thread, source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await asyncio.to_thread(lambda: self.prune(thread_ids, strategy=strategy))


# The ancestors of a checkpoint, parent first, with their metadata. A chain is never longer than
# the thread's checkpoints: the bound ends the recursion in a database whose parents form a loop.
_CHAIN_SQL = """
WITH RECURSIVE chain(id, depth) AS (
    SELECT parent_checkpoint_id, 1 FROM checkpoints WHERE thread_id = ?1 AND checkpoint_ns = ?2 AND checkpoint_id = ?3
    UNION ALL
    SELECT c.parent_checkpoint_id, chain.depth + 1 FROM chain
    JOIN checkpoints c ON c.thread_id = ?1 AND c.checkpoint_ns = ?2 AND c.checkpoint_id = chain.id
    WHERE chain.depth <= ?4
)
SELECT chain.id, c.metadata FROM chain
JOIN checkpoints c ON c.thread_id = ?1 AND c.checkpoint_ns = ?2 AND c.checkpoint_id = chain.id
ORDER BY chain.depth
"""


def _latest_id(cur: sqlite3.Cursor, tid: str, ns: str) -> str | None:
    row = cur.execute("SELECT max(checkpoint_id) FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ?", (tid, ns)).fetchone()
    return row[0] if row else None


def _delete_checkpoints(cur: sqlite3.Cursor, keys: list[tuple[str, str, str]]) -> None:
    """Delete these (thread, namespace, checkpoint) rows and the writes saved on them."""
    cur.executemany("DELETE FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?", keys)
    cur.executemany("DELETE FROM writes WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?", keys)


def _retarget(metadata: bytes | str | None, thread_id: str) -> bytes | str | None:
    """A copied checkpoint's metadata names its new thread (as the API server's own copy does)."""
    if not metadata:
        return metadata
    values = json.loads(metadata)
    if not isinstance(values, dict) or "thread_id" not in values:
        return metadata
    return json.dumps({**values, "thread_id": thread_id}, ensure_ascii=False).encode("utf-8")


def make_checkpointer() -> ProjectCheckpointer:
    """Factory for langgraph.json's `checkpointer.path` (the LangGraph API server).

    The server's threads span projects, so it keeps one database of its own:
    `$TRAINING_PIPELINE_CHECKPOINT_DIR/checkpoints.sqlite`, by default under
    `.langgraph_api/training-pipeline` in the folder the server runs in (made on first use).
    """
    folder = os.environ.get(ENV_DIR) or DEFAULT_SERVER_DIR
    return ProjectCheckpointer(folder, subdir=".")
