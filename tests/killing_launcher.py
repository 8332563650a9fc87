"""Runs train_erasediff.py with one *library* call made to signal the process at a chosen point (our own
code is never replaced): SIGKILL while checkpoint N is written, as a crash or an out-of-memory kill would,
or another signal (KILL_SIGNAL=SIGINT, SIGTERM) while the final result is written:

    KILL_AT=<point> KILL_STEP=<N> python tests/killing_launcher.py <train_erasediff.py arguments>

Points: ``writing`` (inside accelerate's save_state, after the first file of .checkpoint-N.partial),
``before_rename`` and ``after_rename`` (around the os.replace that names checkpoint-N), ``rotation`` (when the
first older checkpoint is being deleted after checkpoint-N is in place), ``final_save`` (the first file the
final save writes; the process goes on unless the signal ends it), ``first_image`` (PIL's save of the first
generated image, before training).
"""

import os
import runpy
import shutil
import signal
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POINT = os.environ["KILL_AT"]
STEP = os.environ.get("KILL_STEP", "")


SIGNAL = getattr(signal, os.environ.get("KILL_SIGNAL", "SIGKILL"))


def die() -> None:
    os.kill(os.getpid(), SIGNAL)


def patch_writing(fragment: str) -> None:
    import safetensors.torch

    original = safetensors.torch.save_file
    state = {"sent": False}

    def save_file(tensors, filename, *args, **kwargs):
        result = original(tensors, filename, *args, **kwargs)
        if fragment in str(filename) and not state["sent"]:
            state["sent"] = True
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


def patch_image_save() -> None:
    from PIL import Image

    original = Image.Image.save

    def save(self, fp, *args, **kwargs):
        die()
        return original(self, fp, *args, **kwargs)

    Image.Image.save = save


PATCHES = {
    "writing": lambda: patch_writing(f".checkpoint-{STEP}.partial"),
    "final_save": lambda: patch_writing(".final.partial"),
    "first_image": lambda: patch_image_save(),
    "before_rename": lambda: patch_replace(after=False),
    "after_rename": lambda: patch_replace(after=True),
    "rotation": patch_rotation,
}

if __name__ == "__main__":
    PATCHES[POINT]()
    sys.path.insert(0, ROOT)
    sys.argv = [os.path.join(ROOT, "train_erasediff.py"), *sys.argv[1:]]
    runpy.run_path(sys.argv[0], run_name="__main__")
