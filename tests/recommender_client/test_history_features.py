"""The ranker sends a DIN model the user's recent clicks: online ones first, then the artefacts'."""

from __future__ import annotations

import numpy as np

from recommender_client.features import FeatureJoiner, InMemoryFeatureStore
from recommender_client.pipeline import USER_STATE, Batch, RankRequest
from recommender_client.recall.build import build_artifacts
from recommender_client.stages import JoinFeatures
from recommender_client.state.protocol import UserState
from training.features import Feature, FeatureContract

ITEMS = ("a", "b", "c", "d", "e")


def _contract() -> FeatureContract:
    return FeatureContract(
        features=(
            Feature("user_id", "categorical_string", "user", vocabulary=("u1", "u2")),
            Feature("item_id", "categorical_string", "item", vocabulary=ITEMS),
            Feature("history", "sequence", "user", vocabulary=ITEMS, max_len=3, item_feature="item_id"),
        )
    )


def _joiner() -> FeatureJoiner:
    # u1 clicks a@1, b@2 and d@4 (c@3 shown, not clicked, and a@5 shown again); u2 never clicks
    events = {
        "user_id": ["u1", "u1", "u1", "u2", "u1", "u1"],
        "item_id": ["a", "b", "c", "e", "d", "a"],
        "timestamp": [1.0, 2.0, 3.0, 3.5, 4.0, 5.0],
        "label": [1, 1, 0, 0, 1, 0],
    }
    artifacts = build_artifacts(events, contract=_contract())
    return FeatureJoiner(_contract(), InMemoryFeatureStore.from_artifacts(artifacts))


def _state(*clicked: str) -> UserState:
    return UserState(clicked=clicked, click_times=np.arange(len(clicked), 0, -1, dtype=np.float64))


def test_history_is_the_artefact_clicks_newest_first_cut_to_max_len() -> None:
    inputs, known, _ = _joiner().join("u1", ["c", "e"], {})
    assert known
    assert inputs["history"].tolist() == ["d|b|a", "d|b|a"]  # one value per candidate row
    assert _joiner().join("u2", ["c"], {})[0]["history"].tolist() == [""]


def test_online_clicks_come_first_and_new_users_get_theirs() -> None:
    joiner = _joiner()
    assert joiner.join("u1", ["c"], {}, state=_state("e"))[0]["history"].tolist() == ["e|d|b"]
    inputs, known, _ = joiner.join("new", ["c"], {}, state=_state("c", "a"))
    assert not known and inputs["history"].tolist() == ["c|a"]


def test_join_stage_reads_the_requests_online_state() -> None:
    batch = Batch(RankRequest(user_id="u1", k=2), items=("a", "b"), values={USER_STATE: _state("c")})
    out = JoinFeatures(_joiner()).transform(batch)
    assert out.values["model_inputs"]["history"].tolist() == ["c|d|b", "c|d|b"]


def test_request_rows_take_a_history_as_a_list_of_ids() -> None:
    from recommender_client.client import build_request_columns

    columns = build_request_columns(_contract(), [{"user_id": "u1", "item_id": "a", "history": ["d", "b"]}])
    assert columns["history"].tolist() == ["d|b"]
