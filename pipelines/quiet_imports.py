"""Log filters for two warnings that the installed libraries print on every CPU import and that do not
apply to this project (each is named with why; nothing else is filtered):

- transformers: "`CLIPImageProcessor` requires torchvision (not installed); falling back to
  `CLIPImageProcessorPil`". The PIL processor is what we want: torchvision is left out on purpose (PyPI's
  torchvision does not load beside the CPU torch build, and nothing here needs it).
- bitsandbytes: "Failed to load CPU gemm_4bit_forward from kernels-community". That kernel serves 4-bit
  inference on CPUs with AVX512-BF16; 8-bit Adam (--use_8bit_adam) does not use it, and installing
  `kernels` would make bitsandbytes fetch code from the Hub at import time.
"""

from __future__ import annotations

import logging

FILTERED = {
    "transformers.utils.import_utils": "requires torchvision (not installed); falling back to",
    "bitsandbytes.backends.cpu.ops": "Failed to load CPU gemm_4bit_forward from kernels-community",
}


class _DropMessage(logging.Filter):
    def __init__(self, fragment: str):
        super().__init__()
        self.fragment = fragment

    def filter(self, record: logging.LogRecord) -> bool:
        return self.fragment not in record.getMessage()


def install_filters() -> None:
    """Attaches the filters to their loggers (before the libraries are imported; idempotent)."""
    for name, fragment in FILTERED.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessage) and f.fragment == fragment for f in logger.filters):
            logger.addFilter(_DropMessage(fragment))
