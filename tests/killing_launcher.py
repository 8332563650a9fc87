"""Runs train_erasediff.py with one *library* call made to SIGKILL the process at a chosen point of writing
checkpoint N (our own code is never replaced), as a crash or an out-of-memory kill would:

    KILL_AT=<point> KILL_STEP=<N> python tests/killing_launcher.py <train_erasediff.py arguments>

Points: ``writing`` (inside accelerate's save_state, after the first file of .checkpoint-N.partial),
``before_rename`` and ``after_rename`` (around the os.replace that names checkpoint-N), ``rotation`` (when the
first older checkpoint is being deleted after checkpoint-N is in place).
"""

import os
import runpy
import shutil
import signal
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POINT = os.environ["KILL_AT"]
STEP = os.environ["KILL_STEP"]


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def patch_writing() -> None:
    import safetensors.torch

    original = safetensors.torch.save_file

    def save_file(tensors, filename, *args, **kwargs):
        result = original(tensors, filename, *args, **kwargs)
        if f".checkpoint-{STEP}.partial" in str(filename):
            die()
        return result

    safetensors.torch.save_file = save_file


def patch_replace(after: bool) -> None:
    original = os.replace

    def replace(source, target, *args, **kwargs):
        hit = os.path.basename(str(target)) == f"checkpoint-{STEP}"
        if hit and not after:
            die()
        result = original(source, target, *args, **kwargs)
        if hit and after:
            die()
        return result

    os.replace = replace


def patch_rotation() -> None:
    original = shutil.rmtree

    def rmtree(path, *args, **kwargs):
        folder, name = os.path.split(str(path))
        new_in_place = os.path.isdir(os.path.join(folder, f"checkpoint-{STEP}"))
        if name.endswith(".deleting") and os.path.isdir(path) and new_in_place:
            die()
        return original(path, *args, **kwargs)

    shutil.rmtree = rmtree


PATCHES = {
    "writing": patch_writing,
    "before_rename": lambda: patch_replace(after=False),
    "after_rename": lambda: patch_replace(after=True),
    "rotation": patch_rotation,
}

if __name__ == "__main__":
    PATCHES[POINT]()
    sys.path.insert(0, ROOT)
    sys.argv = [os.path.join(ROOT, "train_erasediff.py"), *sys.argv[1:]]
    runpy.run_path(sys.argv[0], run_name="__main__")
