"""The synthetic world: users, items and the known click logit that generated data is drawn from."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .base import DataError

DEVICES: tuple[str, ...] = ("mobile", "desktop", "tablet")
SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class SyntheticConfig:
    """Everything that determines a synthetic data set; same config -> byte-identical rows.

    The default sizes keep every categorical of moderate cardinality, so the interactions in
    the true logit are learnable from ~1M rows (an FM/deep model can approach the oracle,
    while logistic regression, which sees only main effects, cannot).
    """

    num_rows: int = 1_000_000
    seed: int = 0
    num_users: int = 2_000
    num_items: int = 1_000
    num_categories: int = 20
    num_segments: int = 12
    num_tags: int = 60
    num_positions: int = 10
    days: float = 30.0
    start_time: int = 1_700_000_000
    latent_dim: int = 4
    interaction_scale: float = 1.0
    # Per-user/per-item terms (biases, latent dot product, personal taste). At 1.0 they sit at the
    # noise floor of ~400 rows per user, so no model can learn them and the oracle is unreachable;
    # 0.3 keeps them present (the id embeddings still matter) but learnable.
    id_effect_scale: float = 0.3
    base_logit: float = -1.2

    def __post_init__(self) -> None:
        checks = {
            "num_rows": self.num_rows >= 1,
            "num_users": self.num_users >= 1,
            "num_items": self.num_items >= 1,
            "num_categories": 1 <= self.num_categories <= self.num_items,
            "num_tags": self.num_tags >= 4,
            "num_segments": self.num_segments >= 1,
            "num_positions": self.num_positions >= 1,
            "days": self.days > 0,
            "latent_dim": self.latent_dim >= 1,
            "interaction_scale": self.interaction_scale >= 0,
            "id_effect_scale": self.id_effect_scale >= 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise DataError(f"invalid synthetic config field(s) {bad}: {self}")

    @property
    def span_seconds(self) -> int:
        return int(self.days * SECONDS_PER_DAY)

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _dot_scale(target_sd: float, dim: int) -> float:
    """Per-coordinate sd so the dot product of two random N(0, s^2) vectors has sd ``target_sd``."""
    return float(np.sqrt(target_sd / np.sqrt(dim)))


def _zscore(values: np.ndarray) -> np.ndarray:
    return (values - values.mean()) / (values.std() + 1e-12)


@dataclass(frozen=True)
class World:
    """Entity attributes and true-logit parameters, drawn once from the config's seed."""

    config: SyntheticConfig
    # users
    user_cum: np.ndarray  # cumulative sampling probability (traffic share)
    user_activity: np.ndarray  # log traffic share, a numeric user feature
    user_segment: np.ndarray  # a user-side categorical (e.g. a CRM segment) that drives taste
    user_bias: np.ndarray
    user_taste: np.ndarray  # [users, k], segment taste + individual deviation, dotted with item content
    user_latent: np.ndarray  # [users, k], dotted with item latent vectors
    user_price_sens: np.ndarray
    user_device_cum: np.ndarray  # [users, 3] cumulative device probabilities
    # items (indexed by item number; publish order is a separate permutation)
    item_category: np.ndarray
    item_tags: tuple[str, ...]  # joined by "|"
    item_price: np.ndarray
    item_publish_time: np.ndarray
    item_popularity: np.ndarray
    item_bias: np.ndarray
    item_content: np.ndarray  # [items, k]: category + tag embeddings
    item_latent: np.ndarray
    publish_order: np.ndarray  # item numbers sorted by publish time
    publish_sorted: np.ndarray  # publish times in that order
    popularity_cum: np.ndarray  # cumulative popularity in that order
    # context
    hour_main: np.ndarray
    device_main: np.ndarray
    category_hour: np.ndarray  # [categories, 24]
    category_device: np.ndarray  # [categories, 3]
    position_main: np.ndarray  # [positions]
    position_device: np.ndarray  # [positions, 3]

    @property
    def z_activity(self) -> np.ndarray:
        return _zscore(self.user_activity)

    @property
    def z_price(self) -> np.ndarray:
        return _zscore(np.log(self.item_price))


def build_world(config: SyntheticConfig) -> World:
    """Draw users, items and logit parameters from the config seed (independent of num_rows)."""
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(0,)))
    n_u, n_i, n_c, n_t, k = (
        config.num_users,
        config.num_items,
        config.num_categories,
        config.num_tags,
        config.latent_dim,
    )
    n_s = config.num_segments
    s = config.interaction_scale

    traffic = rng.lognormal(0.0, 1.0, n_u)
    traffic /= traffic.sum()
    device_probs = rng.dirichlet((4.0, 2.0, 1.0), n_u)

    item_category = rng.integers(0, n_c, n_i)
    # every category prefers a few tags, so tags carry category signal plus their own
    category_tags = np.stack([rng.choice(n_t, 4, replace=False) for _ in range(n_c)])
    tag_lists = []
    tag_matrix = np.zeros((n_i, n_t))
    for item in range(n_i):
        count = int(rng.integers(1, 4))
        own = category_tags[item_category[item]]
        picks = [
            int(own[rng.integers(0, 4)]) if rng.random() < 0.6 else int(rng.integers(0, n_t))
            for _ in range(count)
        ]
        picks = sorted(set(picks))
        tag_lists.append("|".join(f"t{t:02d}" for t in picks))
        tag_matrix[item, picks] = 1.0 / len(picks)
    popularity = rng.lognormal(0.0, 1.0, n_i)
    span = config.span_seconds
    # 70% of the catalogue exists before the first event; the rest is published during the window
    publish = np.where(
        rng.random(n_i) < 0.7,
        config.start_time - rng.integers(1, 365 * SECONDS_PER_DAY, n_i),
        config.start_time + rng.integers(0, max(span, 1), n_i),
    ).astype(np.int64)
    publish[int(np.argmax(popularity))] = config.start_time - 1  # something is always available
    order = np.argsort(publish, kind="stable")

    d_taste = _dot_scale(0.9 * s, k)
    category_emb = rng.normal(0, d_taste, (n_c, k))
    tag_emb = rng.normal(0, d_taste, (n_t, k))
    item_content = category_emb[item_category] + 0.7 * tag_matrix @ tag_emb
    # most taste is shared within a segment (learnable from many rows); a little is personal
    user_segment = rng.integers(0, n_s, n_u)
    segment_taste = rng.normal(0, d_taste, (n_s, k))
    user_taste = segment_taste[user_segment] + rng.normal(0, 0.1 * d_taste * config.id_effect_scale, (n_u, k))
    segment_price = rng.normal(0, 0.25 * s, n_s)
    d_latent = _dot_scale(0.1 * s * config.id_effect_scale, k)
    d_ctx = _dot_scale(0.35 * s, 2)
    hours = np.arange(24)
    position_main = -0.45 * np.log(np.arange(1, config.num_positions + 1))
    position_device = np.outer(
        np.log(np.arange(1, config.num_positions + 1)), np.array([-0.3, 0.15, 0.0]) * s
    )

    return World(
        config=config,
        user_cum=np.cumsum(traffic),
        user_activity=np.log(traffic * n_u),
        user_segment=user_segment,
        user_bias=rng.normal(0, 0.15 * config.id_effect_scale, n_u),
        user_taste=user_taste,
        user_latent=rng.normal(0, d_latent, (n_u, k)),
        user_price_sens=segment_price[user_segment],
        user_device_cum=np.cumsum(device_probs, axis=1),
        item_category=item_category,
        item_tags=tuple(tag_lists),
        item_price=np.round(rng.lognormal(2.5, 0.8, n_i), 2),
        item_publish_time=publish,
        item_popularity=popularity / popularity.sum(),
        item_bias=rng.normal(0, 0.15 * config.id_effect_scale, n_i),
        item_content=item_content,
        item_latent=rng.normal(0, d_latent, (n_i, k)),
        publish_order=order,
        publish_sorted=publish[order],
        popularity_cum=np.cumsum(popularity[order] / popularity.sum()),
        hour_main=0.25 * np.sin(2 * np.pi * hours / 24),
        device_main=np.array([0.0, -0.15, 0.1]),
        category_hour=rng.normal(0, d_ctx, (n_c, 2)) @ rng.normal(0, d_ctx, (2, 24)),
        category_device=rng.normal(0, 0.3 * s, (n_c, 3)),
        position_main=position_main,
        position_device=position_device,
    )


def true_logit(
    world: World,
    user: np.ndarray,
    item: np.ndarray,
    hour: np.ndarray,
    device: np.ndarray,
    position: np.ndarray,
) -> np.ndarray:
    """The click logit: main effects plus pairwise interactions (position is 1-based).

    Main effects (what logistic regression can fit): user/item bias, user activity, item price,
    hour, device, position. Interactions (what FM/deep models add): user taste x item content
    (category and tags; mostly shared by the user's segment), user x item latent dot product,
    category x hour, category x device, position x device, segment price sensitivity x price.
    """
    cat = world.item_category[item]
    z_price = world.z_price[item]
    logit = (
        world.config.base_logit
        + world.user_bias[user]
        + world.item_bias[item]
        + 0.25 * world.z_activity[user]
        - 0.25 * z_price
        + world.hour_main[hour]
        + world.device_main[device]
        + world.position_main[position - 1]
    )
    interactions = (
        np.einsum("nk,nk->n", world.user_taste[user], world.item_content[item])
        + np.einsum("nk,nk->n", world.user_latent[user], world.item_latent[item])
        + world.category_hour[cat, hour]
        + world.category_device[cat, device]
        + world.position_device[position - 1, device]
        + world.user_price_sens[user] * z_price
    )
    return logit + interactions
