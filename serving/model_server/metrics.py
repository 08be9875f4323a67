"""Request metrics named as TF Serving names them, in Prometheus text exposition format."""

# TF Serving records `/tensorflow/serving/request_count` (labels model_name, status) and
# `/tensorflow/serving/request_latency` (labels model_name, API, entrypoint; microseconds,
# exponential buckets 10 * 1.8^i) and its Prometheus exporter renames `/` to `:`. A small
# in-house registry keeps those exact names: prometheus_client would append `_total` to
# counters, which dashboards built for TF Serving would not find.

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence

import grpc

REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"

# TF Serving: monitoring::Buckets::Exponential(10, 1.8, 33) for request/runtime latency (us).
LATENCY_BUCKETS_US: tuple[float, ...] = tuple(10 * 1.8**i for i in range(33))


def _label_text(names: Sequence[str], values: Sequence[str]) -> str:
    def escape(v: str) -> str:
        return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')

    return ",".join(f'{n}="{escape(v)}"' for n, v in zip(names, values, strict=True))


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else format(value, ".6g")


class _Histogram:
    """Cumulative bucket counts, sum and count for one label set."""

    __slots__ = ("counts", "sum", "count")

    def __init__(self, buckets: int) -> None:
        self.counts = [0] * (buckets + 1)
        self.sum = 0.0
        self.count = 0


class Metrics:
    """Thread-safe request counters and latency histograms with Prometheus exposition.

    Args:
        latency_buckets_us: upper bounds of the latency histogram buckets, microseconds.
    """

    def __init__(self, latency_buckets_us: Sequence[float] = LATENCY_BUCKETS_US) -> None:
        self._buckets = tuple(sorted(latency_buckets_us))
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = {}
        self._latency: dict[tuple[str, str, str], _Histogram] = {}

    def _observe(
        self, table: dict[tuple[str, str, str], _Histogram], key: tuple[str, str, str], us: float
    ) -> None:
        hist = table.get(key)
        if hist is None:
            hist = table[key] = _Histogram(len(self._buckets))
        hist.counts[bisect.bisect_left(self._buckets, us)] += 1
        hist.sum += us
        hist.count += 1

    def record_request(
        self, model_name: str, api: str, entrypoint: str, code: grpc.StatusCode, latency_us: float
    ) -> None:
        """Count one request by status; successful ones also feed the latency histogram.

        Args:
            model_name: the requested model name.
            api: "Predict", "Classify", "Regress", "MultiInference", "GetModelMetadata" ...
            entrypoint: "GRPC" or "REST".
            code: the final status code.
            latency_us: wall time of the request in microseconds.
        """
        with self._lock:
            key = (model_name, code.name)
            self._counts[key] = self._counts.get(key, 0) + 1
            if code == grpc.StatusCode.OK:
                self._observe(self._latency, (model_name, api, entrypoint), latency_us)

    def request_count(self, model_name: str, status: str = "OK") -> int:
        """Current value of request_count{model_name, status}."""
        with self._lock:
            return self._counts.get((model_name, status), 0)

    def _histogram_lines(
        self, name: str, labels: Sequence[str], table: dict[tuple[str, str, str], _Histogram]
    ) -> list[str]:
        lines = [f"# TYPE {name} histogram"]
        for key in sorted(table):
            hist = table[key]
            base = _label_text(labels, key)
            cumulative = 0
            for bound, count in zip(self._buckets, hist.counts, strict=False):
                cumulative += count
                lines.append(f'{name}_bucket{{{base},le="{_number(bound)}"}} {cumulative}')
            lines.append(f'{name}_bucket{{{base},le="+Inf"}} {hist.count}')
            lines.append(f"{name}_sum{{{base}}} {_number(hist.sum)}")
            lines.append(f"{name}_count{{{base}}} {hist.count}")
        return lines

    def exposition(self) -> str:
        """All metrics in Prometheus text format (version 0.0.4)."""
        with self._lock:
            lines = [f"# TYPE {REQUEST_COUNT} counter"]
            for (model, status), value in sorted(self._counts.items()):
                lines.append(
                    f"{REQUEST_COUNT}{{{_label_text(('model_name', 'status'), (model, status))}}} {value}"
                )
            lines += self._histogram_lines(
                REQUEST_LATENCY, ("model_name", "API", "entrypoint"), self._latency
            )
        return "\n".join(lines) + "\n"
