"""A node-wide cache of compiled wasm modules, shared by every supervisor's workers.

An entry is two files named by the key (sha256 of the module bytes and the engine fingerprint):
`<key>.cwasm`, the engine's own serialized module, and `<key>.meta`, a small JSON record with the
fingerprint, the size and the sha256 of the `.cwasm`. Both are written to a temporary name and
renamed, the `.cwasm` first, so a reader sees either a whole entry or none. A reader checks the
record and the checksum before it hands a single byte to the engine's deserializer (which trusts
its input): a corrupt, truncated or foreign entry is logged, deleted and compiled again. Any
error of the cache itself (a folder that is read-only, full, missing and uncreatable, a file, or on
a filesystem without flock) means compiling in memory: one warning per process (each worker is
one process, so one per container that compiles), never a failed task, and no file written into
the folder (an OSError there is never shown as a traceback).

Compiling takes `<key>.lock` with flock, so two workers starting the same new module compile it
once: the second waits, then finds the entry. A load touches the entry's mtime; a store evicts
the least recently used entries while the folder holds more than `max_bytes`.

This module knows nothing of wasmtime: the engine passes `compile` (bytes -> serialized bytes)
`load` (path of a verified `.cwasm` -> module) and `load_bytes` (serialized bytes -> module,
for the in-memory path) callables.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import orjson

from wasmvisor.linux.files import write_atomic

log = logging.getLogger(__name__)

CACHE_DIR_ENV = "WASMVISOR_CACHE_DIR"
"""Folder of the cache; an empty value turns the cache off."""
CACHE_MAX_ENV = "WASMVISOR_CACHE_MAX_BYTES"
DEFAULT_CACHE_DIR = "/var/lib/wasmvisor/cache"
"""Under /var/lib, not /run: compiled code stays valid across reboots (the fingerprint guards it)."""
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
FORMAT = 1

M = TypeVar("M")


class CacheEntryError(Exception):
    """An entry that must not be loaded: the message says why."""


@dataclass(frozen=True)
class ModuleCache(Generic[M]):
    """Compiled modules under `root` for one engine configuration (`fingerprint`)."""

    root: Path
    fingerprint: str
    max_bytes: int = DEFAULT_MAX_BYTES

    @classmethod
    def from_env(cls, fingerprint: str) -> ModuleCache[M] | None:
        """The cache named by $WASMVISOR_CACHE_DIR (default /var/lib/wasmvisor/cache), or None
        when that variable is set empty."""
        root = os.environ.get(CACHE_DIR_ENV, DEFAULT_CACHE_DIR)
        if not root:
            return None
        try:
            max_bytes = int(os.environ.get(CACHE_MAX_ENV, DEFAULT_MAX_BYTES))
        except ValueError:
            log.warning("%s=%r is not a number of bytes: using %d", CACHE_MAX_ENV,
                        os.environ[CACHE_MAX_ENV], DEFAULT_MAX_BYTES)
            max_bytes = DEFAULT_MAX_BYTES
        return cls(Path(root), fingerprint, max_bytes)

    def key(self, wasm: bytes) -> str:
        return hashlib.sha256(hashlib.sha256(wasm).digest() + self.fingerprint.encode()).hexdigest()

    def paths(self, key: str) -> tuple[Path, Path]:
        """The `.cwasm` and `.meta` files of an entry."""
        return self.root / f"{key}.cwasm", self.root / f"{key}.meta"

    def get(
        self, wasm: bytes, compile: Callable[[bytes], bytes], load: Callable[[str], M],
        load_bytes: Callable[[bytes], M],
    ) -> M:
        """The module for `wasm`: loaded from a verified entry, else compiled once (under the
        entry's lock) and stored. Errors of `compile` (an invalid module) propagate; errors of
        the cache never do: a folder that cannot be made, locked or written means compiling in
        memory (`load_bytes`), writing nothing into the folder, with one warning per process."""
        key = self.key(wasm)
        module = self._try_load(key, load)
        if module is not None:
            return module
        try:
            lock_fd = self._acquire(key)
        except OSError as exc:
            warn_unusable(self.root, "cannot lock an entry", exc)
            return load_bytes(compile(wasm))
        try:
            module = self._try_load(key, load)  # another process may have compiled it meanwhile
            if module is not None:
                return module
            serialized = compile(wasm)
            try:
                self._store(key, serialized)
            except OSError as exc:
                warn_unusable(self.root, "cannot store an entry", exc)
                return load_bytes(serialized)
        finally:
            os.close(lock_fd)
        log.debug("module cache: compiled and stored %s (%d bytes)", key[:16], len(serialized))
        self.evict()
        module = self._try_load(key, load)
        return module if module is not None else load_bytes(serialized)

    def compiled(self, wasm: bytes) -> bytes | None:
        """The verified serialized module of `wasm`, or None when there is no good entry."""
        try:
            return self.verify(self.key(wasm)).read_bytes()
        except (OSError, CacheEntryError):
            return None

    def put(self, wasm: bytes, serialized: bytes) -> bool:
        """Store a serialized module made elsewhere (the precompiled copy kept in containerd's
        content store) as the entry of `wasm`, under the entry's lock; whether it was stored (a
        cache that cannot be used is warned about once per process)."""
        key = self.key(wasm)
        try:
            lock_fd = self._acquire(key)
        except OSError as exc:
            warn_unusable(self.root, "cannot lock an entry", exc)
            return False
        try:
            self._store(key, serialized)
        except OSError as exc:
            warn_unusable(self.root, "cannot store an entry", exc)
            return False
        finally:
            os.close(lock_fd)
        self.evict()
        return True

    def verify(self, key: str) -> Path:
        """The entry's `.cwasm`, after checking its record and checksum; FileNotFoundError when
        there is no entry, CacheEntryError when it must not be loaded."""
        cwasm, meta = self.paths(key)
        raw = meta.read_bytes()
        try:
            record = orjson.loads(raw)
            fmt, fingerprint = record["format"], record["fingerprint"]
            size, digest = int(record["size"]), str(record["sha256"])
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            raise CacheEntryError(f"unreadable record {raw[:60]!r}") from None
        if fmt != FORMAT:
            raise CacheEntryError(f"format {fmt!r}, want {FORMAT}")
        if fingerprint != self.fingerprint:
            raise CacheEntryError(f"made by another engine ({fingerprint!r})")
        data = cwasm.read_bytes()
        if len(data) != size:
            raise CacheEntryError(f"truncated: {len(data)} bytes, record says {size}")
        if hashlib.sha256(data).hexdigest() != digest:
            raise CacheEntryError("checksum mismatch")
        return cwasm

    def evict(self) -> None:
        """Delete least recently used entries until the folder holds at most `max_bytes`."""
        try:
            entries = []
            total = 0
            for cwasm in self.root.glob("*.cwasm"):
                with contextlib.suppress(FileNotFoundError):
                    st = cwasm.stat()
                    entries.append((st.st_mtime_ns, st.st_size, cwasm.stem))
                    total += st.st_size
            entries.sort()
            for _, size, key in entries:
                if total <= self.max_bytes:
                    break
                log.debug("module cache: evicting %s (%d bytes)", key[:16], size)
                self._delete(key)
                total -= size
        except OSError as exc:
            log.warning("module cache %s: eviction failed: %s", self.root, exc)

    def _try_load(self, key: str, load: Callable[[str], M]) -> M | None:
        try:
            cwasm = self.verify(key)
        except (FileNotFoundError, NotADirectoryError):  # no entry, or no folder (a file there)
            return None
        except CacheEntryError as exc:
            log.warning("module cache: entry %s is bad (%s): deleting it and compiling", key[:16], exc)
            self._delete(key)
            return None
        except OSError as exc:
            log.warning("module cache: cannot read entry %s: %s", key[:16], exc)
            return None
        try:
            module = load(str(cwasm))
        except Exception as exc:  # e.g. a verified entry the engine still refuses: recompile
            log.warning("module cache: engine refused entry %s (%s): deleting it", key[:16], exc)
            self._delete(key)
            return None
        with contextlib.suppress(OSError):
            os.utime(cwasm)  # least recently used = oldest mtime
        return module

    def _store(self, key: str, serialized: bytes) -> None:
        cwasm, meta = self.paths(key)
        record = {"format": FORMAT, "fingerprint": self.fingerprint, "size": len(serialized),
                  "sha256": hashlib.sha256(serialized).hexdigest()}
        write_atomic(cwasm, serialized)
        write_atomic(meta, orjson.dumps(record))

    def _delete(self, key: str) -> None:
        # The lock file stays: deleting it under a waiting process would let a third one compile.
        for path in self.paths(key):
            with contextlib.suppress(OSError):
                path.unlink()

    def _acquire(self, key: str) -> int:
        """The fd of the entry's lock file, flock'ed (made with the folder when missing). Raises
        OSError, leaving behind no lock file of its own: on a filesystem without flock nothing
        else could use it."""
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / f"{key}.lock"
        created = True
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            created = False
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            os.close(fd)
            if created:
                with contextlib.suppress(OSError):
                    path.unlink()
            raise
        return fd


_WARNED: set[Path] = set()
"""Cache folders this process has warned about: a folder that cannot be used says so once."""


def warn_unusable(root: Path, what: str, exc: OSError) -> None:
    """Log, once per process and folder, that the cache is skipped (compiling in memory)."""
    if root in _WARNED:
        log.debug("module cache %s: %s: %s", root, what, exc)
        return
    _WARNED.add(root)
    reason = exc.strerror or type(exc).__name__
    where = f" ({exc.filename})" if exc.filename else ""
    log.warning("module cache %s: %s: %s%s: compiling modules in memory, without the cache "
                "(said once per process)", root, what, reason, where)
