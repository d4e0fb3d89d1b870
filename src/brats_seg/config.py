"""Hydra glue: where the configs live, how a subcommand becomes a Hydra app, and the resolvers they use."""

from __future__ import annotations

import functools
import hashlib
import re
import sys
from typing import Any, Callable

CONFIG_MODULE = "brats_seg.configs"
CONFIG_PATH = "pkg://" + CONFIG_MODULE
VERSION_BASE = "1.3"

_MAX_NAME = 80


def run_id(override_dirname: str = "", experiment_id: Any = None, seed: Any = None) -> str:
    """Deterministic, file-system-safe folder name for one job.

    An experiment job is named after its experiment and seed (``e05_3cnn_block_unet-s42``) plus any other
    overrides; a plain run after its command-line overrides and seed (``loss-ell__model-unet3pp-s42``, or
    ``default-s42``).
    The same command therefore always lands in the same folder, which is what makes resume and skip work.
    """
    if experiment_id not in (None, "", "None"):
        name = f"{experiment_id}-s{seed}" + (f"__{override_dirname}" if override_dirname else "")
    else:
        name = f"{override_dirname or 'default'}-s{seed}"
    # Only characters that need no quoting in a shell or in Hydra's override grammar (run=PATH).
    name = re.sub(r"[^A-Za-z0-9._\-]", "_", name)
    if len(name) > _MAX_NAME:
        digest = hashlib.sha1(name.encode()).hexdigest()[:10]
        name = f"{name[: _MAX_NAME - 11]}~{digest}"
    return name


def register_resolvers() -> None:
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver("run_id"):
        OmegaConf.register_new_resolver("run_id", run_id)


def _one_line_errors(task: Callable[[Any], Any], prog: str) -> Callable[[Any], Any]:
    """A user error in a single run becomes one line on stderr and exit code 1.

    In a multirun the error propagates instead: Hydra records that job as failed and runs the others.
    """

    @functools.wraps(task)
    def guarded(cfg: Any) -> Any:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        from brats_seg.errors import BratsSegError

        try:
            return task(cfg)
        except BratsSegError as err:
            if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
                raise
            print(f"{prog}: error: {err}", file=sys.stderr)
            sys.exit(1)

    return guarded


def run_hydra_app(task: Callable[[Any], Any], config_name: str, prog: str, argv: list[str]) -> Any:
    """Run ``task`` as a Hydra app on ``argv`` (``key=value`` overrides and Hydra flags such as ``-m``)."""
    import hydra

    register_resolvers()
    saved = sys.argv
    sys.argv = [prog, *argv]
    try:
        main = hydra.main(version_base=VERSION_BASE, config_path=CONFIG_PATH, config_name=config_name)
        return main(_one_line_errors(task, prog))()
    finally:
        sys.argv = saved


def compose(config_name: str, overrides: list[str] | None = None, return_hydra_config: bool = False):
    """Compose a config the way the CLI does, without running anything (used by tests and by `table`)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base=VERSION_BASE):
        return hydra_compose(config_name, overrides=overrides or [], return_hydra_config=return_hydra_config)


def compose_group(group: str, name: str) -> Any:
    """One group config (``model/unet.yaml``) with its defaults list applied, as a DictConfig.

    Works inside a running brats-seg app (which has initialised Hydra on the same configs) and outside one.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    overrides = [f"+{group}={name}"]
    if GlobalHydra.instance().is_initialized():
        return hydra_compose(overrides=overrides)[group]
    with initialize_config_module(config_module=CONFIG_MODULE, version_base=VERSION_BASE):
        return hydra_compose(overrides=overrides)[group]
