"""A hospital's own tabular model as a torch.export program (``.pt2``, written by ``torch.export.save``). No
Django.

torch.export is PyTorch's successor to TorchScript: the file holds the traced graph and its weights, not
the hospital's Python code. The program must have been exported
with a dynamic batch dimension (``dynamic_shapes={"x": {0: torch.export.Dim("batch")}}``) so that one
patient and a reference set go through the same graph. A dry run on a zero batch of two rows when the file
loads proves that it takes ``n_features`` columns and answers one number per row.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clinical_ai.inference.engine.explain.links import logit
from clinical_ai.inference.engine.explain.shapley import ShapleyExplainer
from clinical_ai.inference.engine.runners.base import FloatArray, RunnerError, TabularExplainer, feature_rows


def _placeholder_shape(program: torch.export.ExportedProgram) -> tuple[Any, ...] | None:
    """The traced shape of the program's one user input (ints, or symbols for dynamic dimensions), when
    the saved graph carries it."""
    names = list(program.graph_signature.user_inputs)
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in names:
            value = node.meta.get("val")
            shape = getattr(value, "shape", None)
            return tuple(shape) if shape is not None else None
    return None


class TorchExportRunner:
    """One exported program, on ``device``, answering (n,) probabilities for feature rows. With
    ``apply_sigmoid`` the program's output is a logit and the sigmoid is applied here."""

    def __init__(
        self, path: Path, *, n_features: int, apply_sigmoid: bool = False, device: str = "cpu"
    ) -> None:
        self.path = path
        self.n_features = n_features
        self.apply_sigmoid = apply_sigmoid
        self.device = device
        try:
            program = torch.export.load(str(path))
        except (
            OSError,
            RuntimeError,
            ValueError,
            KeyError,
            zipfile.BadZipFile,
        ) as error:  # not a .pt2, or damaged
            raise RunnerError(f"{path.name}: cannot read the torch.export program ({error})") from error
        self._input_width = self._check_signature(program)
        self.module = program.module().to(device)
        self._dry_run()

    @property
    def input_width(self) -> int | None:
        return self._input_width

    def _fail(self, what: str) -> RunnerError:
        return RunnerError(f"{self.path.name}: {what}")

    def _check_signature(self, program: torch.export.ExportedProgram) -> int | None:
        """One input of rank 2 with a free batch dimension and, when it is fixed, ``n_features`` columns:
        what the dry run would also find, said in words an engineer can act on."""
        declared = f"the manifest declares one feature row of {self.n_features} features"
        inputs = list(program.graph_signature.user_inputs)
        if len(inputs) != 1:
            raise self._fail(f"the program takes inputs {', '.join(inputs) or 'nothing'}; {declared}")
        shape = _placeholder_shape(program)
        if shape is None:
            return None  # an older file without traced shapes: the dry run decides
        if len(shape) != 2:
            raise self._fail(
                f"the program's input has {len(shape)} dimensions, not 2 (rows, features); {declared}"
            )
        batch, width = shape
        if isinstance(batch, int):
            raise self._fail(
                f"the program takes a fixed batch of {batch}; export it with a dynamic batch dimension "
                '(dynamic_shapes={"x": {0: torch.export.Dim("batch")}})'
            )
        if isinstance(width, int):
            if width != self.n_features:
                raise self._fail(f"the program takes rows of {width} features; {declared}")
            return width
        return None

    def _forward(self, rows: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            output = self.module(rows.to(self.device))
        if isinstance(output, (tuple, list)) and len(output) == 1:
            output = output[0]
        if not isinstance(output, torch.Tensor):
            raise self._fail(f"the program answers {type(output).__name__}, not one tensor")
        return output

    def _dry_run(self) -> None:
        zeros = torch.zeros((2, self.n_features), dtype=torch.float32)
        try:
            output = self._forward(zeros)
        except RunnerError:
            raise
        except Exception as error:  # torch's guard failures are AssertionError/RuntimeError, and others
            raise self._fail(
                f"the program fails on a batch of 2 rows of {self.n_features} features ({error})"
            ) from error
        if tuple(output.shape) not in ((2,), (2, 1)):
            raise self._fail(
                f"the program answers the shape {tuple(output.shape)} for a batch of 2 rows; it must answer "
                "(rows,) or (rows, 1): one probability per row"
            )

    def predict(self, rows: FloatArray) -> FloatArray:
        """(n, n_features) -> (n,) float64 probabilities; NaN or infinite outputs are returned as they are."""
        matrix = feature_rows(rows, width=self.n_features, dtype=np.float32, source=self.path.name)
        if matrix.shape[0] == 0:
            return np.zeros(0, dtype=np.float64)
        output = self._forward(torch.from_numpy(matrix)).float()
        if self.apply_sigmoid:
            output = torch.sigmoid(output)
        return output.reshape(matrix.shape[0]).cpu().numpy().astype(np.float64)

    def log_odds(self, rows: FloatArray) -> FloatArray:
        return logit(self.predict(rows))

    def explainer(self, background: FloatArray, weights: FloatArray | None = None) -> TabularExplainer:
        """Shapley values of the log-odds: the program's structure is opaque, so model-agnostic."""
        return ShapleyExplainer(self.log_odds, background, weights)
