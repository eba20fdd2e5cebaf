"""Progress bars are drawn on a terminal only: with stderr piped into a log, neither our bars nor
diffusers' and transformers' loading bars write their '\\r' frames."""

import subprocess
import sys

from fairaug.progress import progress_bar

from conftest import REPO_ROOT

LOAD_AND_LOOP = """
import sys
from fairaug.progress import progress_bar, quiet_library_bars
from diffusers import StableDiffusionPipeline
if sys.argv[2] == "quiet":
    quiet_library_bars()
StableDiffusionPipeline.from_pretrained(sys.argv[1])
for _ in progress_bar(range(50), desc="loop"):
    pass
"""


def stderr_of(tiny_base, mode: str) -> bytes:
    """The script's stderr as bytes (text mode would turn each '\r' into a newline)."""
    result = subprocess.run([sys.executable, "-c", LOAD_AND_LOOP, str(tiny_base), mode], capture_output=True,
                            cwd=REPO_ROOT, env={"PYTHONPATH": str(REPO_ROOT / "src"), "HF_HUB_OFFLINE": "1",
                                                           "PATH": ""})  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stderr


def test_no_progress_frames_when_stderr_is_not_a_terminal(tiny_base):
    assert b"\r" in stderr_of(tiny_base, "default")  # diffusers draws its loading bar into a pipe
    assert b"\r" not in stderr_of(tiny_base, "quiet")


class CountsIterations:
    def __init__(self):
        self.iterations = 0

    def __iter__(self):
        self.iterations += 1  # a DataLoader starts its worker processes here
        return iter(range(3))

    def __len__(self) -> int:
        return 3


def test_a_bar_iterates_its_iterable_once():
    for hide in (True, False):
        iterable = CountsIterations()
        assert list(progress_bar(iterable, hide=hide)) == [0, 1, 2]
        assert iterable.iterations == 1
