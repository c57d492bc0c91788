r"""TensorFlow's own distribution strategies for the entry points: `--strategy` and `--tpu`.

    python -m kdod.train --gin_file=gin/tiny.gin --model_dir=runs/tiny --strategy=mirrored
    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]},
                "task": {"type": "worker", "index": 0}}' \
      python -m kdod.train --gin_file=... --model_dir=/shared/run --strategy=multi_worker
    python -m kdod.train --gin_file=... --model_dir=gs://bucket/run --strategy=tpu --tpu=my-tpu

    default       no strategy: one device, exactly as without the flag
    mirrored      every GPU (or logical CPU device) of this machine; Keras `fit`
    multi_worker  MultiWorkerMirroredStrategy over the machines of TF_CONFIG; a custom loop,
                  as Keras 3 `fit` fails under it (keras-team/keras#20585)
    tpu           TPUStrategy on the TPU named by --tpu (a name, grpc:// address, or "local")

`input_pipeline.batch_size` is the global batch, split over the replicas. Only the chief
(worker 0, or the "chief" task of TF_CONFIG) writes checkpoints, logs and the detector; the
other workers wait for its files at a `barrier`.

No TensorFlow at import: the entry points import this module for `--help`.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import TYPE_CHECKING

from absl import flags

from kdod.config import ConfigError

if TYPE_CHECKING:
    import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")

flags.DEFINE_enum(
    "strategy", "default", STRATEGIES,
    "tf.distribute strategy: default (one device), mirrored (all local GPUs / devices), "
    "multi_worker (the machines of the TF_CONFIG environment variable; model_dir on a file "
    "system every worker sees) or tpu (with --tpu). input_pipeline.batch_size is the global "
    "batch, split over the replicas.")
flags.DEFINE_string("tpu", None, "With --strategy=tpu: the TPU's name, grpc:// address, or "
                    "'local' for a TPU VM.")


def strategy_from_flags() -> tf.distribute.Strategy | None:
    """The strategy of --strategy / --tpu; None for the default (no strategy)."""
    return make_strategy(flags.FLAGS.strategy, flags.FLAGS.tpu)


def make_strategy(name: str, tpu: str | None = None) -> tf.distribute.Strategy | None:
    """A `tf.distribute` strategy by name (see the module docstring); None for "default".

    multi_worker must be made before TensorFlow runs any operation (TensorFlow's rule for
    collective ops): entry points make it first.
    """
    if name not in STRATEGIES:
        raise ConfigError(f"--strategy must be one of {', '.join(STRATEGIES)}; got {name!r}.")
    if tpu and name != "tpu":
        raise ConfigError(f"--tpu={tpu} needs --strategy=tpu (got --strategy={name}).")
    if name == "default":
        return None
    import tensorflow as tf

    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        _check_tf_config()
        return tf.distribute.MultiWorkerMirroredStrategy()
    if not tpu:
        raise ConfigError("--strategy=tpu needs --tpu: the TPU's name, grpc:// address, or "
                          "'local' on a TPU VM.")
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)


def _check_tf_config() -> None:
    """TF_CONFIG, when set, must be JSON with a cluster and this task; unset: one worker."""
    text = os.environ.get("TF_CONFIG")
    if not text:
        return
    try:
        spec = json.loads(text)
        task = spec["task"]
        hosts = spec["cluster"][task["type"]]
        hosts[int(task["index"])]
    except (ValueError, KeyError, TypeError, IndexError) as error:
        raise ConfigError(
            f"TF_CONFIG is not a cluster description ({type(error).__name__}: {error}); "
            'expected e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
            '"task": {"type": "worker", "index": 0}}.') from None


def scope(strategy: tf.distribute.Strategy | None) -> contextlib.AbstractContextManager:
    """`strategy.scope()`, or nothing for the default."""
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def replicas(strategy: tf.distribute.Strategy | None) -> int:
    """Replicas in sync (all workers'); 1 without a strategy."""
    return strategy.num_replicas_in_sync if strategy is not None else 1


def is_chief(strategy: tf.distribute.Strategy | None) -> bool:
    """Whether this process writes the run's files: the "chief" task, else worker 0."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def uses_custom_loop(strategy: tf.distribute.Strategy | None) -> bool:
    """Whether training needs the `strategy.run` loop (multi-worker, TPU) rather than `fit`."""
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy
                      | tf.distribute.TPUStrategy)


def barrier(strategy: tf.distribute.Strategy | None) -> None:
    """Waits until every worker of a multi-worker strategy is here (an all-reduce of a one):
    what the chief wrote before it, every worker reads after it. One process: nothing to wait
    for. Every worker must reach the same barriers in the same order, as with any collective."""
    import tensorflow as tf

    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.ones([])), axis=None)


def check_global_batch(strategy: tf.distribute.Strategy | None, batch_size: int,
                       binding: str = "input_pipeline.batch_size") -> None:
    """The global batch must split evenly over the replicas: a ConfigError naming `binding`."""
    count = replicas(strategy)
    if batch_size % count:
        raise ConfigError(f"{binding} = {batch_size} is the global batch; it must be a multiple "
                          f"of the {count} replicas of the strategy.")

