from brats_seg.cli import entry

entry()
