"""brats-seg compare A B [out=DIR] [bootstrap=N]: is A better than B? Paired per-patient Dice per
region, Wilcoxon signed-rank p and a bootstrap 95% interval of the mean difference. A and B are run
folders, folders of runs of one configuration (several seeds or folds), or globs of run folders."""

from __future__ import annotations

from pathlib import Path

from brats_seg.errors import ConfigError


def main(argv: list[str]) -> int:
    from brats_seg.atomic import write_json, write_text
    from brats_seg.commands.arguments import composed_options, split_words
    from brats_seg.outputs import check_files_beside, files_beside
    from brats_seg.results.compare import compare_sides, compare_text, load_side

    if any(a in ("-h", "--help") for a in argv):
        print(__doc__.strip())
        return 0
    sides, overrides = split_words(argv)
    if len(sides) != 2:
        raise ConfigError(
            f"name two runs or groups of runs, A and B (got {len(sides)}): "
            "brats-seg compare RUN_OR_GROUP_A RUN_OR_GROUP_B"
        )
    cfg = composed_options("compare", overrides)
    written = ("compare.md", "compare.json")
    if cfg.out:
        check_files_beside(Path(cfg.out), written, "compare")
    a, b = load_side(sides[0]), load_side(sides[1])
    result = compare_sides(a, b, samples=int(cfg.bootstrap), seed=int(cfg.seed))
    text = compare_text(result)
    print(text, end="")
    if cfg.out:
        out = Path(cfg.out)
        with files_beside(out, written, "compare"):
            write_text(out / "compare.md", text)
            write_json(out / "compare.json", result)
        print(f"wrote {out / 'compare.md'} and compare.json")
    return 0
