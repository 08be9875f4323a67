"""The decoded-size budget of a Predict's tensors (ours; TF Serving has none), checked before the run."""

# A TensorProto states its shape apart from its values, and TF's FromProto pads missing values:
# a 251-byte request of 10 inputs shaped [4194304] with no values took 10.9 s and 4.7 GB of
# resident memory. The budget bounds what one request may make the server hold, whatever its
# wire size. Over budget is INVALID_ARGUMENT, not RESOURCE_EXHAUSTED: the same request fails
# every time (RESOURCE_EXHAUSTED is retryable in gRPC's retry policies and becomes REST 429 "Too
# Many Requests"), and TensorFlow itself answers INVALID_ARGUMENT ("tensor parsing error") when a
# TensorProto's buffer cannot be allocated.

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from serving.model_server.errors import ServingError

# A string element costs its bytes plus the reference the array holds to it; counting the
# bytes alone would let [2**40] empty strings through.
STRING_ELEMENT_BYTES = 8

# Names quoted in error texts are cut to this many characters (a map key may be megabytes).
MAX_QUOTED_CHARS = 200


def quote(text: str, limit: int = MAX_QUOTED_CHARS) -> str:
    """``text``, or its first ``limit`` characters and how many more there were."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...({len(text) - limit} more characters)"


def array_nbytes(array: Any) -> int:
    """The decoded size of one input: elements x dtype size; strings by their bytes (+8 each)."""
    if not isinstance(array, np.ndarray):
        array = np.asarray(array)
    if array.dtype.kind != "O":
        return int(array.nbytes)
    items = array.ravel().tolist()
    try:
        return STRING_ELEMENT_BYTES * len(items) + sum(map(len, items))  # bytes or str: C speed
    except TypeError:  # other objects count as one reference more
        return STRING_ELEMENT_BYTES * len(items) + sum(
            len(x) if isinstance(x, (bytes, str)) else STRING_ELEMENT_BYTES for x in items
        )


class CheckedInputs(dict):
    """Inputs whose decoded size the face already bounded (the gRPC face's, sized from protos)."""


def string_proto_bytes(proto: Any, count: int) -> int:
    """What a string TensorProto of ``count`` elements decodes to, computed without decoding it.

    tensor_content holds at most its own length in string bytes; string_val's values are counted
    as decoding keeps them (the first ``count``, the last repeated as padding). The work is
    bounded by the values the wire carried, whatever ``count`` says.
    """
    needed = STRING_ELEMENT_BYTES * count
    if proto.tensor_content:
        return needed + len(proto.tensor_content)
    values = proto.string_val
    have = len(values)
    if have >= count:
        return needed + sum(len(values[i]) for i in range(count))
    if have:
        return needed + sum(len(v) for v in values) + (count - have) * len(values[have - 1])
    return needed


def over_budget(alias: str, needed: int, limit: int) -> ServingError:
    """The error for a request whose tensors would decode past ``limit`` (at input ``alias``)."""
    return ServingError.invalid_argument(
        f"input {quote(alias)} would make the request's tensors {needed} bytes decoded, over the "
        f"limit of {limit} bytes (--max_request_tensor_bytes)"
    )


def check_arrays(inputs: Mapping[str, Any], limit: int) -> None:
    """Raise when the decoded inputs together exceed ``limit`` bytes.

    Raises:
        ServingError: INVALID_ARGUMENT naming the input at which the total passed the limit.
    """
    total = 0
    for alias, array in inputs.items():
        total += array_nbytes(array)
        if total > limit:
            raise over_budget(alias, total, limit)


class BudgetedRunner:
    """A runner (Batcher or DirectRunner) whose every run is refused over the tensor budget.

    The faces decode differently (gRPC from TensorProtos, REST from JSON), but both hand their
    arrays to the manager's runner, so this is the one place that sees every Predict, Classify
    and Regress of either face. The gRPC face's Predict sizes its tensors from the protos before
    building them (``handlers.request_arrays``) and hands over ``CheckedInputs``, which are not
    counted again: counting 500 strings' bytes costs ~7 us, their proto's ByteSize ~1.7 us.
    """

    def __init__(self, runner: Any, limit: int) -> None:
        self.runner = runner
        self.limit = limit

    def run(
        self,
        servable: Any,
        signature_name: str,
        inputs: Mapping[str, Any],
        output_filter: Sequence[str] = (),
        *,
        deadline: float | None = None,
    ) -> dict[str, np.ndarray]:
        """The wrapped runner's ``run``, after the budget check."""
        if type(inputs) is not CheckedInputs:
            check_arrays(inputs, self.limit)
        return self.runner.run(servable, signature_name, inputs, output_filter, deadline=deadline)

    def enqueue(
        self,
        servable: Any,
        signature_name: str,
        inputs: Mapping[str, Any],
        output_filter: Sequence[str],
        deliver: Any,
        *,
        deadline: float | None = None,
    ) -> bool:
        """The wrapped Batcher's ``enqueue``, after the budget check."""
        if type(inputs) is not CheckedInputs:
            check_arrays(inputs, self.limit)
        return bool(
            self.runner.enqueue(servable, signature_name, inputs, output_filter, deliver, deadline=deadline)
        )

    def stop(self) -> None:
        """Stop the wrapped runner (the manager stops its runner first when it stops)."""
        stop = getattr(self.runner, "stop", None)
        if stop is not None:
            stop()
