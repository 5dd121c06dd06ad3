"""A time-budgeted training run resumes exactly where it stopped: network, optimiser, the data
generator's random state and the run's record come back from one checkpoint."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from LUnetSegmentationLib.training.resumable import resume_state, save_state  # noqa: E402


def _parts(seed):
    torch.manual_seed(seed)
    network = torch.nn.Linear(3, 2)
    optimiser = torch.optim.AdamW(network.parameters(), lr=1e-2)
    return network, optimiser, torch.Generator().manual_seed(seed)


def test_a_run_resumes_where_it_stopped(tmp_path):
    network, optimiser, generator = _parts(0)
    for _ in range(3):
        loss = network(torch.rand((4, 3), generator=generator)).sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    state = {"step": 3, "seconds": 12.0, "best": {"dice": 0.5, "step": 3}, "history": [{"step": 3}]}
    save_state(tmp_path / "checkpoint.pt", network, optimiser, generator, state)
    expected_next = torch.rand(5, generator=generator)

    fresh, fresh_optimiser, fresh_generator = _parts(1)
    resumed = resume_state(tmp_path / "checkpoint.pt", fresh, fresh_optimiser, fresh_generator, {"step": 0}, "cpu")
    assert resumed == state
    assert torch.equal(fresh.weight, network.weight) and torch.equal(fresh.bias, network.bias)
    assert fresh_optimiser.state_dict()["state"][0]["step"] == optimiser.state_dict()["state"][0]["step"]
    assert torch.equal(torch.rand(5, generator=fresh_generator), expected_next)


def test_no_checkpoint_keeps_the_fresh_state(tmp_path):
    network, optimiser, generator = _parts(0)
    fresh = {"step": 0, "seconds": 0.0}
    assert resume_state(tmp_path / "absent.pt", network, optimiser, generator, fresh, "cpu") is fresh


def test_the_split_holds_out_the_last_subjects_with_all_their_rows():
    from LUnetSegmentationLib.training.resumable import split_by_subject

    subjects = ["s03", "s01", "s03", "s02", "s04", "s04"]  # crops: two rows a subject; heads: one
    train, validation, train_subjects, held_out = split_by_subject(subjects, 2)
    assert held_out == ["s03", "s04"] and train_subjects == ["s01", "s02"]
    assert train.tolist() == [1, 3] and validation.tolist() == [0, 2, 4, 5]
