"""The committed stubs in src/backprop_client/_proto/ are exactly what regen.sh makes
from proto/: a change to the proto without regenerating fails here."""

import filecmp
import os
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]
COMMITTED = PACKAGE / "src" / "backprop_client" / "_proto"


def test_committed_stubs_match_the_proto(tmp_path):
    out = tmp_path / "_proto"
    env = dict(os.environ, PYTHON=sys.executable)
    subprocess.run(["bash", str(PACKAGE / "regen.sh"), str(out)], check=True, env=env)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["__init__.py", "backprop_pb2.py", "backprop_pb2.pyi", "backprop_pb2_grpc.py"]
    differ = [n for n in names if not filecmp.cmp(out / n, COMMITTED / n, shallow=False)]
    assert not differ, f"stubs differ from proto/: run clients/python/regen.sh ({differ})"


def test_stubs_import_inside_the_package():
    # No top-level `backprop` package: the grpc module imports its messages relatively.
    text = (COMMITTED / "backprop_pb2_grpc.py").read_text()
    assert "from . import backprop_pb2" in text
    assert "from backprop.v1" not in text
    assert (COMMITTED / "backprop_pb2.pyi").read_text().count("class Tensor(") == 1
