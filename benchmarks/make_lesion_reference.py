"""Reference lesion-wise values from the official ``brats-evaluation`` package, for
tests/metrics/test_lesions.py.

The package pins numpy < 2.3, so it lives in a virtual environment of its own; this script (run with
the project's venv) writes the perturbed predictions of tests/conftest.py as NIfTI, has that
environment's Python score them with the package's bundled ``gli`` config, and stores the values in
tests/fixtures/lesion_reference.json. Made with:

    python3 -m venv /tmp/bratseval && /tmp/bratseval/bin/pip install brats-evaluation==0.0.10
    .venv/bin/python benchmarks/make_lesion_reference.py \
        --bratseval-python /tmp/bratseval/bin/python

(brats-evaluation 0.0.10, panoptica 2.1.7, numpy 2.2.6, scipy 1.17.1, connected-components-3d
3.29.0.)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

# Runs inside the package's environment: score each (prediction, reference) pair, print JSON.
_SCORER = r"""
import json, sys
from importlib.resources import files
from panoptica import Panoptica_Evaluator
config = str(files("brats_evaluation").joinpath("configs", "config_gli.yaml"))
evaluator = Panoptica_Evaluator.load_from_config(config)
out = {}
for name, pred, ref in json.load(open(sys.argv[1])):
    result = evaluator.evaluate(pred, ref)
    out[name] = {}
    for region in ("wt", "tc", "et"):
        r = result[region].to_dict(True)
        out[name][region.upper()] = {k: float(r[k]) for k in ("sq_dsc", "sq_hd95", "tp", "fp", "fn",
                                                             "global_bin_dsc")}
json.dump(out, open(sys.argv[2], "w"), indent=1)
"""

CASES = ("Brats18_2013_2_1", "BraTS2021_00000", "BraTS2021_00014", "BraTS2021_00019")


def main() -> int:
    import nibabel as nib
    import numpy as np

    from brats_seg.data.discovery import find_case
    from brats_seg.data.nifti import load_case

    from conftest import REAL_DATA, lesion_perturbations

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--bratseval-python", required=True, help="python of a venv with brats-evaluation"
    )
    parser.add_argument("--out", default=str(REPO / "tests" / "fixtures" / "lesion_reference.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        jobs = []
        for case_id in CASES:
            loaded = load_case(find_case(REAL_DATA / case_id))
            affine = np.diag([*loaded.spacing, 1.0])
            ref_path = Path(tmp) / f"{case_id}_ref.nii.gz"
            nib.save(nib.Nifti1Image(loaded.seg.astype(np.uint8), affine), ref_path)
            for name, pred in lesion_perturbations(loaded.seg).items():
                pred_path = Path(tmp) / f"{case_id}_{name}.nii.gz"
                nib.save(nib.Nifti1Image(pred.astype(np.uint8), affine), pred_path)
                jobs.append((f"{case_id}/{name}", str(pred_path), str(ref_path)))
        (Path(tmp) / "jobs.json").write_text(json.dumps(jobs))
        (Path(tmp) / "score.py").write_text(_SCORER)
        subprocess.run(
            [
                args.bratseval_python,
                str(Path(tmp) / "score.py"),
                str(Path(tmp) / "jobs.json"),
                str(Path(tmp) / "out.json"),
            ],
            check=True,
        )
        values = json.loads((Path(tmp) / "out.json").read_text())
    version = (
        subprocess.run(
            [args.bratseval_python, "-m", "pip", "show", "brats-evaluation"],
            capture_output=True,
            text=True,
        )
        .stdout.split("Version:")[1]
        .split()[0]
    )
    record = {
        "package": f"brats-evaluation {version}",
        "config": "gli",
        "command": "benchmarks/make_lesion_reference.py (see its docstring)",
        "values": values,
    }
    Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.out}: {len(values)} predictions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
