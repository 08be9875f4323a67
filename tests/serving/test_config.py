"""Config files: parsing with TF Serving's texts, and generation for the official server."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving import tfserving_config as tc
from serving.model_server.config import (
    ConfigError,
    ServerOptions,
    initial_model_config,
    parse_batching_parameters,
    parse_model_server_config,
    prometheus_path,
    read_model_server_config,
    read_monitoring_config,
)


def test_reads_tf_serving_model_config(tfserving_testdata: Path) -> None:
    text = (tfserving_testdata / "good_model_config.txt").read_text()
    text = text.replace("${TEST_HALF_PLUS_TWO_DIR}", "/m/two").replace(
        "${TEST_HALF_PLUS_THREE_DIR}", "/m/three"
    )
    config = parse_model_server_config(text)
    assert [(c.name, c.base_path, c.model_platform) for c in config.model_config_list.config] == [
        ("half_plus_two", "/m/two", "tensorflow"),
        ("half_plus_three", "/m/three", "tensorflow"),
    ]


def test_bad_model_config_has_tf_serving_error_text(tfserving_testdata: Path) -> None:
    path = tfserving_testdata / "bad_model_config.txt"
    with pytest.raises(
        ConfigError,
        match=r"^Error parsing text-format tensorflow\.serving\.ModelServerConfig: .*bad_model_config\.txt",
    ):
        read_model_server_config(path)
    with pytest.raises(ConfigError, match=r"Cannot read model config file .*missing\.config"):
        read_model_server_config(path.parent / "missing.config")


def test_monitoring_and_batching_files(tfserving_testdata: Path) -> None:
    monitoring = read_monitoring_config(tfserving_testdata / "monitoring_config.txt")
    assert prometheus_path(monitoring) == "/monitoring/prometheus/metrics"
    assert prometheus_path(None) is None
    with pytest.raises(
        ConfigError, match="^Last entry in allowed_batch_sizes must match max_batch_size; last entry"
    ):
        parse_batching_parameters("max_batch_size { value: 8 } allowed_batch_sizes: 2 allowed_batch_sizes: 4")
    with pytest.raises(
        ConfigError, match=r"Error parsing text-format tensorflow\.serving\.BatchingParameters"
    ):
        parse_batching_parameters("max_batch_size: oops")


def test_server_options_validation() -> None:
    with pytest.raises(
        ConfigError,
        match="^Both server_options.model_base_path and server_options.model_config_file are empty!$",
    ):
        ServerOptions()
    with pytest.raises(ConfigError, match="^server_options.batching_parameters_file is set without setting"):
        ServerOptions(model_base_path="/a", batching_parameters_file="/b")
    with pytest.raises(ConfigError, match="^Either use_alts_credentials must be false or ssl_config_file"):
        ServerOptions(model_base_path="/a", use_alts_credentials=True, ssl_config_file="/s")
    # TF Serving ignores the base path when a config file is given.
    assert ServerOptions(model_base_path="/a", model_config_file="/b").model_config_file == "/b"
    with pytest.raises(ConfigError, match="--rest_api_port=70000 is not a port number"):
        ServerOptions(model_base_path="/a", rest_api_port=70000)
    config = initial_model_config(ServerOptions(model_name="ctr", model_base_path="/models/ctr"))
    entry = config.model_config_list.config[0]
    assert (entry.name, entry.base_path, entry.model_platform) == ("ctr", "/models/ctr", "tensorflow")


def test_generated_configs_round_trip(tmp_path: Path) -> None:
    models = [
        tc.ModelSettings(
            "ctr", "/models/ctr", policy="latest", num_versions=2, labels={"stable": 3, "canary": 4}
        ),
        tc.ModelSettings("old", "/models/old", policy="specific", versions=(1, 2)),
        tc.ModelSettings("every", "/models/every", policy="all"),
    ]
    written = tc.write_configs(
        tmp_path,
        models,
        tc.BatchingSettings(max_batch_size=64, allowed_batch_sizes=(16, 64)),
        tc.MonitoringSettings(),
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "batching.config",
        "models.config",
        "monitoring.config",
    ]
    config = read_model_server_config(written["models"])
    ctr, old, every = config.model_config_list.config
    assert ctr.model_version_policy.latest.num_versions == 2
    assert dict(ctr.version_labels) == {"stable": 3, "canary": 4}
    assert list(old.model_version_policy.specific.versions) == [1, 2]
    assert every.model_version_policy.WhichOneof("policy_choice") == "all"
    batching = parse_batching_parameters(written["batching"].read_text())
    assert (batching.max_batch_size.value, list(batching.allowed_batch_sizes)) == (64, [16, 64])
    assert prometheus_path(read_monitoring_config(written["monitoring"])) == "/monitoring/prometheus/metrics"


def test_generation_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="policy 'newest' is not latest, all or specific"):
        tc.ModelSettings("m", "/m", policy="newest")
    with pytest.raises(ValueError, match="unique"):
        tc.model_server_config([tc.ModelSettings("m", "/a"), tc.ModelSettings("m", "/b")])
    with pytest.raises(ConfigError, match="allowed_batch_sizes"):
        tc.batching_parameters(tc.BatchingSettings(max_batch_size=8, allowed_batch_sizes=(4,)))


def test_docker_command_uses_the_generated_files() -> None:
    argv = tc.docker_command("/srv/models", "/srv/config")
    assert argv[:3] == ["docker", "run", "--rm"]
    assert "/srv/models:/models:ro" in argv and "tensorflow/serving:2.21.0" in argv
    assert argv[argv.index("tensorflow/serving:2.21.0") + 1 :] == [
        "--model_config_file=/config/models.config",
        "--model_config_file_poll_wait_seconds=60",
        "--enable_batching=true",
        "--batching_parameters_file=/config/batching.config",
        "--monitoring_config_file=/config/monitoring.config",
    ]
    assert "--model_config_file=/config/models.config" in argv
    assert "--batching_parameters_file=/config/batching.config" in argv
    assert "--monitoring_config_file=/config/monitoring.config" in argv


def test_session_threading_flags_follow_tensorflow_model_server() -> None:
    assert ServerOptions(model_base_path="/a").session_config() is None  # TensorFlow chooses
    both = ServerOptions(model_base_path="/a", tensorflow_session_parallelism=3).session_config()
    assert (both.intra_op_parallelism_threads, both.inter_op_parallelism_threads) == (3, 3)
    inline = ServerOptions(
        model_base_path="/a", tensorflow_intra_op_parallelism=2, tensorflow_inter_op_parallelism=-1
    ).session_config()
    assert (inline.intra_op_parallelism_threads, inline.inter_op_parallelism_threads) == (2, -1)
    for flag in ("tensorflow_session_parallelism", "tensorflow_intra_op_parallelism"):
        with pytest.raises(ConfigError, match=f"--{flag}=-1 must be >= 0"):
            ServerOptions(model_base_path="/a", **{flag: -1})
    split = ServerOptions(
        model_base_path="/a", tensorflow_intra_op_parallelism=2, tensorflow_inter_op_parallelism=1
    ).session_config()
    assert (split.intra_op_parallelism_threads, split.inter_op_parallelism_threads) == (2, 1)
    # server.cc: the pair applies when either is positive (the other stays 0: TensorFlow chooses).
    alone = ServerOptions(
        model_base_path="/a", tensorflow_intra_op_parallelism=2, tensorflow_session_parallelism=3
    ).session_config()
    assert (alone.intra_op_parallelism_threads, alone.inter_op_parallelism_threads) == (2, 0)
    with pytest.raises(ConfigError, match="separately. You cannot configure all.$"):
        ServerOptions(
            model_base_path="/a",
            tensorflow_session_parallelism=1,
            tensorflow_intra_op_parallelism=1,
            tensorflow_inter_op_parallelism=1,
        )
