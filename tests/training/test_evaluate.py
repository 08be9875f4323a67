"""evaluate_predictions, compare, the report files and the evaluate CLI's scoring path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from training import metrics as m
from training import report
from training.evaluate import describe_run, evaluate_predictions, main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _frames(seed: int = 0, n: int = 1200) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A training frame over users 0..59 / items 0..29, and an evaluation frame that adds new ones."""
    rng = np.random.default_rng(seed)
    train = pd.DataFrame({"user_id": rng.integers(0, 60, 500), "item_id": rng.integers(0, 30, 500)})
    p_true = rng.beta(2.0, 6.0, n)
    test = pd.DataFrame(
        {
            "user_id": rng.integers(0, 90, n),  # 60..89 are new
            "item_id": rng.integers(0, 40, n),  # 30..39 are new
            "label": (rng.random(n) < p_true).astype(np.int64),
            "p_true": p_true,
        }
    )
    return train, test


def _noisy(p: np.ndarray, noise: float, seed: int) -> np.ndarray:
    logit = np.log(p / (1 - p)) + np.random.default_rng(seed).normal(0.0, noise, p.shape[0])
    return 1.0 / (1.0 + np.exp(-logit))


def test_evaluate_predictions_matches_independent_routes() -> None:
    train, test = _frames()
    scores = _noisy(test["p_true"].to_numpy(), 0.7, seed=1)
    y = test["label"].to_numpy()
    result = evaluate_predictions(test, scores, train_frame=train)

    assert (result["rows"], result["positives"]) == (1200, int(y.sum()))
    assert result["auc"] == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
    assert result["logloss"] == pytest.approx(log_loss(y, scores), abs=1e-12)
    assert result["oracle_auc"] == pytest.approx(roc_auc_score(y, test["p_true"]), abs=1e-12)
    assert result["oracle_gap"] == pytest.approx(result["oracle_auc"] - result["auc"])
    assert result["oracle_gap"] > 0  # noise only hurts ranking
    assert result["mean_prediction"] == pytest.approx(scores.mean())
    assert result["observed_ctr"] == pytest.approx(y.mean())
    assert result["calibration_ratio"] == pytest.approx(scores.mean() / y.mean())
    assert result["gauc"] == pytest.approx(m.gauc(y, scores, test["user_id"]))
    assert result["ece"] == pytest.approx(result["reliability"]["ece"])
    assert sum(result["reliability"]["counts"]) == 1200
    assert result["roc"]["fpr"][0] == 0.0 and result["roc"]["tpr"][-1] == 1.0
    assert len(result["roc"]["fpr"]) <= 200

    new_users = ~test["user_id"].isin(train["user_id"])
    new_items = ~test["item_id"].isin(train["item_id"])
    for name, mask in (
        ("user_new", new_users),
        ("user_returning", ~new_users),
        ("item_new", new_items),
        ("item_returning", ~new_items),
    ):
        part = result["slices"][name]
        assert part["rows"] == int(mask.sum()) > 0
        assert part["auc"] == pytest.approx(roc_auc_score(y[mask], scores[mask]), abs=1e-12)
        assert part["logloss"] == pytest.approx(log_loss(y[mask], scores[mask]), abs=1e-12)
        assert part["oracle_auc"] == pytest.approx(roc_auc_score(y[mask], test["p_true"][mask]), abs=1e-12)
    assert result["slices"]["user_new"]["rows"] + result["slices"]["user_returning"]["rows"] == 1200


def test_slice_with_one_class_reports_none_with_reason() -> None:
    train = pd.DataFrame({"user_id": [1, 2], "item_id": [10, 10]})
    test = pd.DataFrame(
        {"user_id": [1, 1, 2, 3, 3], "item_id": [10, 10, 10, 10, 10], "label": [1, 0, 1, 0, 0]}
    )
    result = evaluate_predictions(test, [0.9, 0.2, 0.6, 0.3, 0.1], train_frame=train)
    new_user = result["slices"]["user_new"]
    assert new_user["rows"] == 2 and new_user["auc"] is None
    assert "all 2 labels are 0" in new_user["undefined"]["auc"]
    assert new_user["logloss"] == pytest.approx(-(np.log(0.7) + np.log(0.9)) / 2)
    assert result["slices"]["item_new"]["rows"] == 0 and result["slices"]["item_new"]["auc"] is None
    assert "oracle_auc" not in result  # no p_true column
    # GAUC only counts user 1 (user 2 has one class, user 3 no click): AUC 1 over 2 impressions.
    assert result["gauc"] == pytest.approx(1.0) and result["gauc_users_skipped"] == 2


def test_without_user_column_ranking_metrics_are_none() -> None:
    test = pd.DataFrame({"label": [0, 1, 0, 1]})
    result = evaluate_predictions(test, [0.1, 0.7, 0.4, 0.3])
    assert result["auc"] == pytest.approx(0.75)
    assert result["gauc"] is None and result["ndcg"] is None and result["hit_rate"] is None
    assert result["undefined"]["gauc"] == "no user column"
    assert "slices" not in result


def test_evaluate_predictions_errors() -> None:
    test = pd.DataFrame({"user_id": [1, 2], "label": [0, 1]})
    with pytest.raises(m.MetricError, match="missing column 'label'"):
        evaluate_predictions(test.drop(columns="label"), [0.1, 0.2])
    with pytest.raises(m.MetricError, match="got 3 scores for 2 evaluation rows"):
        evaluate_predictions(test, [0.1, 0.2, 0.3])
    with pytest.raises(m.MetricError, match=r"row 0 has -0.5"):
        evaluate_predictions(test, [-0.5, 0.2])
    with pytest.raises(m.MetricError, match="all 2 labels are 1"):
        evaluate_predictions(test.assign(label=[1, 1]), [0.1, 0.2])
    with pytest.raises(m.MetricError, match="training frame: missing column 'item_id'"):
        evaluate_predictions(test.assign(item_id=[5, 6]), [0.1, 0.2], train_frame=test)


def _results() -> dict[str, list[dict]]:
    train, test = _frames(seed=3)
    p = test["p_true"].to_numpy()
    return {
        name: [
            evaluate_predictions(test, _noisy(p, noise, seed), train_frame=train) | {"seed": seed}
            for seed in (0, 1)
        ]
        for name, noise in (("lr", 1.2), ("deepfm", 0.4))
    }


def test_compare_mean_and_sample_std_over_seeds() -> None:
    results = _results()
    summary = report.compare(results)
    assert summary["rows"] == 1200 and summary["k"] == 10
    for name in ("lr", "deepfm"):
        aucs = [r["auc"] for r in results[name]]
        stats = summary["models"][name]["metrics"]["auc"]
        assert stats == {
            "mean": pytest.approx(np.mean(aucs)),
            "std": pytest.approx(np.std(aucs, ddof=1)),
            "n": 2,
        }
        new_aucs = [r["slices"]["user_new"]["auc"] for r in results[name]]
        assert summary["models"][name]["metrics"]["user_new.auc"]["mean"] == pytest.approx(np.mean(new_aucs))
        assert summary["models"][name]["seed_values"] == [0, 1]
    assert "seed" not in summary["models"]["lr"]["metrics"]
    assert (
        summary["models"]["deepfm"]["metrics"]["auc"]["mean"]
        > summary["models"]["lr"]["metrics"]["auc"]["mean"]
    )


def test_compare_rejects_mixed_splits_and_empty_input() -> None:
    results = _results()
    results["lr"][1] = results["lr"][1] | {"rows": 999}
    with pytest.raises(report.ReportError, match=r"'lr' seed #1 saw 999 rows.*not the same split"):
        report.compare(results)
    with pytest.raises(report.ReportError, match="no model results"):
        report.compare({})
    with pytest.raises(report.ReportError, match="'x' has no results"):
        report.compare({"x": []})


def test_markdown_table_shows_the_computed_numbers() -> None:
    results = _results()
    summary = report.compare(results)
    table = report.markdown_table(summary)
    header = table.splitlines()[0]
    for column in ("AUC", "GAUC", "Logloss", "ECE", "NDCG@10", "HR@10", "Gap to oracle AUC"):
        assert column in header
    lr = summary["models"]["lr"]["metrics"]
    lr_row = next(line for line in table.splitlines() if line.startswith("| lr | 2 |"))
    for key in ("auc", "gauc", "logloss", "ece", "ndcg", "hit_rate", "oracle_gap"):
        assert f"{lr[key]['mean']:.4f} ± {lr[key]['std']:.4f}" in lr_row
    assert "| deepfm | user_new |" in table

    single = report.compare({"only": [{"rows": 4, "positives": 2, "auc": 0.75, "gauc": None}]})
    single_table = report.markdown_table(single)
    assert "| only | 1 | 0.7500 | n/a |" in single_table
    assert "oracle" not in single_table


def test_write_report_files_round_trip(tmp_path: Path) -> None:
    from matplotlib.image import imread

    results = _results()
    paths = report.write_report(results, tmp_path / "out")
    assert set(paths) == {"json", "markdown", "roc", "calibration"}
    for kind in ("roc", "calibration"):
        data = paths[kind].read_bytes()
        assert data.startswith(PNG_MAGIC)
        assert imread(paths[kind]).shape == (600, 600, 4)
    loaded = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert loaded["results"] == json.loads(json.dumps(results))
    assert loaded["summary"] == json.loads(json.dumps(report.compare(results)))
    text = paths["markdown"].read_text(encoding="utf-8")
    assert "one split: 1200 rows" in text
    assert f"{loaded['summary']['models']['deepfm']['metrics']['auc']['mean']:.4f}" in text
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "calibration.png",
        "evaluation.json",
        "report.md",
        "roc.png",
    ]  # no temporary files left behind
    assert {p.stat().st_mode & 0o777 for p in paths.values()} == {0o644}


def test_write_json_is_strict(tmp_path: Path) -> None:
    target = report.write_json(
        tmp_path / "a" / "x.json", {"nan": float("nan"), "n": np.int64(3), "v": np.array([0.5, np.inf])}
    )
    assert json.loads(target.read_text(encoding="utf-8")) == {"nan": None, "n": 3, "v": [0.5, None]}


def test_describe_run_reads_name_and_seed(tmp_path: Path) -> None:
    run_dir = tmp_path / "deepfm_run"
    run_dir.mkdir()
    with pytest.raises(FileNotFoundError, match="has no model.keras"):
        describe_run(str(run_dir))
    (run_dir / "model.keras").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="has no feature_contract.json"):
        describe_run(str(run_dir))
    (run_dir / "feature_contract.json").write_text("{}")
    assert describe_run(str(run_dir)).name == "deepfm_run"
    (run_dir / "config.json").write_text(json.dumps({"model": "deepfm", "seed": 7, "data": "synthetic"}))
    run = describe_run(str(run_dir))
    assert (run.name, run.seed, run.config["data"]) == ("deepfm", 7, "synthetic")
    assert describe_run(f"big={run_dir}").name == "big"


def test_cli_reports_bad_input_before_loading_anything(tmp_path: Path, capsys) -> None:
    assert main(["--model", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert "missing has no model.keras" in capsys.readouterr().err
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "model.keras").write_bytes(b"")
    (run_dir / "feature_contract.json").write_text("{}")
    assert main(["--model", str(run_dir), "--out", str(tmp_path / "o")]) == 2
    assert "no --data given" in capsys.readouterr().err
    assert main(["--model", str(run_dir), "--data", "synthetic", "--data-option", "rows", "--out", "o"]) == 2
    assert "'rows' must look like KEY=VALUE" in capsys.readouterr().err


def _save_tiny_model(directory: Path, weights: list[float], bias: float, seed: int) -> None:
    """A real Keras model over a contract (numeric, string and int inputs) with fixed weights."""
    import keras

    from training.features import Feature, FeatureContract

    contract = FeatureContract(
        features=(
            Feature("x", "numeric", "item"),
            Feature("genre", "categorical_string", "item", vocabulary=("a", "b")),
            Feature("hour", "categorical_int", "context", vocabulary=(1, 2)),
        )
    )
    x = keras.Input(shape=(), dtype="float32", name="x")
    genre = keras.Input(shape=(), dtype="string", name="genre")
    hour = keras.Input(shape=(), dtype="int64", name="hour")
    genre_id = keras.layers.StringLookup(vocabulary=["a", "b"], num_oov_indices=1)(genre)
    hour_id = keras.layers.IntegerLookup(vocabulary=[1, 2], num_oov_indices=1)(hour)
    columns = [keras.layers.Reshape((1,))(keras.ops.cast(t, "float32")) for t in (x, genre_id, hour_id)]
    dense = keras.layers.Dense(1, activation="sigmoid")
    output = keras.layers.Reshape(())(dense(keras.layers.Concatenate()(columns)))
    model = keras.Model({"x": x, "genre": genre, "hour": hour}, output)
    dense.set_weights([np.array(weights, dtype=np.float32).reshape(3, 1), np.array([bias], dtype=np.float32)])
    directory.mkdir(parents=True)
    model.save(directory / "model.keras")
    contract.save(directory)
    (directory / "config.json").write_text(json.dumps({"model": "tiny", "seed": seed}))


def test_run_evaluation_scores_saved_keras_models(tmp_path: Path) -> None:
    from training.evaluate import run_evaluation

    rng = np.random.default_rng(11)
    n = 5000  # more than one scoring batch
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=n).astype(np.float32),
            "genre": rng.choice(["a", "b", "unseen"], n),
            "hour": rng.integers(1, 4, n),
            "user_id": rng.integers(0, 100, n),
            "item_id": rng.integers(0, 20, n),
        }
    )
    genre_id = frame["genre"].map({"a": 1, "b": 2, "unseen": 0}).to_numpy()
    hour_id = np.where(frame["hour"] == 3, 0, frame["hour"]).astype(float)
    setups = {0: ([1.0, 0.5, -0.25], -1.0), 1: ([0.8, 0.1, 0.3], -1.5)}
    expected = {
        seed: 1 / (1 + np.exp(-(w[0] * frame["x"] + w[1] * genre_id + w[2] * hour_id + b))).to_numpy()
        for seed, (w, b) in setups.items()
    }
    frame["label"] = (rng.random(n) < expected[0]).astype(np.int64)
    for seed, (w, b) in setups.items():
        _save_tiny_model(tmp_path / f"run{seed}", w, b, seed)

    runs = [describe_run(str(tmp_path / f"run{seed}")) for seed in setups]
    results = run_evaluation(runs, frame, train_frame=frame.iloc[:2500], batch_size=2048)
    assert list(results) == ["tiny"] and [r["seed"] for r in results["tiny"]] == [0, 1]
    for seed, result in zip(setups, results["tiny"], strict=True):
        want = evaluate_predictions(frame, expected[seed], train_frame=frame.iloc[:2500])
        assert result["auc"] == pytest.approx(want["auc"], abs=1e-6)
        assert result["logloss"] == pytest.approx(want["logloss"], abs=1e-6)
        assert result["slices"]["user_new"]["rows"] == want["slices"]["user_new"]["rows"]
    from training.features import ContractError

    with pytest.raises(ContractError, match="missing feature columns \\['genre'\\]"):
        run_evaluation(runs[:1], frame.drop(columns="genre"), train_frame=None)


def test_cli_rejects_models_trained_on_different_data(tmp_path: Path, capsys) -> None:
    for seed, rows in ((0, 1000), (1, 2000)):
        run_dir = tmp_path / f"run{seed}"
        run_dir.mkdir()
        (run_dir / "model.keras").write_bytes(b"")
        (run_dir / "feature_contract.json").write_text("{}")
        config = {"model": "lr", "seed": seed, "data": "synthetic", "data_options": {"num_rows": rows}}
        (run_dir / "config.json").write_text(json.dumps(config))
    argv = [
        "--model",
        str(tmp_path / "run0"),
        "--model",
        str(tmp_path / "run1"),
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(argv) == 2
    assert "different 'data_options'" in capsys.readouterr().err


def test_load_model_names_the_unloadable_file(tmp_path: Path) -> None:
    from training.evaluate import EvaluationError, load_model

    (tmp_path / "model.keras").write_bytes(b"not a zip archive")
    with pytest.raises(EvaluationError, match=r"cannot load .*model\.keras"):
        load_model(tmp_path)
