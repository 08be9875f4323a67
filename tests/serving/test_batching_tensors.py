"""A batch's tensors joined as batching_session.cc MergeInputTensors and batching_util.cc AddPadding join them."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from serving.model_server.batching_tensors import check_outputs, merge_inputs, task_size
from serving.model_server.errors import ServingError


def test_allowed_batch_sizes_pad_with_the_last_tasks_first_row() -> None:
    # MergeInputTensors: "Use the first row of this task's tensor" (the last task) as padding.
    first = np.array([[1.0], [2.0]], np.float32)
    last = np.array([[5.0], [6.0]], np.float32)
    merged, padded = merge_inputs([[first, last]], ["x:0"], 4, (2, 7, 8), False)
    assert padded == 7  # RoundToLowestAllowedBatchSize: the first allowed size >= 4
    assert merged[0][:, 0].tolist() == [1.0, 2.0, 5.0, 6.0, 5.0, 5.0, 5.0]


def test_a_batch_beyond_every_allowed_size_is_not_padded() -> None:
    merged, padded = merge_inputs([[np.zeros((3, 1))]], ["x:0"], 3, (2,), False)
    assert padded == 3 and merged[0].shape == (3, 1)


def test_variable_length_inputs_are_padded_with_each_tensors_first_element() -> None:
    # batching_options.h: "For each tensor its first element is used as padding value."
    a = np.array([[7, 8]], np.int64)
    b = np.array([[1, 2, 3], [4, 5, 6]], np.int64)
    c = np.array([[9]], np.int64)
    merged, padded = merge_inputs([[a, b, c]], ["ids:0"], 4, (), True)
    assert padded == 4
    assert merged[0].tolist() == [[7, 8, 7], [1, 2, 3], [4, 5, 6], [9, 9, 9]]


def test_strings_pad_and_the_batch_pads_with_the_padded_last_row() -> None:
    a = np.array([[b"a"]], object)
    b = np.array([[b"b", b"c"]], object)
    merged, _ = merge_inputs([[a, b], [a, a]], ["s:0", "t:0"], 2, (3,), True)
    assert merged[0].tolist() == [[b"a", b"a"], [b"b", b"c"], [b"b", b"c"]]
    assert merged[1].tolist() == [[b"a"], [b"a"], [b"a"]]


def test_a_single_task_is_fed_as_it_came() -> None:
    x = np.ones((2, 3), np.float32)
    merged, _ = merge_inputs([[x]], ["x:0"], 2, (), False)
    assert merged[0] is x


@pytest.mark.parametrize(
    ("parts", "code", "message"),
    [
        # batching_util.cc PadTensor and PadTensorOfSpecificType.
        (
            [np.zeros((1, 0)), np.zeros((1, 2))],
            grpc.StatusCode.INVALID_ARGUMENT,
            r"^Got empty tensor in batch of non-empty tensors\.$",
        ),
        (
            [np.zeros((1,) * 7)],
            grpc.StatusCode.INVALID_ARGUMENT,
            r"^Only tensors with rank from 1 to 6 can be padded\.$",
        ),
        # Not a TF text: CalculateMaxDimSizes does not check ranks.
        ([np.zeros((1, 2)), np.zeros((1, 2, 1))], grpc.StatusCode.FAILED_PRECONDITION, "different ranks"),
    ],
)
def test_what_padding_refuses(parts: list[np.ndarray], code: grpc.StatusCode, message: str) -> None:
    with pytest.raises(ServingError, match=message) as info:
        merge_inputs([parts], ["x:0"], len(parts), (), True)
    assert info.value.code == code


def test_unequal_ranks_without_padding_name_the_tensor() -> None:
    with pytest.raises(
        ServingError, match="^Tensors with name 'x:0' from different tasks have different shapes"
    ):
        merge_inputs([[np.zeros((1, 2)), np.zeros((1, 2, 1))]], ["x:0"], 2, (), False)


def test_task_size_is_the_shared_dim_0() -> None:
    # batching_util.h ComputeTensorBatchSize.
    assert task_size([np.zeros((3, 2)), np.zeros((3,))]) == 3
    with pytest.raises(
        ServingError, match="^Batching Run\\(\\) input tensors must have equal 0th-dimension size$"
    ):
        task_size([np.zeros((3, 2)), np.zeros((2,))])
    with pytest.raises(
        ServingError, match="^Batching Run\\(\\) input tensors must have at least one dimension$"
    ):
        task_size([np.zeros((3, 2)), np.float32(1.0)])  # type: ignore[list-item]


def test_outputs_must_have_the_padded_batchs_rows() -> None:
    # batching_session.cc SplitOutputTensors.
    check_outputs([np.zeros((4, 1))], 4)
    with pytest.raises(ServingError, match="^Batched output tensor has 0 dimensions$") as info:
        check_outputs([np.float32(1.0)], 4)  # type: ignore[list-item]
    assert info.value.code == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(
        ServingError,
        match="^Batched output tensor's 0th dimension does not equal the sum of the 0th dimension sizes "
        "of the input tensors$",
    ):
        check_outputs([np.zeros((4, 1)), np.zeros((3, 1))], 4)
