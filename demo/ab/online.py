"""The A/B's online half: the embedded model server with stable/canary labels, the ranker with the
experiment, and simulated users whose impressions and clicks go back through ``POST /events``."""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from demo.ab.config import ABConfig
from demo.ab.offline import VERSIONS, OfflinePaths
from demo.ab.traffic import SimulatedUsers
from demo.processes import Server, free_port, http_json
from demo.run import module, step
from training.atomic_files import atomic_write_text
from training.data.synthetic import read_config
from training.data.synthetic_world import build_world
from training.features import FeatureContract

EXPERIMENT = "price-pipeline-canary"


@dataclass(frozen=True)
class OnlinePaths:
    """The logs the ranker wrote."""

    served_log: Path
    events_log: Path
    logs: Path
    experiments: Path  # the ranker's experiments file (the reports split training rows by it)


@dataclass
class Tally:
    """What the simulator itself saw per arm: an independent count to check the report against."""

    requests: Counter[str] = field(default_factory=Counter)
    impressions: Counter[str] = field(default_factory=Counter)
    clicks: Counter[str] = field(default_factory=Counter)
    expected_clicks: dict[str, float] = field(default_factory=dict)  # sum of true click probabilities
    degraded: int = 0

    def as_dict(self) -> dict[str, dict[str, float]]:
        return {
            arm: {
                "requests": self.requests[arm],
                "impressions": self.impressions[arm],
                "clicks": self.clicks[arm],
                "expected_clicks": round(self.expected_clicks.get(arm, 0.0), 3),
            }
            for arm in sorted(self.requests)
        }


def write_model_config(cfg: ABConfig, paths: OfflinePaths, target: Path) -> Path:
    """``models.config`` serving versions 1 and 2 of the model, labelled ``stable`` and ``canary``."""
    from serving.tfserving_config import ModelSettings, model_server_config

    model = ModelSettings(
        name=cfg.model_name,
        base_path=str((paths.base / cfg.model_name).resolve()),
        policy="specific",
        versions=tuple(sorted(VERSIONS.values())),
        labels=VERSIONS,
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(target, model_server_config([model]))
    return target


def write_experiment(cfg: ABConfig, target: Path) -> Path:
    """The ranker's experiments file: users split by hash between the two labels."""
    arms = [
        {"name": "stable", "share": round(1.0 - cfg.canary_share, 12), "version_label": "stable"},
        {"name": "canary", "share": cfg.canary_share, "version_label": "canary"},
    ]
    experiment = {"name": EXPERIMENT, "stable": "stable", "arms": arms}
    atomic_write_text(target, json.dumps({"active": EXPERIMENT, "experiments": [experiment]}, indent=2))
    return target


def servers(cfg: ABConfig, paths: OfflinePaths, online: OnlinePaths) -> tuple[Server, str, Server, str]:
    """The model server and its model's status URL, the ranker and its base URL (not started)."""
    grpc_port, rest_port, ranker_port = free_port(), free_port(), free_port()
    model_server = Server(
        "model server",
        module(
            "serving.model_server",
            f"--port={grpc_port}",
            f"--rest_api_port={rest_port}",
            f"--model_config_file={write_model_config(cfg, paths, online.logs / 'models.config')}",
            "--allow_version_labels_for_unavailable_models=true",
            "--bind_address=127.0.0.1",
            "--enable_model_warmup=true",
        ),
        online.logs / "model_server.log",
    )
    ranker = Server(
        "ranking service",
        module(
            "recommender_client.service",
            *("--host", "127.0.0.1", "--port", str(ranker_port)),
            *("--artifacts-dir", str(paths.recall), "--grpc-target", f"127.0.0.1:{grpc_port}"),
            *("--model-name", cfg.model_name),
            *("--served-log", str(online.served_log), "--events-log", str(online.events_log)),
        ),
        online.logs / "ranker.log",
        env={
            "RANKER_EXPERIMENTS_PATH": str(write_experiment(cfg, online.experiments)),
            # a loaded 2-core machine must not turn slow Predicts into degraded lists
            "RANKER_REQUEST_DEADLINE_S": "5",
            "RANKER_PREDICT_TIMEOUT_S": "4",
            "RANKER_SERVED_LOG_SAMPLE_RATE": "1.0",
        },
    )
    status_url = f"http://127.0.0.1:{rest_port}/v1/models/{cfg.model_name}"
    return model_server, status_url, ranker, f"http://127.0.0.1:{ranker_port}"


def simulate(cfg: ABConfig, paths: OfflinePaths, rng: np.random.Generator) -> tuple[OnlinePaths, Tally]:
    """Start both servers, send ``cfg.requests`` visits, post their events, stop both (logs flushed)."""
    logs = cfg.out / "online"
    online = OnlinePaths(logs / "served.jsonl", logs / "events.jsonl", logs, logs / "experiments.json")
    for log in (online.served_log, online.events_log):  # the reports read every rotated file too
        for stale in logs.glob(f"{log.name}*"):
            stale.unlink()  # one run's traffic only
    world = build_world(read_config(paths.data))
    as_of = int(json.loads((paths.recall / "manifest.json").read_text())["as_of"])
    contract = FeatureContract.load(paths.runs["stable"])
    known = [str(v) for v in contract["item_id"].vocabulary or ()]
    users = SimulatedUsers(world, now=as_of, list_size=cfg.list_size, known_items=known)
    model_server, status_url, ranker, url = servers(cfg, paths, online)
    tally = Tally()
    try:
        step("6. embedded model server: versions 1 (stable) and 2 (canary) of one model")
        model_server.start().wait_http_ok(status_url)
        print(json.dumps(http_json("GET", status_url)[1]), flush=True)
        step(f"7. ranker with experiment {EXPERIMENT!r}: canary share {cfg.canary_share}")
        ranker.start().wait_http_ok(f"{url}/readyz")
        step(f"8. {cfg.requests} simulated visits of {users.list_size} items, clicks posted to /events")
        started = time.perf_counter()
        for n in range(cfg.requests):
            visit(url, users, rng, tally)
            if (n + 1) % max(cfg.requests // 10, 1) == 0:
                print(f"  {n + 1} visits, {time.perf_counter() - started:.0f} s: {_line(tally)}", flush=True)
    finally:
        ranker.stop()
        model_server.stop()
    return online, tally


def visit(url: str, users: SimulatedUsers, rng: np.random.Generator, tally: Tally) -> None:
    """One visit: /recommend, the user's clicks drawn from the true probabilities, /events."""
    request = users.draw(rng)
    status, answer = http_json("POST", f"{url}/recommend", users.body(request))
    if status != 200:
        raise SystemExit(f"simulate-ab: /recommend answered {status}: {answer}")
    arm = str(answer["arm"])
    tally.requests[arm] += 1
    tally.degraded += bool(answer["degraded"])
    items = [item["item_id"] for item in answer["items"]]
    positions = [int(item["position"]) for item in answer["items"]]
    p = users.click_probability(request, items, positions)
    clicked = rng.random(len(p)) < p
    tally.impressions[arm] += len(items)
    tally.clicks[arm] += int(clicked.sum())
    tally.expected_clicks[arm] = tally.expected_clicks.get(arm, 0.0) + float(p.sum())
    now = time.time()
    rid = answer["request_id"]
    events = [
        {
            "event_id": f"{rid}:{pos}:{kind}",
            "request_id": rid,
            "user_id": answer["user_id"],
            "item_id": item,
            "type": kind,
            "position": pos,
            "timestamp": now,
        }
        for item, pos, click in zip(items, positions, clicked, strict=True)
        for kind in (("impression", "click") if click else ("impression",))
    ]
    status, body = http_json("POST", f"{url}/events", {"events": events})
    if status >= 300:
        raise SystemExit(f"simulate-ab: /events answered {status}: {body}")


def _line(tally: Tally) -> str:
    return ", ".join(
        f"{arm} CTR {tally.clicks[arm] / max(tally.impressions[arm], 1):.4f}"
        for arm in sorted(tally.requests)
    )
