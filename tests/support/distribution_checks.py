"""Reusable property checks for univariate (elementwise) Pyro distributions.

These are plain assertion helpers, not tests: a test module builds a distribution and calls them.
They are written for distributions whose batch elements are independent scalars, possibly with
point masses ("atoms", e.g. the spike at 0 of a spike-and-slab relaxation).

Conventions shared by every helper:

* A distribution is mixed when ``atoms`` is given: a mapping ``{location: mass}`` where ``mass``
  is a tensor broadcastable to ``dist.batch_shape``. The continuous part of the law is read from
  ``dist.log_prob`` away from the atoms (quadrature is split at each atom and never evaluates
  exactly at a breakpoint), so ``log_prob`` may return anything at an atom.
* ``cdf`` is right-continuous, ``F(x) = P(Z <= x)``: an atom at ``a`` is included in ``F(a)``.
* All numerical reference computations (quadrature, statistics) are done in float64 with
  scipy; the distribution under test may be float32 or float64.
* Statistical checks use a fixed seed and a p-value (or a number of standard errors) threshold,
  Bonferroni-corrected over batch elements so that a batch is one test.
"""

import collections
import math

import scipy.integrate
import scipy.stats
import torch
from pyro.distributions.kl import kl_divergence
from torch.utils._python_dispatch import TorchDispatchMode


def _as_float64_batch(x, batch_shape):
    return torch.as_tensor(x, dtype=torch.float64).expand(batch_shape).detach()


def _assert_close(actual, expected, atol, rtol, what):
    actual = torch.as_tensor(actual, dtype=torch.float64).detach()
    expected = torch.as_tensor(expected, dtype=torch.float64).detach()
    actual, expected = torch.broadcast_tensors(actual, expected)
    error = (actual - expected).abs()
    bound = atol + rtol * expected.abs()
    bad = ~(error <= bound)
    if bad.any():
        index = tuple(int(i) for i in bad.nonzero()[0])
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {bad.numel()} elements differ; worst abs error "
            f"{float(error.max()):.3e} (atol={atol}, rtol={rtol}); first at index {index}: "
            f"actual={float(actual[index]):.17g}, expected={float(expected[index]):.17g}"
        )


def density(dist):
    """Return ``z -> exp(dist.log_prob(z))`` as a float64 function of a float ``z``.

    ``z`` is broadcast to ``dist.batch_shape`` in the distribution's dtype, so the returned
    function gives one density value per batch element.
    """
    dtype = _dtype_of(dist)

    def fn(z):
        value = torch.full(dist.batch_shape, float(z), dtype=dtype)
        return dist.log_prob(value).detach().to(torch.float64).exp()

    return fn


def _dtype_of(dist):
    for value in dist.__dict__.values():
        if torch.is_tensor(value) and value.is_floating_point():
            return value.dtype
    return torch.get_default_dtype()


def quad(fn, lower, upper, points=(), dtype=torch.float64):
    """Integrate a tensor-valued function of one float over ``[lower, upper]`` (may be infinite).

    ``fn(z)`` returns a tensor of any fixed shape; every element is integrated at once with
    adaptive Gauss-Kronrod (``scipy.integrate.quad_vec``), splitting at ``points`` that lie
    strictly inside the interval (discontinuities, kinks, atoms). ``dtype`` is the precision
    ``fn`` is computed in: the requested accuracy is set from its machine epsilon, since
    rounding noise in a float32 integrand stops adaptive refinement from going further.
    Returns a float64 tensor.
    """
    eps = torch.finfo(dtype).eps
    if lower == upper:
        return torch.zeros_like(torch.as_tensor(fn(0.5 * (lower + upper)), dtype=torch.float64))
    inner = sorted(float(p) for p in points if lower < p < upper)
    result, error = scipy.integrate.quad_vec(
        lambda z: torch.as_tensor(fn(z), dtype=torch.float64).numpy(),
        lower,
        upper,
        epsabs=max(1e-13, 1e-2 * eps),
        epsrel=max(1e-11, 50 * eps),
        points=inner or None,
        limit=10_000,
    )
    return torch.as_tensor(result, dtype=torch.float64)


def moments_by_quadrature(dist, lower=-math.inf, upper=math.inf, points=()):
    """Return ``(E[Z], E[Z^2])`` per batch element, integrals of ``z^k exp(log_prob(z))``.

    For a distribution without atoms; the quadrature is split at ``points`` (see ``quad``).
    """
    pdf = density(dist)
    dtype = _dtype_of(dist)
    mean = quad(lambda z: z * pdf(z), lower, upper, points=points, dtype=dtype)
    second = quad(lambda z: z**2 * pdf(z), lower, upper, points=points, dtype=dtype)
    return mean, second


def _atom_mass(atoms, batch_shape, below=None):
    """Total mass of the atoms (only those at locations ``<= below`` when given)."""
    total = torch.zeros(batch_shape, dtype=torch.float64)
    for location, mass in (atoms or {}).items():
        if below is None or location <= below:
            total = total + _as_float64_batch(mass, batch_shape)
    return total


def assert_density_integrates_to_one(
    dist, lower=-math.inf, upper=math.inf, atoms=None, points=(), atol=1e-7
):
    """Check that the density integrates to one over the support ``[lower, upper]``.

    The integral of ``exp(log_prob)`` (by adaptive quadrature, split at ``points`` and at the
    atoms) plus the atoms' masses must equal 1 within ``atol`` for every batch element.
    """
    breaks = tuple(points) + tuple((atoms or {}).keys())
    total = quad(density(dist), lower, upper, points=breaks, dtype=_dtype_of(dist))
    total = total + _atom_mass(atoms, dist.batch_shape)
    _assert_close(total, torch.ones_like(total), atol, 0.0, "integral of density plus atoms")


def assert_cdf_is_integral_of_density(
    dist, grid, lower=-math.inf, atoms=None, points=(), atol=1e-7, rtol=1e-6
):
    """Check ``cdf(x) = integral_{lower}^{x} density + atoms <= x`` on a sorted grid of floats.

    The integral is accumulated interval by interval between consecutive grid points, each
    interval by adaptive quadrature split at ``points`` and the atoms; ``lower`` is the left end
    of the support. The comparison is ``|cdf - integral| <= atol + rtol * integral``.
    """
    grid = sorted(float(x) for x in grid)
    breaks = tuple(points) + tuple((atoms or {}).keys())
    fn = density(dist)
    dtype = _dtype_of(dist)
    integral = torch.zeros(dist.batch_shape, dtype=torch.float64)
    left = lower
    for x in grid:
        integral = integral + quad(fn, left, x, points=breaks, dtype=dtype)
        left = x
        expected = integral + _atom_mass(atoms, dist.batch_shape, below=x)
        actual = dist.cdf(torch.full(dist.batch_shape, x, dtype=dtype))
        _assert_close(actual, expected, atol, rtol, f"cdf({x}) against integrated density")


def assert_icdf_inverts_cdf(dist, values=None, probs=None, atol=1e-6, rtol=1e-6):
    """Check ``icdf(cdf(z)) = z`` on ``values`` and ``cdf(icdf(u)) = u`` on ``probs``.

    ``values`` and ``probs`` are tensors broadcastable against ``dist.batch_shape`` (a leading
    sample dimension is allowed). For a mixed distribution, keep ``values`` off the atoms and
    ``probs`` outside the jumps of the cdf, where neither identity holds.
    """
    if values is not None:
        roundtrip = dist.icdf(dist.cdf(values))
        _assert_close(roundtrip, values, atol, rtol, "icdf(cdf(z)) against z")
    if probs is not None:
        roundtrip = dist.cdf(dist.icdf(probs))
        _assert_close(roundtrip, probs, atol, rtol, "cdf(icdf(u)) against u")


def _flat_batch(x, n, batch_shape):
    return x.detach().to(torch.float64).expand((n,) + tuple(batch_shape)).reshape(n, -1)


def assert_samples_match_cdf(dist, cdf=None, atoms=None, n=100_000, seed=0, p_threshold=1e-3):
    """Kolmogorov-Smirnov test of ``n`` samples per batch element against the cdf.

    Uses the probability integral transform: ``cdf(z)`` of samples must be Uniform(0, 1). With
    atoms, the frequency of samples exactly at each atom is tested against its mass with an
    exact binomial test, and the remaining samples are tested against the continuous part's
    conditional cdf ``(F(z) - atoms <= z) / (1 - total atom mass)``. ``cdf`` defaults to
    ``dist.cdf``. All p-values must exceed ``p_threshold`` divided by the number of tests.
    """
    cdf = dist.cdf if cdf is None else cdf
    torch.manual_seed(seed)
    with torch.no_grad():
        samples = dist.sample((n,))
        probs = _flat_batch(cdf(samples), n, dist.batch_shape)
    samples = _flat_batch(samples, n, dist.batch_shape)
    atoms = atoms or {}
    masses = {
        location: _as_float64_batch(mass, dist.batch_shape).reshape(-1)
        for location, mass in atoms.items()
    }
    total_mass = sum(masses.values(), torch.zeros(samples.shape[1], dtype=torch.float64))
    tests = []
    for column in range(samples.shape[1]):
        z, u = samples[:, column], probs[:, column]
        continuous = torch.ones_like(z, dtype=torch.bool)
        below = torch.zeros_like(u)
        for location, mass in masses.items():
            at_atom = z == location
            continuous &= ~at_atom
            below = below + mass[column] * (z > location)
            result = scipy.stats.binomtest(int(at_atom.sum()), n, float(mass[column]))
            name = f"atom {location} frequency, batch element {column}"
            tests.append((name, float(result.pvalue)))
        conditional = (u - below) / (1.0 - total_mass[column])
        result = scipy.stats.kstest(conditional[continuous].numpy(), "uniform")
        tests.append((f"KS of continuous part, batch element {column}", float(result.pvalue)))
    threshold = p_threshold / len(tests)
    failed = [(name, p) for name, p in tests if not p > threshold]
    if failed:
        raise AssertionError(f"samples do not match the cdf (p <= {threshold:.2e}): {failed}")


def assert_moments_match_samples(dist, n=100_000, seed=0, n_sigma=5.0):
    """Check ``dist.mean`` and ``dist.variance`` against ``n`` samples per batch element.

    The tolerance is ``n_sigma`` standard errors: ``sd / sqrt(n)`` for the mean and
    ``sqrt((m4 - var^2) / n)`` for the variance, with ``m4`` the sample fourth central moment.
    """
    torch.manual_seed(seed)
    with torch.no_grad():
        samples = dist.sample((n,)).to(torch.float64)
    sample_mean = samples.mean(0)
    centred = samples - sample_mean
    sample_var = centred.pow(2).mean(0)
    fourth = centred.pow(4).mean(0)
    mean_tolerance = n_sigma * (sample_var / n).sqrt()
    var_tolerance = n_sigma * ((fourth - sample_var**2).clamp(min=0) / n).sqrt()
    mean = dist.mean.detach().to(torch.float64)
    variance = dist.variance.detach().to(torch.float64)
    for name, exact, estimate, tolerance in (
        ("mean", mean, sample_mean, mean_tolerance),
        ("variance", variance, sample_var, var_tolerance),
    ):
        bad = ~((exact - estimate).abs() <= tolerance)
        if bad.any():
            raise AssertionError(
                f"{name} disagrees with {n} samples beyond {n_sigma} standard errors: "
                f"exact={exact.tolist()}, sample={estimate.tolist()}, "
                f"tolerance={tolerance.tolist()}"
            )


def assert_rsample_grad_matches_finite_difference(
    make_dist, params, eps=1e-6, atol=1e-6, rtol=1e-4, seed=0, max_mismatch_fraction=0.0
):
    """Check the pathwise derivative of ``rsample`` against central finite differences.

    ``make_dist(**params)`` builds the distribution from float64 tensors of one common batch
    shape; one sample per batch element is drawn, so ``d sample_i / d param_i`` is elementwise.
    Finite differences re-draw with the same seed, i.e. they difference the sampler at the same
    uniform noise (for an inverse-cdf sampler, the icdf at fixed u). ``max_mismatch_fraction``
    allows a fraction of elements to disagree, for samplers that are discontinuous in the
    parameters (e.g. a sample that crosses onto an atom inside the finite-difference step).
    """
    for name, value in params.items():
        leaf = value.detach().clone().requires_grad_(True)
        torch.manual_seed(seed)
        sample = make_dist(**{**params, name: leaf}).rsample()
        (grad,) = torch.autograd.grad(sample.sum(), leaf)
        shifted = []
        for step in (eps, -eps):
            torch.manual_seed(seed)
            with torch.no_grad():
                shifted.append(make_dist(**{**params, name: value + step}).rsample())
        finite_difference = (shifted[0] - shifted[1]) / (2 * eps)
        bad = ~((grad - finite_difference).abs() <= atol + rtol * finite_difference.abs())
        if bad.double().mean() > max_mismatch_fraction:
            index = tuple(int(i) for i in bad.nonzero()[0])
            raise AssertionError(
                f"d rsample / d {name}: {int(bad.sum())} of {bad.numel()} elements disagree with "
                f"finite differences; first at {index}: autograd={float(grad[index]):.10g}, "
                f"finite difference={float(finite_difference[index]):.10g}"
            )


def assert_kl_matches_monte_carlo(p, q, kl=None, n=100_000, seed=0, n_sigma=5.0, atol=1e-10):
    """Check a KL divergence against the Monte Carlo mean of ``log p(z) - log q(z)``, z ~ p.

    ``kl`` defaults to ``pyro.distributions.kl.kl_divergence(p, q)``, so this also checks that a
    closed form is registered for the pair. The tolerance is ``n_sigma`` standard errors of the
    Monte Carlo mean plus ``atol`` (for log-ratios of zero variance).
    """
    kl = kl_divergence(p, q) if kl is None else kl
    torch.manual_seed(seed)
    with torch.no_grad():
        z = p.sample((n,))
        log_ratio = (p.log_prob(z) - q.log_prob(z)).to(torch.float64)
    estimate = log_ratio.mean(0)
    tolerance = n_sigma * log_ratio.std(0) / math.sqrt(n) + atol
    exact = kl.detach().to(torch.float64)
    bad = ~((exact - estimate).abs() <= tolerance)
    if bad.any():
        raise AssertionError(
            f"KL disagrees with Monte Carlo beyond {n_sigma} standard errors: "
            f"closed form={exact.tolist()}, Monte Carlo={estimate.tolist()}, "
            f"tolerance={tolerance.tolist()}"
        )


def assert_finite(what, *tensors):
    """Assert that every tensor is free of NaN and infinity, naming the first offender."""
    for position, tensor in enumerate(tensors):
        bad = ~torch.isfinite(tensor)
        if bad.any():
            index = tuple(int(i) for i in bad.nonzero()[0])
            raise AssertionError(
                f"{what} (tensor {position}): {int(bad.sum())} of {bad.numel()} elements are not "
                f"finite; first at index {index}: {float(tensor[index])}"
            )


def parameter_grid(dtype, **values):
    """Cartesian product of parameter values as flat tensors of one common batch shape.

    ``parameter_grid(torch.float32, alpha=[0.1, 1.0], beta=[1.0, 10.0])`` returns
    ``{"alpha": tensor([0.1, 0.1, 1.0, 1.0]), "beta": tensor([1.0, 10.0, 1.0, 10.0])}``.
    """
    axes = [torch.as_tensor(v, dtype=torch.float64) for v in values.values()]
    mesh = torch.meshgrid(*axes, indexing="ij")
    return {name: m.reshape(-1).to(dtype) for name, m in zip(values, mesh)}


def assert_finite_everywhere(make_dist, params, values, n_samples=100, seed=0):
    """Check log_prob, cdf, rsample and their parameter gradients are finite on a grid.

    ``params`` maps names to flat tensors of one batch shape ``(B,)`` (see ``parameter_grid``);
    ``values`` is a flat tensor ``(V,)`` at which ``log_prob`` and ``cdf`` are evaluated for
    every parameter setting. Gradients of ``log_prob.sum()`` and ``rsample(n_samples).sum()``
    with respect to every parameter must be finite too. ``cdf`` is skipped when the
    distribution does not implement it.
    """
    leaves = {name: p.detach().clone().requires_grad_(True) for name, p in params.items()}
    d = make_dist(**leaves)
    grid = values.to(next(iter(leaves.values())).dtype).reshape(-1, 1)
    log_prob = d.log_prob(grid.expand((-1,) + tuple(d.batch_shape)))
    assert_finite("log_prob", log_prob)
    assert_finite("grad of log_prob", *torch.autograd.grad(log_prob.sum(), list(leaves.values())))
    try:
        cdf = d.cdf(grid.expand((-1,) + tuple(d.batch_shape)))
    except NotImplementedError:
        cdf = None
    if cdf is not None:
        assert_finite("cdf", cdf)
    torch.manual_seed(seed)
    sample = d.rsample((n_samples,))
    assert_finite("rsample", sample)
    assert_finite("grad of rsample", *torch.autograd.grad(sample.sum(), list(leaves.values())))
    assert_finite("log_prob of rsample", d.log_prob(sample.detach()))


def assert_real_line_limits(dist):
    """On a distribution supported on the whole real line: ``log_prob(±inf) = -inf``,
    ``cdf(-inf) = 0`` and ``cdf(+inf) = 1`` for every batch element, with no NaN."""
    dtype = _dtype_of(dist)
    ends = torch.tensor([-math.inf, math.inf], dtype=dtype).reshape((2,) + (1,) * len(dist.batch_shape))
    ends = ends.expand((2,) + tuple(dist.batch_shape))
    log_prob = dist.log_prob(ends).detach()
    _assert_close(log_prob.exp(), 0.0, 0.0, 0.0, "exp(log_prob) at -inf and +inf")
    assert (log_prob == -math.inf).all(), f"log_prob at -inf and +inf: {log_prob.tolist()}"
    cdf = dist.cdf(ends).detach()
    _assert_close(cdf[0], 0.0, 0.0, 0.0, "cdf at -inf")
    _assert_close(cdf[1], 1.0, 0.0, 0.0, "cdf at +inf")


def aten_op_counts(fn):
    """Run ``fn()`` and count the ATen operators it dispatches (forward and any backward it
    runs), as a ``collections.Counter`` keyed by overload name, e.g.
    ``'aten.log_sigmoid_forward.default'``."""
    counts = collections.Counter()

    class _Counting(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            counts[str(func)] += 1
            return func(*args, **(kwargs or {}))

    with _Counting():
        fn()
    return counts
