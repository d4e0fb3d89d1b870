"""brats-seg export run=RUN_DIR [format=savedmodel|onnx|openvino] [out=DIR]: the run's best model
as a TensorFlow SavedModel (DIR/savedmodel) that plain TensorFlow serves, or as ONNX
(DIR/model.onnx) or OpenVINO IR (DIR/model.xml), with DIR/export.json."""

from __future__ import annotations

from pathlib import Path

from brats_seg.errors import ConfigError


def _task(cfg) -> None:
    from brats_seg.inference.export import export_run
    from brats_seg.outputs import check_output_dir
    from brats_seg.runfolder import EXPORT_DIR

    if not cfg.run:
        raise ConfigError("export: give run=RUN_DIR")
    run_dir = Path(cfg.run)
    out = Path(cfg.out) if cfg.out else run_dir / EXPORT_DIR
    check_output_dir(out, "export")  # before the model is loaded
    info = export_run(
        run_dir,
        out,
        str(cfg.format),
        quantize=None if cfg.quantize is None else str(cfg.quantize),
        allow_incomplete=bool(cfg.allow_incomplete),
        use_last_checkpoint=bool(cfg.use_last_checkpoint),
    )
    for note in info["run_check"]["notes"]:
        print(f"{run_dir}: {note}")
    size = (
        "any height and width (multiples of {})".format(info["input"]["size_multiple_of"])
        if info["input"]["any_size"]
        else "the training size only, {}x{}".format(*info["input"]["trained_on"])
    )
    print(
        f"wrote {out / info.get('model_file', 'savedmodel')}: "
        f"{info['format']}, image float32[batch, H, W, {info['input']['shape'][3]}] -> "
        f"probabilities of {len(info['output']['classes'])} classes; input size: {size}"
    )
    print(f"wrote {out / 'export.json'}")


def main(argv: list[str]) -> int:
    from brats_seg.config import run_hydra_app

    run_hydra_app(_task, "export", "brats-seg export", argv)
    return 0
