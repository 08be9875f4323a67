"""Experiments: arms that pick a served model (name, version or label) and a user's stable arm."""

from __future__ import annotations

import hashlib
import os
from bisect import bisect_right
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from recommender_client.excerpt import excerpt

# Arm and experiment names become Prometheus label values and log fields: short and plain.
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
# blake2b keys hold at most 64 bytes; the salt is the key, so it is limited to 64 ASCII characters.
Salt = Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{1,64}$")]
SHARE_TOLERANCE = 1e-9
MAX_ARMS = 16
_SPACE = 1 << 64


class ExperimentError(ValueError):
    """An experiments file is unreadable or breaks the schema; the message names each location."""


class Arm(BaseModel):
    """One arm: the model its users are scored by (TF Serving's ``model_spec``) and its traffic share.

    ``model_name`` defaults to the service's ``RANKER_MODEL_NAME``; at most one of ``version``
    and ``version_label`` (a oneof in ``model_spec``); neither means the newest version.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    share: float = Field(ge=0, le=1, allow_inf_nan=False)
    model_name: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None
    version: int | None = Field(default=None, ge=0, lt=2**63)
    version_label: Annotated[str, StringConstraints(min_length=1, max_length=256)] | None = None

    @model_validator(mode="after")
    def _one_version(self) -> Arm:
        if self.version is not None and self.version_label is not None:
            raise ValueError("give version or version_label, not both (model_spec holds one)")
        return self

    @property
    def selects_default(self) -> bool:
        """Whether the arm asks for what the service asks for without an experiment."""
        return self.model_name is None and self.version is None and self.version_label is None


class Experiment(BaseModel):
    """A named traffic split. ``stable`` names the arm the others fall back to (default: the first).

    ``salt`` (default: the name) keys the assignment hash: a new salt reshuffles users, the same
    salt keeps every user in their arm across restarts and replicas.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    salt: Salt | None = None
    stable: Name | None = None
    arms: tuple[Arm, ...] = Field(min_length=1, max_length=MAX_ARMS)

    @model_validator(mode="after")
    def _arms_fit(self) -> Experiment:
        names = [a.name for a in self.arms]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"arm names must be unique, repeated: {twice}")
        total = sum(a.share for a in self.arms)
        if abs(total - 1.0) > SHARE_TOLERANCE:
            raise ValueError(f"arm shares must sum to 1, they sum to {total:.12g}")
        if self.stable is not None and self.stable not in names:
            raise ValueError(f"stable names no arm: {self.stable!r} (arms: {names})")
        if self.salt is None:
            object.__setattr__(self, "salt", self.name)
        if self.stable is None:
            object.__setattr__(self, "stable", names[0])
        return self

    @property
    def stable_arm(self) -> Arm:
        return next(a for a in self.arms if a.name == self.stable)


class ExperimentsFile(BaseModel):
    """The file's shape: every experiment declared, and the one running (``active: null``: none)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    active: Name | None
    experiments: tuple[Experiment, ...] = ()

    @model_validator(mode="after")
    def _active_declared(self) -> ExperimentsFile:
        names = [e.name for e in self.experiments]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"experiment names must be unique, repeated: {twice}")
        if self.active is not None and self.active not in names:
            raise ValueError(f"active names no experiment: {self.active!r} (declared: {names})")
        return self

    def running(self) -> Experiment | None:
        return next((e for e in self.experiments if e.name == self.active), None)


def _where(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(file)"


def parse_experiments(data: Any, *, source: str = "experiments") -> Experiment | None:
    """The running experiment of a parsed file; every fault is listed with its location.

    Raises:
        ExperimentError: e.g. ``experiments[0].arms[1].share: Input should be less than or
            equal to 1`` or ``experiments[0]: arm shares must sum to 1, they sum to 0.9``.
    """
    try:
        return ExperimentsFile.model_validate(data).running()
    except ValidationError as exc:
        lines = []
        for e in exc.errors():
            got = "" if e["type"] == "missing" or not e["loc"] else f", got {excerpt(e['input'])}"
            lines.append(f"{_where(e['loc'])}: {e['msg'].removeprefix('Value error, ')}{got}")
        raise ExperimentError(f"{source}: " + "; ".join(lines)) from None


def load_experiments(path: str | os.PathLike[str]) -> Experiment | None:
    """Read an experiments YAML (or JSON) file: the running experiment, or None when none is."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ExperimentError(f"{path}: cannot read the experiments file: {exc}") from None
    return parse_experiments(data, source=str(path))


class Assigner:
    """Puts each user in one arm: blake2b(user id, key=salt), 8 bytes, against cumulative shares.

    The hash is uniform over 2**64 and independent of Python's per-process ``hash()`` seed, so
    every replica and every restart agrees, and an arm of share s gets s of the users.
    """

    def __init__(self, experiment: Experiment) -> None:
        self.experiment = experiment
        assert experiment.salt is not None  # the validator fills it in
        self._key = experiment.salt.encode("ascii")
        bounds, total = [], 0.0
        for arm in experiment.arms[:-1]:
            total += arm.share
            bounds.append(min(int(total * _SPACE), _SPACE))
        self._bounds = bounds

    def bucket(self, user_id: str) -> int:
        """The user's point in [0, 2**64)."""
        digest = hashlib.blake2b(user_id.encode("utf-8"), digest_size=8, key=self._key).digest()
        return int.from_bytes(digest, "big")

    def assign(self, user_id: str) -> Arm:
        """The user's arm (the same for the same user id and salt, always)."""
        return self.experiment.arms[bisect_right(self._bounds, self.bucket(user_id))]
