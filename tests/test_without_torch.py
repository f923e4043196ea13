"""samiam without its SAM extra (torch, torchvision, segment-anything): the weight-free path, the
web tier and the data commands run, and asking for SAM gives the named error saying what to install.

Runs in a subprocess whose import system refuses those three packages, as on a lab PC where
only ``pip install samiam`` was run.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

BLOCK_SAM_EXTRA = """
import importlib.abc, sys
class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {"torch", "torchvision", "segment_anything"}:
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, NotInstalled())
"""


def run_without_torch(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter (samiam from this checkout) that cannot import the SAM extra."""
    script = BLOCK_SAM_EXTRA + textwrap.dedent(code) + "\nassert not {'torch', 'segment_anything'} & set(sys.modules)\n"
    return subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                                                         "SAMIAM_MODEL_DIR": str(tmp_path / "models")})


def test_the_weight_free_path_the_web_tier_and_the_data_commands_run_without_torch(tmp_path):
    result = run_without_torch(f"""
        from pathlib import Path
        import samiam, samiam.cli, samiam.service.app
        from samiam.cli import main
        data, out = {str(tmp_path / "data")!r}, {str(tmp_path / "out")!r}
        assert main(["synth", "--out", data, "--n", "1", "--seed", "0", "--size", "128", "--difficulty", "1"]) == 0
        assert main(["segment", data, "--out", out + "/seg"]) == 0   # auto: no checkpoint, no torch
        assert main(["evaluate", "--gt", data, "--pred", out + "/seg", "--out", out + "/report"]) == 0
        assert main(["import", data + "/images", "--out", out + "/tasks"]) == 0
        (image,) = Path(data, "images").iterdir()
        seg = samiam.segment(str(image), samiam.Settings().replace({{"proposals.proposer": "classical"}}))
        assert seg.proposer == "classical" and seg.materials.shape[1:] == (128, 128)
        print("ran")
    """, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "ran"


def test_asking_for_sam_or_a_torch_embedder_without_torch_names_the_extra(tmp_path):
    checkpoint = tmp_path / "sam.pth"
    checkpoint.write_bytes(b"not read")
    result = run_without_torch(f"""
        import logging
        from samiam.booster.embedders import make_embedder
        from samiam.errors import SamSupportMissingError
        from samiam.proposals import make_proposer
        from samiam.settings import Settings
        logging.basicConfig()
        for change in ({{"proposals.proposer": "sam"}}, {{"merging.embedder": "resnet18"}}):
            settings = Settings().replace(change)
            try:
                make_proposer(settings.proposals) if "proposals.proposer" in change else make_embedder(settings.merging)
            except SamSupportMissingError as error:
                print(error)
        auto = Settings().replace({{"proposals.checkpoint": {str(checkpoint)!r}}}).proposals
        print(make_proposer(auto).name)
    """, tmp_path)
    assert result.returncode == 0, result.stderr
    sam, resnet, auto = result.stdout.splitlines()
    assert sam == ("the SAM proposer (proposals.proposer=sam) needs torch, which is not installed "
                   "(the SAM extra: pip install 'samiam[sam]')")
    assert resnet.startswith("the resnet18 embedder needs torch") and "pip install 'samiam[sam]'" in resnet
    assert auto == "classical"
    assert f"SAM checkpoint {checkpoint} was found, but SAM needs torch" in result.stderr
    assert "using the weight-free classical proposer" in result.stderr
