"""The vLLM backend without vLLM: its refusal where vLLM or CUDA is missing, and its vLLM-free parts
(sampling settings, output conversion, cost shares, log-prob extraction, weight pushes, LoRA merge,
export) with plain fake objects standing in for vLLM's; then the whole `VLLMPolicy` on a tiny random
Llama with a scripted fake engine, so that sampling, log-prob recomputation and weight syncing are
checked against the HF copy's own computations. Nothing here needs a GPU.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from types import ModuleType, SimpleNamespace

import pytest
import torch

from ponder.config import PolicyConfig
from ponder.policy import PolicyLoadError
from ponder.policy.base import batch_seed
from ponder.policy.vllm import VLLMPolicy
from ponder.policy.vllm_convert import (
    completion_logprobs,
    engine_logprobs_untempered,
    finish_of,
    sample_flops,
    sampling_kwargs,
    to_samples,
)
from ponder.policy.vllm_weights import engine_model, push_kinds, push_weights
from ponder.types import Cost, Sampling

PC = PolicyConfig(backend="vllm", path="/nowhere/model")


def completion(ids, finish="length", stop=None, lps=None, index=0):
    """A stand-in for vllm.CompletionOutput."""
    return SimpleNamespace(index=index, token_ids=list(ids), finish_reason=finish, stop_reason=stop, logprobs=lps)


# -- refusing cleanly ------------------------------------------------------------------------------


def test_without_vllm_from_config_and_load_say_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` fail
    monkeypatch.delenv("VLLM_ENABLE_V1_MULTIPROCESSING", raising=False)  # restored after the test
    for build in (lambda: VLLMPolicy.from_config(PC, path=PC.path, seed=0), lambda: VLLMPolicy.load("/x", PC)):
        with pytest.raises(PolicyLoadError) as e:
            build()
        assert "backend 'vllm' needs vLLM on a CUDA machine: pip install vllm (not installable on CPU-only " \
               "machines); use backend = 'hf' here" in str(e.value)


def test_without_cuda_refuses(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", ModuleType("vllm"))
    monkeypatch.delenv("VLLM_ENABLE_V1_MULTIPROCESSING", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(PolicyLoadError, match="needs a CUDA GPU.*backend = 'hf'"):
        VLLMPolicy.from_config(PC, path=PC.path, seed=0)


def test_importing_ponder_never_imports_vllm():
    code = ("import sys, ponder, ponder.loop, ponder.policy.factory, ponder.policy.vllm\n"
            "assert 'vllm' not in sys.modules, 'vllm was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})


# -- sampling settings and output conversion --------------------------------------------------------


def test_sampling_kwargs():
    kw = sampling_kwargs(Sampling(n=3, temperature=0.7, top_p=0.9, max_new_tokens=50), n=6, max_tokens=20, seed=5,
                         stop_ids=[2, 7])
    assert kw == {"n": 6, "temperature": 0.7, "top_p": 0.9, "max_tokens": 20, "seed": 5, "logprobs": 0,
                  "stop_token_ids": [2, 7]}
    step = sampling_kwargs(Sampling(temperature=0, top_p=0.5, stop_at_step=True), n=1, max_tokens=8, seed=None,
                           stop_ids=[2])
    assert step["stop"] == ["\n"] and step["include_stop_str_in_output"] is True
    assert step["top_p"] == 1.0 and step["temperature"] == 0  # greedy: no nucleus


def test_finish_mapping():
    assert finish_of(completion([5, 2], "stop", None)) == "eos"  # the tokenizer's EOS
    assert finish_of(completion([5, 9], "stop", 9)) == "eos"  # another stop id
    assert finish_of(completion([5, 6], "stop", "\n")) == "step"
    assert finish_of(completion([5, 6], "length")) == "length"
    assert finish_of(completion([5], "abort")) == "length"


def test_completion_logprobs():
    lp = SimpleNamespace
    c = completion([4, 5], lps=[{4: lp(logprob=-0.5), 9: lp(logprob=-0.1)}, {5: lp(logprob=-1.5)}])
    assert completion_logprobs(c) == (-0.5, -1.5)
    assert completion_logprobs(completion([4], lps=[{4: -0.25}])) == (-0.25,)  # plain floats
    assert completion_logprobs(completion([4, 5])) is None  # not requested
    assert completion_logprobs(completion([4, 5], lps=[{4: -0.5}])) is None  # incomplete
    assert completion_logprobs(completion([4], lps=[{9: -0.5}])) is None  # sampled token missing
    assert completion_logprobs(completion([4], lps=[{4: float("nan")}])) is None


def convert(completions, copies, **kw):
    args = {"prompt_len": 5, "cached": 0, "stop_ids": {2}, "eos_id": 2, "decode": lambda ids: "".join(map(str, ids)),
            "n_params": 100, "per_layer": 8.0} | kw
    return to_samples(completions, copies=copies, **args)


def test_to_samples_texts_ids_logprobs_and_cost_shares():
    lps = [{t: -0.5} for t in (3, 4, 2)]
    outs = [completion([3, 4, 2], "stop", None, lps), completion([3, 4], "length", None, lps[:2], index=1),
            completion([4, 1], "stop", "\n", lps[:1], index=2)]  # incomplete log-probs
    samples = convert(outs, 3, prompt_len=5, cached=2, policy_calls=7)
    assert [s.finish for s in samples] == ["eos", "length", "step"]
    assert [s.token_ids for s in samples] == [(3, 4, 2), (3, 4), (4, 1)]
    assert [s.text for s in samples] == ["34", "34", "41"]  # end tokens are not text
    assert samples[0].logprobs == (-0.5,) * 3 and samples[1].logprobs == (-0.5,) * 2
    assert samples[2].logprobs == ()  # left for the caller to recompute
    total = Cost.total(s.cost for s in samples)
    assert total.tokens_generated == 7 and total.tokens_encoded == 3 and total.policy_calls == 7
    assert [s.cost.tokens_encoded for s in samples] == [3, 0, 0]
    expected = sample_flops(100, 8.0, generated=3, prompt_len=5, encoded=3) + sum(
        sample_flops(100, 8.0, generated=k, prompt_len=5, encoded=0) for k in (2, 2))
    assert total.flops == pytest.approx(expected)
    assert sample_flops(100, 8.0, generated=0, prompt_len=5, encoded=5) == 2 * 100 * 5 + 8.0 * 15  # prefill only
    assert all(s.logprobs == () for s in convert(outs, 3, logprobs_ok=False))
    assert convert(outs, 3, cached=5)[0].cost.tokens_encoded == 1  # the last prompt token always runs


def test_to_samples_greedy_copies_cost_nothing_and_missing_eos_is_restored():
    samples = convert([completion([3, 4], "stop", None, [{3: -0.1}, {4: -0.2}])], 4)
    assert len(samples) == 4 and len({s.token_ids for s in samples}) == 1
    assert samples[0].token_ids == (3, 4, 2) and samples[0].logprobs == ()  # end token put back: recompute
    assert all(s.cost == Cost() for s in samples[1:]) and samples[0].cost.tokens_generated == 3
    with pytest.raises(ValueError, match="expected 3"):
        convert([completion([3]), completion([4])], 3)


def test_engine_logprobs_untempered():
    assert engine_logprobs_untempered(raw=True, temperature=0.7, top_p=0.9)
    assert engine_logprobs_untempered(raw=False, temperature=1.0, top_p=1.0)
    assert engine_logprobs_untempered(raw=False, temperature=0.0, top_p=1.0)
    assert not engine_logprobs_untempered(raw=False, temperature=0.7, top_p=1.0)
    assert not engine_logprobs_untempered(raw=False, temperature=1.0, top_p=0.9)


# -- weight pushes -----------------------------------------------------------------------------------


class Recorder:
    """An engine model: remembers what `load_weights` got."""

    def __init__(self, fail: bool = False) -> None:
        self.loaded, self.fail = [], fail

    def load_weights(self, weights):
        if self.fail:
            raise KeyError("model.unknown.weight")
        self.loaded.append(dict(weights))

    def parameters(self):
        return iter([torch.zeros(1)])


def v1_engine(model, **extra):
    runner = SimpleNamespace(model=model)
    worker = SimpleNamespace(worker=SimpleNamespace(model_runner=runner))
    resets = []
    llm = SimpleNamespace(llm_engine=SimpleNamespace(model_executor=SimpleNamespace(driver_worker=worker),
                                                     engine_core=object()),
                          reset_prefix_cache=lambda: resets.append(1), **extra)
    return llm, resets


def test_push_kinds_follow_what_the_engine_offers():
    model = Recorder()
    llm, _ = v1_engine(model)
    assert engine_model(llm) is model and push_kinds(llm) == ("direct", "rebuild")
    v0 = SimpleNamespace(llm_engine=SimpleNamespace(model_executor=SimpleNamespace(
        driver_worker=SimpleNamespace(model_runner=SimpleNamespace(get_model=lambda: model)))))
    assert engine_model(v0) is model
    nested = SimpleNamespace(llm_engine=SimpleNamespace(engine_core=SimpleNamespace(engine_core=SimpleNamespace(
        model_executor=SimpleNamespace(driver_worker=SimpleNamespace(worker=SimpleNamespace(
            model_runner=SimpleNamespace(model=model))))))))
    assert engine_model(nested) is model
    remote = SimpleNamespace(llm_engine=SimpleNamespace(engine_core=object()), collective_rpc=lambda *a, **k: None)
    assert engine_model(remote) is None and push_kinds(remote) == ("rpc", "rebuild")
    assert push_kinds(SimpleNamespace()) == ("rebuild",)


def test_push_weights_in_place_then_fallbacks():
    state = {"model.w": torch.ones(2)}
    model = Recorder()
    llm, resets = v1_engine(model)
    assert push_weights(llm, state, rebuild=lambda: pytest.fail("no rebuild")) == (llm, "direct")
    assert list(model.loaded[0]) == ["model.w"] and resets == [1]

    calls = []  # a failing direct load falls back to collective_rpc, which runs the function on each worker
    worker = SimpleNamespace(model_runner=SimpleNamespace(model=Recorder()))
    llm, resets = v1_engine(Recorder(fail=True), collective_rpc=lambda fn, args: calls.append(fn(worker, *args)))
    assert push_weights(llm, state, rebuild=lambda: pytest.fail("no rebuild"))[1] == "rpc"
    assert len(calls) == 1 and torch.equal(worker.model_runner.model.loaded[0]["model.w"], torch.ones(2))

    llm, _ = v1_engine(Recorder(fail=True))
    new = object()
    with pytest.warns(UserWarning, match="KeyError"):
        assert push_weights(llm, state, rebuild=lambda: new) == (new, "rebuild")
    assert push_weights(llm, state, rebuild=lambda: new, allowed=("rebuild",)) == (new, "rebuild")  # no warning


# -- the whole policy on a tiny random Llama with a fake engine ---------------------------------------

CHARS = "0123456789+-*=() \n"
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
PAD, BOS, EOS = 0, 1, 2
NL = len(SPECIALS) + CHARS.index("\n")


@pytest.fixture(scope="module")
def tf():
    os.environ["HF_HUB_OFFLINE"] = "1"
    return pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def model_dir(tf, tmp_path_factory):
    from tokenizers import Tokenizer, decoders, models, processors

    path = tmp_path_factory.mktemp("tiny_llama_vllm")
    torch.manual_seed(0)
    cfg = tf.LlamaConfig(vocab_size=len(SPECIALS) + len(CHARS), hidden_size=16, intermediate_size=32,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32,
                         initializer_range=0.3, pad_token_id=PAD, bos_token_id=BOS, eos_token_id=EOS,
                         tie_word_embeddings=False)
    tf.LlamaForCausalLM(cfg).save_pretrained(path)
    tk = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(SPECIALS + list(CHARS))}, merges=[], unk_token="<unk>"))
    tk.decoder = decoders.Fuse()
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", BOS)])
    tf.PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                               unk_token="<unk>").save_pretrained(path)
    return path


class FakeLLM:
    """A scripted engine: sample j of a request alternates a token x (from j and the prompt) with EOS
    (j even: it ends there) or a newline (j odd: it ends there when asked to stop at steps, else at the
    length cap); log-probs are -0.25 when asked for."""

    def __init__(self, model) -> None:
        self.requests, self.params, self.resets = [], [], 0
        worker = SimpleNamespace(worker=SimpleNamespace(model_runner=SimpleNamespace(model=model)))
        self.llm_engine = SimpleNamespace(model_executor=SimpleNamespace(driver_worker=worker), engine_core=object())

    def reset_prefix_cache(self):
        self.resets += 1

    def generate(self, requests, params, use_tqdm=True):
        self.requests += requests
        self.params += params
        results = []
        for req, p in zip(requests, params, strict=True):
            outs = []
            for j in range(p.n):
                ids, finish, stop = [], "length", None
                while len(ids) < p.max_tokens:
                    x = 4 + (j + req["prompt_token_ids"][1]) % 10
                    tok = (x, NL if j % 2 else EOS)[len(ids) % 2]
                    ids.append(tok)
                    if tok in p.stop_token_ids:
                        finish = "stop"
                        break
                    if tok == NL and getattr(p, "stop", None):
                        finish, stop = "stop", "\n"
                        break
                lps = [{t: SimpleNamespace(logprob=-0.25)} for t in ids] if p.logprobs is not None else None
                outs.append(completion(ids, finish, stop, lps, index=j))
            results.append(SimpleNamespace(outputs=outs, num_cached_tokens=0))
        return results


def make_policy(model_dir, *, lora: int = 0, raw: bool = False):
    from ponder.policy.hf import HFConfig, HFPolicy

    hf = HFPolicy(HFConfig(str(model_dir), lora_r=lora, lora_targets=("q_proj", "v_proj")), seed=0)
    model = Recorder()
    vllm = SimpleNamespace(SamplingParams=lambda **kw: SimpleNamespace(**kw))
    return VLLMPolicy(hf, FakeLLM(model), vllm=vllm, config=PC, raw_logprobs=raw), model


def test_policy_generate_recomputes_untempered_logprobs(model_dir):
    policy, _ = make_policy(model_dir, raw=False)
    prompts = ["12+3=", "7*8=", "12+3="]
    out = policy.generate(prompts, Sampling(n=2, temperature=0.7, max_new_tokens=6, seed=11))
    assert [len(g) for g in out] == [2, 2, 2]
    llm = policy.llm
    assert len(llm.requests) == 2 and [p.n for p in llm.params] == [4, 2]  # a repeated prompt: one request
    assert [p.seed for p in llm.params] == [11, batch_seed(11, 1)]  # distinct prompt k: batch_seed(seed, k)
    flat = [s for g in out for s in g]
    assert {s.finish for s in flat} >= {"eos", "length"}
    for finish in ("eos", "length"):
        rows = [(p, s) for p, g in zip(prompts, out) for s in g if s.finish == finish]
        logp, mask = policy.logprobs([p for p, _ in rows], [s.text for _, s in rows], eos=finish == "eos")
        for b, (_, s) in enumerate(rows):
            assert int(mask[b].sum()) == len(s.token_ids)
            assert torch.allclose(logp[b, : len(s.token_ids)], torch.tensor(s.logprobs), atol=1e-5)
    ids = policy.hf.prompt_ids("12+3=")
    total = Cost.total(s.cost for s in flat)
    assert total.tokens_encoded == len(ids) + len(policy.hf.prompt_ids("7*8="))  # each distinct prompt once
    assert total.tokens_generated == sum(len(s.token_ids) for s in flat)
    assert total.policy_calls == max(len(s.token_ids) for s in flat)
    assert [s.cost.tokens_encoded for s in out[0] + out[2]] == [len(ids), 0, 0, 0]


def test_policy_raw_logprobs_steps_and_greedy(model_dir):
    policy, _ = make_policy(model_dir, raw=True)
    out = policy.generate(["12+3="], Sampling(n=2, temperature=0.7, max_new_tokens=6, stop_at_step=True))
    assert all(lp == -0.25 for s in out[0] for lp in s.logprobs)  # the engine's, used as they are
    assert out[0][1].finish == "step" and out[0][1].text.endswith("\n")
    assert policy.llm.params[0].seed is None  # unseeded call: the engine's own generator
    greedy = policy.generate(["12+3="], Sampling(n=3, temperature=0, max_new_tokens=4))[0]
    assert policy.llm.params[-1].n == 1 and len(greedy) == 3 and greedy[1].cost == Cost()
    assert policy.llm.params[-1].max_tokens == 4
    room = policy.room("12+3=")
    policy.generate(["12+3="], Sampling(max_new_tokens=1000))
    assert policy.llm.params[-1].max_tokens == room


def test_policy_pushes_changed_weights_once(model_dir):
    policy, engine_model_ = make_policy(model_dir)
    s = Sampling(max_new_tokens=2, seed=0)
    policy.generate(["1"], s)
    assert engine_model_.loaded == [] and policy.last_push is None  # nothing changed yet
    with torch.no_grad():  # an optimizer step that nobody announces (SFT does not call weights_changed)
        next(iter(policy.parameters())).add_(0.01)
    policy.generate(["1"], s)
    policy.generate(["1"], s)
    assert len(engine_model_.loaded) == 1 and policy.last_push == "direct" and policy.llm.resets == 1
    pushed = engine_model_.loaded[0]
    assert pushed.keys() == policy.model.state_dict().keys()
    assert all(torch.equal(v, policy.model.state_dict()[k]) for k, v in pushed.items())
    policy.weights_changed()
    policy.generate(["1"], s)
    assert len(engine_model_.loaded) == 2


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")  # peft 0.21 on transformers 5
def test_lora_push_merges_out_of_place_and_export_loads_back(model_dir, tf, tmp_path):
    pytest.importorskip("peft")
    from ponder.policy.vllm_weights import export_model, merged_state_dict

    policy, engine_model_ = make_policy(model_dir, lora=4)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in policy.parameters():  # LoRA B starts at zero: redraw so the merge matters
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    before = {k: v.clone() for k, v in policy.model.state_dict().items()}
    policy.weights_changed()
    policy.generate(["1"], Sampling(max_new_tokens=2))
    pushed = engine_model_.loaded[-1]
    merged = copy.deepcopy(policy.model).merge_and_unload().state_dict()
    assert pushed.keys() == merged.keys()
    assert all(torch.allclose(pushed[k], merged[k], atol=1e-6) for k in merged)
    assert not torch.equal(pushed["model.layers.0.self_attn.q_proj.weight"],
                           before["base_model.model.model.layers.0.self_attn.q_proj.base_layer.weight"])
    assert all(torch.equal(v, before[k]) for k, v in policy.model.state_dict().items())  # left as it was
    assert merged_state_dict(policy.model).keys() == merged.keys()

    export_model(policy.hf, tmp_path)
    served = tf.AutoModelForCausalLM.from_pretrained(str(tmp_path), local_files_only=True).eval()
    ids = torch.tensor([policy.hf.prompt_ids("12+3=")])
    with torch.no_grad():
        policy.model.eval()
        assert torch.allclose(served(ids).logits, policy.model(input_ids=ids).logits, atol=1e-5)
