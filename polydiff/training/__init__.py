"""The training engine, one idea per module; :mod:`polydiff.train` assembles them into a run.

- :mod:`~polydiff.training.hardware`: device, threads and autocast precision;
- :mod:`~polydiff.training.optim`: the optimizer and the learning-rate schedule;
- :mod:`~polydiff.training.ema`: moving averages of the weights;
- :mod:`~polydiff.training.rng`: the random streams, per rank, and how they resume;
- :mod:`~polydiff.training.data_order`: the resumable order of batches;
- :mod:`~polydiff.training.counters`: everything the loop counts, saved and restored as one;
- :mod:`~polydiff.training.run_folder`: the run folder's pointers, record and versions;
- :mod:`~polydiff.training.metrics_file`: ``metrics.jsonl`` and the loss curve drawn from it;
- :mod:`~polydiff.training.checkpoints`: writing, committing, pruning and reading checkpoints;
- :mod:`~polydiff.training.samples`: samples from the EMA during and after training;
- :mod:`~polydiff.training.actions`: periodic work (log, checkpoint, plot, snapshot);
- :mod:`~polydiff.training.outcomes`: how a run ends early;
- :mod:`~polydiff.training.loop`: the optimizer step and the loop over steps.
"""
