"""Import TensorFlow without its start-up noise on the console.

TensorFlow 2.21 writes absl lines on import (oneDNN, "Could not find cuda drivers", CPU instruction
sets) and a cuInit error line on a machine without a GPU when it first looks for devices;
TF_CPP_MIN_LOG_LEVEL does not silence them, since they are written before absl reads it. The
commands that use TensorFlow call this before their work starts: the lines go to a scratch file, and
are shown only if the import itself fails.
"""

from __future__ import annotations

import os
import sys
import tempfile

_done = False


def import_tensorflow_quietly() -> None:
    """Import TensorFlow and look up its devices with the console's stderr redirected (once per
    process)."""
    global _done
    if (
        _done or os.environ.get("BRATS_SEG_TF_NOISE") == "1"
    ):  # BRATS_SEG_TF_NOISE=1 keeps TF's lines
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    _done = True
