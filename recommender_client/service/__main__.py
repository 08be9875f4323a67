"""``python -m recommender_client.service``: run the ranking service."""

from recommender_client.service.cli import main

raise SystemExit(main())
