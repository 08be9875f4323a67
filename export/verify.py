"""Verify an exported version before anyone serves it: reload it and check it against the contract.

Checks (each recorded with a detail string, all run even when one fails):
signatures equal the contract and carry TF Serving's method names; outputs equal the Keras
model's on >= ``min_rows`` held-out rows (max abs diff <= ``tolerance``); no NaN; batch sizes 1
and 2,000; unseen categorical values map to OOV; every warmup record replays; the Classify and
Regress signatures agree with ``serving_default``; a ``[N, 1]`` column is refused by the graph;
the TF1 session loader (TF Serving's C++ ``SavedModelBundle`` path) restores and runs it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from export.batches import encode_strings, frame_inputs, take_rows
from export.errors import ExportError, VerificationError
from export.examples import serialize_examples
from export.saved_model import ASSETS_EXTRA, read_assets
from export.scoring import load_saved_model, score_keras, signature_outputs, to_tensors
from export.signatures import (
    CLASSIFY_SIGNATURE,
    METHOD_NAMES,
    REGRESS_SIGNATURE,
    SERVE_TAG,
    SERVING_DEFAULT,
    describe_signatures,
    method_names,
    signature_inputs,
)
from export.warmup import WARMUP_FILENAME, read_warmup, request_inputs
from training.features import FeatureContract, FeatureKind

MIN_PARITY_ROWS = 10_000
PARITY_TOLERANCE = 1e-6
BIG_BATCH = 2000


@dataclass(frozen=True)
class Check:
    """One verification check: its name, whether it passed, and what was measured."""

    name: str
    passed: bool
    detail: str


@dataclass
class VerificationReport:
    """Everything ``verify_export`` found; ``passed`` only if every check passed."""

    version_dir: str
    checks: list[Check] = field(default_factory=list)
    max_abs_diff: float | None = None
    rows_compared: int = 0
    signatures_text: str = ""
    ctr: np.ndarray | None = field(default=None, repr=False)  # serving_default on the frame's rows

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def raise_if_failed(self) -> None:
        if not self.passed:
            lines = "; ".join(f"{c.name}: {c.detail}" for c in self.failures) or "no checks ran"
            raise VerificationError(f"verification of {self.version_dir} failed: {lines}")

    def summary(self) -> str:
        lines = [f"verification of {self.version_dir}: {'PASSED' if self.passed else 'FAILED'}"]
        lines += [f"  [{'ok' if c.passed else 'FAIL'}] {c.name}: {c.detail}" for c in self.checks]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version_dir": self.version_dir,
            "passed": self.passed,
            "max_abs_diff": self.max_abs_diff,
            "rows_compared": self.rows_compared,
            "checks": [asdict(c) for c in self.checks],
        }


def _run(report: VerificationReport, name: str, check: Callable[[], str]) -> None:
    """Run one check; an AssertionError or any exception is a failure with its message."""
    try:
        report.checks.append(Check(name, True, check()))
    except Exception as exc:  # a verification must report every problem, whatever raised it
        report.checks.append(Check(name, False, f"{type(exc).__name__}: {exc}"))


def verify_export(
    version_dir: str | Path,
    *,
    keras_model: Any = None,
    frame: Any = None,
    min_rows: int = MIN_PARITY_ROWS,
    tolerance: float = PARITY_TOLERANCE,
) -> VerificationReport:
    """Reload ``version_dir`` and run every check; never raises for a failed check.

    Args:
        version_dir: ``<base>/<name>/<version>`` (or a staging directory before publication).
        keras_model: the model that was exported, for output parity (skipped when None).
        frame: held-out rows (a DataFrame with the contract's columns); the data checks need it.
        min_rows: parity needs at least this many rows of ``frame``.
        tolerance: largest accepted absolute difference between Keras and SavedModel outputs.

    Raises:
        ExportError: only when the directory cannot be loaded at all (no contract, no SavedModel).
    """
    version_dir = Path(version_dir)
    if not version_dir.is_dir():
        raise ExportError(f"model directory {version_dir} does not exist")
    contract, _ = read_assets(version_dir)
    report = VerificationReport(str(version_dir), signatures_text=describe_signatures(version_dir))
    loaded = load_saved_model(version_dir)
    serve = loaded.signatures[SERVING_DEFAULT] if SERVING_DEFAULT in loaded.signatures else None

    _run(report, "signature_matches_contract", lambda: _check_signature(version_dir, loaded, contract))
    _run(report, "method_names", lambda: _check_methods(version_dir))
    _run(report, "warmup_replays", lambda: _check_warmup(version_dir, serve, contract))
    if frame is None:
        report.checks.append(Check("data_checks", True, "skipped: no held-out frame given"))
        return report
    inputs = frame_inputs(frame, contract, source="held-out frame")
    outputs = signature_outputs(serve, contract, inputs, batch_size=BIG_BATCH)
    ctr = report.ctr = outputs["ctr"]
    _run(report, "no_nan", lambda: _check_finite(outputs))
    if keras_model is not None:
        _run(
            report,
            "keras_parity",
            lambda: _check_parity(report, keras_model, contract, inputs, ctr, min_rows, tolerance),
        )
    else:
        report.checks.append(Check("keras_parity", True, "skipped: no Keras model given"))
    _run(report, "batch_sizes", lambda: _check_batch_sizes(serve, contract, inputs, ctr))
    _run(report, "unseen_categories", lambda: _check_unseen(serve, contract, inputs))
    _run(report, "examples_signatures", lambda: _check_examples(loaded, contract, inputs, ctr))
    _run(report, "rank_guard", lambda: _check_rank_guard(serve, contract, inputs))
    _run(report, "session_bundle", lambda: _check_session_bundle(version_dir, contract, inputs, outputs))
    return report


def _check_signature(version_dir: Path, loaded: Any, contract: FeatureContract) -> str:
    want = {f.name: (f.dtype, (-1,)) for f in contract.features}
    have = signature_inputs(version_dir, SERVING_DEFAULT)
    assert have == want, f"saved_model.pb inputs {have} != contract {want}"
    _, kwargs = loaded.signatures[SERVING_DEFAULT].structured_input_signature
    loaded_spec = {
        k: (v.dtype.name, tuple(-1 if d is None else d for d in v.shape)) for k, v in kwargs.items()
    }
    assert loaded_spec == want, f"loaded signature inputs {loaded_spec} != contract {want}"
    outputs = loaded.signatures[SERVING_DEFAULT].structured_outputs
    for key in ("ctr", "logit"):
        assert key in outputs, f"serving_default has no output {key!r} (has {sorted(outputs)})"
        spec = outputs[key]
        assert spec.dtype.name == "float32" and spec.shape.as_list() == [None], f"{key}: {spec}"
    return f"{len(want)} inputs equal the contract; outputs ctr, logit [None] float32"


def _check_methods(version_dir: Path) -> str:
    have = method_names(version_dir)
    wrong = {k: have.get(k) for k, v in METHOD_NAMES.items() if have.get(k) != v}
    assert not wrong, f"wrong or missing method names {wrong}, expected {METHOD_NAMES}"
    return ", ".join(f"{k}={v}" for k, v in METHOD_NAMES.items())


def _check_warmup(version_dir: Path, serve: Any, contract: FeatureContract) -> str:
    path = version_dir / ASSETS_EXTRA / WARMUP_FILENAME
    if not path.exists():
        return "no warmup file (nothing to replay)"
    logs = read_warmup(path)
    assert logs, f"{path} holds no records"
    sizes = []
    for i, log in enumerate(logs):
        request = log.predict_log.request
        assert request.model_spec.signature_name in ("", SERVING_DEFAULT), (
            f"record {i}: signature {request.model_spec.signature_name!r}"
        )
        inputs = request_inputs(log)
        assert set(inputs) == set(contract.names), f"record {i}: inputs {sorted(inputs)} != contract"
        ctr = signature_outputs(serve, contract, inputs)["ctr"]
        size = len(next(iter(inputs.values())))
        assert ctr.shape == (size,) and np.all(np.isfinite(ctr)), f"record {i}: bad output {ctr.shape}"
        sizes.append(size)
    return f"{len(logs)} records replayed (batch sizes {sizes})"


def _check_finite(outputs: Mapping[str, np.ndarray]) -> str:
    for key, values in outputs.items():
        bad = np.flatnonzero(~np.isfinite(values))
        assert bad.size == 0, f"output {key!r} is not finite at {bad.size} rows (first row {int(bad[0])})"
    ctr = outputs["ctr"]
    assert np.all((ctr >= 0) & (ctr <= 1)), "ctr outside [0, 1]"
    return f"{len(ctr)} rows, every output finite, ctr in [{ctr.min():.4g}, {ctr.max():.4g}]"


def _check_parity(
    report: VerificationReport,
    model: Any,
    contract: FeatureContract,
    inputs: Mapping[str, np.ndarray],
    ctr: np.ndarray,
    min_rows: int,
    tolerance: float,
) -> str:
    expected = score_keras(model, inputs, contract, batch_size=BIG_BATCH)
    diff = float(np.max(np.abs(expected.astype(np.float64) - ctr.astype(np.float64))))
    report.max_abs_diff, report.rows_compared = diff, len(ctr)
    assert len(ctr) >= min_rows, f"only {len(ctr)} held-out rows, parity needs >= {min_rows}"
    assert diff <= tolerance, f"max abs diff {diff:.3g} > {tolerance:g} over {len(ctr)} rows"
    return f"{len(ctr)} rows, max abs diff {diff:.3g} (<= {tolerance:g})"


def _check_batch_sizes(
    serve: Any, contract: FeatureContract, inputs: Mapping[str, np.ndarray], ctr: np.ndarray
) -> str:
    rows = len(ctr)
    one = signature_outputs(serve, contract, take_rows(inputs, np.array([0])))["ctr"]
    assert one.shape == (1,), f"batch 1 gave shape {one.shape}"
    index = np.arange(BIG_BATCH) % rows
    big = signature_outputs(serve, contract, take_rows(inputs, index), batch_size=BIG_BATCH)["ctr"]
    assert big.shape == (BIG_BATCH,), f"batch {BIG_BATCH} gave shape {big.shape}"
    diff = max(float(abs(one[0] - ctr[0])), float(np.max(np.abs(big - ctr[index]))))
    assert diff <= 1e-5, f"scores depend on the batch: max diff {diff:.3g}"
    return f"batch 1 and {BIG_BATCH} score as in bulk (max diff {diff:.3g})"


def _unseen_value(feature: Any, tag: str) -> Any:
    if feature.kind is FeatureKind.CATEGORICAL_INT:
        taken = set(feature.vocabulary or ())
        value = 987_654_321 + (0 if tag == "a" else 1)
        while value in taken:
            value += 2
        return value
    return f"__unseen_{tag}__"


def _check_unseen(serve: Any, contract: FeatureContract, inputs: Mapping[str, np.ndarray]) -> str:
    rows = np.arange(min(64, len(next(iter(inputs.values())))))
    variants = []
    single_oov = [f.name for f in contract.features if f.vocabulary is not None and f.num_oov == 1]
    for tag in ("a", "b"):
        batch = take_rows(inputs, rows)
        for feature in contract.features:
            if not feature.is_categorical:
                continue
            # Features with one OOV bucket get a per-variant value; the others a fixed one.
            value = _unseen_value(feature, tag if feature.name in single_oov else "a")
            batch[feature.name] = np.full(
                len(rows), value, dtype=np.int64 if feature.dtype == "int64" else object
            )
        variants.append(signature_outputs(serve, contract, batch)["ctr"])
    assert np.all(np.isfinite(variants[0])), "unseen categorical values gave non-finite scores"
    if single_oov:
        diff = float(np.max(np.abs(variants[0] - variants[1])))
        assert diff == 0.0, (
            f"two unseen values of {single_oov} scored differently ({diff:.3g}): not one OOV id"
        )
        return f"unseen values score finitely; features {single_oov} map distinct unseen values to one OOV id"
    return "unseen values score finitely (no single-OOV vocabulary feature to compare)"


def _check_examples(
    loaded: Any, contract: FeatureContract, inputs: Mapping[str, np.ndarray], ctr: np.ndarray
) -> str:
    import tensorflow as tf

    rows = np.arange(min(64, len(ctr)))
    serialized = serialize_examples(contract, take_rows(inputs, rows))
    batch = tf.constant(serialized, dtype=tf.string)
    classified = loaded.signatures[CLASSIFY_SIGNATURE](inputs=batch)
    scores, classes = np.asarray(classified["scores"]), np.asarray(classified["classes"])
    regressed = np.asarray(loaded.signatures[REGRESS_SIGNATURE](inputs=batch)["outputs"])
    assert scores.shape == (len(rows), 2) and classes.shape == (len(rows), 2), (
        f"classify shapes {scores.shape}, {classes.shape}"
    )
    assert set(classes.reshape(-1).tolist()) == {b"0", b"1"}, f"classes {set(classes.reshape(-1).tolist())}"
    diff = max(float(np.max(np.abs(scores[:, 1] - ctr[rows]))), float(np.max(np.abs(regressed - ctr[rows]))))
    assert diff <= 1e-6, f"tf.Example signatures differ from serving_default by {diff:.3g}"
    return f"classification and regression agree with serving_default on {len(rows)} Examples (max diff {diff:.3g})"


def _check_rank_guard(serve: Any, contract: FeatureContract, inputs: Mapping[str, np.ndarray]) -> str:
    import tensorflow as tf

    tensors = to_tensors(contract, take_rows(inputs, np.arange(min(4, len(next(iter(inputs.values())))))))
    name = contract.names[0]
    tensors[name] = tf.expand_dims(tensors[name], 1)
    try:
        serve(**tensors)
    except tf.errors.InvalidArgumentError as exc:
        assert name in str(exc) or "shape" in str(exc).lower(), str(exc)[:200]
        return f"a [N, 1] {name!r} column is refused in the graph"
    raise AssertionError(f"a [N, 1] {name!r} column was accepted (it would broadcast into [N, N])")


def _check_session_bundle(
    version_dir: Path,
    contract: FeatureContract,
    inputs: Mapping[str, np.ndarray],
    outputs: Mapping[str, np.ndarray],
) -> str:
    """Load as TF Serving does (C++ SavedModelBundle: saver restore, init op, then run by tensor name).

    ``tf.saved_model.load`` restores variables object by object and can succeed where the session
    path fails (e.g. "Could not find variable" when captured variables are not tracked).
    """
    import tensorflow as tf

    rows = np.arange(min(256, len(outputs["ctr"])))
    batch = take_rows(inputs, rows)
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, [SERVE_TAG], str(version_dir))
        signature = meta_graph.signature_def[SERVING_DEFAULT]
        feed = {}
        for feature in contract.features:
            values = batch[feature.name]
            if feature.dtype == "string":
                values = encode_strings(values)
            feed[signature.inputs[feature.name].name] = values
        ctr = session.run(signature.outputs["ctr"].name, feed)
    diff = float(np.max(np.abs(ctr - outputs["ctr"][rows])))
    assert diff <= 1e-6, f"session-loaded scores differ from tf.saved_model.load's by {diff:.3g}"
    return f"TF1 session load (TF Serving's path) scores {len(rows)} rows identically (max diff {diff:.3g})"
