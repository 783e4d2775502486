"""wmark.image.train: stage tables, and the shipped recipe's first steps against the card."""
from __future__ import annotations

import json
from importlib.resources import files

import pytest

from wmark.image.train import DEFAULT_BATCH, DEFAULT_THREADS, FIRST_LOSSES, RECIPES, stages_for


def _card() -> dict:
    return json.loads((files("wmark.image") / "weights" / "card.json").read_text())


def test_card_states_the_default_recipe():
    card = _card()
    assert [tuple(s) for s in card["stages"]] == list(RECIPES["shipped"]) == list(stages_for())
    assert card["batch"] == DEFAULT_BATCH and card["threads"] == DEFAULT_THREADS and card["seed"] == 0
    assert card["steps_done"] == RECIPES["shipped"][-1][1]
    assert card["command"].startswith("wmark train image --out DIR")
    assert len(card["first_losses"]) == FIRST_LOSSES


def test_stage_tables():
    assert stages_for(steps=50) == ((50, 50),)
    with pytest.raises(ValueError, match="unknown training recipe"):
        stages_for("nope")
    with pytest.raises(ValueError, match=">= 1"):
        stages_for(steps=0)


@pytest.mark.slow
def test_first_steps_reproduce_the_card(tmp_path, shared_data):
    """The shipped recipe's first steps (seed 0, batch 8, 2 threads, CPU) give the card's losses; other
    machines and thread counts differ in the last bits only."""
    import torch

    from wmark.image.train import train

    threads = torch.get_num_threads()
    try:
        sched = RECIPES["shipped"][0][0]
        train(str(tmp_path), stages=((sched, FIRST_LOSSES),), data=str(shared_data / "train"), device="cpu",
              log=lambda _m: None, progress=False)
    finally:
        torch.set_num_threads(threads)
    got = json.loads((tmp_path / "card.json").read_text())["first_losses"]
    assert got == pytest.approx(_card()["first_losses"], rel=1e-4)


@pytest.mark.slow
def test_resumed_stages_equal_one_run(tmp_path, shared_data):
    """Two stages run in one call give the weights of the same stages run as two calls (kill and
    resume), bit for bit: the checkpoint holds all the state."""
    import torch

    from wmark.image.train import train

    kw = dict(data=str(shared_data / "train"), device="cpu", log=lambda _m: None, progress=False, batch=2,
              crop=64, threads=1, ckpt_every=1)
    threads = torch.get_num_threads()
    try:
        train(str(tmp_path / "one"), stages=((40, 1), (30, 2)), **kw)
        train(str(tmp_path / "two"), stages=((40, 1),), **kw)
        train(str(tmp_path / "two"), stages=((40, 1), (30, 2)), **kw)
    finally:
        torch.set_num_threads(threads)
    assert (tmp_path / "one" / "default.pt").read_bytes() == (tmp_path / "two" / "default.pt").read_bytes()
