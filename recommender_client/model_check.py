"""The served model's health: its state, its version and whether its signature fits the contract."""

# Readiness used to be "TF Serving says AVAILABLE", so an orchestrator took every ranker replica
# out of service exactly when the fallback should answer, while a model whose signature did not
# fit the contract (renamed input, int64 where the contract sends strings) showed up only as
# fallbacks. The watch reports both as data (a /readyz field, metrics) and /readyz stays about
# the ranker's own ability to answer.

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from recommender_client.client.metadata import ModelMetadata

log = logging.getLogger(__name__)

FLOAT_DTYPES = frozenset({"float16", "bfloat16", "float32", "float64"})


@dataclass(frozen=True)
class ModelReport:
    """What the ranker knows about the model it scores with.

    Attributes:
        state: the newest version's state (``AVAILABLE``, ``LOADING``...), ``UNAVAILABLE`` when
            the server does not answer, ``UNKNOWN`` before the first poll.
        version: the version serving requests (newest AVAILABLE), if known.
        contract: ``ok``, ``mismatch`` or ``unknown`` (not checked yet, or metadata failed).
        checked_version: the version whose signature ``contract`` describes.
        problems: why the signature does not fit (or why it could not be checked).
        checks: signature checks made so far, by result (``ok``, ``mismatch``, ``error``).
    """

    state: str = "UNKNOWN"
    version: int | None = None
    contract: str = "unknown"
    checked_version: int | None = None
    problems: tuple[str, ...] = ()
    checks: Mapping[str, int] | None = None

    @property
    def usable(self) -> bool:
        """Whether Predict can be expected to work: available, and not known not to fit."""
        return self.state == "AVAILABLE" and self.contract != "mismatch"


def signature_problems(
    metadata: ModelMetadata, inputs: Mapping[str, str], *, signature_name: str, output: str
) -> list[str]:
    """How the served signature differs from what the ranker sends and reads; empty if it fits.

    Args:
        metadata: GetModelMetadata's answer.
        inputs: input name -> wire dtype the ranker sends (``contract.signature_spec()``).
        signature_name: the signature the ranker calls.
        output: the output it reads the click probability from.
    """
    signature = metadata.signatures.get(signature_name)
    if signature is None:
        return [f"no signature {signature_name!r} (has {sorted(metadata.signatures)})"]
    problems = []
    served = {name: spec.dtype for name, spec in signature.inputs.items()}
    missing = sorted(set(inputs) - set(served))
    extra = sorted(set(served) - set(inputs))
    if missing:
        problems.append(f"inputs the contract sends but the model lacks: {missing}")
    if extra:
        problems.append(f"inputs the model needs but the contract does not send: {extra}")
    for name in sorted(set(inputs) & set(served)):
        if served[name] != inputs[name]:
            problems.append(f"input {name!r} is {served[name]} in the model, {inputs[name]} in the contract")
    if output not in signature.outputs:
        problems.append(f"no output {output!r} (has {sorted(signature.outputs)})")
    elif signature.outputs[output].dtype not in FLOAT_DTYPES:
        problems.append(f"output {output!r} is {signature.outputs[output].dtype}, not a float")
    return problems


class ModelWatch:
    """Keeps a :class:`ModelReport` current for one model on one async client.

    Polls GetModelStatus every ``poll_interval_s``; whenever the serving version differs from
    the one last checked (seen by the poll, or reported by a Predict answer through
    :meth:`observe`) it fetches that version's GetModelMetadata and checks it against the
    contract. ``await start()`` on the service's event loop (it checks once before returning),
    ``await stop()`` at shutdown.

    Args:
        client: an async client with ``model_status`` and ``model_metadata``.
        model_name, signature_name, output: what the ranker calls.
        inputs: input name -> dtype the ranker sends (the contract's signature spec).
        poll_interval_s: seconds between status polls.
        timeout_s: deadline of each status or metadata call.
        min_gap_s: the least time between two checks, however often Predict answers wake it.
    """

    def __init__(
        self,
        client: Any,
        *,
        model_name: str,
        signature_name: str,
        output: str,
        inputs: Mapping[str, str],
        poll_interval_s: float = 5.0,
        timeout_s: float = 1.0,
        min_gap_s: float = 0.5,
    ) -> None:
        if min_gap_s < 0:
            raise ValueError(f"ModelWatch: min_gap_s must be >= 0, got {min_gap_s}")
        if poll_interval_s <= 0 or timeout_s <= 0:
            raise ValueError(
                f"ModelWatch: need poll_interval_s, timeout_s > 0, got {poll_interval_s}, {timeout_s}"
            )
        self.client = client
        self.model_name = model_name
        self.signature_name = signature_name
        self.output = output
        self.inputs = dict(inputs)
        self.poll_interval_s = poll_interval_s
        self.timeout_s = timeout_s
        self.min_gap_s = min_gap_s
        self._report = ModelReport(checks={})
        self._checks = {"ok": 0, "mismatch": 0, "error": 0}
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def report(self) -> ModelReport:
        return self._report

    async def refresh(self) -> ModelReport:
        """Poll the status once and check the signature if the serving version is new to us."""
        try:
            statuses = await self.client.model_status(self.model_name, timeout=self.timeout_s)
        except Exception as exc:  # any failure to answer means: not available, as far as we know
            self._report = replace(self._report, state="UNAVAILABLE")
            log.debug("model status of %r failed: %s", self.model_name, exc)
            return self._report
        state, version = newest(statuses)
        self._report = replace(self._report, state=state, version=version)
        if state == "AVAILABLE" and (
            self._report.contract == "unknown" or version != self._report.checked_version
        ):
            await self._check(version)
        return self._report

    async def _check(self, version: int | None) -> None:
        try:
            metadata = await self.client.model_metadata(
                self.model_name, version=version, timeout=self.timeout_s
            )
        except Exception as exc:
            self._count("error")
            self._report = replace(
                self._report,
                contract="unknown",
                checked_version=None,
                problems=(f"GetModelMetadata failed: {exc}",),
            )
            return
        problems = signature_problems(
            metadata, self.inputs, signature_name=self.signature_name, output=self.output
        )
        result = "mismatch" if problems else "ok"
        self._count(result)
        checked = metadata.version if metadata.version is not None else version
        if problems:
            log.error(
                "model %r version %s does not fit the feature contract: %s",
                self.model_name,
                checked,
                "; ".join(problems),
            )
        self._report = replace(
            self._report, contract=result, checked_version=checked, problems=tuple(problems)
        )

    def _count(self, result: str) -> None:
        self._checks[result] += 1
        self._report = replace(self._report, checks=dict(self._checks))

    def observe(self, served: Any) -> None:
        """A Predict answer named its version: wake the watch if that version is not checked yet.

        Safe from any thread (the blocking scorer runs in worker threads).
        """
        version = getattr(served, "version", None)
        if version is None or version == self._report.checked_version or self._wake is None:
            return
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closing: nothing left to wake
                self._loop.call_soon_threadsafe(self._wake.set)

    async def start(self) -> ModelReport:
        """Check the model now, then keep polling in a task of the running event loop."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        report = await self.refresh()
        self._task = self._loop.create_task(self._run(), name=f"model-watch-{self.model_name}")
        return report

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.poll_interval_s)
            self._wake.clear()
            try:
                await self.refresh()
            except Exception:  # never let the watch die: the next poll tries again
                log.exception("model watch of %r failed", self.model_name)
            # Wakes coming meanwhile wait: while metadata fails, every Predict answer names a
            # version not yet checked, and must not turn into a status+metadata call each.
            await asyncio.sleep(self.min_gap_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def newest(statuses: Any) -> tuple[str, int | None]:
    """(state, version) of the version that serves: the newest AVAILABLE one, else the newest."""
    best: tuple[int, str] | None = None
    for entry in _entries(statuses):
        version = entry.get("version") if isinstance(entry, Mapping) else getattr(entry, "version", 0)
        state = entry.get("state") if isinstance(entry, Mapping) else getattr(entry, "state", "")
        state_name = _state_name(state)
        version = int(version or 0)
        if state_name == "AVAILABLE" and (best is None or best[1] != "AVAILABLE" or version > best[0]):
            best = (version, state_name)
        elif best is None:
            best = (version, state_name)
    return (best[1], best[0]) if best else ("UNAVAILABLE", None)


def model_state(status: Any) -> str:
    """The state of the newest version from a model status answer in whatever shape the client gives.

    Accepts a GetModelStatus response message, TF Serving's REST JSON
    (``{"model_version_status": [{"version": ..., "state": ...}]}``) or a list of such entries.
    """
    return newest(status)[0]


def _entries(status: Any) -> Any:
    if isinstance(status, Mapping):
        return status.get("model_version_status", []) or []
    if hasattr(status, "model_version_status"):
        return status.model_version_status
    return status or []


_STATE_NUMBERS = {0: "UNKNOWN", 10: "START", 20: "LOADING", 30: "AVAILABLE", 40: "UNLOADING", 50: "END"}


def _state_name(state: Any) -> str:
    if isinstance(state, str):
        return state.upper()
    if isinstance(state, int):
        return _STATE_NUMBERS.get(state, "UNKNOWN")
    name = getattr(state, "name", None)
    return str(name).upper() if name else str(state).upper()
