"""Commands run in a fresh process, as a user runs them: nothing may rely on modules another
command happened to import first (a fresh ``tfadvq convert`` of a TinyResNet once failed on its
StatsPooling layer)."""
from __future__ import annotations

import os
import subprocess
import sys


def test_convert_a_quantized_tfadvq_model_in_a_fresh_process(tmp_path):
    import tfadvq
    from tfadvq.models import build_model

    model = build_model("TinyResNet", feat_dim=80, embed_dim=16, base_width=4)
    tfadvq.ptq(model, 4, progress=False).save(tmp_path / "q.h5")
    command = [sys.executable, "-c", "import sys; from tfadvq.cli import main; sys.exit(main())",
               "convert", "--model", str(tmp_path / "q.h5"), "--out", str(tmp_path / "m.tflite"),
               "--frames", "60"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "m.tflite").stat().st_size > 0 and (tmp_path / "m.json").is_file()
