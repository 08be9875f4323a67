"""Context the model learnt from the event time is derived from the request's ``now`` (issue 18 item 6)."""

from __future__ import annotations

import datetime as dt

import pytest

from recommender_client.features import ContextError, FeatureJoiner, InMemoryFeatureStore
from recommender_client.pipeline import Batch, RankRequest
from recommender_client.recall.artifacts import RecallArtifacts
from recommender_client.stages import JoinFeatures
from training.data.synthetic import generate_events
from training.data.synthetic_world import SyntheticConfig
from training.features import FeatureContract

NOW = 1_700_000_000.5  # 2023-11-14T22:13:20.5Z


def joiner(contract: FeatureContract, artifacts: RecallArtifacts) -> FeatureJoiner:
    return FeatureJoiner(contract, InMemoryFeatureStore.from_artifacts(artifacts))


def test_omitted_hour_is_the_utc_hour_of_now_never_the_default(contract, loaded) -> None:
    stage = JoinFeatures(joiner(contract, loaded))
    out = stage(Batch(RankRequest(user_id="u1", k=2, now=NOW), items=("i1", "i2")))
    assert out.values["model_inputs"]["hour"].tolist() == [22, 22]  # was [-1, -1]
    given = stage(Batch(RankRequest(user_id="u1", k=2, now=NOW, context={"hour": 4}), items=("i1",)))
    assert given.values["model_inputs"]["hour"].tolist() == [4]  # a caller's own value is kept
    null = stage(Batch(RankRequest(user_id="u1", k=1, now=NOW, context={"hour": None}), items=("i1",)))
    assert null.values["model_inputs"]["hour"].tolist() == [22]


def test_service_and_training_derive_the_same_hour_for_the_same_time(contract, loaded) -> None:
    config = SyntheticConfig(num_rows=500, seed=5, num_users=20, num_items=20, num_categories=3, days=2.0)
    events = generate_events(config)
    j = joiner(contract, loaded)
    served = [j.check_context({}, now=float(t))["hour"] for t in events["timestamp"]]
    assert served == events["hour"].tolist()
    assert served[0] == dt.datetime.fromtimestamp(int(events["timestamp"][0]), dt.UTC).hour


def test_misspelt_context_keys_stay_a_client_error(contract, loaded) -> None:
    with pytest.raises(ContextError, match=r"does not know: \['hours'\]"):
        joiner(contract, loaded).check_context({"hours": 3}, now=NOW)


def test_the_recommender_sends_the_hour_of_now_to_the_model(contract, loaded) -> None:
    from tests.recommender_client.test_pipeline import make

    batch, _ = make(contract, loaded).recommend(RankRequest(user_id="u2", k=3, now=NOW + 3600))
    assert set(batch.values["model_inputs"]["hour"].tolist()) == {23}  # every candidate row, not -1
