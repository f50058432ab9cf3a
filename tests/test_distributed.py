"""Distributed generation and verification give what one process gives for the same seed."""

from __future__ import annotations

import copy
import logging
import os
import sys
from dataclasses import replace

import pytest
import torch
from conftest import make_tiny_policy

from ponder.policy import Policy, TinyPolicy
from ponder.reward.verifier import VerifierReward
from ponder.tasks.arithmetic import Arithmetic
from ponder.types import Cost, Sampling

ray = pytest.importorskip("ray")

from ponder.distributed import RayPolicy, RayVerifier, parallel_scores, start_ray

PROMPTS = [f"Q: {a}+{2 * a + 1}\n" for a in range(7)]


@pytest.fixture(scope="module")
def ray_session():
    os.environ["RAY_AUTH_MODE"] = "disabled"
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def pair(ray_session):
    """(local policy, RayPolicy over it with 2 workers); tests that change the weights restore them."""
    local = make_tiny_policy()
    rp = RayPolicy(local, workers=2)
    yield local, rp
    rp.close()


def assert_same(a, b):
    assert len(a) == len(b)
    for ga, gb in zip(a, b):
        assert len(ga) == len(gb)
        for x, y in zip(ga, gb):
            assert x.token_ids == y.token_ids and x.text == y.text and x.finish == y.finish
            assert x.cost == y.cost
            assert torch.allclose(torch.tensor(x.logprobs), torch.tensor(y.logprobs), atol=1e-6)


def tokens(groups):
    return [[s.token_ids for s in g] for g in groups]


@pytest.mark.parametrize("n", [1, 4])
@pytest.mark.parametrize("temperature", [1.0, 0.0])
@pytest.mark.parametrize("stop_at_step", [False, True])
def test_seeded_generate_equals_local(pair, n, temperature, stop_at_step):
    local, rp = pair
    rp.batch_size = 2 * n  # set through the wrapper: 2 prompts per batch, 4 batches over 2 workers
    assert local.batch_size == 2 * n and rp.prompts_per_batch(Sampling(n=n)) == 2
    s = Sampling(n=n, temperature=temperature, max_new_tokens=24, stop_at_step=stop_at_step, seed=11)
    want, got = local.generate(PROMPTS, s), rp.generate(PROMPTS, s)
    assert_same(got, want)
    assert Cost.total(x.cost for g in got for x in g) == Cost.total(x.cost for g in want for x in g)
    if temperature == 1.0:  # some samples end at a step; another seed draws other samples
        assert any(x.finish == "step" if stop_at_step else "\n" in x.text for g in got for x in g)
        assert tokens(rp.generate(PROMPTS, replace(s, seed=12))) != tokens(got)


def test_unseeded_generate_draws_its_seed_from_the_local_generator(pair):
    local, rp = pair
    rp.batch_size = 4
    g = torch.Generator()
    g.set_state(local.generator.get_state())
    got = rp.generate(PROMPTS, Sampling(n=2, max_new_tokens=10))
    seed = int(torch.randint(2**62, (1,), generator=g))
    assert_same(got, local.generate(PROMPTS, Sampling(n=2, max_new_tokens=10, seed=seed)))
    assert rp.generate([], Sampling()) == []


def test_workers_follow_the_local_weights(pair):
    local, rp = pair
    rp.batch_size = 4
    s = Sampling(n=2, temperature=1.0, max_new_tokens=12, seed=5)
    before = rp.generate(PROMPTS, s)
    saved = {k: v.clone() for k, v in local.model.state_dict().items()}
    try:
        g = torch.Generator().manual_seed(3)
        with torch.no_grad():  # an in-place edit, as a learner's update would make
            for p in local.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.3)
        noisy = rp.generate(PROMPTS, s)
        assert_same(noisy, local.generate(PROMPTS, s))
        assert tokens(noisy) != tokens(before)

        opt = torch.optim.SGD(list(local.parameters()), lr=1.0)  # a learning step
        rp.train(True)
        logp, mask = rp.logprobs(PROMPTS, [x.text for g in noisy for x in g[:1]])
        (-(logp * mask).sum()).backward()
        opt.step()
        rp.train(False)
        stepped = rp.generate(PROMPTS, s)
        assert_same(stepped, local.generate(PROMPTS, s))
        assert tokens(stepped) != tokens(noisy)
    finally:
        local.model.load_state_dict(saved)
        local.model.zero_grad(set_to_none=True)
    assert_same(rp.generate(PROMPTS, s), before)  # restored weights reach the workers too


def test_prefix_cache_reaches_the_workers(pair):
    local, rp = pair
    rp.batch_size = 4
    s = Sampling(n=2, temperature=1.0, max_new_tokens=8, seed=9)
    try:
        rp.set_prefix_cache(4)
        assert local.prefix_cache is not None
        first, again = rp.generate(PROMPTS, s), rp.generate(PROMPTS, s)
        # the same batches go to the same workers, whose caches now hold every prompt
        encoded = [sum(x.cost.tokens_encoded for g in out for x in g) for out in (first, again)]
        assert encoded[1] < encoded[0]
        assert tokens(again) == tokens(first)
    finally:
        rp.set_prefix_cache(0)
    assert local.prefix_cache is None


def test_delegates_to_the_local_policy(pair, tmp_path):
    local, rp = pair
    assert isinstance(rp, Policy)
    assert rp.model is local.model and rp.config is local.config and rp.tokenizer is local.tokenizer
    assert hasattr(rp.model, "hidden")  # what PPO checks for
    assert [id(p) for p in rp.parameters()] == [id(p) for p in local.parameters()]
    assert rp.num_params() == local.num_params() and rp.room("Q: 1+2\n") == local.room("Q: 1+2\n")
    assert rp.train(False) is rp and not local.model.training
    lp, mask = rp.logprobs(["Q: 1+2\n"], ["3"])
    lp2, mask2 = local.logprobs(["Q: 1+2\n"], ["3"])
    assert torch.equal(lp, lp2) and torch.equal(mask, mask2)
    ref = copy.deepcopy(rp)  # a reference policy: an in-process copy, weights not shared
    assert type(ref) is TinyPolicy and ref.model is not local.model
    rp.save(tmp_path / "m")
    rp.load_weights(tmp_path / "m")
    assert TinyPolicy.load(tmp_path / "m").num_params() == local.num_params()
    with pytest.raises(AttributeError):
        rp.no_such_attribute  # noqa: B018


def test_worker_errors_surface_as_themselves(pair):
    _, rp = pair
    with pytest.raises(ValueError, match="does not fit model.max_seq_len"):
        rp.generate(["x" * 100], Sampling(seed=0))


def test_ray_verifier_scores_equal_the_verifier(ray_session):
    task = Arithmetic(digits=2)
    problems = task.problems("train", 6, seed=0)
    texts = [task.demonstration(p) for p in problems] + [f"A: {int(p.answer) + 1}\n" for p in problems] + ["junk"] * 6
    problems = problems * 3
    want = VerifierReward(task).score(problems, texts)
    assert 0 < sum(want) < len(want)
    for chunk_size in (None, 5):
        rv = RayVerifier(VerifierReward(task), workers=2, chunk_size=chunk_size)
        assert rv.score(problems, texts) == want
        assert rv.score([], []) == []
        assert rv.calls == len(texts)
    assert parallel_scores(VerifierReward(task), problems, texts, workers=3) == want
    with pytest.raises(ValueError, match="parallel"):
        rv.score(problems, texts[:-1])


def test_bad_workers_and_backends_are_clear_errors(ray_session):
    with pytest.raises(ValueError, match="chunk_size"):
        RayVerifier(VerifierReward(Arithmetic()), workers=1, chunk_size=0)
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError, match="workers must be an integer >= 1"):
            RayPolicy(make_tiny_policy(), workers=bad)
    with pytest.raises(ValueError, match="workers must be"):
        RayVerifier(VerifierReward(Arithmetic()), workers=0)
    with pytest.raises(ValueError, match="workers must be"):
        start_ray(0)
    with pytest.raises(TypeError, match="TinyPolicy"):
        RayPolicy(object(), workers=1)


def test_closed_policy_refuses_to_generate(ray_session):
    rp = RayPolicy(make_tiny_policy(), workers=1)
    rp.close()
    with pytest.raises(RuntimeError, match="closed"):
        rp.generate(PROMPTS, Sampling(seed=0))
    assert len(rp.local.generate(PROMPTS[:1], Sampling(seed=0))) == 1  # the local policy is still usable


def test_missing_ray_names_the_install_command(monkeypatch):
    import ponder.distributed as dist

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"pip install -e '\.\[ray\]'"):
        dist.start_ray(1)
