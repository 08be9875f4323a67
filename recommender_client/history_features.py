"""The ``sequence`` features of a request: the user's recent clicks, as training built them.

Training (``training.data.history.add_history``) gives each row the items the user clicked
strictly before it, most recent first, ``|``-joined and cut to ``max_len``. At request time
everything logged is earlier, so the same list is: the online clicks of the request's
``UserState`` (newest first; newer than anything the artefacts were built from), then the
artefact history's clicks, newest first. The online store keeps each clicked item once, while
the artefact part (like training) keeps repeats.
"""

from __future__ import annotations

from collections.abc import Iterator

from recommender_client.recall.artifacts import RecallArtifacts
from recommender_client.recall.sources import user_history
from recommender_client.state.protocol import EMPTY_STATE, UserState
from training.features import MULTI_VALUE_SEPARATOR


class BehaviourHistory:
    """Each user's clicked items newest first, from the artefacts and the request's online state."""

    def __init__(self, artifacts: RecallArtifacts) -> None:
        self.artifacts = artifacts

    def _recent(self, user_id: str, state: UserState) -> Iterator[str]:
        yield from state.clicked
        items, _, clicked = user_history(self.artifacts, user_id)
        ids = self.artifacts.catalog.item_ids
        for pos in items[clicked][::-1].tolist():
            yield ids[pos]

    def value(self, user_id: str, max_len: int, state: UserState = EMPTY_STATE) -> str:
        """The wire string of a sequence feature: at most ``max_len`` ids joined by ``|``.

        An id containing the separator could not be split back (training could not have
        produced it either), so it is skipped rather than corrupting its neighbours.
        """
        out: list[str] = []
        for item in self._recent(user_id, state):
            if item and MULTI_VALUE_SEPARATOR not in item:
                out.append(item)
                if len(out) == max_len:
                    break
        return MULTI_VALUE_SEPARATOR.join(out)
