"""bench/gpu_check.py's CPU self-check: on a tiny random Llama, the conversion, HF log-prob and GRPO checks
run and pass, the vLLM checks are skipped with the reason (no CUDA here), and a broken conversion fails."""

from __future__ import annotations

import importlib.util
import json
import string
import sys
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("reasoning_gym")
from tokenizers import Tokenizer, decoders, models, processors  # a transformers dependency

BENCH = Path(__file__).resolve().parents[1] / "bench"
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
CHARS = string.printable[:95]  # every printable ASCII character and "\n" (the gym prompts' alphabet)
CHAT = ("{{ bos_token }}{% for m in messages %}[{{ m['role'][0] }}]{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}[a]{% endif %}")


def load_gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", BENCH / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A 2-layer Llama with a character tokenizer over printable ASCII, saved as a plain HF directory."""
    path = tmp_path_factory.mktemp("tiny_llama_gpu_check")
    vocab = {t: i for i, t in enumerate(SPECIALS + list(dict.fromkeys(CHARS)))}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tk.decoder = decoders.Fuse()
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>",
                                               pad_token="<pad>", unk_token="<unk>")
    tok.chat_template = CHAT
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                   initializer_range=0.3, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                                   tie_word_embeddings=False)
    transformers.LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


ARGS = ["--device", "cpu", "--steps", "2", "--prompts", "4", "--max-new-tokens", "8", "--batches", "1", "2"]


def test_cpu_self_check_passes_and_skips_only_the_cuda_parts(model_dir, tmp_path, capsys):
    gc = load_gpu_check()
    out = tmp_path / "check.json"
    code = gc.main(["--model", str(model_dir), *ARGS, "--json", str(out)])
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    checks = {c["name"]: c for c in result["checks"]}
    assert code == 0, printed
    for name in ("convert", "hf_logprobs", "hf_grpo", "speed"):
        assert checks[name]["status"] == "ok", checks[name]
    assert checks["convert"]["figures"]["max_gap"] <= gc.CONVERT_TOL
    assert "model.safetensors" in checks["convert"]["figures"]["files"]
    assert checks["hf_logprobs"]["figures"]["tokens"] > 0
    grpo = checks["hf_grpo"]["figures"]
    assert grpo["steps"] == 2 and len(grpo["reward_mean"]) == 2 and 0 < grpo["moved"] <= grpo["trainable"]
    if not torch.cuda.is_available():  # CI: the vLLM parts say why they did not run
        for name in ("vllm_logprobs", "vllm_push"):
            assert checks[name]["status"] == "skipped" and "CUDA" in checks[name]["detail"]
    engines = {(r["engine"], r["batch"]) for r in result["speed"]}
    assert {("ponder HFPolicy.generate", 1), ("transformers generate", 2)} <= engines
    assert all(r["tokens"] > 0 and r["tokens_per_s"] > 0 for r in result["speed"])
    assert "| transformers generate | 2 |" in printed


def test_a_conversion_that_changes_the_weights_fails(model_dir, monkeypatch, capsys):
    gc = load_gpu_check()
    import ponder.policy.vllm_weights as vw

    real = vw.export_model

    def lossy(hf, directory):  # a converter that rounds the weights to bfloat16 on the way out
        out = real(hf, directory)
        from safetensors.torch import load_file, save_file

        state = {k: v.to(torch.bfloat16).to(torch.float32) for k, v in load_file(str(out / "model.safetensors")).items()}
        save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
        return out

    monkeypatch.setattr(vw, "export_model", lossy)
    code = gc.main(["--model", str(model_dir), *ARGS])
    printed = capsys.readouterr().out
    assert code == 1
    line = next(ln for ln in printed.splitlines() if ln.strip().startswith("convert"))
    assert "FAILED" in line


def test_bad_arguments_are_refused():
    gc = load_gpu_check()
    with pytest.raises(SystemExit):
        gc.parse_args(["--steps", "0"])


def test_bench_section_hf_compares_sampling_and_scoring_side_by_side(model_dir, monkeypatch, capsys):
    import argparse

    monkeypatch.syspath_prepend(str(BENCH))
    load_gpu_check()
    from harness import Report
    from sec_hf import sec_hf

    rep = Report()
    opts = argparse.Namespace(hf_model=str(model_dir), hf_batches=[1, 2], hf_new_tokens=6, hf_repeats=1, seed=0)
    sec_hf(opts, rep, {})
    rows = rep.sections["hf"]["tables"][0]["rows"]
    assert [(r["pass"], r["batch"], r["alternative"]) for r in rows] == [
        ("sampling", 1, "transformers generate"), ("sampling", 1, "transformers generate, static cache"),
        ("sampling", 2, "transformers generate"), ("sampling", 2, "transformers generate, static cache"),
        ("log-probs of samples", 1, "bare model forward"), ("log-probs of samples", 2, "bare model forward")]
    assert all(r["ponder tokens/s"] > 0 and r["alternative tokens/s"] > 0 and r["ratio"] > 0 for r in rows)
    assert [s["measure"] for s in rep.summary] == ["SmolLM2 sampling, batch 1: ponder / transformers generate",
                                                   "SmolLM2 sampling, batch 2: ponder / transformers generate"]
    missing = Report()
    sec_hf(argparse.Namespace(**{**vars(opts), "hf_model": "pkg:no_such_package_here/model.gguf"}), missing, {})
    assert "make install-smollm2" in missing.sections["hf"]["tables"][0]["rows"][0]["skipped"]
