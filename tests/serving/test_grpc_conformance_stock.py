"""test_conformance's gRPC checks again, served by grpc.server (the fallback face)."""

# The tests are imported, so pytest collects them here too, where the module-wide fixture
# below makes "auto" pick grpc.server; test_conformance itself runs them on the inline face.

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from serving.model_server import grpc_inline
from tests.serving.test_conformance import (  # noqa: F401 - collected here again
    ctr_model,
    half_plus_two,
    serve,
    test_counter_model_stateful_signatures,
    test_ctr_model_from_export,
    test_half_plus_two_grpc,
    test_half_plus_two_metadata_matches_tf_serving_file,
    test_half_plus_two_status,
    test_handle_reload_config_request,
    test_matrix_half_plus_two_through_the_batcher,
    test_two_versions_policies_and_labels,
)


@pytest.fixture(scope="module", autouse=True)
def stock_face() -> Iterator[None]:
    """Before the module's servers start: grpc 'lacks' the inline server's core API."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(grpc_inline, "available", lambda: False)
        yield


def test_these_servers_are_stock(tfserving_testdata: Path) -> None:
    for batching in (False, True):
        with serve(
            model_base_path=str(tfserving_testdata / "saved_model_half_plus_two_cpu"),
            file_system_poll_wait_seconds=0,
            enable_batching=batching,
        ) as client:
            assert client.server._grpc_server.face == "stock"
            assert client.status("default") == [(123, "AVAILABLE", 0, "")]
