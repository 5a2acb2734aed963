"""``tf.distribute`` strategies by name, and who is the chief of a cluster."""
from __future__ import annotations

import os

from tfadvq.compat import tf
from tfadvq.errors import ConfigError
from tfadvq.train_config import StrategyName


def make_strategy(name: StrategyName | str) -> tf.distribute.Strategy:
    """``none`` -> default strategy; ``mirrored`` -> all local devices; ``multi_worker`` -> TF_CONFIG.

    Multi-worker training reads the cluster from the ``TF_CONFIG`` environment
    variable (as every TF cluster launcher sets it) and must be created before
    any other TensorFlow op runs in the process.
    """
    name = StrategyName(name)
    if name is StrategyName.MIRRORED:
        return tf.distribute.MirroredStrategy()
    if name is StrategyName.MULTI_WORKER:
        if "TF_CONFIG" not in os.environ:
            raise ConfigError("strategy multi_worker: set TF_CONFIG (cluster and task) for every worker")
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def is_chief(strategy: tf.distribute.Strategy | None = None) -> bool:
    """True unless this process is a non-chief worker of a multi-worker cluster."""
    strategy = strategy or tf.distribute.get_strategy()
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (
        resolver.task_type == "worker" and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict()
    )
