"""Cluster assignments of every model with an enumerated ``y`` from Pyro's ``infer_discrete`` and
``compute_marginals``, checked against the joint density written out for each value of ``y``."""

from pathlib import Path

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO, TraceEnum_ELBO

from pyrovae.clustering import infer_assignments, posterior_assignment_probabilities
from pyrovae.guides import GMVAEGuide, MixtureGuide
from pyrovae.models import GMVAE, MixtureVAE

C, L, D, B = 4, 2, 6, 7


def gmvae_pair(estimator):
    return GMVAE(D, C, L, (8,), estimator=estimator), GMVAEGuide(D, C, L, (8,), estimator=estimator)


PAIRS = {
    "gmvae": (lambda: gmvae_pair("enumerate"), lambda n: torch.bernoulli(torch.full((n, D), 0.5))),
    "gmvae-gumbel-a": (lambda: gmvae_pair("gumbel-a"), lambda n: torch.bernoulli(torch.full((n, D), 0.5))),
    "mixture-vae": (lambda: (MixtureVAE(D, C, L, (8,)), MixtureGuide(D, C, L, (8,))), lambda n: torch.randn(n, D)),
}


def guide_code(guide, x, seed):
    pyro.set_rng_seed(seed)
    return poutine.trace(guide).get_trace(x).nodes["z"]["value"]


@torch.no_grad()
def joint_scores(model, x, z):
    """log p(y = k) + log p(z | y = k) + log p(x | y = k, z) for every k: ``(B, C)``, one model run per k."""
    if hasattr(model, "with_estimator"):
        model = model.with_estimator("enumerate")
    scores = []
    for k in range(C):
        y = torch.full((x.shape[0],), k)
        trace = poutine.trace(poutine.condition(model, data={"y": y, "z": z})).get_trace(x)
        trace.compute_log_prob()
        scores.append(sum(trace.nodes[name]["log_prob"] for name in ("y", "z", "x")))
    return torch.stack(scores, -1)


@pytest.fixture(params=sorted(PAIRS))
def pair_and_data(request):
    make_pair, make_data = PAIRS[request.param]
    torch.manual_seed(0)
    model, guide = make_pair()
    return model, guide, make_data


def test_infer_discrete_map_is_the_argmax_of_the_joint_and_marginals_its_softmax(pair_and_data):
    model, guide, make_data = pair_and_data
    x = make_data(B)
    z = guide_code(guide, x, seed=4)
    scores = joint_scores(model, x, z)
    assert (scores.topk(2, -1).values.diff(dim=-1).abs() > 1e-3).all()  # no ties: the argmax is defined
    pyro.set_rng_seed(4)  # the helpers draw z from the guide first: the same z
    map_y = infer_assignments(model, guide, x, temperature=0)
    assert map_y.shape == (B,) and torch.equal(map_y, scores.argmax(-1))
    pyro.set_rng_seed(4)
    probabilities = posterior_assignment_probabilities(model, guide, x)
    assert torch.allclose(probabilities, scores.softmax(-1), atol=1e-5)


def test_infer_discrete_at_temperature_one_draws_from_the_exact_posterior(pair_and_data):
    model, guide, make_data = pair_and_data
    n = 4000
    x = make_data(n)
    z = guide_code(guide, x, seed=7)
    posterior = joint_scores(model, x, z).softmax(-1)
    pyro.set_rng_seed(7)
    draws = infer_assignments(model, guide, x, temperature=1)
    # Each row draws from its own posterior: the count of k has mean sum_i p_i(k), variance sum_i p_i(k)(1 - p_i(k)).
    counts = torch.bincount(draws, minlength=C).to(posterior.dtype)
    expected, sd = posterior.sum(0), (posterior * (1 - posterior)).sum(0).sqrt()
    assert ((counts - expected).abs() < 4 * sd + 1).all(), (counts, expected)
    # And not the MAP: the draws differ from it where the posterior is uncertain.
    disagreement = float((draws != posterior.argmax(-1)).float().mean())
    assert disagreement == pytest.approx(float(1 - posterior.max(-1).values.mean()), abs=0.03)


def test_the_readme_snippet_runs_and_its_assignments_agree():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("### Cluster assignments"):]
    code = section[section.index("```python") + len("```python"):section.index("```", section.index("```python") + 9)]
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["probs"].shape == (8, 10) and torch.allclose(namespace["probs"].sum(-1), torch.ones(8))
    # The plain-Pyro lines condition on one z: their MAP is the argmax of their marginals.
    assert torch.equal(namespace["map_y"], namespace["q"].probs.argmax(-1))


def test_a_double_precision_pair_reads_y_in_its_own_dtype(pair_and_data):
    """The one-hot code takes the networks' dtype, not torch's default."""
    model, guide, make_data = pair_and_data
    model, guide = model.double(), guide.double()
    x = make_data(B).double()
    estimator = getattr(model, "estimator", "enumerate")
    objective = TraceEnum_ELBO(max_plate_nesting=1) if estimator == "enumerate" else Trace_ELBO(max_plate_nesting=1)
    loss = objective.differentiable_loss(model, guide, x)
    assert loss.dtype == torch.float64 and torch.isfinite(loss)
    assert posterior_assignment_probabilities(model, guide, x).dtype == torch.float64
