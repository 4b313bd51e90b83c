import pytest

from vla_rl.plot import plot_run
from vla_rl.trainers.metrics import MetricsLogger, read_metrics


def test_plot_draws_the_logged_curves(tmp_path):
    log = MetricsLogger(tmp_path, tensorboard=False)
    for i in range(1, 6):
        log.log(i, {"rollout/success": i / 10, "actor/entropy": 2.0 - i / 10, "perf/env_steps_per_s": 100.0 * i})
    log.close()
    (tmp_path / "metrics.jsonl").open("a").write('{"step": 6, "rollout/succ')  # a torn line from a crash
    assert len(read_metrics(tmp_path)) == 5
    png = plot_run(tmp_path)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_plot_refuses_a_folder_without_metrics(tmp_path):
    with pytest.raises(FileNotFoundError, match="metrics.jsonl"):
        plot_run(tmp_path)
