"""Hydra glue: where the configs live, how a subcommand becomes a Hydra app, and the resolvers they
use."""

from __future__ import annotations

import functools
import hashlib
import os
import re
import sys
from collections.abc import Callable
from typing import Any

CONFIG_MODULE = "brats_seg.configs"
CONFIG_PATH = "pkg://" + CONFIG_MODULE
VERSION_BASE = "1.3"

_MAX_NAME = 80


def run_id(override_dirname: str = "", experiment_id: Any = None, seed: Any = None) -> str:
    """Deterministic, file-system-safe folder name for one job.

    An experiment job is named after its experiment and seed (``e05_3cnn_block_unet-s42``) plus any
    other overrides; a plain run after its command-line overrides and seed
    (``loss-ell__model-unet3pp-s42``, or ``default-s42``). The same command therefore always lands
    in the same folder, which is what makes resume and skip work.
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
    """The resolvers and the typed schemas (brats_seg.config_schema) that the configs use."""
    from omegaconf import OmegaConf

    from brats_seg.config_schema import objective_direction, register_schemas

    if not OmegaConf.has_resolver("run_id"):
        OmegaConf.register_new_resolver("run_id", run_id)
    # hydra/sweeper=resumable_optuna: the study's direction follows tune.objective.
    if not OmegaConf.has_resolver("tune_direction"):
        OmegaConf.register_new_resolver("tune_direction", objective_direction)
    register_schemas()


FULL_ERROR_ENV = "HYDRA_FULL_ERROR"
SHELL_COMPLETION_FLAGS = {"-sc", "--shell-completion"}
# Printed after Hydra's --hydra-help, which lists every launcher it can find.
LAUNCHER_NOTE = (
    "The launchers parallel (joblib) and slurm (submitit) need the cluster extra: "
    "pip install '.[cluster]'\n(or pip install 'brats-seg[cluster]'); without it "
    "hydra/launcher=parallel or =slurm cannot be found."
)
# The configs of plugins of optional extras (Hydra cannot find them without): their extra.
PLUGIN_EXTRAS = {"hydra/sweeper/optuna": "tune"}
# OmegaConf's detail lines that repeat what the first lines say.
_DETAIL_PREFIXES = ("object_type=", "reference_type=", "full_key:", "Set the environment variable")


# The user's HYDRA_FULL_ERROR, saved while run_hydra_app sets it for Hydra (None: not saved, read
# the env).
_user_full_error: bool | None = None


def user_wants_traces() -> bool:
    """HYDRA_FULL_ERROR=1 from the user: show Python tracebacks instead of one-line reports."""
    if _user_full_error is not None:
        return _user_full_error
    return os.environ.get(FULL_ERROR_ENV) == "1"


def one_line(err: BaseException) -> str:
    """A (Hydra or OmegaConf) error message on one line, with the cause Hydra wraps it around.

    ``Error merging override trainer.epochs=abc (Value 'abc' of type 'str' could not be converted to
    Integer)``
    """

    def flat(exc: BaseException) -> str:
        lines = [line.strip() for line in str(exc).split("Config search path:")[0].splitlines()]
        lines = [line for line in lines if line and not line.startswith(_DETAIL_PREFIXES)]
        text, listing = "", False
        for line in lines:
            if listing:  # one option per line after "Available options in 'model':"
                text += ", " + line
            else:
                listing = text.endswith(":")
                text += (" " if text else "") + line
        return text

    text = flat(err) or type(err).__name__
    cause = err.__cause__
    if cause is not None and str(cause) and str(cause).splitlines()[0] not in str(err):
        text += f" ({flat(cause)})"
    return text


def _trace_to_log_files(err: BaseException) -> list[str]:
    """Write the traceback of ``err`` into the job's log file(s) only (not the console); their
    paths."""
    import logging

    files = []
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            record = logging.LogRecord(
                "brats_seg",
                logging.ERROR,
                __file__,
                0,
                "uncaught error",
                None,
                (type(err), err, err.__traceback__),
            )
            handler.handle(record)
            files.append(handler.baseFilename)
    return files


def check_options(
    cfg: Any, example: str | None = None, check: Callable[[Any], None] | None = None
) -> None:
    """The one check of a composed config, before any work: a missing mandatory option (``???``),
    named with an example command; then every option's domain (brats_seg.config_schema); then the
    command's own ``check`` (the rules that need another layer, e.g. the model's divisor)."""
    from omegaconf import OmegaConf

    from brats_seg.config_schema import check_domains
    from brats_seg.errors import ConfigError

    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        hint = f", e.g. {example}" if example else ""
        raise ConfigError(
            f"missing mandatory option{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)}: give {' '.join(k + '=...' for k in missing)}{hint}"
        )
    check_domains(cfg)
    if check is not None:
        check(cfg)


def check_bool_overrides(cfg: Any, overrides: list[str]) -> None:
    """An override of a true/false option takes true or false: OmegaConf would read ``2``, ``1``
    or ``yes`` as true and ``0`` or ``no`` as false without a word."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import BooleanNode, DictConfig, OmegaConf

    from brats_seg.errors import ConfigError

    for override in OverridesParser.create().parse_overrides(overrides):
        if override.is_sweep_override() or override.is_delete():
            continue
        *parents, last = override.key_or_group.split(".")
        parent = OmegaConf.select(cfg, ".".join(parents)) if parents else cfg
        if not isinstance(parent, DictConfig) or last not in parent:
            continue
        value = override.value()
        if isinstance(parent._get_node(last), BooleanNode) and not isinstance(value, bool | None):
            raise ConfigError(
                f"{override.key_or_group}={override.get_value_element_as_str()}: must be true or "
                "false"
            )


def _jobs(argv: list[str], config_name: str) -> tuple[list[list[str]], bool] | None:
    """``(jobs, every_job)``: the overrides of each job Hydra is about to compose and run, one for a
    single run, each of a sweep as Hydra's basic sweeper expands it (``experiment=glob(*)``,
    ``seed=1,2``). Another sweeper (an Optuna search) picks its values as it goes: its one job here
    is the sweep's fixed overrides, and ``every_job`` is False, so each trial is also checked as it
    starts. None for a --cfg/--help/--info query, shell completion or a config path of the user's
    own: those jobs are checked as they start."""
    from hydra._internal.utils import get_args_parser

    args = get_args_parser().parse_args(argv)
    queries = (args.help, args.hydra_help, args.cfg, args.info, args.shell_completion)
    own_configs = (args.config_path, args.config_name, args.config_dir, args.experimental_rerun)
    if any(queries) or any(own_configs):
        return None
    # The hydra.* settings (launcher, run folders) do not change a job's own config.
    task = [o for o in args.overrides if not o.lstrip("+~").startswith(("hydra.", "hydra/"))]
    if not args.multirun:
        return [task], True
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra._internal.utils import create_config_search_path
    from hydra.core.override_parser.overrides_parser import OverridesParser

    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(CONFIG_PATH))
    parser = OverridesParser.create(config_loader=loader)
    fixed = [o.input_line for o in parser.parse_overrides(task) if not o.is_sweep_override()]
    settings = [o for o in args.overrides if o not in task]
    sweeper = compose(config_name, fixed + settings, return_hydra_config=True).hydra.sweeper
    if not str(sweeper.get("_target_", "")).endswith(".BasicSweeper"):
        return [fixed], False
    parsed = parser.parse_overrides(task)
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch], True


def _check_jobs(
    config_name: str,
    jobs: list[list[str]],
    example: str | None,
    check: Callable[[Any], None] | None,
) -> None:
    """Compose each job's config as Hydra will, and check it (one Hydra initialisation for all)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    if not jobs:
        return
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base=VERSION_BASE):
        for overrides in jobs:
            cfg = hydra_compose(config_name, overrides=overrides)
            check_bool_overrides(cfg, overrides)
            check_options(cfg, example, check)


def _one_line_errors(
    task: Callable[[Any], Any],
    prog: str,
    example: str | None,
    check: Callable[[Any], None] | None = None,
    prechecked: bool = False,
) -> Callable[[Any], Any]:
    """Errors in a single run become one line on stderr and exit code 1.

    A job not checked before (``prechecked``) is checked as it starts. Any other uncaught error
    is reported as its type and message with the path of the run's log, which holds the traceback
    (HYDRA_FULL_ERROR=1 shows it on the console instead). In a multirun the error propagates:
    Hydra records that job as failed and runs the others.
    """

    @functools.wraps(task)
    def guarded(cfg: Any) -> Any:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        from brats_seg.errors import BratsSegError

        multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
        try:
            # Checked before Hydra made any folder (run_hydra_app), unless Hydra's composition was
            # not foreseen there (another sweeper, a config path of the user's own).
            if not prechecked:
                check_options(cfg, example, check)
            return task(cfg)
        except BratsSegError as err:
            if multirun:
                raise
            print(f"{prog}: error: {err}", file=sys.stderr)
            sys.exit(1)
        except Exception as err:
            if multirun or user_wants_traces():
                raise
            logs = _trace_to_log_files(err)
            where = f"traceback in {logs[0]}" if logs else f"{FULL_ERROR_ENV}=1 shows the traceback"
            print(
                f"{prog}: error: {type(err).__name__}: {one_line(err)} ({where})", file=sys.stderr
            )
            sys.exit(1)

    return guarded


def quote_non_ascii_values(argv: list[str]) -> list[str]:
    """``argv`` with each ``key=value`` whose value Hydra's override grammar would refuse unquoted
    only for its non-ASCII characters (``data.root=/data/données patiënt``) quoted for it, so that
    such a value works as given. A value that looks like a list, a dict or a sweep (``[``, ``{``,
    ``,``), or that quoting would change, is left as it is (the error then says how to quote)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = None
    out = []
    for arg in argv:
        key, eq, value = arg.partition("=")
        if arg.startswith("-") or not eq or value.isascii() or value[:1] in "'\"[{" or "," in value:
            out.append(arg)
            continue
        parser = parser or OverridesParser.create()
        quoted = f"{key}='{value.replace(chr(39), chr(92) + chr(39))}'"
        try:
            same = parser.parse_override(quoted).value() == value
        except HydraException:
            same = False
        out.append(quoted if same else arg)
    return out


def _quoting_hint(argv: list[str], message: str) -> str:
    """How to quote a non-ASCII override value that Hydra's error ``message`` names; "" if none."""
    for arg in argv:
        key, eq, value = arg.partition("=")
        if eq and not arg.startswith("-") and not value.isascii() and arg in message:
            if value[:1] in "[{":
                how = f"quote each item that has them, e.g. {key}=['a','é']"
            elif "," in value:
                how = f"quote each value of the sweep that has them, e.g. {key}='a','é'"
            else:
                how = f"give {key}='{value}' as one argument (in a shell: \"{key}='{value}'\")"
            return (
                "; Hydra's override grammar takes non-ASCII characters only inside quotes: " + how
            )
    return ""


def _extra_hint(message: str) -> str:
    """What to install when Hydra's error ``message`` says it cannot find a plugin's config; ""
    otherwise."""
    for config, extra in PLUGIN_EXTRAS.items():
        if any(f"Could not {verb} '{config}'" in message for verb in ("find", "load")):
            return f"; {config} comes with the {extra} extra: pip install 'brats-seg[{extra}]'"
    return ""


def run_hydra_app(
    task: Callable[[Any], Any],
    config_name: str,
    prog: str,
    argv: list[str],
    example: str | None = None,
    check: Callable[[Any], None] | None = None,
) -> Any:
    """Run ``task`` as a Hydra app on ``argv`` (``key=value`` overrides and Hydra flags such as
    ``-m``).

    Each job's config (the single run's, or each of a sweep's) is composed and checked
    (check_options, with the command's ``check``) before Hydra makes any folder. ``example`` is
    a command line that works, shown when a mandatory option is missing. Hydra's own errors (a bad
    override, a value of the wrong type, an unknown choice) become one ConfigError line.
    """
    import hydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from brats_seg.errors import ConfigError

    global _user_full_error
    register_resolvers()
    wants_traces = user_wants_traces()
    saved_argv, saved_env, saved_choice = sys.argv, os.environ.get(FULL_ERROR_ENV), _user_full_error
    _user_full_error = wants_traces
    # Shell completion: the script Hydra installs completes the program named in argv[0], and a
    # query comes back through the dispatcher (brats_seg.cli), so both name the program without its
    # subcommand.
    completing = bool(SHELL_COMPLETION_FLAGS & set(argv))
    quoted = quote_non_ascii_values(argv)
    sys.argv = [prog.split()[0] if completing else prog, *quoted]
    # Hydra prints its errors as tracebacks unless HYDRA_FULL_ERROR is set, in which case it raises
    # them: set, they reach the handler below, which prints one line (or the traceback, if the user
    # had set it).
    os.environ[FULL_ERROR_ENV] = "1"
    try:
        jobs, every_job = _jobs(quoted, config_name) or ([], False)
        _check_jobs(config_name, jobs, example, check)
        main = hydra.main(
            version_base=VERSION_BASE, config_path=CONFIG_PATH, config_name=config_name
        )
        try:
            return main(_one_line_errors(task, prog, example, check, every_job))()
        finally:
            if "--hydra-help" in argv:
                print(LAUNCHER_NOTE)
    except (HydraException, OmegaConfBaseException) as err:
        if wants_traces:
            raise
        message = one_line(err)
        extra = _extra_hint(message)
        if extra:
            message = message.rstrip(".") + extra
        raise ConfigError(message + _quoting_hint(argv, message)) from err
    finally:
        sys.argv, _user_full_error = saved_argv, saved_choice
        if saved_env is None:
            os.environ.pop(FULL_ERROR_ENV, None)
        else:
            os.environ[FULL_ERROR_ENV] = saved_env


def compose(
    config_name: str, overrides: list[str] | None = None, return_hydra_config: bool = False
):
    """Compose a config the way the CLI does, without running anything (used by tests and by
    `table`)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    register_resolvers()
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base=VERSION_BASE):
        return hydra_compose(
            config_name, overrides=overrides or [], return_hydra_config=return_hydra_config
        )


@functools.cache
def _group_file(group: str, name: str) -> Any:
    from importlib import resources

    from omegaconf import OmegaConf

    path = resources.files(CONFIG_MODULE).joinpath(group, f"{name}.yaml")
    return OmegaConf.to_container(OmegaConf.load(str(path)), resolve=False)


def group_defaults(group: str, name: str) -> dict[str, Any]:
    """The values a group's YAML file (``data/brats.yaml``) holds, their one home, as plain dicts
    (unresolved, without its defaults list): what a config recorded before a key existed is read
    with. Only for files that extend nothing but their schema."""
    import copy

    values = copy.deepcopy(_group_file(group, name))
    values.pop("defaults", None)
    return values


def complete_data_cfg(data_cfg: Any) -> Any:
    """A ``data`` node with the keys it lacks taken from configs/data/brats.yaml: the one place a
    node recorded before a key existed (an older run's config) or a library caller's partial node
    is completed. A DictConfig comes back as one, a dict as a dict."""
    from omegaconf import DictConfig, OmegaConf

    merged = OmegaConf.merge(group_defaults("data", "brats"), data_cfg)
    if isinstance(data_cfg, DictConfig):
        return merged
    return OmegaConf.to_container(merged, resolve=False)


def with_data_defaults(cfg: Any) -> Any:
    """A run's config with its ``data`` node completed (complete_data_cfg)."""
    if cfg.get("data") is None:
        return cfg
    completed = cfg.copy()
    completed.data = complete_data_cfg(cfg.data)
    return completed


def compose_group(group: str, name: str) -> Any:
    """One group config (``model/unet.yaml``) with its defaults list applied, as a DictConfig.

    Works inside a running brats-seg app (which has initialised Hydra on the same configs) and
    outside one.
    """
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    register_resolvers()
    overrides = [f"+{group}={name}"]
    if GlobalHydra.instance().is_initialized():
        return hydra_compose(overrides=overrides)[group]
    with initialize_config_module(config_module=CONFIG_MODULE, version_base=VERSION_BASE):
        return hydra_compose(overrides=overrides)[group]
