"""brats-seg predict run=RUN_DIR input=PATH output=DIR: segment new patients, NIfTI in, NIfTI
out."""

from __future__ import annotations

from pathlib import Path

from brats_seg.runfolder import METRICS_FILE

# A command line that works, shown when a mandatory option is missing.
EXAMPLE = (
    "brats-seg predict run=outputs/runs/default-s42 input=/path/to/BraTS2021_00001 "
    "output=outputs/predictions"
)


def _task(cfg) -> None:
    from brats_seg.inference.predict import predict_cases
    from brats_seg.tf_import import import_tensorflow_quietly

    import_tensorflow_quietly()

    result = predict_cases(
        cfg.run,
        Path(cfg.input),
        Path(cfg.output),
        batch_size=cfg.batch_size,
        montage_slices=cfg.montage_slices,
        empty_rule=cfg.empty_rule,
        tta=cfg.tta,
        postprocess=cfg.postprocess,
        naming=cfg.naming,
        lesionwise=cfg.lesionwise,
        brain_box=cfg.brain_box,
        calibrated=cfg.calibrated,
        save_probabilities=cfg.save_probabilities,
        allow_incomplete=cfg.allow_incomplete,
        use_last_checkpoint=cfg.use_last_checkpoint,
        tuned_postprocess=cfg.tuned_postprocess,
        backend=cfg.backend,
    )
    for check in result["inference"]["run_checks"]:
        for note in check["notes"]:
            print(f"{check['run']}: {note}")
    used = result["inference"]
    print(
        f"{len(result['cases'])} case(s) segmented into {result['output']} "
        f"by {len(used['runs'])} run(s), "
        f"tta={str(used['tta']).lower()}, postprocess={used['postprocess']}, "
        f"backend={','.join(sorted(set(used['backend'])))}"
    )
    if used["postprocess_tuned"]:
        tuned = used["postprocess_tuned"]
        print(
            f"post-processing tuned on {', '.join(tuned['cases'])} ({tuned['file']}); "
            "tuned_postprocess=false ignores it"
        )
    if "metrics" in result:
        for region, r in result["metrics"]["regions"].items():
            print(f"  {region}: Dice mean {r['dice_mean']:.4f}, HD95 mean {r['hd95_mean']:.2f} mm")
        for region, r in (result["metrics"].get("lesionwise") or {}).get("brats2024", {}).items():
            print(
                f"  {region} lesion-wise (official convention): Dice {r['dsc_mean']:.4f}, "
                f"HD95 {r['hd95_mean']:.2f} mm, tp {r['tp']} fp {r['fp']} fn {r['fn']}"
            )
        print(f"wrote {Path(cfg.output) / METRICS_FILE}")


def main(argv: list[str]) -> int:
    from brats_seg.config import run_hydra_app

    run_hydra_app(_task, "predict", "brats-seg predict", argv, example=EXAMPLE)
    return 0
