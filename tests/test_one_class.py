"""The one-class benchmark (make bench-anomaly): its split, its AUROC, one tiny real run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from sklearn.metrics import roc_auc_score

from autoencoders import config, threads
from autoencoders.benchmarks import __main__ as benchmarks_main
from autoencoders.benchmarks import one_class, one_class_report, one_class_run, one_class_scores

TINY = {
    "architecture": {"name": "dense", "hidden_units": [32], "latent_dim": 4},
    "objective": {"name": "plain", "loss": "bce"},
    "epochs": 2,
    "batch_size": 32,
    "steps_per_execution": 1,
    "candidates": ["reconstruction", "ssim+density"],
    "n_components": 2,
}


def test_task_split_against_a_hand_count() -> None:
    y_train = np.array([3, 1, 3, 0, 3, 9])
    y_val = np.array([0, 3, 3, 7])
    y_test = np.array([3, 0, 1, 3, 5, 3, 3, 8])
    index = one_class.task_split(y_train, y_val, y_test, (3,))
    assert index["train"].tolist() == [0, 2, 4]  # the training 3s: the only images fitted on
    assert index["val_normal"].tolist() == [1, 2]
    assert index["val_anomaly"].tolist() == [0, 3]
    # By hand: 4 threes in the test split are normal, the other 4 images anomalies.
    assert index["test_labels"].tolist() == [0, 1, 1, 0, 1, 0, 0, 1]
    nine = one_class.task_split(y_train, y_val, y_test, (0, 1, 3, 5, 7, 8, 9))
    assert nine["test_labels"].tolist() == [0, 0, 0, 0, 0, 0, 0, 0]


def test_no_index_of_one_split_reaches_another(mnist_small) -> None:
    splits = one_class.Splits(**mnist_small)
    for digit in range(10):
        index = one_class.task_split(splits.y_train, splits.y_val, splits.y_test, (digit,))
        assert set(np.unique(splits.y_train[index["train"]])) <= {digit}
        assert np.count_nonzero(splits.y_train == digit) == len(index["train"])
        assert len(index["val_normal"]) + len(index["val_anomaly"]) == len(splits.y_val)
        assert index["test_labels"].sum() == np.count_nonzero(splits.y_test != digit)


def test_config_rejects_an_unknown_score_in_one_line() -> None:
    with pytest.raises(config.ConfigError, match="anomaly_bench.candidates 'ssim\\+knn'"):
        config.from_mapping(
            one_class.OneClassConfig, {"candidates": ["ssim+knn"]}, "anomaly_bench"
        )
    with pytest.raises(config.ConfigError, match="unknown key"):
        config.from_mapping(one_class.OneClassConfig, {"epoch": 3}, "anomaly_bench")


def test_summary_spreads_against_numpy() -> None:
    tasks = [
        {
            "normal": [d], "seed": s, "test_auroc": 0.9 + 0.01 * d + 0.001 * s,
            "score": "ssim", "validation_auroc": {"ssim": 0.8 + 0.01 * s},
        }
        for s in (0, 1, 2)
        for d in (0, 1)
    ]  # fmt: skip
    ensemble = [
        {"normal": [d], "seeds": 3, "score": "ssim", "validation_auroc": {"ssim": 0.85 + d / 10},
         "test_auroc": 0.95 + 0.03 * d}
        for d in (0, 1)
    ]  # fmt: skip
    settings = one_class.OneClassConfig(digits=(0, 1))
    report = one_class_report.summarise(
        {"tasks": tasks, "onnx_checks": [], "wall_seconds": 10.0, "ensemble": ensemble},
        settings,
        {
            "cpu": "x",
            "cores": 2,
            "load_average_before": [1, 1, 1],
            "load_average_after": [2, 2, 2],
        },
    )
    assert report["per_digit"]["1"]["mean"] == pytest.approx(0.911)
    assert report["per_digit"]["1"]["std"] == pytest.approx(np.std([0.91, 0.911, 0.912], ddof=1))
    assert report["overall"]["mean"] == pytest.approx(np.mean([0.905, 0.906, 0.907]))
    assert report["overall"]["lowest_digit_mean"] == pytest.approx(0.901)
    assert report["targets"]["met"] == {
        "mean_auroc": False,
        "min_digit_auroc": False,
        "wall_seconds": True,
    }
    for name, anchor in one_class_report.ANCHORS.items():
        if anchor["digits"] is not None:  # each paper's row averages to its quoted mean
            assert np.mean(anchor["digits"]) == pytest.approx(anchor["mean"], abs=6e-4), name
    markdown = one_class_report.render_markdown(report)
    assert "| 0 | 1 | mean |" in markdown
    assert report["ensemble"]["mean"] == pytest.approx(0.965)
    assert report["ensemble"]["lowest_digit"] == pytest.approx(0.95)
    assert report["ensemble"]["met"] == {"mean_auroc": False, "min_digit_auroc": False}
    assert report["ensemble"]["validation_mean"] == pytest.approx(0.9)
    assert report["ensemble"]["single_model_validation_mean"] == pytest.approx(0.81)
    assert "| 0.950 | 0.980 | **0.9650** |" in markdown


def test_shared_candidates_equal_each_candidate_fitted_alone() -> None:
    """fit_candidates fits every score once and shares it: each candidate's AUROC and ScoreModel
    must be what anomaly.fit_score_model gives that candidate on its own."""
    from autoencoders import anomaly

    rng = np.random.default_rng(3)

    def outputs(count: int, shift: float) -> anomaly.ScoreInputs:
        images = rng.random((count, 12, 12, 1), dtype=np.float32)
        noise = rng.normal(0, 0.05 + shift, images.shape).astype(np.float32)
        codes = rng.normal(shift * 10, 1, (count, 3)).astype(np.float32)
        return anomaly.ScoreInputs(images, np.clip(images + noise, 0, 1), codes)

    candidates = ["reconstruction", "ssim", "density", "ssim+density", "density+reconstruction"]
    settings = config.from_mapping(
        one_class.OneClassConfig, {"candidates": candidates, "n_components": 2}, "anomaly_bench"
    )
    train_codes = rng.normal(0, 1, (200, 3)).astype(np.float32)
    normal, anomalous = outputs(60, 0.0), outputs(40, 0.1)
    _, fitted, shared = one_class_scores.fit_candidates(
        settings, train_codes, normal, anomalous, 0
    )
    labels = np.r_[np.zeros(60, np.int64), np.ones(40, np.int64)]
    best, figures = one_class_scores.rank(shared, labels)
    for candidate in candidates:
        alone = anomaly.fit_score_model(train_codes, normal, settings.score_config(candidate, 0))
        scores = np.r_[alone.score(normal), alone.score(anomalous)]
        assert figures[candidate] == roc_auc_score(labels, scores), candidate
        assert fitted[candidate].to_dict() == alone.to_dict(), candidate
        np.testing.assert_array_equal(fitted[candidate].score(anomalous), alone.score(anomalous))
    assert figures[best] == max(figures.values())
    assert len(set(figures.values())) > 1  # the candidates really differ on these images


def test_the_seed_ensemble_averages_standardised_scores_and_chooses_on_validation() -> None:
    rng = np.random.default_rng(5)
    labels = np.r_[np.zeros(50, np.int64), np.ones(30, np.int64)]
    test_labels = np.r_[np.zeros(70, np.int64), np.ones(40, np.int64)]

    def seed_part() -> dict:
        # "good" separates the classes a little in every seed, with independent noise;
        # "bad" is noise alone.
        val = {"good": labels * 0.6 + rng.normal(size=80), "bad": rng.normal(size=80)}
        test = {"good": test_labels * 0.6 + rng.normal(size=110), "bad": rng.normal(size=110)}
        return {"val": val, "labels": labels, "test": test, "test_labels": test_labels}

    parts = [seed_part() for _ in range(3)]
    record = one_class_scores.ensemble(parts)
    average = {c: np.mean([p["val"][c] for p in parts], axis=0) for c in ("good", "bad")}
    for candidate, values in average.items():  # scikit-learn's AUROC of the average
        assert record["validation_auroc"][candidate] == roc_auc_score(labels, values)
    assert record["score"] == "good" and record["seeds"] == 3
    test = np.mean([p["test"]["good"] for p in parts], axis=0)
    assert record["test_auroc"] == roc_auc_score(test_labels, test)
    # Averaging independent noise separates better than a single seed does (here, each seed).
    singles = [roc_auc_score(labels, p["val"]["good"]) for p in parts]
    assert record["validation_auroc"]["good"] > max(singles)
    # Before the test split is read there is no test figure.
    unread = [{"val": p["val"], "labels": labels} for p in parts]
    assert "test_auroc" not in one_class_scores.ensemble(unread)


@pytest.mark.slow
def test_tiny_end_to_end_run(mnist_small, tmp_path) -> None:
    splits = one_class.Splits(**mnist_small)
    settings = config.from_mapping(
        one_class.OneClassConfig, {**TINY, "digits": [1], "seeds": [0]}, "anomaly_bench"
    )
    first = one_class.run_task(settings, splits, (1,), seed=0)
    hidden = first.pop("_")
    labels, scores = hidden["test_labels"], hidden["test_scores"]
    assert labels.sum() == np.count_nonzero(splits.y_test != 1)
    assert first["test_auroc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert first["train_images"] == np.count_nonzero(splits.y_train == 1)
    assert first["score"] in TINY["candidates"]
    # The test scores, taken from the one pass of every score, are the chosen score model's own.
    own = hidden["score_model"].score(hidden["test_outputs"])
    np.testing.assert_array_equal(scores, own)
    assert hidden["ensemble"]["test"][first["score"]] is scores

    # Another test split changes the test AUROC only: the model, the score's fit and the
    # choice are made without it.
    other = one_class.Splits(**{**mnist_small, "x_test": mnist_small["x_test"][::-1].copy()})
    second = one_class.run_task(settings, other, (1,), seed=0)
    second_hidden = second.pop("_")
    assert second["validation_auroc"] == first["validation_auroc"]
    assert second["score"] == first["score"]
    assert second_hidden["score_model"].to_dict() == hidden["score_model"].to_dict()
    # the same images in other batches: float32 sums in another order
    np.testing.assert_allclose(second_hidden["test_scores"], scores[::-1], rtol=1e-5, atol=1e-5)

    # ONNX Runtime alone, from the export's scorer graph, gives the same AUROC to 4 digits.
    value = one_class.onnx_auroc(hidden["model"], hidden["score_model"], splits.x_test, labels)
    assert round(value, 4) == round(first["test_auroc"], 4)


@pytest.mark.slow
def test_records_do_not_depend_on_the_workers(mnist_small) -> None:
    """Every task runs single-threaded in a spawned worker: one worker running the tasks in
    turn and two running them side by side give the same records, bit for bit. With
    ``leave_one_out``, a task a digit follows with the other digits normal, trained on a
    seeded subsample of their training images."""
    splits = one_class.Splits(**mnist_small)
    runs = []
    for workers in (1, 2):
        settings = config.from_mapping(
            one_class.OneClassConfig,
            {**TINY, "digits": [0, 1], "seeds": [0], "workers": workers,
             "leave_one_out": True, "leave_one_out_images": 100},
            "anomaly_bench",
        )  # fmt: skip
        result = one_class_run.run_benchmark(settings, splits, log=lambda line: None)
        assert result["workers"] == workers
        records = result["tasks"] + result["leave_one_out"]
        runs.append([{k: v for k, v in r.items() if k != "seconds"} for r in records])
    assert [r["normal"] for r in runs[0][:2]] == [[0], [1]]
    assert runs[0] == runs[1]
    assert all(set(r["validation_auroc"]) == set(TINY["candidates"]) for r in runs[0])
    present = sorted(set(np.unique(splits.y_train).tolist()))
    assert [r["anomalous"] for r in runs[0][2:]] == [0, 1]
    for record in runs[0][2:]:
        normal = [digit for digit in present if digit != record["anomalous"]]
        assert record["normal"] == normal
        available = np.count_nonzero(np.isin(splits.y_train, normal))
        assert record["train_images"] == min(100, available)


@pytest.mark.slow
def test_command_writes_the_reports(processed_dir, tmp_path) -> None:
    params = tmp_path / "params.yaml"
    settings = {**TINY, "digits": [0, 1], "seeds": [0, 1], "figure_digit": 1}
    params.write_text(yaml.safe_dump({"anomaly_bench": settings}))
    benchmarks_main.main(
        [
            "one-class",
            "--params",
            str(params),
            "--processed-dir",
            processed_dir,
            "--output-dir",
            str(tmp_path / "reports"),
        ]
    )
    report = (tmp_path / "reports" / "anomaly_bench.json").read_text()
    assert '"equal_to_4_digits": true' in report
    assert (tmp_path / "reports" / "anomaly_maps.png").stat().st_size > 10_000
    markdown = (tmp_path / "reports" / "anomaly_bench.md").read_text()
    assert "OCGAN" in markdown
    workers = min(threads.usable_cores(), 4)  # workers 0: one per usable core, 4 tasks
    assert f"in {workers} worker processes side by side" in markdown
    assert "ensemble of the 2 seeds' models" in markdown
    ensemble = json.loads(report)["ensemble"]
    assert sorted(ensemble["per_digit"]) == ["0", "1"]
    assert all(record["seeds"] == 2 for record in ensemble["records"])


@pytest.mark.slow
def test_scorer_onnx_ssim_of_a_conv_autoencoder(mnist_small) -> None:
    from autoencoders import anomaly

    splits = one_class.Splits(**mnist_small)
    architecture = {
        "name": "deep_conv",
        "filters": [8, 16, 32, 64],
        "strides": [2, 2, 2, 2],
        "hidden_units": [50],
        "latent_dim": 8,
        "code_activation": "linear",
    }
    settings = one_class.OneClassConfig(architecture=architecture, epochs=1, batch_size=32)
    model, _ = one_class.train_model(settings, splits.x_train, splits.x_val[:100], seed=0)
    score_model = anomaly.fit_score_model(
        model.encode(splits.x_train),
        anomaly.keras_outputs(model, splits.x_val),
        settings.score_config("ssim", seed=0),
    )
    labels = (splits.y_test != 1).astype(np.int64)
    keras_value = anomaly.auroc(
        labels, score_model.score(anomaly.keras_outputs(model, splits.x_test))
    )
    onnx_value = one_class.onnx_auroc(model, score_model, splits.x_test, labels)
    assert round(onnx_value, 4) == round(keras_value, 4)
