"""brats-seg predict run=RUN_DIR input=PATH output=DIR: segment new patients, NIfTI in, NIfTI out."""

from __future__ import annotations

from pathlib import Path


def _task(cfg) -> None:
    from brats_seg.inference.predict import predict_cases

    result = predict_cases(cfg.run, Path(cfg.input), Path(cfg.output), batch_size=int(cfg.batch_size),
                           montage_slices=int(cfg.montage_slices), empty_rule=cfg.empty_rule,
                           tta=cfg.get("tta"), postprocess=cfg.get("postprocess"))
    used = result["inference"]
    print(f"{len(result['cases'])} case(s) segmented into {result['output']} by {len(used['runs'])} run(s), "
          f"tta={str(used['tta']).lower()}, postprocess={used['postprocess']}")
    if "metrics" in result:
        for region, r in result["metrics"]["regions"].items():
            print(f"  {region}: Dice mean {r['dice_mean']:.4f}, HD95 mean {r['hd95_mean']:.2f} mm")
        print(f"wrote {Path(cfg.output) / 'metrics.json'}")


def main(argv: list[str]) -> int:
    from brats_seg.config import run_hydra_app

    run_hydra_app(_task, "predict", "brats-seg predict", argv)
    return 0
