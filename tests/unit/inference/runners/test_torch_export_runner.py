"""TorchExportRunner: a ``.pt2`` written by torch.export.save scores as the module it was exported from; a
program that does not fit its manifest (width, fixed batch, output shape) is refused at load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from clinical_ai.inference.engine.explain.links import logit
from clinical_ai.inference.engine.runners.base import RunnerError
from clinical_ai.inference.engine.runners.torch_export import TorchExportRunner

N_FEATURES = 4


class Risk(torch.nn.Module):
    """A logistic model: probability (or logit) per row, shaped (rows, 1) or (rows,)."""

    def __init__(self, *, sigmoid: bool = True, squeeze: bool = False, outputs: int = 1) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(N_FEATURES, outputs)
        self.sigmoid = sigmoid
        self.squeeze = squeeze

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.linear(x)
        if self.sigmoid:
            out = torch.sigmoid(out)
        result: torch.Tensor = out.squeeze(-1) if self.squeeze else out
        return result


def save(module: torch.nn.Module, path: Path, *, dynamic: bool = True) -> Path:
    module.eval()
    shapes = {"x": {0: torch.export.Dim("batch")}} if dynamic else None
    program = torch.export.export(module, (torch.zeros(3, N_FEATURES),), dynamic_shapes=shapes)
    torch.export.save(program, str(path))
    return path


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    return np.random.default_rng(3).normal(size=(25, N_FEATURES))


@pytest.mark.parametrize("squeeze", [False, True], ids=["rows-by-1", "rows"])
def test_scores_as_the_module(squeeze: bool, rows: np.ndarray, tmp_path: Path) -> None:
    module = Risk(squeeze=squeeze)
    runner = TorchExportRunner(save(module, tmp_path / "model.pt2"), n_features=N_FEATURES)
    with torch.no_grad():
        expected = module(torch.from_numpy(rows).float()).reshape(-1).numpy()

    scores = runner.predict(rows)

    assert scores.dtype == np.float64 and scores.shape == (25,)
    np.testing.assert_allclose(scores, expected, atol=1e-6)
    assert runner.input_width == N_FEATURES
    assert runner.predict(rows[:1]).shape == (1,) and runner.predict(rows[:0]).shape == (0,)


def test_a_logit_output_gets_the_sigmoid(rows: np.ndarray, tmp_path: Path) -> None:
    module = Risk(sigmoid=False)
    runner = TorchExportRunner(
        save(module, tmp_path / "model.pt2"), n_features=N_FEATURES, apply_sigmoid=True
    )
    with torch.no_grad():
        expected = torch.sigmoid(module(torch.from_numpy(rows).float())).reshape(-1).numpy()
    np.testing.assert_allclose(runner.predict(rows), expected, atol=1e-6)

    (explanation,) = runner.explainer(rows[:10]).explain(rows[12:13])
    assert explanation.method == "shapley_exact" and explanation.output_space == "log-odds"
    assert explanation.output_value == pytest.approx(float(logit(runner.predict(rows[12:13]))[0]), abs=1e-9)
    # The log-odds of a logistic model are additive: the Shapley values are weight x (x - reference mean).
    weight = module.linear.weight.detach().numpy()[0]
    np.testing.assert_allclose(
        explanation.contributions, weight * (rows[12] - rows[:10].mean(axis=0)), atol=1e-5
    )


def test_a_wrong_width_is_refused(tmp_path: Path) -> None:
    path = save(Risk(), tmp_path / "model.pt2")
    with pytest.raises(
        RunnerError,
        match=r"model\.pt2: the program takes rows of 4 features; the manifest declares one feature row of 6 features",
    ):
        TorchExportRunner(path, n_features=6)


def test_a_fixed_batch_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RunnerError, match="the program takes a fixed batch of 3"):
        TorchExportRunner(save(Risk(), tmp_path / "model.pt2", dynamic=False), n_features=N_FEATURES)


def test_several_outputs_per_row_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RunnerError, match=r"the program answers the shape \(2, 2\) for a batch of 2 rows"):
        TorchExportRunner(save(Risk(outputs=2), tmp_path / "model.pt2"), n_features=N_FEATURES)


def test_a_file_that_is_not_a_program_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pt2"
    path.write_bytes(b"not a zip archive")
    with pytest.raises(RunnerError, match=r"model\.pt2: cannot read the torch\.export program"):
        TorchExportRunner(path, n_features=N_FEATURES)
