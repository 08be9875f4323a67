"""The ranker's online per-user state (impressions, clicks) behind one async protocol."""

from recommender_client.state.protocol import OnlineState, UserState, item_hashes

__all__ = ["OnlineState", "UserState", "item_hashes"]
