"""README.md and docs/*.md stay true to the repository.

Every relative link (and #anchor) resolves, every script a bash block runs exists, and every
`brats-seg ...` command in a bash block parses: Hydra apps compose through the real CLI with
`--cfg job` appended (a sweep's values one by one), the folder commands compose their options and
get the number of folders they take. Nothing is trained.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
from importlib import resources
from pathlib import Path

import pytest

# The repository root, wherever in tests/ this module lives.
REPO = next(p for p in Path(__file__).resolve().parents if (p / "pyproject.toml").is_file())

# The commands that are Hydra apps, and those that take folders (with how many) besides key=value.
HYDRA_APPS = frozenset({"train", "evaluate", "predict", "eda", "synth", "models", "export", "view"})
FOLDER_COMMANDS = {
    "table": (1, None),
    "compare": (2, 2),
    "report": (1, None),
    "cv-summary": (1, 1),
    "learning-curve": (1, 1),
}
# cv-summary and learning-curve read their options themselves (no config file)
SELF_PARSED_OPTIONS = {"cv-summary": frozenset({"out"}), "learning-curve": frozenset({"out"})}

_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*$", re.MULTILINE)
_SCRIPT = re.compile(r"^(?:scripts|benchmarks|tests)/[\w./-]+\.py$")


def doc_files() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _without_code(text: str) -> str:
    return _FENCE.sub("", text)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    plain = re.sub(r"[`*_]", "", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", plain).replace(" ", "-")


def link_problems(path: Path) -> list[str]:
    problems = []
    for target in _LINK.findall(_without_code(path.read_text())):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        if not resolved.exists():
            problems.append(f"{path.name}: link {target}: {resolved} does not exist")
            continue
        if anchor and resolved.suffix == ".md":
            anchors = {_slug(h) for h in _HEADING.findall(_without_code(resolved.read_text()))}
            if anchor not in anchors:
                problems.append(f"{path.name}: link {target}: no heading #{anchor} there")
    return problems


def bash_lines(path: Path) -> list[list[str]]:
    """The words of every command line in the file's bash blocks (continuations joined, comments
    dropped)."""
    lines = []
    for language, body in _FENCE.findall(path.read_text()):
        if language not in ("bash", "sh", "shell"):
            continue
        for line in body.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                lines.append(words)
    return lines


def brats_seg_commands(path: Path) -> list[list[str]]:
    """The arguments after `brats-seg` on each bash line that runs it (`srun ... brats-seg ...`
    too)."""
    lines = bash_lines(path)
    return [words[words.index("brats-seg") + 1 :] for words in lines if "brats-seg" in words]


def script_paths(path: Path) -> list[str]:
    return [
        word
        for words in bash_lines(path)
        for word in words[1:2]
        if words[0].startswith("python") and _SCRIPT.match(word)
    ]


def _config_group(key: str) -> list[str] | None:
    """The options of config group KEY (`experiment`, `model`, ...); None when KEY is none."""
    folder = resources.files("brats_seg.configs").joinpath(key)
    if not folder.is_dir():
        return None
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def sweep_variants(overrides: list[str]) -> list[list[str]]:
    """The single runs that check a sweep's overrides: every sweep at its first value, then each
    other value of each value sweep in turn. A group sweep's values must all be options of the group
    (a glob must match one), and one composition checks the rest of its line."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import Glob

    choices: list[list[str]] = []
    for override in OverridesParser.create().parse_overrides(overrides):
        if not override.is_sweep_override():
            choices.append([override.input_line])
            continue
        options = _config_group(override.key_or_group)
        value = override.value()
        if isinstance(value, Glob):
            values = value.filter(options or [])
        else:
            values = list(override.sweep_string_iterator())
        if not values:
            raise ValueError(f"{override.input_line} matches nothing")
        if options is not None:
            unknown = [v for v in values if v not in options]
            if unknown:
                raise ValueError(f"{override.input_line}: no {override.key_or_group} {unknown}")
            values = values[:1]
        choices.append([f"{override.get_key_element()}={v}" for v in values])
    first = [options[0] for options in choices]
    variants = [first]
    for i, options in enumerate(choices):
        variants += [[*first[:i], option, *first[i + 1 :]] for option in options[1:]]
    return variants


def _cli(args: list[str]) -> tuple[int, str]:
    from brats_seg import cli

    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            code = cli.main(args)
        except SystemExit as stop:  # Hydra exits after --help
            code = stop.code if isinstance(stop.code, int) else (stop.code is not None)
    return code, err.getvalue().strip()


def command_problem(args: list[str]) -> str | None:
    """Why `brats-seg ARGS` would not parse, or None."""
    from brats_seg import cli
    from brats_seg.config import compose

    if not args or args[0] not in cli.COMMANDS:
        return f"unknown command {args[:1]}"
    command, rest = args[0], args[1:]
    if command in HYDRA_APPS:
        multirun = any(a in ("-m", "--multirun") for a in rest)
        rest = [a for a in rest if a not in ("-m", "--multirun")]
        try:
            variants = sweep_variants(rest) if multirun else [rest]
        except ValueError as err:
            return str(err)
        for variant in variants:
            code, err = _cli([command, *variant, "--cfg", "job"])
            if code != 0:
                return f"exit {code}: {err}"
        return None
    folders = [a for a in rest if "=" not in a]
    overrides = [a for a in rest if "=" in a]
    low, high = FOLDER_COMMANDS[command]
    if len(folders) < low or (high is not None and len(folders) > high):
        return f"{command} takes {low}-{high or 'any'} folders, got {folders}"
    if command in SELF_PARSED_OPTIONS:
        unknown = {a.split("=", 1)[0] for a in overrides} - SELF_PARSED_OPTIONS[command]
        return f"unknown option(s) {sorted(unknown)}" if unknown else None
    try:
        compose(command, overrides)
    except Exception as err:  # noqa: BLE001 - any composition failure is the finding
        return f"{type(err).__name__}: {err}"
    return None


@pytest.fixture(autouse=True)
def _malloc_untouched(monkeypatch):
    """cli.main tunes glibc's malloc for the process it runs in (brats_seg.memory); a MALLOC_*
    variable is the user's choice that turns that off, so the pytest process keeps its allocator."""
    monkeypatch.setenv("MALLOC_ARENA_MAX", os.environ.get("MALLOC_ARENA_MAX", "8"))


def test_every_command_has_a_parse_check():
    from brats_seg import cli

    assert HYDRA_APPS | set(FOLDER_COMMANDS) == set(cli.COMMANDS)


def test_the_docs_exist_and_the_readme_is_short():
    names = {p.name for p in doc_files()}
    for page in (
        "architectures.md",
        "development.md",
        "metrics.md",
        "performance.md",
        "real-data.md",
        "study.md",
    ):
        assert page in names
    assert len((REPO / "README.md").read_text().splitlines()) <= 150


def test_every_relative_link_resolves():
    problems = [p for path in doc_files() for p in link_problems(path)]
    assert not problems, "\n".join(problems)


def test_every_script_a_bash_block_runs_exists():
    missing = []
    for path in doc_files():
        for script in script_paths(path):
            if not (REPO / script).is_file():
                missing.append(f"{path.name}: {script}")
    assert not missing, "scripts that do not exist:\n" + "\n".join(missing)


@pytest.mark.slow  # over 4 s on 2 cores: not in the fast lane
def test_every_brats_seg_command_parses():
    commands = [(path, args) for path in doc_files() for args in brats_seg_commands(path)]
    assert len(commands) > 20  # the parser found the docs' commands
    problems = []
    for path, args in commands:
        problem = command_problem(args)
        if problem:
            problems.append(f"{path.name}: brats-seg {shlex.join(args)}\n    {problem}")
    assert not problems, "\n".join(problems)


def test_the_checks_catch_a_broken_link_and_a_bad_command(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n[gone](missing.md) [self](#title) [nowhere](#no-such-heading)\n\n"
        "```bash\nbrats-seg train model=unet3pp \\\n    loss=nope   # a comment\n"
        "brats-seg train -m 'experiment=glob(e0*)' seed=1,2\n"
        "brats-seg train -m 'experiment=glob(zz*)'\n"
        "brats-seg train -m model=unet,unet_nope\n"
        "brats-seg compare onlyone\nbrats-seg cv-summary DIR outt=x\n"
        "brats-seg table DIR nokey=1\n```\n"
    )
    problems = link_problems(page)
    assert len(problems) == 2
    assert "missing.md" in problems[0] and "#no-such-heading" in problems[1]
    bad_loss, sweep, empty_glob, bad_choice, compare, cv, table = brats_seg_commands(page)
    assert bad_loss == ["train", "model=unet3pp", "loss=nope"]
    assert "loss/nope" in command_problem(bad_loss)
    assert command_problem(sweep) is None
    assert sweep_variants(sweep[2:]) == [
        ["experiment=e01_3pp_unet_nobridge", "seed=1"],
        ["experiment=e01_3pp_unet_nobridge", "seed=2"],
    ]
    assert "matches nothing" in command_problem(empty_glob)
    assert "no model ['unet_nope']" in command_problem(bad_choice)
    assert "takes 2-2 folders" in command_problem(compare)
    assert "outt" in command_problem(cv)
    assert command_problem(table) is not None
    assert command_problem(["nope"]) == "unknown command ['nope']"
