"""hydra/sweeper=resumable_optuna: the hydra-optuna-sweeper plugin's search, resumable.

The plugin runs ``n_trials`` new trials on every start and leaves a killed trial RUNNING forever.
This sweeper keeps the study in storage (brats_seg.jobs.study), holds a lock on it for the search,
puts a killed trial back to run again, and runs only the trials still missing of ``n_trials``.
Everything else is the plugin's. Hydra imports this module on every start, so it imports neither
optuna nor the plugin until a search uses it.
"""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper


class ResumableOptunaSweeper(Sweeper):
    def __init__(self, **options: Any) -> None:
        self.options = options
        self.optuna: Any = None

    def setup(self, *, hydra_context, task_function, config) -> None:
        from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper

        from brats_seg.jobs.study import open_storage

        options = dict(self.options)
        if isinstance(options.get("storage"), str):
            options["storage"] = open_storage(options["storage"])
        self.optuna = OptunaSweeper(**options)
        self.optuna.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        from brats_seg.jobs.study import (
            direction_names,
            none_completed,
            resume,
            search_overrides,
            study_lock,
        )

        search = self.optuna.sweeper  # the plugin's implementation, which runs the trials
        storage = search.storage
        if storage is None:  # in memory: nothing to resume
            return self.optuna.sweep(arguments)
        with study_lock(storage.url):
            search.n_trials, stored = resume(
                storage,
                search.study_name,
                direction_names(search.direction),
                search_overrides(self.options.get("params"), arguments),
                search.n_trials,
            )
            if stored and hasattr(search.sampler, "reseed_rng"):
                # A seeded sampler would draw the stored trials' parameters again.
                search.sampler.reseed_rng()
            try:
                return self.optuna.sweep(arguments)
            except ValueError as err:
                # The plugin asks for the best trial at the end, which fails when none completed.
                error = none_completed(storage, search.study_name)
                if error is None:
                    raise
                raise error from err
