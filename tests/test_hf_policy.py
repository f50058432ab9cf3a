"""The Hugging Face backend on tiny random Llama models built here (nothing is downloaded).

The central checks compare two independent computations: the log-probs recorded while sampling
(left-padded batched prefill, a prompt's cache copied to its n samples, one token per step) against
one full forward over prompt + completion (`logprobs`), and greedy sampling against argmax decoding
done by hand with full forwards. If the cache reuse, the padding, the position ids or the LoRA
wrapping were wrong, these would disagree.
"""

from __future__ import annotations

import os

import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"
transformers = pytest.importorskip("transformers")
pytest.importorskip("peft")

# peft 0.21 still calls transformers' deprecated `is_gradient_checkpointing`
pytestmark = pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")

from tokenizers import Tokenizer, decoders, models, processors

from ponder.policy import Policy, PolicyLoadError
from ponder.policy.hf import HFConfig, HFPolicy
from ponder.reward.base import OutcomeReward
from ponder.reward.hf_model import HFRewardModel
from ponder.types import Problem, Sampling

CHARS = "0123456789abcdefghijklmnopqrstuvwxyz+-*=()[]:. \n"
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]  # ids 0..3
PAD, BOS, EOS, UNK = 0, 1, 2, 3
NL = len(SPECIALS) + CHARS.index("\n")
CHAT = ("{{ bos_token }}{% for m in messages %}[{{ m['role'][0] }}]{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}[a]{% endif %}")
PROMPTS = ["1", "12+3=", "(7*8)-9=", "12+3="]  # mixed lengths, one repeated; samples of "12+3=" often end by EOS


def make_tokenizer():
    """A character-level fast tokenizer: BPE with no merges splits text into characters, Fuse joins
    them back, so decode/encode round trips exactly."""
    vocab = {t: i for i, t in enumerate(SPECIALS + list(CHARS))}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tk.decoder = decoders.Fuse()
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", BOS)])
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>",
                                               pad_token="<pad>", unk_token="<unk>")
    tok.chat_template = CHAT
    return tok


def llama_config(**kw):
    kw = {"pad_token_id": PAD, **kw}
    return transformers.LlamaConfig(
        vocab_size=len(SPECIALS) + len(CHARS), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, initializer_range=0.3,
        bos_token_id=BOS, eos_token_id=EOS, tie_word_embeddings=False, **kw)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_llama")
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(llama_config())  # init std 0.3: peaked, prompt-dependent outputs
    model.save_pretrained(path)
    make_tokenizer().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def policy(model_dir) -> HFPolicy:
    return HFPolicy(HFConfig(str(model_dir)))


def lora_policy(model_dir, seed: int = 0) -> HFPolicy:
    """A LoRA policy whose B matrices (zero at init, so LoRA would be a no-op) are redrawn."""
    pol = HFPolicy(HFConfig(str(model_dir), lora_r=4, lora_alpha=8, lora_targets=("q_proj", "v_proj", "o_proj")))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in pol.model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return pol


def assert_samples_match_forward(pol: HFPolicy, prompts, groups) -> int:
    """Every sample's recorded log-probs equal `logprobs` of its text; returns the samples checked."""
    flat = [(p, s) for p, g in zip(prompts, groups) for s in g]
    for eos in (True, False):
        chosen = [(p, s) for p, s in flat if (s.finish == "eos") == eos]
        if not chosen:
            continue
        with torch.no_grad():
            lp, mask = pol.logprobs([p for p, _ in chosen], [s.text for _, s in chosen], eos=eos)
        for b, (_, s) in enumerate(chosen):
            k = len(s.token_ids)
            assert int(mask[b].sum()) == k  # the text re-encodes to the sampled ids (+ EOS)
            torch.testing.assert_close(lp[b, :k], torch.tensor(s.logprobs), atol=2e-5, rtol=0)
            assert float(lp[b, k:].abs().sum()) == 0.0
    return len(flat)


def hand_greedy(pol: HFPolicy, prompt: str, max_new: int) -> list[int]:
    """Argmax decoding with a full forward per token and no cache (PAD, BOS, UNK never chosen)."""
    ids = pol.prompt_ids(prompt)
    out: list[int] = []
    with torch.no_grad():
        for _ in range(max_new):
            logits = pol.model(input_ids=torch.tensor([ids + out])).logits[0, -1]
            logits[[PAD, BOS, UNK]] = float("-inf")
            out.append(int(logits.argmax()))
            if out[-1] == EOS:
                break
    return out


# -- sampling ----------------------------------------------------------------------------------------


def test_protocols(policy):
    assert isinstance(policy, Policy)
    assert policy.num_params() == sum(p.numel() for p in policy.model.parameters())
    assert len(list(policy.parameters())) == len(list(policy.model.parameters()))
    policy.weights_changed()


def test_sample_logprobs_equal_full_forward(policy):
    # temperature != 1: the recorded log-probs must be the untempered ones
    groups = policy.generate(PROMPTS, Sampling(n=3, temperature=0.8, top_p=0.95, max_new_tokens=12, seed=3))
    assert [len(g) for g in groups] == [3] * len(PROMPTS)
    finishes = {s.finish for g in groups for s in g}
    assert finishes == {"eos", "length"}  # both ends are exercised
    assert assert_samples_match_forward(policy, PROMPTS, groups) == 3 * len(PROMPTS)


def test_lora_sample_logprobs_equal_full_forward_and_differ_from_base(model_dir, policy):
    pol = lora_policy(model_dir)
    groups = pol.generate(PROMPTS, Sampling(n=2, temperature=1.3, max_new_tokens=10, seed=5))
    assert_samples_match_forward(pol, PROMPTS, groups)
    texts = [s.text for g in groups for s in g]
    prompts = [p for p, g in zip(PROMPTS, groups) for _ in g]
    with torch.no_grad():
        lora_lp, mask = pol.logprobs(prompts, texts)
        base_lp, base_mask = policy.logprobs(prompts, texts)
    assert torch.equal(mask, base_mask)
    assert float((lora_lp - base_lp).abs().max()) > 1e-2
    with torch.no_grad(), pol.model.disable_adapter():  # the adapter is the only difference
        torch.testing.assert_close(pol.logprobs(prompts, texts)[0], base_lp, atol=1e-5, rtol=0)


def test_greedy_is_deterministic_and_equals_hand_argmax(policy):
    prompts = ["1", "(7*8)-9="]
    a = policy.generate(prompts, Sampling(n=2, temperature=0, max_new_tokens=15))
    b = policy.generate(prompts, Sampling(n=1, temperature=0, max_new_tokens=15))
    for p, ga, gb in zip(prompts, a, b):
        assert ga[0].token_ids == ga[1].token_ids == gb[0].token_ids
        assert list(ga[0].token_ids) == hand_greedy(policy, p, 15)
    assert len(a[0][0].token_ids) > 3  # not a trivial immediate EOS
    # top_p so small that only the top token survives is greedy too
    c = policy.generate(prompts, Sampling(n=1, temperature=1.0, top_p=1e-6, max_new_tokens=15, seed=9))
    assert [g[0].token_ids for g in c] == [g[0].token_ids for g in b]


def test_seeds_reproduce_and_differ(policy):
    s = Sampling(n=3, max_new_tokens=8, seed=11)
    a, b = policy.generate(PROMPTS, s), policy.generate(PROMPTS, s)
    c = policy.generate(PROMPTS, Sampling(n=3, max_new_tokens=8, seed=12))
    ids = [[x.token_ids for x in g] for g in a]
    assert ids == [[x.token_ids for x in g] for g in b]
    assert [[x.logprobs for x in g] for g in a] == [[x.logprobs for x in g] for g in b]
    assert ids != [[x.token_ids for x in g] for g in c]
    assert len({x for g in ids for x in g}) > 6  # samples of one call differ from each other too


def test_stop_at_step_stops_after_a_newline(policy):
    hot = {"n": 8, "temperature": 4.0, "max_new_tokens": 40, "seed": 2}
    stepped = [s for g in policy.generate(["1", "23+"], Sampling(stop_at_step=True, **hot)) for s in g]
    assert any(s.finish == "step" for s in stepped)
    for s in stepped:
        assert NL not in s.token_ids[:-1]
        assert (s.token_ids[-1] == NL) == (s.finish == "step")
        if s.finish == "step":
            assert s.text.endswith("\n")
    free = [s for g in policy.generate(["1", "23+"], Sampling(stop_at_step=False, **hot)) for s in g]
    assert any(NL in s.token_ids[:-1] for s in free)  # without it, lines go on


def test_costs_add_up(policy):
    prompts = ["12", "12", "345+6"]
    groups = policy.generate(prompts, Sampling(n=2, max_new_tokens=10, seed=4))
    samples = [s for g in groups for s in g]
    enc = len(policy.prompt_ids("12")) + len(policy.prompt_ids("345+6"))  # each distinct prompt once
    gen = sum(len(s.token_ids) for s in samples)
    assert sum(s.cost.tokens_generated for s in samples) == gen
    assert [s.cost.tokens_generated for s in samples] == [len(s.token_ids) for s in samples]
    assert sum(s.cost.tokens_encoded for s in samples) == enc
    assert [s.cost.tokens_encoded for s in groups[1]] == [0, 0]  # the repeated prompt was not re-encoded
    # one prefill, then one forward per step until the longest sample ends
    assert sum(s.cost.policy_calls for s in samples) == max(len(s.token_ids) for s in samples)
    flops = sum(s.cost.flops for s in samples)
    assert 2 * policy.num_params() * (enc + gen) <= flops < 1.5 * 2 * policy.num_params() * (enc + gen)


def test_mixed_length_batch_equals_each_prompt_alone(policy):
    prompts = ["1", "23+45=", "(7*8)-9=+1"]
    greedy = Sampling(n=1, temperature=0, max_new_tokens=15)
    together = policy.generate(prompts, greedy)
    for p, g in zip(prompts, together):
        alone = policy.generate([p], greedy)[0][0]
        assert g[0].token_ids == alone.token_ids
        torch.testing.assert_close(torch.tensor(g[0].logprobs), torch.tensor(alone.logprobs), atol=2e-5, rtol=0)
    # and with a small batch size the same prompts go through several batches
    small = HFPolicy(HFConfig(policy.config.path, batch_size=1))
    assert [g[0].token_ids for g in small.generate(prompts, greedy)] == [g[0].token_ids for g in together]


def test_context_limit(model_dir):
    pol = HFPolicy(HFConfig(str(model_dir), max_seq_len=12))
    prompt = "23+45=1"  # BOS + 7 characters
    assert pol.room(prompt) == 12 - 8
    for s in pol.generate([prompt], Sampling(n=4, max_new_tokens=30, seed=0))[0]:
        assert len(s.token_ids) <= 4
        assert s.finish == ("eos" if s.token_ids[-1] == EOS else "length")
    with pytest.raises(ValueError, match="max_seq_len"):
        pol.generate(["0123456789+"], Sampling())
    with pytest.raises(ValueError, match="max_seq_len"):
        pol.logprobs(["1"], ["0123456789+"])


# -- learning ----------------------------------------------------------------------------------------


def test_gradient_reaches_lora_parameters_only(model_dir):
    pol = lora_policy(model_dir).train()
    trained = {id(p) for p in pol.parameters()}
    names = {n for n, p in pol.model.named_parameters() if id(p) in trained}
    assert names and all("lora_" in n for n in names)
    lp, mask = pol.logprobs(["1", "23+45="], ["2+3", "68"])
    (lp * mask).sum().backward()
    for n, p in pol.model.named_parameters():
        if id(p) in trained:
            assert p.grad is not None and float(p.grad.abs().sum()) > 0, n
        else:
            assert p.grad is None and not p.requires_grad, n


def test_full_model_gradient(policy):
    lp, mask = policy.logprobs(["1"], ["2+3"])
    assert lp.requires_grad and mask.tolist() == [[1.0] * 4]
    grads = torch.autograd.grad((lp * mask).sum(), [policy.model.lm_head.weight])
    assert float(grads[0].abs().sum()) > 0


# -- persistence -------------------------------------------------------------------------------------


def test_save_load_round_trip(model_dir, tmp_path):
    pol = HFPolicy(HFConfig(str(model_dir), chat_template=True, batch_size=7))
    with torch.no_grad():
        pol.model.lm_head.weight.add_(0.1)  # trained weights must be what is saved
        before = pol.logprobs(PROMPTS, ["1+1", "", "9\n", "x"])[0]
    pol.save(tmp_path / "ckpt")
    back = HFPolicy.load(tmp_path / "ckpt")
    assert back.config.chat_template and back.config.batch_size == 7 and not back.lora
    with torch.no_grad():
        torch.testing.assert_close(back.logprobs(PROMPTS, ["1+1", "", "9\n", "x"])[0], before, atol=0, rtol=0)


def test_lora_save_load_round_trip(model_dir, tmp_path):
    pol = lora_policy(model_dir)
    with torch.no_grad():
        before = pol.logprobs(PROMPTS, ["1+1", "", "9\n", "x"])[0]
    pol.save(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    assert not (tmp_path / "adapter" / "model.safetensors").exists()  # the adapter only, not the base
    back = HFPolicy.load(tmp_path / "adapter")
    assert back.lora and all(p.requires_grad for p in back.parameters())
    assert len(list(back.parameters())) == len(list(pol.parameters()))
    with torch.no_grad():
        torch.testing.assert_close(back.logprobs(PROMPTS, ["1+1", "", "9\n", "x"])[0], before, atol=0, rtol=0)


# -- prompts and errors ------------------------------------------------------------------------------


def test_chat_template_wraps_the_prompt(model_dir, policy):
    chat = HFPolicy(HFConfig(str(model_dir), chat_template=True))
    tok = chat.tokenizer
    wrapped = tok("<s>[u]1+1\n[a]", add_special_tokens=False)["input_ids"]
    assert chat.prompt_ids("1+1") == wrapped
    assert policy.prompt_ids("1+1") == [BOS] + tok("1+1", add_special_tokens=False)["input_ids"]
    assert chat.room("1+1") == 64 - len(wrapped)
    groups = chat.generate(["1+1"], Sampling(n=2, max_new_tokens=6, seed=0))
    assert sum(s.cost.tokens_encoded for s in groups[0]) == len(wrapped)
    assert_samples_match_forward(chat, ["1+1"], groups)


def test_bad_paths_give_one_clear_error(tmp_path, model_dir):
    missing = tmp_path / "no_such_model"
    with pytest.raises(PolicyLoadError, match="no_such_model.*no such model directory"):
        HFPolicy(HFConfig(str(missing)))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PolicyLoadError, match="empty: not a Hugging Face model directory"):
        HFPolicy(HFConfig(str(empty)))
    bogus = tmp_path / "bogus.gguf"
    bogus.write_bytes(b"not a gguf file")
    with pytest.raises(PolicyLoadError, match="bogus.gguf"):
        HFPolicy(HFConfig(str(bogus)))
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in model_dir.iterdir():
        if f.name != "model.safetensors":
            (broken / f.name).write_bytes(f.read_bytes())
    with pytest.raises(PolicyLoadError, match="broken: cannot load"):
        HFPolicy(HFConfig(str(broken)))
    with pytest.raises(PolicyLoadError, match="no_such_model"):
        HFRewardModel(missing)


@pytest.mark.parametrize(("field", "value"), [("dtype", "float16"), ("batch_size", 0), ("lora_r", -1),
                                              ("lora_dropout", 1.0), ("max_seq_len", -1), ("gguf_file", "x.bin"),
                                              ("lora_alpha", 0), ("path", "")])
def test_config_validation_names_the_field(field, value):
    kwargs = {"path": "somewhere", field: value}
    with pytest.raises(ValueError, match=f"HFConfig.{field}"):
        HFConfig(**kwargs)
    with pytest.raises(ValueError, match="lora_targets"):
        HFConfig("somewhere", lora_r=2, lora_targets=())


# -- reward model ------------------------------------------------------------------------------------


@pytest.mark.parametrize("labels", [1, 2])
def test_reward_model_scores(tmp_path, labels):
    torch.manual_seed(1)
    # no pad_token_id in the config, as in many reward models: batching must not depend on it
    model = transformers.LlamaForSequenceClassification(llama_config(num_labels=labels, pad_token_id=None))
    model.save_pretrained(tmp_path)
    make_tokenizer().save_pretrained(tmp_path)
    rm = HFRewardModel(tmp_path, batch_size=8)
    assert isinstance(rm, OutcomeReward)
    problems = [Problem(id=str(i), prompt=p, answer="") for i, p in enumerate(["1+1=", "23*4=", "7="])]
    texts = ["2", "92\n92", "(7)"]
    scores = rm.score(problems, texts)
    assert rm.calls == 3 and len(scores) == 3 and all(0 < s < 1 for s in scores)
    one_by_one = HFRewardModel(tmp_path, batch_size=1)
    assert one_by_one.score(problems, texts) == pytest.approx(scores, abs=1e-5)  # padding changes nothing
    with torch.no_grad():  # by hand: the unpadded sequence, the logit at its last token
        ids = rm.tokenizer(problems[1].prompt + texts[1])["input_ids"]
        logits = rm.model(input_ids=torch.tensor([ids])).logits[0]
    expected = torch.sigmoid(logits[0]) if labels == 1 else torch.softmax(logits, -1)[1]
    assert scores[1] == pytest.approx(float(expected), abs=1e-5)
    assert len(set(scores)) == 3
    with pytest.raises(ValueError, match="parallel"):
        rm.score(problems, texts[:2])


def test_logprobs_of_ids_scores_exactly_the_sampled_tokens(policy):
    """What learners use with BPE tokenizers: the sampled ids (end token included) scored as they are."""
    groups = policy.generate(PROMPTS, Sampling(n=3, temperature=1.0, max_new_tokens=10, seed=4))
    prompts = [p for p, g in zip(PROMPTS, groups) for _ in g]
    ids = [s.token_ids for g in groups for s in g]
    logp, mask = policy.logprobs_of_ids(prompts, ids)
    assert mask.sum(1).tolist() == [float(len(i)) for i in ids]
    for b, s in enumerate(s for g in groups for s in g):
        assert torch.allclose(logp[b, : len(s.token_ids)], torch.tensor(s.logprobs), atol=1e-4)
