"""Symplectic, time-reversible long strides: the implicit midpoint rule on a learned generating
function, solved by Anderson-accelerated fixed-point iteration.

The map
-------
With ``x = (q, p)``, ``J = [[0, I], [-I, 0]]`` and a scalar ``S(x̄)`` (the learned generating
function of :mod:`flashmd.models.generating`, ``S = h [K(p̄) + V(q̄) + a(h) W(q̄, p̄)]``), one stride
takes ``x`` to the ``x'`` that solves::

    x' = x + J ∇S(x̄),    x̄ = (x + x') / 2,    i.e.  q' = q + ∂S/∂p̄,  p' = p - ∂S/∂q̄.

**Symplectic.** Differentiating, ``dx' = dx + J H (dx + dx')/2`` with ``H = ∇²S(x̄)`` symmetric, so
``dx' = M dx`` with the Cayley transform ``M = (I - JH/2)⁻¹ (I + JH/2)``. ``A = JH`` is a
Hamiltonian matrix (``AᵀJ + JA = 0``, because ``JᵀJ = I`` and ``H = Hᵀ``); then ``(I - A/2)`` and
``(I + A/2)`` commute and ``(I ± A/2)ᵀ J = J (I ∓ A/2)``, so ``MᵀJM = J``: the map is symplectic
for any smooth ``S`` (the implicit midpoint rule is symplectic for every Hamiltonian). It
therefore preserves phase-space volume (``det M = 1``) and cannot contract the momentum
distribution stride after stride, as a direct predictor trained on mean squared error does.

**Time-reversible.** Let ``R(q, p) = (q, -p)``. If ``S`` is even in ``p̄`` (it is, exactly: the
network sees the momenta only through even functions), then ``∂S/∂p̄`` is odd and ``∂S/∂q̄`` even
in ``p̄``. Start from ``R x' = (q', -p')``: the candidate end ``R x = (q, -p)`` has the midpoint
``R x̄``, where ``∂S/∂p̄ = -(q' - q)`` and ``-∂S/∂q̄ = p' - p``; so ``q - q' = ∂S/∂p̄(R x̄)`` and
``-p - (-p') = -∂S/∂q̄(R x̄)``: ``R x`` solves the midpoint equation from ``R x'``. Stepping back
with flipped momenta returns to the start, up to the solver's tolerance.

The solver
----------
The unknown is the midpoint ``x̄ = (q̄, p̄)``, a fixed point of the map (Gauss-Seidel order: the
new ``p̄`` enters the new ``q̄`` at once)::

    p̄ <- p - (h/2) ∂(V + aW)/∂q̄ (q̄, p̄)        q̄ <- q + (h/2) (p̄_new / m + a ∂W/∂p̄ (q̄, p̄))

whose fixed points solve the midpoint equations exactly; the stride is ``x' = 2 x̄ - x``. Its
linearisation (``W`` aside) is ``δq̄ -> -(h²/4) M⁻¹ ∇²V δq̄``: real eigenvalues in
``[-(h ω_max / 2)², 0]`` (about -0.6 for Cu at 32 fs, -2.3 at 64 fs), where plain iteration of
the symmetric form ``x' = x + J∇S(x̄)`` has the complex ``± i h ω / 2``. Type-II Anderson
acceleration (Walker and Ni 2011; a GMRES in disguise on linear problems) then converges fast
on this spectrum, also where plain iteration diverges. It runs per system, from the direct
predictor's stride (or, without one, from ``x' = x``), on ``(2q̄, 2h p̄/m)``, i.e. in Å of the
stride's end point. A system has converged when every component of the change of that end
point under one more map is below ``tolerance_A`` Å. A system not converged after
``max_iterations`` evaluations of ``∇S`` gets NaN, which the stepper treats like a stride the
energy filter rejects: it is redone (as half strides, or by velocity Verlet) and counted. Each
evaluation costs one force evaluation of the energy model and one gradient of ``W``.

Corrector strides
-----------------
With ``SolverConfig(corrector=True)`` the solver stops after ``max_iterations`` evaluations
and keeps its iterate, converged or not: the direct predictor's stride corrected by one to a
few sweeps of the midpoint map (the use the learned action is put to in Bigi and Ceriotti,
arXiv 2508.01068). Each sweep multiplies the predictor's error by the linearised map's factor,
small for the slow modes that carry diffusion but up to ``(h ω_max / 2)²`` in size for the
stiffest (about 0.6 for a Cu crystal at 32 fs, beyond 1 in a light melt, where the solver's
damping holds the first sweeps only partly): on held-out liquid Al at 32 fs one or two sweeps
leave a stride's energy error larger than the predictor's and the filter redoes 38-51 % of the
strides, three leave it near the solved stride's and none is redone. Three sweeps cost the
predictor and three evaluations instead of the solve's six to twelve.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass

import torch

from flashmd.md.neighbors import NeighborCache
from flashmd.md.propagators import Edges, ModelPropagator, model_batch
from flashmd.md.state import MDState
from flashmd.models.generating import modified_stride_gradients, stride_gradients
from flashmd.models.model import FlashMDModel
from flashmd.nn.scatter import scatter_sum
from flashmd.units import FS

#: What ``S`` holds beyond ``h (K + V)``: the checkpoint's learned correction ``W``
#: ("learned"), nothing ("midpoint": the implicit midpoint rule on the energy model), or the
#: parameter-free term that cancels the midpoint rule's leading error ("modified",
#: :func:`~flashmd.models.generating.modified_stride_gradients`).
GENERATING_KINDS = ("learned", "midpoint", "modified")

#: Relative regularisation of the Anderson least-squares problem.
_RIDGE = 1e-10


@dataclass(frozen=True)
class SolverConfig:
    """Settings of the midpoint solver.

    Attributes:
        tolerance_A: a system has converged when every component of its residual, positions in
            Å and momenta as ``h p / m`` in Å, is below this.
        max_iterations: evaluations of ``∇S`` per stride before a system counts as not
            converged (its stride is then redone like a rejected one).
        history: residuals Anderson acceleration mixes (0: plain fixed-point iteration).
        mixing: relaxation ``β`` of the Anderson step (1: undamped). The defaults (8, 0.5) took
            5, 9 and 17 iterations at 16, 32 and 64 fs on a Cu3Au crystal at 800 K to 1e-5 Å
            (8, 1.0: 5, 9, 24; 5, 1.0 did not converge at 64 fs in 30).
        warn_rate: warn (once) when more than this fraction of system-strides did not
            converge, counted once ``warn_after`` system-strides were solved.
        warn_after: system-strides solved before the rate is judged.
        corrector: keep the iterate reached after ``max_iterations`` evaluations whether or not
            it converged, instead of redoing the stride: a predictor-corrector stride that
            starts from the direct predictor's end point (the model must have a predictor for
            the stride). With 1-3 iterations it costs a fraction of the solved stride; it is
            neither exactly symplectic nor exactly reversible (its error is the predictor's,
            scaled by each iteration), so a Metropolis chain refuses it.
    """

    tolerance_A: float = 1e-5
    max_iterations: int = 30
    history: int = 8
    mixing: float = 0.5
    warn_rate: float = 0.01
    warn_after: int = 100
    corrector: bool = False

    def __post_init__(self) -> None:
        if not self.tolerance_A > 0:
            raise ValueError(f"tolerance_A must be positive, got {self.tolerance_A}")
        if self.max_iterations < 1 or self.history < 0:
            raise ValueError("max_iterations must be >= 1 and history >= 0")
        if not 0 < self.mixing <= 1:
            raise ValueError(f"mixing must be in (0, 1], got {self.mixing}")


def anderson_solve(
    fixed_point_map,
    start: torch.Tensor,
    system: torch.Tensor,
    n_systems: int,
    config: SolverConfig,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Solve ``y = fixed_point_map(y)`` for a batch of independent systems.

    Args:
        fixed_point_map: ``(A, D) -> (A, D)``; atoms of different systems must not interact.
        start: (A, D) first iterate. system: (A,) system index of each atom.
        n_systems: number of systems. config: tolerance, iteration cap, history, mixing.

    Returns:
        ``(solution (A, D), iterations (S,) long, converged (S,) bool)``: each system's
        ``fixed_point_map(y)`` at its first iterate with every residual component below the
        tolerance (the last one if none), and the number of map evaluations that took.
    """
    y = start
    solution = torch.empty_like(start)
    iterations = torch.full((n_systems,), config.max_iterations, device=start.device)
    converged = torch.zeros(n_systems, dtype=torch.bool, device=start.device)
    ys: list[torch.Tensor] = []
    residuals: list[torch.Tensor] = []
    for k in range(config.max_iterations):
        mapped = fixed_point_map(y)
        residual = mapped - y
        worst = torch.zeros(n_systems, dtype=y.dtype, device=y.device)
        worst = worst.scatter_reduce(0, system, residual.abs().amax(dim=1), "amax")
        new = (worst <= config.tolerance_A) & ~converged
        atoms = new[system]
        solution[atoms] = mapped[atoms]
        iterations[new] = k + 1
        converged |= new
        if bool(converged.all()) or k == config.max_iterations - 1:
            break
        keep = config.history + 1
        ys, residuals = [*ys, y][-keep:], [*residuals, residual][-keep:]
        y = _anderson_step(ys, residuals, system, n_systems, config.mixing)
    left = ~converged[system]
    solution[left] = mapped[left]
    return solution, iterations, converged


def _anderson_step(
    ys: list[torch.Tensor],
    residuals: list[torch.Tensor],
    system: torch.Tensor,
    n_systems: int,
    mixing: float,
) -> torch.Tensor:
    """Next iterate from the histories of iterates and residuals (each (A, D)), per system."""
    y, f = ys[-1], residuals[-1]
    if len(ys) < 2:
        return y + mixing * f
    dy = torch.stack([b - a for a, b in itertools.pairwise(ys)], dim=-1)  # (A, D, m)
    df = torch.stack([b - a for a, b in itertools.pairwise(residuals)], dim=-1)
    gram = scatter_sum(torch.einsum("adi,adj->aij", df, df), system, n_systems)  # (S, m, m)
    rhs = scatter_sum(torch.einsum("adi,ad->ai", df, f), system, n_systems)  # (S, m)
    trace = torch.diagonal(gram, dim1=1, dim2=2).sum(-1).clamp(min=torch.finfo(y.dtype).tiny)
    eye = torch.eye(gram.shape[-1], dtype=y.dtype, device=y.device)
    gamma = torch.linalg.solve(gram + _RIDGE * trace[:, None, None] * eye, rhs)  # (S, m)
    correction = torch.einsum("adm,am->ad", dy + mixing * df, gamma[system])
    return y + mixing * f - correction


class SymplecticPropagator:
    """Symplectic, time-reversible strides of a :class:`FlashMDModel` with a generating function
    (see the module docstring); a :class:`~flashmd.md.propagators.Propagator`.

    Args:
        model: a model with an energy model and a generating function (and optionally a
            predictor, whose stride starts the solver when it serves the stride).
        solver: solver settings (default :class:`SolverConfig`).
        skin: neighbour-list skin in Å of the midpoint's own neighbour list (rebuilt about
            every stride at 0.5 Å; a build costs far less than the 30 % more edges that a 1 Å
            skin adds to every evaluation).

    Attributes:
        strides: system-strides solved; iterations: evaluations of ``∇S`` summed over them;
        unconverged: system-strides that did not converge (returned as NaN, so redone);
        last_iterations: (S,) evaluations per system of the latest stride.
    """

    def __init__(
        self,
        model: FlashMDModel,
        solver: SolverConfig | None = None,
        skin: float = 0.5,
        generating: str = "learned",
    ) -> None:
        if generating not in GENERATING_KINDS:
            raise ValueError(
                f"generating must be one of {', '.join(GENERATING_KINDS)}, got {generating!r}"
            )
        if generating == "learned":
            model.check_symplectic()
        elif model.energy_model is None:
            raise ValueError(
                f"{generating!r} symplectic strides are the implicit midpoint rule on the model's "
                "energy model, and this model has none; use a checkpoint with an energy model"
            )
        self.generating = generating
        self.model = model
        self.solver = SolverConfig() if solver is None else solver
        self.cutoff: float | None = model.cutoff
        self._midpoint_cache = NeighborCache(model.cutoff, skin)
        self.strides = 0
        self.iterations = 0
        self.unconverged = 0
        self.last_iterations = torch.zeros(0, dtype=torch.long)
        self._warned = False

    def check(self, state: MDState, stride_fs: float) -> None:
        self.model.check_species(state.numbers)
        if self.generating == "learned":
            self.model.check_strides([stride_fs], symplectic=True)
        if self.solver.corrector and not self._predicts(stride_fs):
            raise ValueError(
                f"corrector strides start from the direct predictor's stride, and this model "
                f"predicts none of {stride_fs:g} fs; solve the stride instead (drop the "
                "corrector setting) or take one of the predictor's strides"
            )
        self.model.check_masses(state.numbers, state.masses)

    def _predicts(self, stride_fs: float) -> bool:
        predictor = self.model.predictor
        return predictor is not None and any(
            abs(s - stride_fs) <= 1e-6 * s for s in predictor.config.strides_fs
        )

    @property
    def volume_preserving(self) -> bool:
        """Whether the map preserves phase-space volume and is time-reversible (up to the
        solver's tolerance), so that it can be a Metropolis proposal
        (:mod:`flashmd.md.metropolis`): solved strides are, corrector strides are not."""
        return not self.solver.corrector

    @property
    def mean_iterations(self) -> float:
        """Evaluations of ``∇S`` per system-stride so far (NaN before the first)."""
        return self.iterations / self.strides if self.strides else float("nan")

    def gradients(self, state: MDState, edges: Edges, stride_fs: float) -> torch.Tensor:
        """``J ∇S`` at ``state`` as (A, 6): displacement Å and momentum change, float64."""
        batch = model_batch(self.model, state, edges, stride_fs)
        assert self.model.energy_model is not None
        if self.generating == "modified":
            dq, dp = modified_stride_gradients(self.model.energy_model, batch)
        else:
            learned = self.model.generating if self.generating == "learned" else None
            dq, dp = stride_gradients(learned, self.model.energy_model, batch)
        return torch.cat([dq, dp], dim=1).to(torch.float64)

    def propagate(
        self, state: MDState, edges: Edges | None, stride_fs: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        assert edges is not None
        h = stride_fs * FS
        mobile = (~state.fixed)[:, None].to(torch.float64)
        velocity = h * mobile / state.masses[:, None]  # momentum -> Å over the stride
        per_momentum = torch.where(velocity > 0, velocity, 1.0)
        q, p = state.positions, state.momenta * mobile

        def to_y(q_mid: torch.Tensor, p_mid: torch.Tensor) -> torch.Tensor:
            return torch.cat([2 * q_mid, 2 * p_mid * velocity], dim=1)

        def midpoint_map(y: torch.Tensor) -> torch.Tensor:
            q_mid, p_mid = 0.5 * y[:, :3], 0.5 * y[:, 3:] / per_momentum
            mid = state.replace(positions=q_mid, momenta=p_mid)
            step = self.gradients(mid, self._midpoint_cache.edges(mid), stride_fs)
            p_new = p + 0.5 * step[:, 3:] * mobile
            q_new = q + 0.5 * (step[:, :3] + (p_new - p_mid) * velocity) * mobile
            return to_y(q_new, p_new)

        start = self._initial_guess(state, edges, stride_fs)
        y, iterations, converged = anderson_solve(
            midpoint_map,
            to_y(0.5 * (q + start[:, :3]), 0.5 * (p + start[:, 3:] * mobile)),
            state.system,
            state.n_systems,
            self.solver,
        )
        positions = y[:, :3] - q
        momenta = torch.where(mobile.bool(), y[:, 3:] / per_momentum - p, state.momenta)
        if not self.solver.corrector:
            lost = (~converged)[state.system]
            positions[lost], momenta[lost] = float("nan"), float("nan")
            self._count(iterations, converged)
        else:  # a corrector stride keeps its last iterate: none is lost
            self._count(iterations, torch.ones_like(converged))
        return positions, momenta

    def _initial_guess(self, state: MDState, edges: Edges, stride_fs: float) -> torch.Tensor:
        """(A, 6) the direct predictor's stride when it serves ``stride_fs``, else ``x``."""
        x0 = torch.cat([state.positions, state.momenta], dim=1)
        if not self._predicts(stride_fs):
            return x0
        assert self.model.predictor is not None
        with torch.no_grad():
            q, p = self.model.predictor(model_batch(self.model, state, edges, stride_fs))
        guess = torch.cat([q, p], dim=1).to(torch.float64)
        return torch.where(torch.isfinite(guess), guess, x0)

    def _count(self, iterations: torch.Tensor, converged: torch.Tensor) -> None:
        self.strides += int(iterations.numel())
        self.iterations += int(iterations.sum())
        self.unconverged += int((~converged).sum())
        self.last_iterations = iterations.detach().cpu()
        rate = self.unconverged / self.strides
        judged = self.strides >= self.solver.warn_after
        if judged and not self._warned and rate > self.solver.warn_rate:
            self._warned = True
            warnings.warn(
                f"the symplectic solver did not converge on {rate:.1%} of {self.strides} "
                f"strides (tolerance {self.solver.tolerance_A:g} Å in "
                f"{self.solver.max_iterations} iterations); they were redone (rejected, in a "
                "Metropolis chain). Raise "
                "max_iterations or the tolerance, take a shorter stride, or train the "
                "generating function on states like these",
                RuntimeWarning,
                stacklevel=2,
            )


def generating_kind(symplectic: bool | str) -> str | None:
    """The :data:`GENERATING_KINDS` entry a ``symplectic`` argument asks for: True means
    "learned", a kind names itself, False or None (direct strides) gives None."""
    if not symplectic:
        return None
    return "learned" if symplectic is True else str(symplectic)


def model_propagator(
    model: FlashMDModel, symplectic: bool | str = False, solver: SolverConfig | None = None
) -> ModelPropagator | SymplecticPropagator:
    """The propagator of ``model``: symplectic strides (its generating function, solved with
    ``solver``) when ``symplectic``, else its direct predictor.

    Raises:
        ValueError: symplectic strides from a model without a generating function (the message
            says how to train one), or direct strides from a model without a predictor.
    """
    generating = generating_kind(symplectic)
    if generating is not None:
        return SymplecticPropagator(model, solver, generating=generating)
    if solver is not None:
        raise ValueError("solver settings apply to symplectic strides only; pass symplectic=True")
    return ModelPropagator(model)
