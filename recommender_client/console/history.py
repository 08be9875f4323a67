"""The rules file and its published versions: atomic writes, numbered history, stale-draft detection."""

from __future__ import annotations

import contextlib
import difflib
import fcntl
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from recommender_client.rerank.rules import RulesError, parse_rules, read_rules_text, rules_digest
from training.atomic_files import atomic_write_bytes

# The author recorded for a file found changed on disk (edited outside the console).
FILE_AUTHOR = "(rules file)"
_ENTRY = re.compile(r"^(\d{6,})\.json$")
# A diff of two 1 MiB files can be larger than both; the console shows its start.
MAX_DIFF_CHARS = 200_000
# No history grows this far; a larger number asked for (a path or a body field) is simply absent,
# never a file name longer than the file system takes (an OSError, a 500).
MAX_VERSION = 10**9


@dataclass(frozen=True)
class Version:
    """One published version of the rules file (its text is ``<number>.yaml`` beside the metadata)."""

    number: int
    author: str
    time: float
    digest: str
    message: str = ""
    parent: int | None = None
    rollback_of: int | None = None
    valid: bool = True

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class StaleDraft(Exception):
    """The draft started from an older version than the one now live (someone published meanwhile)."""

    def __init__(self, base: int, live: int) -> None:
        super().__init__(
            f"the draft starts from version {base}, but version {live} is live now: "
            f"reload the live rules (version {live}) and apply the edit again"
        )
        self.base = base
        self.live = live


class UnknownVersion(LookupError):
    """No such version in the history (never published, or pruned beyond ``max_history``)."""


class RulesStore:
    """The live rules file and ``history_dir`` with every version published through the console.

    Version ``n`` is ``history_dir/<n>.yaml`` (the exact text) and ``<n>.json`` (author, time,
    digest, message, the version it replaced), the JSON written last so a version exists once
    its metadata does. A publish writes the version, then replaces the rules file atomically;
    the service's ``RuleBook`` sees the new file at its next check. A file changed on disk by
    other means is adopted as a version by :data:`FILE_AUTHOR` the next time it is read, so the
    newest version always is the file. One publish at a time, across threads (a lock) and
    processes sharing the folder (``flock`` on ``history_dir/.lock``).
    """

    def __init__(
        self,
        rules_path: Path,
        history_dir: Path | None = None,
        *,
        max_history: int = 200,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_history < 2:
            raise ValueError(f"RulesStore: max_history must be >= 2, got {max_history}")
        self.rules_path = Path(rules_path)
        self.history_dir = (
            Path(history_dir)
            if history_dir is not None
            else self.rules_path.with_name(self.rules_path.name + ".history")
        )
        self.max_history = max_history
        self._clock = clock
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.history_dir.mkdir(parents=True, exist_ok=True)
        with self._lock, open(self.history_dir / ".lock", "a+b") as lock_file:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)

    def _numbers(self) -> list[int]:
        if not self.history_dir.is_dir():
            return []
        found = (_ENTRY.match(p.name) for p in self.history_dir.iterdir())
        return sorted(int(m.group(1)) for m in found if m is not None)

    def _paths(self, number: int) -> tuple[Path, Path]:
        stem = self.history_dir / f"{number:06d}"
        return stem.with_suffix(".yaml"), stem.with_suffix(".json")

    def _meta(self, number: int) -> Version:
        """Version ``number``'s metadata alone (a listing needs no text)."""
        if not 1 <= number <= MAX_VERSION:
            raise UnknownVersion(f"no such version: versions are numbered 1 to {MAX_VERSION}")
        meta_path = self._paths(number)[1]
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UnknownVersion(f"no version {number} in {self.history_dir}") from None
        except ValueError as exc:  # damaged by hand: skipped, never a 500
            raise UnknownVersion(f"version {number} in {self.history_dir} is unreadable: {exc}") from None
        try:
            return Version(**meta)
        except TypeError:
            raise UnknownVersion(f"version {number} in {self.history_dir} has unreadable metadata") from None

    def _read(self, number: int) -> tuple[Version, str]:
        version = self._meta(number)
        try:
            text = read_rules_text(self._paths(number)[0], keep_undecodable=True)
        except FileNotFoundError:
            raise UnknownVersion(f"no version {number} in {self.history_dir}") from None
        except RulesError as exc:
            raise UnknownVersion(f"version {number} in {self.history_dir} is unreadable: {exc}") from None
        return version, text

    def _append(
        self, text: str, *, author: str, message: str, rollback_of: int | None = None, valid: bool = True
    ) -> Version:
        numbers = self._numbers()
        parent = numbers[-1] if numbers else None
        version = Version(
            number=(parent or 0) + 1,
            author=author,
            time=self._clock(),
            digest=rules_digest(text),
            message=message,
            parent=parent,
            rollback_of=rollback_of,
            valid=valid,
        )
        text_path, meta_path = self._paths(version.number)
        atomic_write_bytes(text_path, text.encode("utf-8", "surrogateescape"))
        atomic_write_bytes(meta_path, json.dumps(version.to_json(), sort_keys=True).encode())
        return version

    def _forget(self, number: int) -> None:
        for path in reversed(self._paths(number)):  # metadata first: the version is gone at once
            path.unlink(missing_ok=True)

    def _prune(self) -> None:
        numbers = self._numbers()
        for number in numbers[: max(0, len(numbers) - self.max_history)]:
            self._forget(number)

    def _head(self) -> tuple[Version, str]:
        """The newest version, adopting the rules file first when it differs (call under the lock)."""
        text = read_rules_text(self.rules_path, keep_undecodable=True)
        numbers = self._numbers()
        if numbers:
            with contextlib.suppress(UnknownVersion):  # an unreadable newest one is superseded
                version, recorded = self._read(numbers[-1])
                if recorded == text:
                    return version, text
        message = "the rules file as found" if not numbers else "the rules file changed outside the console"
        version = self._append(text, author=FILE_AUTHOR, message=message, valid=_is_valid(text))
        self._prune()
        return version, text

    def live(self) -> tuple[Version, str]:
        """The live version and its text (the rules file as it is now)."""
        with self._locked():
            return self._head()

    def versions(self, limit: int | None = None) -> list[Version]:
        """Versions newest first (at most ``limit``), the live one first."""
        with self._locked():
            self._head()
            found: list[Version] = []
            for number in self._numbers()[::-1]:
                if limit is not None and len(found) >= limit:
                    break
                with contextlib.suppress(UnknownVersion):
                    found.append(self._meta(number))
            return found

    def version(self, number: int) -> tuple[Version, str]:
        with self._locked():
            return self._read(number)

    def entry(self, number: int) -> tuple[Version, str, str]:
        """Version ``number``, its text and the unified diff from the version it replaced, read once."""
        with self._locked():
            version, text = self._read(number)
            before = ""
            if version.parent is not None:
                with contextlib.suppress(UnknownVersion):
                    before = self._read(version.parent)[1]
        lines = difflib.unified_diff(
            before.splitlines(keepends=True),
            text.splitlines(keepends=True),
            fromfile=f"version {version.parent}" if version.parent is not None else "(nothing)",
            tofile=f"version {number}",
        )
        out = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
        diff = out if len(out) <= MAX_DIFF_CHARS else out[:MAX_DIFF_CHARS] + "\n... (diff cut)\n"
        return version, text, diff

    def publish(
        self, text: str, *, base: int, author: str, message: str = "", rollback_of: int | None = None
    ) -> Version:
        """Make ``text`` (already validated by the caller) the live rules, as a new version.

        Raises:
            StaleDraft: ``base`` is not the live version.
        """
        with self._locked():
            live, _ = self._head()
            if base != live.number:
                raise StaleDraft(base, live.number)
            version = self._append(text, author=author, message=message, rollback_of=rollback_of)
            try:
                # through a symlink: the file it names is replaced, the link stays; the
                # operator's permission bits are kept (mode=None)
                atomic_write_bytes(
                    self.rules_path.resolve(), text.encode("utf-8", "surrogateescape"), mode=None
                )
            except BaseException:
                self._forget(version.number)
                raise
            self._prune()
            return version


def _is_valid(text: str) -> bool:
    try:
        parse_rules(text)
    except RulesError:
        return False
    return True
