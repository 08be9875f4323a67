"""Predict's request checks on names: inputs against the signature, the output filter."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from serving.model_server.errors import ServingError
from serving.model_server.signatures import SignatureInfo


def check_input_names(
    sig: SignatureInfo, inputs: Mapping[str, np.ndarray], defaults: Mapping[str, np.ndarray]
) -> None:
    """The request's input names against the signature (predict_util.cc's order and texts).

    Raises:
        ServingError: INVALID_ARGUMENT for too many or too few inputs, a missing input without
            a default, or a name the signature does not have.
    """
    requested, expected = set(inputs), set(sig.inputs)
    if len(requested) > len(expected) or (len(requested) < len(expected) and not defaults):
        raise ServingError.invalid_argument(
            f"input size does not match signature: {len(requested)}!={len(expected)} "
            f"len({{{','.join(sorted(requested))}}}) != len({{{','.join(sorted(expected))}}}). "
            f"Sent extra: {{{','.join(sorted(requested - expected))}}}. "
            f"Missing but required: {{{','.join(sorted(expected - requested))}}}."
        )
    for alias in sorted(expected):
        if alias not in requested and alias not in defaults:
            raise ServingError.invalid_argument(
                f"Signature input alias: {alias}(feed name: {sig.inputs[alias].tensor_name}) not "
                "found in request and no default value provided. Inputs expected to be in the "
                f"request {{{','.join(sorted(requested))}}}, or default input alias set: "
                f"{','.join(sorted(defaults))}"
            )
    if requested - expected:
        raise ServingError.invalid_argument(
            "Inputs contains invalid name. Used request inputs: "
            f"{','.join(sorted(requested & expected))}, request input: {','.join(sorted(requested))}"
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
                f"output tensor alias not found in signature: {alias} Outputs expected to be in "
                f"the set {{{','.join(sorted(sig.outputs))}}}."
            )
        if alias in seen:
            raise ServingError.invalid_argument(f"duplicate output tensor alias: {alias}")
        seen.add(alias)
    return tuple(output_filter)
