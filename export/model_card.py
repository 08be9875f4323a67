"""The model card written beside every export: what data, which metrics, which code, when."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from training.features import FeatureContract

MODEL_CARD_FILENAME = "model_card.json"
_REPO_ROOT = Path(__file__).resolve().parents[1]


def code_version(repo: Path = _REPO_ROOT) -> dict[str, Any]:
    """The git commit of the exporting code and whether the tree had local changes.

    Returns ``{"git_commit": None, ...}`` outside a git checkout (e.g. an installed wheel) instead
    of failing: a missing commit is information, not an error.
    """

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"git_commit": commit, "git_dirty": None if status is None else bool(status)}


def contract_sha256(contract: FeatureContract) -> str:
    """A stable hash of the contract JSON: clients can check they speak the served contract."""
    return hashlib.sha256(contract.to_json().encode("utf-8")).hexdigest()


def build_model_card(
    contract: FeatureContract,
    *,
    model_name: str,
    version: int,
    extra: Mapping[str, Any] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The card: identity, time, code version, library versions, contract hash, plus ``extra``.

    ``extra`` carries what only the caller knows (``data``, ``metrics``, ``training_config``...);
    its keys win over the computed ones except ``model_name``, ``version`` and ``contract_sha256``.
    """
    import keras
    import tensorflow as tf

    card: dict[str, Any] = {
        "exported_at": (now or datetime.now(UTC)).isoformat(timespec="seconds"),
        "code_version": code_version(),
        "libraries": {"tensorflow": tf.__version__, "keras": keras.__version__},
        "features": list(contract.names),
    }
    card.update(dict(extra or {}))
    card.update({"model_name": model_name, "version": version, "contract_sha256": contract_sha256(contract)})
    return card


def card_json(card: Mapping[str, Any]) -> str:
    """Serialise a card; non-JSON values (numpy scalars, paths) become strings, never an error."""
    return json.dumps(card, indent=2, sort_keys=True, default=_jsonable) + "\n"


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)
