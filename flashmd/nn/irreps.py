"""Irreps helpers: the hidden feature layout and checks done when modules are built."""

from __future__ import annotations

from e3nn import o3


def hidden_irreps(n_scalars: int, n_tensors: int, lmax: int) -> o3.Irreps:
    """Hidden node features: ``n_scalars x 0e`` then ``n_tensors`` copies of each ``l = 1..lmax``
    with both parities (``1o + 1e + 2e + 2o + ...``), so polar and axial vectors both flow.
    """
    if n_scalars < 1 or n_tensors < 1 or lmax < 1:
        raise ValueError(
            f"need n_scalars, n_tensors, lmax >= 1, got {n_scalars}, {n_tensors}, {lmax}"
        )
    parts = [(n_scalars, (0, 1))]
    for degree in range(1, lmax + 1):
        natural = (-1) ** degree
        parts += [(n_tensors, (degree, natural)), (n_tensors, (degree, -natural))]
    return o3.Irreps(parts)


def check_irreps(name: str, irreps: o3.Irreps, required: str | o3.Irreps) -> None:
    """Raise ``ValueError`` unless every irrep of ``required`` occurs in ``irreps``.

    Args:
        name: what is being checked, for the message (e.g. ``"VectorReadout input"``).
        irreps: the irreps a module received.
        required: the irreps it needs (multiplicities ignored).
    """
    present = {ir for _, ir in o3.Irreps(irreps)}
    missing = [str(ir) for _, ir in o3.Irreps(required) if ir not in present]
    if missing:
        raise ValueError(f"{name} has irreps {irreps} but needs {missing}")


def reachable_irreps(
    target: str | o3.Irreps, irreps_in: str | o3.Irreps, irreps_sh: str | o3.Irreps
) -> o3.Irreps:
    """The part of ``target`` that one interaction can produce from ``irreps_in``: the irreps of
    ``irreps_in x irreps_sh`` (messages) or of ``irreps_in`` itself (self-connection).

    Used for the first layer, whose input (e.g. scalars only) cannot feed every hidden irrep.
    """
    produced = {ir for _, ir in o3.Irreps(irreps_in)}
    for _, ir_in in o3.Irreps(irreps_in):
        for _, ir_sh in o3.Irreps(irreps_sh):
            produced.update(ir_in * ir_sh)
    return o3.Irreps([(mul, ir) for mul, ir in o3.Irreps(target) if ir in produced])


def layer_inputs(
    irreps_in: str | o3.Irreps, irreps_hidden: str | o3.Irreps, n_layers: int, irreps_sh: o3.Irreps
) -> list[o3.Irreps]:
    """Irreps entering each of ``n_layers`` interactions: ``irreps_in``, then the part of
    ``irreps_hidden`` the previous layer can produce (:func:`reachable_irreps`)."""
    irreps = [o3.Irreps(irreps_in)]
    for _ in range(n_layers - 1):
        irreps.append(reachable_irreps(irreps_hidden, irreps[-1], irreps_sh))
    return irreps
