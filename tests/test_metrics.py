import numpy as np
import pytest
import torch

from covid_tl.stats.metrics import auroc, summarize, wilson_interval
from covid_tl.models.backbones import build_backbone
from covid_tl.models.classifier import Classifier, Head
from covid_tl.models.module import CovidClassifier

# A tiny batch worked by hand. Targets: 4 COVID-19, 4 no-finding.
TARGETS = np.array([1, 1, 1, 1, 0, 0, 0, 0])
PROBS = np.array([0.9, 0.8, 0.4, 0.6, 0.2, 0.7, 0.1, 0.3])
# At 0.5: COVID-19 found 3/4 (0.4 missed); no-finding right 3/4 (0.7 wrong).
# AUROC: of 16 (pos, neg) pairs the positive scores higher in all but (0.4, 0.7) and
# (0.6, 0.7), so 14/16.
HAND = {"sensitivity": 0.75, "specificity": 0.75, "accuracy": 0.75, "auroc": 14 / 16}


def test_summarize_matches_hand_computed_values():
    s = summarize(TARGETS, PROBS)
    for name, value in HAND.items():
        assert s[name] == pytest.approx(value)
    assert s["confusion_matrix"]["labels"] == ["no_finding", "covid"]
    assert s["confusion_matrix"]["matrix"] == [[3, 1], [1, 3]]
    assert s["n"] == 8 and s["n_per_class"] == {"no_finding": 4, "covid": 4}
    low, high = s["sensitivity_ci95"]
    assert low < 0.75 < high


def test_wilson_interval_known_value_and_edges():
    # Wilson 95% interval for 3/4: (0.301, 0.954) (textbook value).
    low, high = wilson_interval(3, 4)
    assert low == pytest.approx(0.3006, abs=1e-3) and high == pytest.approx(0.9544, abs=1e-3)
    assert wilson_interval(0, 0) is None
    assert wilson_interval(5, 5)[1] == pytest.approx(1.0)


def test_auroc_ties_and_single_class():
    assert auroc(np.array([1, 0]), np.array([0.5, 0.5])) == pytest.approx(0.5)
    assert auroc(np.array([1, 1]), np.array([0.2, 0.9])) is None
    assert summarize(np.array([0, 0]), np.array([0.1, 0.9]))["sensitivity"] is None


class FixedProbabilities(torch.nn.Module):
    """A 'network' whose logits are given, so the module's metrics can be checked by hand."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return x.flatten(1)[:, 0] + 0 * self.weight


@pytest.mark.filterwarnings("ignore:.*self.trainer. reference is not registered")
def test_module_metrics_match_hand_computed_values():
    net = Classifier(build_backbone("simple_fc", input_size=8), Head(64, hidden=[4]))
    module = CovidClassifier(net, optimizer=torch.optim.Adam)
    module.net = FixedProbabilities()
    logits = torch.logit(torch.tensor(PROBS, dtype=torch.float32))
    images = logits[:, None, None, None].expand(-1, 1, 8, 8)
    module._shared_step((images, torch.tensor(TARGETS)), "val")
    values = {k: float(v) for k, v in module.val_metrics.compute().items()}
    for name, value in HAND.items():
        assert values[name] == pytest.approx(value, abs=1e-6), name
    # The torchmetrics path and the numpy path used for results.json agree.
    s = summarize(TARGETS, PROBS)
    assert {k: s[k] for k in HAND} == pytest.approx(values)
