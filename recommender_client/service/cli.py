"""Command line: run the ranking service under uvicorn."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="recsys-ranker",
        description="Serve /recommend: recall, TF Serving scoring and operator rules. Settings come from "
        "RANKER_* environment variables or --env-file; the flags below override both.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--env-file", type=Path, help="dotenv file with RANKER_* settings")
    parser.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    parser.add_argument("--artifacts-dir", type=Path, help="recall artefacts folder")
    parser.add_argument("--contract", type=Path, dest="contract_path", help="feature contract JSON")
    parser.add_argument("--rules", type=Path, dest="rules_path", help="operator rules YAML")
    parser.add_argument("--protocol", choices=["grpc", "rest"])
    parser.add_argument("--grpc-target", help="host:port of TF Serving's gRPC API")
    parser.add_argument("--rest-url", help="base URL of TF Serving's REST API")
    parser.add_argument("--model-name")
    parser.add_argument(
        "--served-log", type=Path, dest="served_log_path", help="JSON-lines log of served lists and features"
    )
    parser.add_argument("--events-log", type=Path, dest="events_log_path", help="JSON-lines log of /events")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import uvicorn

    from recommender_client.service.app import create_app
    from recommender_client.service.settings import Settings

    overrides = {
        key: getattr(args, key)
        for key in (
            "artifacts_dir",
            "contract_path",
            "rules_path",
            "protocol",
            "grpc_target",
            "rest_url",
            "model_name",
            "served_log_path",
            "events_log_path",
        )
        if getattr(args, key) is not None
    }
    try:
        settings = Settings(_env_file=args.env_file, **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        print(f"error: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level)
    return 0
