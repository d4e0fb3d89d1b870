"""`brats-seg models`: list every model config with its parameter count and forward GFLOPs per
slice."""

from __future__ import annotations

from typing import Any

from brats_seg.config import run_hydra_app
from brats_seg.errors import BratsSegError


def main(argv: list[str]) -> int:
    outcome: dict[str, Any] = {}

    def task(cfg) -> None:
        # Hydra turns exceptions into tracebacks; keep ours so the CLI prints them as one line.
        try:
            outcome["code"] = run(cfg)
        except BratsSegError as err:
            outcome["error"] = err

    run_hydra_app(task, "models", "brats-seg models", argv)
    if "error" in outcome:
        raise outcome["error"]
    return int(outcome.get("code", 0))


def run(cfg) -> int:
    from brats_seg.models.summary import format_table, measure, selected_names
    from brats_seg.tf_import import import_tensorflow_quietly

    import_tensorflow_quietly()

    names = selected_names(cfg.names)
    shape = (cfg.height, cfg.width, cfg.in_channels)
    rows = [measure(name, shape, cfg.num_classes) for name in names]
    print(format_table(rows, shape))
    return 0
