"""brats-seg learning-curve DIR [out=DIR]: quality against the number of training patients, from a
sweep over data.split.train_patients and data.split.draw (docs/real-data.md)."""

from __future__ import annotations

from brats_seg.commands.arguments import sweep_folder_args


def main(argv: list[str]) -> int:
    from brats_seg.results.learning_curve import CURVE_MD, learning_curve, to_markdown

    if any(a in ("-h", "--help") for a in argv):
        print(__doc__.strip())
        return 0
    sweep, out = sweep_folder_args("learning-curve", argv, "outputs/learning-curve")
    result = learning_curve(sweep, out)
    print(to_markdown(result), end="")
    print(f"wrote {(out or sweep) / CURVE_MD} (and .json, .png)")
    return 0
