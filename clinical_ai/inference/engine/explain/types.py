"""Per-patient explanations of a model's output: how much each input pushed this patient's score. No Django.

Every explainer answers with ``Explanation``: the contributions of the features (tabular models) in the
model's ``output_space``, so that ``base_value + sum(contributions) == output_value`` (up to rounding), or
the weight of each sentence (text classifiers). ``method`` names the algorithm; METHOD_TEXT says it in words
for the review page and the model card.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Method = Literal[
    "tree_shap_interventional",  # exact Shapley values of a tree ensemble against a reference set
    "linear_exact",  # coefficient x (value - reference mean): exact for a linear model
    "shapley_exact",  # model-agnostic: every coalition enumerated against the reference set
    "shapley_sampling",  # model-agnostic: sampled permutations (too many features to enumerate)
    "sentence_occlusion",  # text: the score's drop when each sentence is left out
]
OutputSpace = Literal["log-odds", "probability"]

METHOD_TEXT: dict[str, str] = {
    "tree_shap_interventional": "exact Shapley values for this tree model (TreeSHAP), against reference patients",
    "linear_exact": "exact contributions of this linear model, against the reference patients' average",
    "shapley_exact": "exact Shapley values, every combination of inputs tried against reference patients",
    "shapley_sampling": "Shapley values estimated from sampled orderings of the inputs, against reference patients",
    "sentence_occlusion": "how much the score drops when each sentence is left out",
}


@dataclass(frozen=True)
class Explanation:
    """``contributions[i]`` belongs to feature ``i`` of the model's input row (tabular models), in
    ``output_space``. For text, ``sentence_weights`` pairs each sentence's (start, end) offsets in the text
    the model read with its weight (the drop in probability when it is left out), highest first."""

    method: Method
    output_space: OutputSpace
    base_value: float  # the expected output over the reference set
    output_value: float  # this patient's output in the same space
    contributions: tuple[float, ...] = ()
    sentence_weights: tuple[tuple[int, int, float], ...] = ()
    references: int = 0  # how many reference rows the explanation was computed against
