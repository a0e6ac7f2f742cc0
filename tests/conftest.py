"""Test set-up. Triton kernels run on CPU tensors in Triton's interpreter: TRITON_INTERPRET is read
when ``@triton.jit`` decorates, so it is set here, before any kernel module is imported."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")
