"""brats-seg learning-curve DIR [out=DIR]: quality against the number of training patients, from a
sweep over data.split.train_patients and data.split.draw (docs/real-data.md)."""

from __future__ import annotations

from pathlib import Path

from brats_seg.errors import ConfigError


def main(argv: list[str]) -> int:
    from brats_seg.results.learning_curve import CURVE_MD, learning_curve, to_markdown

    if any(a in ("-h", "--help") for a in argv):
        print(__doc__.strip())
        return 0
    dirs = [a for a in argv if "=" not in a]
    options = dict(a.split("=", 1) for a in argv if "=" in a)
    unknown = sorted(set(options) - {"out"})
    if unknown:
        raise ConfigError(f"learning-curve: unknown option {unknown[0]}= (valid: out=DIR)")
    if len(dirs) != 1:
        raise ConfigError(
            "learning-curve: name one sweep folder "
            "(brats-seg learning-curve outputs/learning-curve)"
        )
    out = Path(options["out"]) if options.get("out") else None
    result = learning_curve(Path(dirs[0]), out)
    print(to_markdown(result), end="")
    print(f"wrote {(out or Path(dirs[0])) / CURVE_MD} (and .json, .png)")
    return 0
