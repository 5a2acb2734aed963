"""tf.distribute: MirroredStrategy on 2 logical CPUs, MultiWorkerMirroredStrategy with 2 local workers.

Each run is a subprocess: logical devices and multi-worker strategies must be
set up before TensorFlow executes anything, which a pytest process has long
done.  Timeouts are bounded and every started process is stopped.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from tfadvq.config import dump_yaml
from test_training import tiny_config  # tests/ is on sys.path under pytest

_DRIVER = r'''
import json, sys
from tfadvq.compat import tf
if sys.argv[3] == "mirrored":
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from tfadvq import strategies, training
from tfadvq.train_config import load_config
strategy = strategies.make_strategy(sys.argv[3])
run = training.train(load_config(sys.argv[1]), sys.argv[2], strategy=strategy, verbose=0)
print(json.dumps({"replicas": strategy.num_replicas_in_sync, "chief": strategies.is_chief(strategy),
                  "model": str(run.model)}))
'''

TIMEOUT = 180


def _env(**extra) -> dict[str, str]:
    return dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2", **extra)


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _setup(tiny_corpus, tmp_path):
    config = tiny_config(tiny_corpus, epochs=2, steps_per_epoch=2)
    dump_yaml(config, tmp_path / "c.yaml")
    (tmp_path / "driver.py").write_text(_DRIVER)
    return [sys.executable, str(tmp_path / "driver.py"), str(tmp_path / "c.yaml"), str(tmp_path / "run")]


def _report(stdout: bytes) -> dict:
    return json.loads(stdout.decode().strip().splitlines()[-1])


def test_mirrored_strategy_on_two_logical_cpus(tiny_corpus, tmp_path):
    command = _setup(tiny_corpus, tmp_path) + ["mirrored"]
    done = subprocess.run(command, env=_env(), capture_output=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    report = _report(done.stdout)
    assert report["replicas"] == 2
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert len(history["loss"]) == 2 and all(l == l for l in history["loss"])  # finite, not NaN
    assert (tmp_path / "run" / "model.keras").is_file()


def test_multi_worker_strategy_with_two_local_workers(tiny_corpus, tmp_path):
    command = _setup(tiny_corpus, tmp_path) + ["multi_worker"]
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(2)]}
    workers = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(
            TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})))
        for i in range(2)
    ]
    try:
        outputs = [w.communicate(timeout=TIMEOUT) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait(timeout=10)
    for w, (_, err) in zip(workers, outputs):
        assert w.returncode == 0, err.decode()[-3000:]
    reports = [_report(out) for out, _ in outputs]
    assert [r["replicas"] for r in reports] == [2, 2]
    assert [r["chief"] for r in reports] == [True, False]
    run = tmp_path / "run"
    assert (run / "model.keras").is_file()
    assert len(json.loads((run / "history.json").read_text())["loss"]) == 2
    # only the chief writes checkpoints and logs into the shared output directory
    assert [p.name for p in sorted((run / "checkpoints").iterdir())] == [
        "epoch_0001.weights.h5", "epoch_0002.weights.h5"]


def test_multi_worker_without_tf_config_is_a_clear_error(monkeypatch):
    from tfadvq.errors import ConfigError
    from tfadvq.strategies import make_strategy

    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="TF_CONFIG"):
        make_strategy("multi_worker")
