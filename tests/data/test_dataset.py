"""Stride pairs: what a pair holds, splits by trajectory, strides, augmentations, sharding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flashmd.data.dataset import StridePairs, random_orthogonal, split_trajectories
from flashmd.data.generate import generate
from flashmd.data.store import TrajectoryStore


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    from flashmd.data.recipes import load_recipe
    from tests.conftest import REPO

    recipe = load_recipe(REPO / "data" / "al-emt-tiny.yaml").model_copy(
        update={"production_fs": 160.0, "equilibration_fs": 20.0}
    )
    path = tmp_path_factory.mktemp("pairs") / "s.zarr"
    generate(recipe, str(path), progress=False)
    return str(path)


def test_pairs_are_frames_a_stride_apart(store_path):
    store = TrajectoryStore.open(store_path)
    ids = store.ids()
    data = StridePairs(store_path, ids, [8.0, 16.0], shuffle=False)
    items = list(data)
    assert len(items) == len(data) == sum((41 - 2) + (41 - 4) for _ in ids)
    frames = {tid: store[tid].read() for tid in ids}
    for item in items[::17]:
        k = round(float(item["stride"][0]) / 4.0)
        match = [
            (tid, t)
            for tid, f in frames.items()
            for t in range(len(f["positions"]))
            if f["positions"].shape[1] == len(item["numbers"])
            and np.array_equal(f["positions"][t], item["positions"].numpy())
        ]
        assert len(match) == 1
        tid, t = match[0]
        np.testing.assert_array_equal(
            item["target_positions"].numpy(), frames[tid]["positions"][t + k]
        )
        np.testing.assert_array_equal(item["target_momenta"].numpy(), frames[tid]["momenta"][t + k])
        assert float(item["energy"][0]) == frames[tid]["energy"][t]


def test_frame_fraction_keeps_origins_and_targets_in_the_first_frames(store_path):
    store = TrajectoryStore.open(store_path)
    ids = store.ids()
    data = StridePairs(store_path, ids, [8.0, 16.0], shuffle=False, frame_fraction=0.25)
    items = list(data)
    kept = 11  # ceil(0.25 * 41) frames of each trajectory
    assert len(items) == len(data) == sum((kept - 2) + (kept - 4) for _ in ids)
    first = {tid: store[tid].read(0, kept)["positions"] for tid in ids}
    for item in items:
        for key in ("positions", "target_positions"):
            value = item[key].numpy()
            same = [f for f in first.values() if f.shape[1:] == value.shape]
            assert any((f == value).all(axis=(1, 2)).any() for f in same), key
    with pytest.raises(ValueError, match="frame_fraction must be in"):
        StridePairs(store_path, ids, [8.0], frame_fraction=0.0)


def test_split_is_by_trajectory_and_seeded(store_path):
    store = TrajectoryStore.open(store_path)
    train, val = split_trajectories(store, 0.25, seed=3)
    assert len(val) == 1 and not set(train) & set(val) and len(train) + len(val) == 4
    assert split_trajectories(store, 0.25, seed=3) == (train, val)
    assert split_trajectories(store, [val[0]])[1] == val
    with pytest.raises(ValueError, match="not in the store"):
        split_trajectories(store, ["nope"])


def test_wrong_stride_is_refused(store_path):
    with pytest.raises(ValueError, match="not a whole multiple of the store's sample interval 4.0"):
        StridePairs(store_path, TrajectoryStore.open(store_path).ids(), [10.0])


def test_rotation_and_time_reversal(store_path):
    ids = TrajectoryStore.open(store_path).ids()[:1]
    plain = list(StridePairs(store_path, ids, [16.0], shuffle=False, seed=0))
    rotated = list(StridePairs(store_path, ids, [16.0], shuffle=False, rotate=True, seed=0))
    for a, b in zip(plain[:5], rotated[:5], strict=True):
        disp_a = (a["target_positions"] - a["positions"]).norm(dim=1)
        disp_b = (b["target_positions"] - b["positions"]).norm(dim=1)
        np.testing.assert_allclose(disp_a, disp_b, atol=1e-12)
        np.testing.assert_allclose(a["momenta"].norm(dim=1), b["momenta"].norm(dim=1), atol=1e-12)
        np.testing.assert_allclose(
            abs(np.linalg.det(b["cell"][0].numpy())), abs(np.linalg.det(a["cell"][0].numpy()))
        )
    reversed_items = list(
        StridePairs(store_path, ids, [16.0], shuffle=False, time_reversal=True, seed=0)
    )
    flipped = [
        r
        for r, p in zip(reversed_items, plain, strict=True)
        if not np.array_equal(r["positions"], p["positions"])
    ]
    assert 0 < len(flipped) < len(plain)
    forward = {p["positions"].numpy().tobytes(): p for p in plain}
    r = flipped[0]
    p = forward[r["target_positions"].numpy().tobytes()]
    np.testing.assert_array_equal(r["positions"], p["target_positions"])
    np.testing.assert_array_equal(r["momenta"], -p["target_momenta"])
    np.testing.assert_array_equal(r["target_momenta"], -p["momenta"])
    rng = np.random.default_rng(0)
    dets = [np.linalg.det(random_orthogonal(rng)) for _ in range(200)]
    np.testing.assert_allclose(np.abs(dets), 1.0)
    assert 60 < sum(d < 0 for d in dets) < 140


def test_ranks_split_blocks_without_overlap(store_path):
    ids = TrajectoryStore.open(store_path).ids()
    whole = StridePairs(store_path, ids, [8.0], shuffle=True, seed=1)
    parts = [
        StridePairs(store_path, ids, [8.0], shuffle=True, seed=1, rank=r, world_size=2)
        for r in range(2)
    ]
    key = lambda item: (item["positions"].numpy().tobytes(), float(item["stride"][0]))  # noqa: E731
    got = [key(i) for p in parts for i in p]
    assert sorted(got) == sorted(key(i) for i in whole) and len(got) == len(set(got))


def test_pairs_per_block_draws_a_few_pairs_from_every_block(store_path):
    ids = TrajectoryStore.open(store_path).ids()
    every = StridePairs(store_path, ids, [8.0, 16.0], shuffle=True, seed=2)
    few = StridePairs(store_path, ids, [8.0, 16.0], shuffle=True, seed=2, pairs_per_block=5)
    items = list(few)
    assert len(items) == len(few) == 5 * len(few.blocks) < len(every)
    frames = {item["positions"].numpy().tobytes() for item in every}
    assert all(item["positions"].numpy().tobytes() in frames for item in items)
    assert len({int(item["n_atoms"][0]) for item in items}) == 2  # both systems come round
    few.set_epoch(1)
    again = [item["positions"].numpy().tobytes() for item in few]
    assert again != [item["positions"].numpy().tobytes() for item in items]  # new subset
    with pytest.raises(ValueError, match="pairs_per_block"):
        StridePairs(store_path, ids, [8.0], pairs_per_block=0)


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("pairs_per_block", [None, 12])
def test_skipping_batches_resumes_the_epoch_exactly(store_path, workers, pairs_per_block):
    ids = TrajectoryStore.open(store_path).ids()

    def batches(skip: int) -> list:
        data = StridePairs(
            store_path,
            ids,
            [8.0, 16.0],
            shuffle=True,
            time_reversal=True,
            rotate=True,
            seed=4,
            buffer_blocks=1,
            pairs_per_block=pairs_per_block,
        )
        data.set_epoch(1, skip_batches=skip, batch_size=3)
        loader = torch.utils.data.DataLoader(
            data, batch_size=3, num_workers=workers, collate_fn=lambda items: items, drop_last=True
        )
        return [[item["positions"] for item in batch] for batch in loader]

    full, resumed = batches(0), batches(6)  # whole rounds of the two workers
    assert len(resumed) == len(full) - 6
    for a, b in zip(full[6:], resumed, strict=True):
        for x, y in zip(a, b, strict=True):
            assert torch.equal(x, y)


def _small_store(directory, **changes) -> str:
    """A store of the tiny Al recipe with ``changes`` (40 fs of production unless changed)."""
    from flashmd.data.recipes import load_recipe
    from tests.conftest import REPO

    recipe = load_recipe(REPO / "data" / "al-emt-tiny.yaml")
    update = {"production_fs": 40.0, "equilibration_fs": 20.0, **changes}
    path = str(directory / "s.zarr")
    generate(recipe.model_validate({**recipe.model_dump(), **update}), path, progress=False)
    return path


@pytest.fixture(scope="module")
def extra_path(tmp_path_factory):
    """A second store: other seed and temperature, one system, the same sample interval."""
    return _small_store(
        tmp_path_factory.mktemp("extra"),
        seed=7,
        temperatures_K=[750.0],
        systems=[{"name": "al-fcc", "builder": "crystal", "element": "Al", "supercell": [3, 3, 3]}],
    )


def test_pairs_come_from_several_stores(store_path, extra_path):
    base_ids = TrajectoryStore.open(store_path).ids()[:2]
    extra_ids = TrajectoryStore.open(extra_path).ids()
    base = StridePairs(store_path, base_ids, [8.0, 16.0], shuffle=False)
    extra = StridePairs(extra_path, extra_ids, [8.0, 16.0], shuffle=False)
    both = StridePairs([store_path, extra_path], [base_ids, extra_ids], [8.0, 16.0], shuffle=False)
    assert len(both) == len(base) + len(extra) and len(extra) > 0
    assert {b.source for b in both.blocks} == {0, 1} and both.with_forces
    assert both.traj_ids == base_ids + extra_ids and both.location == store_path
    items = list(both)
    assert len(items) == len(both)
    expected = list(base) + list(extra)  # unshuffled: base store first, then the extra one
    for got, want in zip(items, expected, strict=True):
        assert torch.equal(got["positions"], want["positions"])
        assert torch.equal(got["target_momenta"], want["target_momenta"])
    # shuffled: every pair of both stores once
    key = lambda item: (item["positions"].numpy().tobytes(), float(item["stride"][0]))  # noqa: E731
    mixed = [key(i) for i in StridePairs([store_path, extra_path], [base_ids, extra_ids], [8.0])]
    single = [
        key(i)
        for s, ids in ((store_path, base_ids), (extra_path, extra_ids))
        for i in StridePairs(s, ids, [8.0], shuffle=False)
    ]
    assert sorted(mixed) == sorted(single)
    # a source with no trajectory is skipped; one store as a list is the single-store stream
    only_extra = StridePairs([store_path, extra_path], [[], extra_ids], [8.0, 16.0], shuffle=False)
    assert len(only_extra) == len(extra) and {b.source for b in only_extra.blocks} == {1}
    as_list = StridePairs([store_path], [base_ids], [8.0, 16.0], seed=3, pairs_per_block=4)
    plain = StridePairs(store_path, base_ids, [8.0, 16.0], seed=3, pairs_per_block=4)
    assert [key(i) for i in as_list] == [key(i) for i in plain]


def test_frame_fraction_cuts_the_base_store_only(store_path, extra_path):
    """Active learning from a learning curve's run: its labels (short continuations in an extra
    store) must keep every pair even when the base store is cut to a fraction."""
    base_ids = TrajectoryStore.open(store_path).ids()[:2]
    extra_ids = TrajectoryStore.open(extra_path).ids()
    strides = [8.0, 16.0]
    cut_base = StridePairs(store_path, base_ids, strides, shuffle=False, frame_fraction=0.25)
    whole_extra = StridePairs(extra_path, extra_ids, strides, shuffle=False)
    both = StridePairs(
        [store_path, extra_path], [base_ids, extra_ids], strides, shuffle=False, frame_fraction=0.25
    )
    assert len(both) == len(cut_base) + len(whole_extra)
    assert len(cut_base) < len(StridePairs(store_path, base_ids, strides, shuffle=False))


def test_several_stores_need_one_id_list_each_and_one_sample_interval(
    store_path, extra_path, tmp_path
):
    ids = TrajectoryStore.open(store_path).ids()
    with pytest.raises(ValueError, match="2 store locations but 1 trajectory id lists"):
        StridePairs([store_path, extra_path], [ids], [8.0])
    with pytest.raises(ValueError, match="one sequence of trajectory ids per location"):
        StridePairs([store_path, extra_path], ids[:2], [8.0])
    with pytest.raises(ValueError, match="at least one trajectory"):
        StridePairs([store_path, extra_path], [[], []], [8.0])
    coarse = _small_store(tmp_path, sample_interval_fs=8.0)
    coarse_ids = TrajectoryStore.open(coarse).ids()
    with pytest.raises(ValueError, match="sample interval must equal the base store's") as error:
        StridePairs([store_path, coarse], [ids, coarse_ids], [16.0])
    assert "8.0 fs" in str(error.value) and coarse in str(error.value)


def test_unrolled_pairs_carry_the_later_states_and_reverse_with_the_pair(store_path):
    store = TrajectoryStore.open(store_path)
    traj_id = store.ids()[0]
    frames = store[traj_id].read()
    data = StridePairs(store_path, [traj_id], [8.0], shuffle=False, unroll=2)
    items = list(data)
    assert len(items) == len(data) == 41 - 3 * 2  # origins with targets 2, 4 and 6 frames on
    first = items[0]
    assert first["unroll_positions"].shape == (len(first["numbers"]), 2, 3)
    for j, t in enumerate((4, 6)):
        np.testing.assert_array_equal(
            first["unroll_positions"][:, j].numpy(), frames["positions"][t]
        )
        np.testing.assert_array_equal(first["unroll_momenta"][:, j].numpy(), frames["momenta"][t])
    reversed_data = StridePairs(
        store_path, [traj_id], [8.0], shuffle=True, time_reversal=True, unroll=1, seed=3
    )
    for item in reversed_data:
        t = next(t for t in range(41) if np.array_equal(frames["positions"][t], item["positions"]))
        later = item["unroll_positions"][:, 0].numpy()
        if np.array_equal(item["momenta"].numpy(), -frames["momenta"][t]):  # a reversed pair
            np.testing.assert_array_equal(
                item["target_positions"].numpy(), frames["positions"][t - 2]
            )
            np.testing.assert_array_equal(later, frames["positions"][t - 4])
            np.testing.assert_array_equal(item["unroll_momenta"][:, 0], -frames["momenta"][t - 4])
            break
    else:
        raise AssertionError("no reversed pair drawn")
    with pytest.raises(ValueError, match="unroll"):
        StridePairs(store_path, [traj_id], [8.0], unroll=-1)
