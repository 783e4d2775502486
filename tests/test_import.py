import subprocess
import sys


def test_import_is_light():
    """`import wmark` must not import torch or other heavy modules."""
    code = "import sys, wmark; print(','.join(m for m in ('torch','scipy','tokenizers','transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_cli_help_and_keygen(tmp_path):
    from wmark.cli import main

    assert main(["keygen", str(tmp_path / "k")]) == 0
    assert main(["keygen", str(tmp_path / "k")]) == 2  # refuses to overwrite
