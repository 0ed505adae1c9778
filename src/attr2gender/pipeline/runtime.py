"""Where ``predict``'s forward pass runs: PyTorch (channels-last, optional bf16) or ONNX Runtime.

Both runtimes take a preprocessed float batch ``(B, 3, H, W)`` and return the model's probabilities as a
float64 array: ``(B, 39)`` for stage one, ``(B,)`` P(Male) for the direct route. What they run is the
same module, :class:`attr2gender.models.ProbabilityModel`; ONNX Runtime runs its export (``model.onnx``
in a bundle, written by :func:`export_onnx`).

Why: on a CPU the eager, contiguous fp32 forward of a depthwise-separable network (EfficientNet-Lite0)
reaches a small fraction of the machine's peak; channels-last roughly doubles it and ONNX Runtime does
better still (``benchmarks/bench_inference.py``). ``runtime="auto"`` picks ONNX Runtime (a dependency: it
also runs the face detector) on CPU when the bundle holds ``model.onnx``, else PyTorch channels-last. Writing
``model.onnx`` needs the exporter, the ``[onnx]`` extra (onnx, onnxscript).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import BundleError, RuntimeUnavailableError
from ..models.inference import resolve_device

RUNTIMES = ("auto", "torch", "onnx")
ONNX_FILE = "model.onnx"
ONNX_INPUT, ONNX_OUTPUT = "image", "probability"
ONNX_EXTRA_HINT = 'pip install "attr2gender[onnx]" (onnx, onnxscript: the exporter)'


def onnx_runtime_available() -> bool:
    """True when ``onnxruntime`` can be imported (a dependency; False only in a broken install)."""
    return importlib.util.find_spec("onnxruntime") is not None


def onnx_export_available() -> bool:
    """True when this torch can export ONNX (needs ``onnx`` and ``onnxscript``, the ``[onnx]`` extra)."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnx", "onnxscript"))


class OnnxRuntime:
    """ONNX Runtime's CPU forward of an exported :class:`ProbabilityModel` (``model.onnx``)."""

    name = "onnx"

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        if not onnx_runtime_available():
            raise RuntimeUnavailableError(
                "runtime='onnx' needs onnxruntime (an attr2gender dependency): pip install onnxruntime; "
                "or use runtime='torch'"
            )
        import onnxruntime as ort

        options = ort.SessionOptions()
        # As many threads as torch uses (the machine's cores unless the user set fewer).
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # warnings about unused initializers are noise for users
        self.path = Path(path)
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self.device = torch.device("cpu")
        self.precision = "fp32"

    def __call__(self, x: torch.Tensor) -> np.ndarray:
        array = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        return self.session.run([ONNX_OUTPUT], {ONNX_INPUT: array})[0].astype(np.float64)

    def describe(self) -> str:
        return f"onnxruntime (cpu, fp32, {self.session.get_session_options().intra_op_num_threads} threads)"


def check_onnx_file(path: Path) -> None:
    """Raise :class:`BundleError` when a bundle's ``model.onnx`` refers to external data. save() writes one
    self-contained file; a reference (``location``) could point anywhere on the disk, and ONNX Runtime
    refuses it only at the first predict, as a raw ``Fail``. Needs ``onnx`` to read the graph; without it,
    load_pipeline builds the ONNX Runtime session at load instead, which fails on the same file."""
    if importlib.util.find_spec("onnx") is None:
        return
    import onnx
    from onnx.external_data_helper import uses_external_data

    def tensors(graph):  # initializers and constant attributes, subgraphs included
        yield from graph.initializer
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.HasField("t"):
                    yield attribute.t
                yield from attribute.tensors
                for sub in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                    yield from tensors(sub)

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - any parse failure means a damaged file
        raise BundleError(
            f"{path} is not a readable ONNX model ({type(exc).__name__}); save it again"
        ) from None
    outside = [t.name for t in tensors(model.graph) if uses_external_data(t)]
    if outside:
        raise BundleError(
            f"{path} refers to external data for {len(outside)} tensor(s) ({', '.join(outside[:3])}); a bundle's "
            "model.onnx is one self-contained file: save the pipeline again"
        )


def export_onnx(module: nn.Module, path: str | os.PathLike, image_size: int) -> Path:
    """Write ``module`` (images -> probabilities) as a standalone ONNX file with a dynamic batch axis."""
    if not onnx_export_available():
        raise RuntimeUnavailableError(f"ONNX export needs onnx and onnxscript: {ONNX_EXTRA_HINT}")

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval().to("cpu", memory_format=torch.contiguous_format)
    example = torch.zeros(2, 3, image_size, image_size)
    batch = torch.export.Dim("batch", min=1, max=65536)
    # The exporter prints its progress and warns about its own internals; a user saving a bundle needs none.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        program = torch.onnx.export(
            module,
            (example,),
            input_names=[ONNX_INPUT],
            output_names=[ONNX_OUTPUT],
            dynamic_shapes=({0: batch},),
            dynamo=True,
            verbose=False,
        )
    # One self-contained file: small models are stored inline, with no external-data side file.
    program.save(str(path), external_data=False)
    return path


def resolve_runtime(runtime: str, device: str | torch.device = "auto", onnx_path: Path | None = None) -> str:
    """``torch`` or ``onnx`` for a request of :data:`RUNTIMES`; raises naming the fix when ``onnx`` can't run."""
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime={runtime!r} is not valid; choose one of {RUNTIMES}")
    on_cpu = resolve_device(device).type == "cpu"
    has_file = onnx_path is not None and Path(onnx_path).is_file()
    if runtime == "auto":
        return "onnx" if on_cpu and has_file and onnx_runtime_available() else "torch"
    if runtime == "onnx":
        if not on_cpu:
            raise RuntimeUnavailableError(
                f"runtime='onnx' runs on the CPU only, but device={device!r}; use "
                "runtime='torch' on a GPU (or device='cpu')"
            )
        if not onnx_runtime_available():
            raise RuntimeUnavailableError(
                "runtime='onnx' needs onnxruntime (an attr2gender dependency): pip install onnxruntime; "
                "or use runtime='torch'"
            )
        if not has_file:
            where = (
                f"{onnx_path}" if onnx_path is not None else "this pipeline (it was not loaded from a bundle)"
            )
            raise RuntimeUnavailableError(
                f"runtime='onnx' needs {ONNX_FILE}, which is missing from {where}; save "
                f"the pipeline again with the [onnx] extra installed ({ONNX_EXTRA_HINT}) "
                "or write one with pipe.export_onnx(path)"
            )
    return runtime
