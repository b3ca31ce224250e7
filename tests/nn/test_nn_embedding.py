"""Species and scalar embeddings, scatter sums."""

from __future__ import annotations

import pytest
import torch

from flashmd.nn import GaussianEmbedding, SpeciesEmbedding, scatter_sum


def test_species_embedding_looks_up_by_atomic_number():
    torch.manual_seed(0)
    embedding = SpeciesEmbedding([29, 1, 8], n_features=5)
    numbers = torch.tensor([8, 1, 29, 8, 3])
    assert embedding.species_index(numbers).tolist() == [2, 1, 0, 2, -1]
    out = embedding(numbers[:4])
    assert out.shape == (4, 5)
    torch.testing.assert_close(out[0], out[3])
    torch.testing.assert_close(out[2], embedding.embedding.weight[0])


@pytest.mark.parametrize("species", [[], [1, 1], [0], [119]])
def test_species_embedding_rejects_bad_species(species):
    with pytest.raises(ValueError, match=r"species|atomic numbers"):
        SpeciesEmbedding(species, 4)


def test_gaussian_embedding_peaks_at_centres():
    embedding = GaussianEmbedding(0.0, 64.0, 5).double()
    features = embedding(torch.tensor([0.0, 16.0, 64.0], dtype=torch.float64))
    assert features.shape == (3, 5)
    assert features.argmax(dim=1).tolist() == [0, 1, 4]
    assert torch.allclose(features.max(dim=1).values, torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="n_basis >= 2"):
        GaussianEmbedding(0.0, 1.0, 1)


def test_scatter_sum_groups_rows():
    src = torch.arange(12.0).reshape(6, 2)
    index = torch.tensor([0, 2, 0, 2, 2, 0])
    out = scatter_sum(src, index, 4)
    assert out.shape == (4, 2)
    torch.testing.assert_close(out[0], src[[0, 2, 5]].sum(0))
    torch.testing.assert_close(out[1], torch.zeros(2))
    torch.testing.assert_close(out[2], src[[1, 3, 4]].sum(0))
