"""BraTS data layer: discovery, NIfTI IO, preprocessing, patient split, slice cache and the tf.data
pipeline.

Entry points: ``dataset.prepare_data(cfg.data) -> PreparedData`` (training/evaluation),
``discovery.find_cases`` + ``nifti.load_case`` + ``preprocess.preprocess_case`` (prediction),
``pipeline.make_dataset`` (TensorFlow; import it only where TensorFlow is wanted).
Nothing is imported here, so ``import brats_seg.data.<module>`` stays light.
"""
