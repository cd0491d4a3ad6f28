"""The process set-up of the project's own processes (``autoencoders.runtime``) against what a
downstream application sees: the package alone sets nothing; TensorFlow starts quietly on a CPU
machine, and a line that is not one of its benign start-up notices still reaches stderr."""

from __future__ import annotations

import os
import subprocess
import sys

PINS = ("ONEDNN_MAX_CPU_ISA", "OPENBLAS_CORETYPE", "NPY_DISABLE_CPU_FEATURES", "XLA_FLAGS")


def _run(script: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key not in PINS}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )


def test_importing_the_package_for_inference_sets_nothing_process_wide():
    result = _run(
        "import os, autoencoders, autoencoders.inference, autoencoders.served; "
        f"print([k for k in {PINS!r} if k in os.environ])"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_tensorflow_starts_quietly_and_real_errors_still_reach_stderr():
    """Without the hook TensorFlow 2.21 prints its oneDNN, CUDA-driver and cuInit notices on
    this machine (checked first, so the test cannot pass by TensorFlow having gone quiet)."""
    noise = ("oneDNN custom operations", "cuInit", "Could not find cuda drivers")
    plain = _run("import tensorflow as tf; tf.constant(1.0) + 1")
    if not any(line in plain.stderr for line in noise):
        import pytest

        pytest.skip("this TensorFlow prints none of the start-up notices here")
    quiet = _run(
        "import autoencoders.runtime, os\n"
        "import tensorflow as tf\n"
        "tf.config.threading.set_intra_op_parallelism_threads(1)\n"
        "threads = tf.config.threading.get_intra_op_parallelism_threads()\n"
        "print(float(tf.constant(1.0) + 1), threads)\n"
        "from autoencoders import runtime\n"
        "with runtime.benign_native_lines_dropped():\n"
        "    os.write(2, b'oneDNN custom operations are on\\nE0000 a real fault\\n')\n"
    )
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout.split() == ["2.0", "1"]
    assert not any(line in quiet.stderr for line in noise), quiet.stderr
    assert quiet.stderr.strip() == "E0000 a real fault"
