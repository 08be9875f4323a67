"""Predict's request checks on names: inputs against the signature, the output filter."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from serving.model_server.errors import ServingError
from serving.model_server.signatures import SignatureInfo
from serving.model_server.tensor_limits import quote


def _names(names: set[str] | Sequence[str]) -> str:
    """TF's comma-joined names, bounded: a request may carry thousands of long aliases."""
    return quote(",".join(sorted(names)))


def check_input_names(
    sig: SignatureInfo, inputs: Mapping[str, np.ndarray], defaults: Mapping[str, np.ndarray]
) -> None:
    """The request's input names against the signature (predict_util.cc's order and texts).

    The names the request chose are quoted bounded (``tensor_limits.quote``); below a few
    hundred characters the texts are TF's, byte for byte.

    Raises:
        ServingError: INVALID_ARGUMENT for too many or too few inputs, a missing input without
            a default, or a name the signature does not have.
    """
    requested, expected = set(inputs), set(sig.inputs)
    if len(requested) > len(expected) or (len(requested) < len(expected) and not defaults):
        raise ServingError.invalid_argument(
            f"input size does not match signature: {len(requested)}!={len(expected)} "
            f"len({{{_names(requested)}}}) != len({{{','.join(sorted(expected))}}}). "
            f"Sent extra: {{{_names(requested - expected)}}}. "
            f"Missing but required: {{{','.join(sorted(expected - requested))}}}."
        )
    for alias in sorted(expected):
        if alias not in requested and alias not in defaults:
            raise ServingError.invalid_argument(
                f"Signature input alias: {alias}(feed name: {sig.inputs[alias].tensor_name}) not "
                "found in request and no default value provided. Inputs expected to be in the "
                f"request {{{_names(requested)}}}, or default input alias set: "
                f"{','.join(sorted(defaults))}"
            )
    if requested - expected:
        raise ServingError.invalid_argument(
            "Inputs contains invalid name. Used request inputs: "
            f"{_names(requested & expected)}, request input: {_names(requested)}"
        )


def output_aliases(sig: SignatureInfo, output_filter: Sequence[str]) -> tuple[str, ...]:
    """The output aliases to fetch: the filter, checked, or every output (predict_util.cc).

    Raises:
        ServingError: INVALID_ARGUMENT for an unknown or repeated alias.
    """
    if not output_filter:
        return tuple(sig.outputs)
    seen: set[str] = set()
    for alias in output_filter:
        if alias not in sig.outputs:
            raise ServingError.invalid_argument(
                f"output tensor alias not found in signature: {quote(alias)} Outputs expected to be in "
                f"the set {{{','.join(sorted(sig.outputs))}}}."
            )
        if alias in seen:
            raise ServingError.invalid_argument(f"duplicate output tensor alias: {quote(alias)}")
        seen.add(alias)
    return tuple(output_filter)
