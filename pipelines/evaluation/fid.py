"""Inception FID between two image folders, through torch-fidelity (an optional package)."""

from __future__ import annotations

import os

import torch

from ..errors import InputError
from .settings import import_metric_package


def inception_fid(folder_a: str, folder_b: str, device: str | torch.device = "cpu") -> float:
    """Inception-v3 FID between two image folders, computed by torch-fidelity (not a requirement: it needs
    torchvision and downloads its Inception weights on first use)."""
    torch_fidelity = import_metric_package("fid")
    try:
        result = torch_fidelity.calculate_metrics(
            input1=os.path.abspath(folder_a),
            input2=os.path.abspath(folder_b),
            cuda=torch.device(device).type == "cuda",
            fid=True,
            verbose=False,
        )
    except OSError as error:
        raise InputError(
            f"--metrics fid: torch-fidelity could not run ({error}); it downloads its Inception weights on first use, so run it once where the network is reachable"
        ) from error
    return float(result["frechet_inception_distance"])
