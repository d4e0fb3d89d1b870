"""brats-seg cv-summary DIR [out=DIR]: per-fold scores of a cross-validation sweep and their mean +-
sd."""

from __future__ import annotations

from brats_seg.commands.arguments import sweep_folder_args


def main(argv: list[str]) -> int:
    from brats_seg.results.cv import CV_JSON, CV_MD, cv_summary, to_markdown

    if any(a in ("-h", "--help") for a in argv):
        print(__doc__.strip())
        return 0
    sweep, out = sweep_folder_args("cv-summary", argv, "outputs/sweeps/real-cpu-cv")
    result = cv_summary(sweep, out)
    where = out or sweep
    print(to_markdown(result), end="")
    print(f"wrote {where / CV_MD} and {where / CV_JSON}")
    return 0
