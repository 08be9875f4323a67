"""A batch's tensors joined and checked as TF Serving's BatchingSession does (batching_session.cc, batching_util.cc)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from serving.model_server.errors import ServingError

# AddPadding supports the ranks Eigen's pad does (batching_util.cc).
_MAX_PAD_RANK = 6


def task_size(arrays: Sequence[np.ndarray]) -> int:
    """The task's batch size: every input's dim 0, which must agree (ComputeTensorBatchSize)."""
    size = -1
    for value in arrays:
        if value.ndim == 0:
            raise ServingError.invalid_argument(
                "Batching Run() input tensors must have at least one dimension"
            )
        if size == -1:
            size = value.shape[0]
        elif value.shape[0] != size:
            raise ServingError.invalid_argument(
                "Batching Run() input tensors must have equal 0th-dimension size"
            )
    return size


def merge_inputs(
    columns: list[list[np.ndarray]],
    names: Sequence[str],
    size: int,
    allowed_batch_sizes: Sequence[int],
    pad_variable_length_inputs: bool,
) -> tuple[list[np.ndarray], int]:
    """Concatenate each input's parts (one per task) along dim 0 (MergeInputTensors).

    Args:
        columns: for each input tensor, its parts in task order.
        names: the input tensor names, for error texts.
        size: the batch's rows.
        allowed_batch_sizes: the batch is padded up to the first of these >= size, with copies
            of the last task's first row (a row known to be valid); none: no padding.
        pad_variable_length_inputs: pad dims 1.. of each part to the batch's widest first.

    Returns:
        The merged inputs and the padded batch size.

    Raises:
        ServingError: FAILED_PRECONDITION when parts differ beyond dim 0 and padding is off,
            INVALID_ARGUMENT when a part cannot be padded (TF's texts).
    """
    target = next((s for s in allowed_batch_sizes if s >= size), size)  # RoundToLowestAllowedBatchSize
    merged: list[np.ndarray] = []
    for name, parts in zip(names, columns, strict=True):
        if pad_variable_length_inputs:
            parts = _pad_to_widest(name, parts)
        if target > size:
            parts = [*parts, np.repeat(parts[-1][:1], target - size, axis=0)]
        if len(parts) == 1:
            merged.append(parts[0])
            continue
        try:
            merged.append(np.concatenate(parts, axis=0))
        except ValueError:  # dims 1.. (or the rank) differ: TF checks before concatenating
            raise ServingError.failed_precondition(
                f"Tensors with name '{name}' from different tasks have different shapes and padding "
                "is turned off. Set pad_variable_length_inputs to true, or ensure that all tensors "
                "with the same name have equal dimensions starting with the first dim."
            ) from None
    return merged, target


def check_outputs(columns: Sequence[np.ndarray], padded_size: int) -> None:
    """Every batched output must have the batch's rows, or it cannot be split (SplitOutputTensors)."""
    for value in columns:
        if value.ndim == 0:
            raise ServingError.failed_precondition("Batched output tensor has 0 dimensions")
        if value.shape[0] != padded_size:
            raise ServingError.failed_precondition(
                "Batched output tensor's 0th dimension does not equal the sum of the 0th dimension "
                "sizes of the input tensors"
            )


def _pad_to_widest(name: str, parts: list[np.ndarray]) -> list[np.ndarray]:
    """Pad dims 1.. of each part to the widest, with the part's own first element (AddPadding)."""
    rank = parts[0].ndim
    for part in parts:
        if part.ndim > _MAX_PAD_RANK:
            raise ServingError.invalid_argument("Only tensors with rank from 1 to 6 can be padded.")
        if part.ndim != rank:
            # TF has no check here (CalculateMaxDimSizes indexes past the shorter shape).
            raise ServingError.failed_precondition(
                f"Tensors with name '{name}' from different tasks have different ranks; "
                "pad_variable_length_inputs pads dimensions, not ranks."
            )
    widest = tuple(max(p.shape[d] for p in parts) for d in range(1, rank))
    out = []
    for part in parts:
        shape = (part.shape[0], *widest)
        if part.shape == shape:
            out.append(part)
        elif part.size == 0:
            if math.prod(shape):
                raise ServingError.invalid_argument("Got empty tensor in batch of non-empty tensors.")
            out.append(part.reshape(shape))  # TF copies an empty tensor into the new shape
        else:
            padded = np.full(shape, part.flat[0], dtype=part.dtype)
            padded[tuple(slice(0, s) for s in part.shape)] = part
            out.append(padded)
    return out
