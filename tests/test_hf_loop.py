"""`ponder run` with the Hugging Face backend (`[policy] backend = "hf"`) on a tiny random Llama built here:
the same loop, learners and run directory as the built-in engine, LoRA checkpoints, resume, and the
recipe checks that keep built-in-only parts (reward models, PPO) away from it."""

from __future__ import annotations

import json
import os
import string

import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"
transformers = pytest.importorskip("transformers")
pytest.importorskip("peft")
pytestmark = pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing.*:FutureWarning")

from tokenizers import Tokenizer, decoders, models, processors

from ponder.cli import main
from ponder.policy.factory import resolve_path
from ponder.policy.tiny import PolicyLoadError

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
CHARS = sorted(set(string.printable) - set("\t\r\x0b\x0c"))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A 2-layer random Llama with a character tokenizer that covers every task prompt."""
    path = tmp_path_factory.mktemp("llama")
    vocab = {t: i for i, t in enumerate(SPECIALS + CHARS)}
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tk.decoder = decoders.Fuse()
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>",
                                               pad_token="<pad>", unk_token="<unk>")
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                   pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=True)
    transformers.LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _args(runs, name, model_dir, *extra):
    sets = ["policy.backend=hf", f"policy.path={model_dir}", "policy.batch_size=64", "task.digits=1",
            'task.styles=["column"]', "reward.models=[]", "search.methods=[]", "init.sft.steps=0",
            "eval.problems=6", "eval.n=[1,2]", "eval.max_new_tokens=12", "learn.problems=8", *extra]
    args = ["run", "addition", "--quiet", "--runs-dir", str(runs), "--name", name]
    for s in sets:
        args += ["--set", s]
    return args


GRPO = ["learn.learner=grpo", "learn.rounds=2", "learn.rl.steps=2", "learn.rl.prompts_per_step=3",
        "learn.rl.group_size=2", "learn.rl.max_new_tokens=12", "learn.rl.lr=1e-2", "policy.lora_r=4"]


@pytest.mark.slow
def test_grpo_with_lora_runs_the_loop_and_resumes(tmp_path, model_dir):
    assert main(_args(tmp_path, "a", model_dir, *GRPO)) == 0
    run = tmp_path / "a"
    state = json.loads((run / "state.json").read_text())
    assert state["done"] == ["init", "eval_init", "round1", "eval_round1", "round2", "eval_round2"]
    assert state["results"]["init"]["pretrained"] == str(model_dir)
    r1 = state["results"]["round1"]
    assert r1["sample_tokens"] > 0 and r1["train_tokens"] > 0 and r1["steps"] == 2
    # LoRA checkpoints hold only the adapter; the base weights are referenced, not copied
    ck = run / "checkpoints"
    assert (ck / "round1" / "adapter_model.safetensors").is_file() and not (ck / "round1" / "model.safetensors").exists()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["model_params"] > 0 and [p["phase"] for p in summary["phases"]] == ["init", "round1", "round2"]

    # the same recipe, stopped after round 1 (its state rolled back) and resumed: the same summary
    assert main(_args(tmp_path, "b", model_dir, *GRPO)) == 0
    st = json.loads((tmp_path / "b" / "state.json").read_text())
    st["done"] = st["done"][:4]
    st["last_checkpoint"] = "round1"
    st["results"] = {k: v for k, v in st["results"].items() if k in st["done"]}
    (tmp_path / "b" / "state.json").write_text(json.dumps(st))
    assert main(["run", "--quiet", "--resume", str(tmp_path / "b")]) == 0
    resumed = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert resumed["phases"] == summary["phases"]


EI = ["learn.learner=expert_iteration", "learn.rounds=1", "learn.expert_iteration.samples=2",
      "learn.expert_iteration.max_new_tokens=12", "learn.expert_iteration.threshold=0.0",  # keep every sample
      "learn.expert_iteration.sft.steps=3", "learn.expert_iteration.sft.batch_size=4",
      "learn.expert_iteration.sft.lr=1e-2"]


@pytest.mark.slow
def test_sft_init_and_expert_iteration_train_the_whole_model(tmp_path, model_dir):
    init = ["init.demos=20", "init.sft.steps=3", "init.sft.batch_size=4", "init.sft.warmup=0"]
    assert main(_args(tmp_path, "ei", model_dir, *EI, *init)) == 0
    state = json.loads((tmp_path / "ei" / "state.json").read_text())
    assert state["results"]["init"]["train_tokens"] > 0 and state["results"]["round1"]["train_tokens"] > 0
    ck = tmp_path / "ei" / "checkpoints"
    assert (ck / "round1" / "model.safetensors").is_file()
    assert (ck / "round1" / "model.safetensors").read_bytes() != (ck / "init" / "model.safetensors").read_bytes()


@pytest.mark.slow
def test_learning_with_lora_moves_only_the_adapter(tmp_path, model_dir):
    from safetensors.torch import load_file

    assert main(_args(tmp_path, "lora", model_dir, *EI, "policy.lora_r=4")) == 0
    ck = tmp_path / "lora" / "checkpoints"
    a = load_file(str(ck / "init" / "adapter_model.safetensors"))
    b = load_file(str(ck / "round1" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and any(not torch.equal(a[k], b[k]) for k in a)
    assert not (ck / "round1" / "model.safetensors").exists()


@pytest.mark.parametrize("extra, words", [
    (["reward.models=[\"prm\"]"], ["reward.models", "backend"]),
    (["learn.learner=ppo"], ["ppo", "built-in backend"]),
    (["policy.path="], ["needs path"]),
])
def test_recipe_refuses_what_the_backend_cannot_do(tmp_path, model_dir, capsys, extra, words):
    assert main(_args(tmp_path, "x", model_dir, *extra)) == 2
    err = capsys.readouterr().err
    assert all(w in err for w in words), err


def test_missing_model_and_package_paths_are_clear(tmp_path, capsys):
    assert main(_args(tmp_path, "x", tmp_path / "no_model")) == 2
    err = capsys.readouterr().err
    assert "no_model" in err and "Traceback" not in err
    with pytest.raises(PolicyLoadError, match="not installed"):
        resolve_path("pkg:no_such_package_xyz/model.gguf")
    with pytest.raises(PolicyLoadError, match="has no file"):
        resolve_path("pkg:ponder/none.gguf")
    assert resolve_path("pkg:ponder/recipes/default.toml").endswith("default.toml")
    assert resolve_path("/a/b") == "/a/b"


def test_a_completion_that_cannot_fit_the_models_context_is_one_error_naming_the_key(tmp_path, model_dir, capsys):
    # the tiny Llama states a 64-token context; a 1-digit prompt takes about 9 of them
    assert main(_args(tmp_path, "long", model_dir, "eval.max_new_tokens=60")) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("run directory:")]
    assert len(err) == 1 and err[0].startswith("ponder: error: "), err
    assert "eval.max_new_tokens = 60 does not fit the model's context (64 tokens)" in err[0]
    room = 64 - 1 - len("Q: 9+9\n")  # the context less BOS and the longest 1-digit prompt, one token a character
    assert f"lower eval.max_new_tokens to {room}" in err[0] and "policy.max_seq_len" in err[0]
    state = json.loads((tmp_path / "long" / "state.json").read_text())
    assert state["done"] == []  # refused before any phase finished: nothing sampled or trained
    # the same key for a learner's generation budget
    assert main(_args(tmp_path, "long_rl", model_dir, *GRPO, "learn.rl.max_new_tokens=58")) == 2
    assert "learn.rl.max_new_tokens = 58 does not fit" in capsys.readouterr().err


def test_a_memory_budget_too_small_for_one_row_is_one_error_before_any_phase(tmp_path, model_dir, capsys):
    assert main(_args(tmp_path, "mem", model_dir, *GRPO, "learn.rl.memory_mb=0.001")) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("run directory:")]
    assert len(err) == 1 and err[0].startswith("ponder: error: "), err
    assert "learn.rl.memory_mb = 0.001 is too small: one sequence of up to" in err[0]
    assert "raise learn.rl.memory_mb to at least" in err[0] and "config.toml" in err[0]
    state = json.loads((tmp_path / "mem" / "state.json").read_text())
    assert state["done"] == []  # refused before the first phase finished: nothing sampled or trained
    assert main(_args(tmp_path, "mem_ok", model_dir, *GRPO, "learn.rl.memory_mb=64", "learn.rounds=1",
                      "learn.rl.steps=1")) == 0
