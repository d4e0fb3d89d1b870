"""What Keras 3's fit() needs to train under MultiWorkerMirroredStrategy (tested with Keras 3.15,
TF 2.21).

Two steps of Keras' TensorFlow trainer fail when the strategy spans workers
(keras-team/keras#20585):
- before the first epoch it averages one distributed (x, y) batch with ``strategy.reduce`` to build
  the metrics and the optimizer, which the multi-worker strategy refuses for a tuple ("Attempt to
  convert a value (PerReplica...)");
- after each step it averages the replicas' logs with ``strategy.reduce("MEAN", value, axis=0)``,
  which fails on a scalar ("Invalid reduction dimension 0 for input with 0 dimensions").
``fit_across_workers`` changes one model instance only: the build uses the first local replica's
part of the batch (only its shapes matter), and each step hands back its scalar logs as vectors of
one value. The epoch's logs are unaffected: Keras reads them from the metrics' variables, summed
over every replica of every worker.
"""

from __future__ import annotations


def fit_across_workers(model, strategy) -> None:
    import tensorflow as tf

    keras_build = model._maybe_symbolic_build

    def local_part(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def maybe_symbolic_build(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(local_part, next(batches))
                break
        return keras_build(data_batch=data_batch)

    def vector_logs(step):
        def run(data):
            logs = step(data)
            return {
                name: tf.reshape(value, [1]) if value.shape.rank == 0 else value
                for name, value in logs.items()
            }

        return run

    model._maybe_symbolic_build = maybe_symbolic_build
    model.train_step = vector_logs(model.train_step)
    model.test_step = vector_logs(model.test_step)
