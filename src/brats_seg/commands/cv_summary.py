"""brats-seg cv-summary DIR [out=DIR]: per-fold scores of a cross-validation sweep and their mean +-
sd."""

from __future__ import annotations

from pathlib import Path

from brats_seg.errors import ConfigError


def main(argv: list[str]) -> int:
    from brats_seg.results.cv import CV_JSON, CV_MD, cv_summary, to_markdown

    if any(a in ("-h", "--help") for a in argv):
        print(__doc__.strip())
        return 0
    dirs = [a for a in argv if "=" not in a]
    options = dict(a.split("=", 1) for a in argv if "=" in a)
    unknown = sorted(set(options) - {"out"})
    if unknown:
        raise ConfigError(f"cv-summary: unknown option {unknown[0]}= (valid: out=DIR)")
    if len(dirs) != 1:
        raise ConfigError(
            "cv-summary: name one sweep folder (brats-seg cv-summary outputs/sweeps/real-cpu-cv)"
        )
    out = Path(options["out"]) if options.get("out") else None
    result = cv_summary(Path(dirs[0]), out)
    where = out or Path(dirs[0])

    print(to_markdown(result), end="")
    print(f"wrote {where / CV_MD} and {where / CV_JSON}")
    return 0
