"""treadle tune on a tiny random model: losses fall, adapters load in PEFT, resume equality, shared prefix."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from treadle.tuning import config_for, tune
from treadle.tuning.config import SERVABLE_MODULES
from treadle.tuning.record import file_sha256
from treadle.tuning.shared_prefix import shared_prefix_len, split_packed

SYSTEM = "You classify requests. The possible intents are: cancel, refund, track, hello."
WORDS = ["order", "please", "my", "the", "cancel", "refund", "where", "is", "hello", "track", "money", "back"]
LABELS = ["cancel", "refund", "track", "hello"]


def _sft_file(folder: Path, n: int = 24) -> Path:
    rng = random.Random(0)
    path = folder / "sft.jsonl"
    with path.open("w") as f:
        for i in range(n):
            user = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 7)))
            f.write(json.dumps({"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user},
                                             {"role": "assistant", "content": LABELS[i % 4]}]}) + "\n")
    return path


def _pref_files(folder: Path) -> tuple[Path, Path]:
    pref, kto = folder / "preference.jsonl", folder / "kto.jsonl"
    with pref.open("w") as p, kto.open("w") as k:
        for i in range(16):
            q = f"question {i} about my order"
            p.write(json.dumps({"prompt": q, "chosen": "Yes, happy to help.", "rejected": "No. Go away."}) + "\n")
            k.write(json.dumps({"prompt": q, "completion": "Yes, happy to help." if i % 2 else "No. Go away.",
                                "label": bool(i % 2)}) + "\n")
    return pref, kto


def _small(method: str, data: Path, out: Path, model: Path, **kw: object):
    base = dict(data=str(data), out=str(out), model=str(model), max_steps=6, batch_size=4, lora_r=4, lora_alpha=8.0,
                learning_rate=5e-3, save_steps=2, progress=False, threads=1)
    return config_for(method, **{**base, **kw})


@pytest.mark.parametrize("method", ["sft", "dpo", "kto"])
def test_each_method_loss_falls_and_adapter_loads_in_peft(method: str, tiny_llama: Path, tmp_path: Path) -> None:
    import peft
    from transformers import AutoModelForCausalLM

    pref, kto = _pref_files(tmp_path)
    data = {"sft": _sft_file(tmp_path), "dpo": pref, "kto": kto}[method]
    out = tmp_path / f"out-{method}"
    record = tune(_small(method, data, out, tiny_llama))
    curve = [e["loss"] for e in record["metrics"]["loss_curve"]]
    assert len(curve) == 6 and curve[-1] < curve[0]
    assert record["ended"] == "completed" and record["metrics"]["steps"] == 6
    assert record["dataset"]["examples"] > 0 and len(record["base_model"]["sha256"]) == 64
    assert record["train_cpu_s"] > 0 and record["tokens_per_s"] > 0
    saved = json.loads((out / "tune_config.json").read_text())
    assert saved["method"] == method and saved["model"] == str(tiny_llama) and saved["threads"] == 1

    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["r"] == 4 and cfg["lora_alpha"] == 8 and set(cfg["target_modules"]) == set(SERVABLE_MODULES)
    tensors = load_file(out / "adapter_model.safetensors")
    assert len(tensors) == 2 * 7 * 2  # layers x projections x (A, B)
    base = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    shapes = {n: (m.in_features, m.out_features) for n, m in base.named_modules() if n.endswith(SERVABLE_MODULES)}
    for key, t in tensors.items():
        assert key.startswith("base_model.model.model.layers.") and key.endswith((".lora_A.weight", ".lora_B.weight"))
        module = key.removeprefix("base_model.model.").rsplit(".lora_", 1)[0]
        fan_in, fan_out = shapes[module]
        assert tuple(t.shape) == ((4, fan_in) if ".lora_A." in key else (fan_out, 4))
    ids = torch.tensor([[1, 5, 9, 13, 2]])
    with torch.no_grad():
        before = base(ids).logits
        loaded = peft.PeftModel.from_pretrained(base, out)
        after = loaded(ids).logits
    assert not torch.allclose(before, after)  # the adapter changes the model
    assert all(torch.equal(loaded.state_dict()[k.replace(".weight", ".default.weight")], v)
               for k, v in tensors.items())


class _Crash(TrainerCallback):
    def __init__(self, at: int) -> None:
        self.at = at

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
        if state.global_step == self.at:
            raise KeyboardInterrupt("simulated kill")


def test_resume_after_kill_gives_the_same_adapter(tiny_llama: Path, tmp_path: Path) -> None:
    data = _sft_file(tmp_path)
    kw = dict(lora_dropout=0.1, max_steps=-1, epochs=2.0)  # dropout: the RNG state must be restored too
    tune(_small("sft", data, tmp_path / "a", tiny_llama, **kw))
    with pytest.raises(KeyboardInterrupt):
        tune(_small("sft", data, tmp_path / "b", tiny_llama, **kw), extra_callbacks=[_Crash(5)])
    assert not (tmp_path / "b" / "adapter_model.safetensors").exists()
    record = tune(_small("sft", data, tmp_path / "b", tiny_llama, resume=True, **kw))
    assert record["resumed_from"].endswith("checkpoint-4") and record["metrics"]["steps"] == 12
    a = load_file(tmp_path / "a" / "adapter_model.safetensors")
    b = load_file(tmp_path / "b" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6


def test_init_adapter_continues_an_adapter_with_its_own_shape(tiny_llama: Path, tmp_path: Path) -> None:
    """A warm start begins at the given adapter's weights (a near-zero learning rate leaves them as they were),
    takes its rank and modules over the flags, and records which adapter it started from."""
    data = _sft_file(tmp_path)
    first = tune(_small("sft", data, tmp_path / "a", tiny_llama, max_steps=8))
    still = tune(_small("sft", data, tmp_path / "b", tiny_llama, init_adapter=str(tmp_path / "a"), lora_r=8,
                        target_modules="q_proj", learning_rate=1e-12, max_steps=2))
    a = load_file(tmp_path / "a" / "adapter_model.safetensors")
    b = load_file(tmp_path / "b" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6
    written = json.loads((tmp_path / "b" / "tune_config.json").read_text())
    assert written["lora_r"] == 4 and written["target_modules"] == ",".join(sorted(SERVABLE_MODULES))
    assert still["init_adapter"] == {"path": str((tmp_path / "a").resolve()),
                                     "sha256": file_sha256(tmp_path / "a" / "adapter_model.safetensors")}
    moved = tune(_small("sft", data, tmp_path / "c", tiny_llama, init_adapter=str(tmp_path / "a"), max_steps=2))
    c = load_file(tmp_path / "c" / "adapter_model.safetensors")
    assert max((a[k] - c[k]).abs().max().item() for k in a) > 1e-4  # it trains
    # it starts where the first run ended, not from a new LoRA
    assert moved["metrics"]["first_loss"] < first["metrics"]["first_loss"]


def test_init_adapter_errors_name_the_field(tiny_llama: Path, tmp_path: Path) -> None:
    data = _sft_file(tmp_path)
    with pytest.raises(ValueError, match="init_adapter: .* is not a LoRA adapter folder"):
        tune(_small("sft", data, tmp_path / "o", tiny_llama, init_adapter=str(tmp_path)))
    (tmp_path / "adapter_config.json").write_text("{}")
    pref, _ = _pref_files(tmp_path)
    with pytest.raises(ValueError, match="init_adapter: only sft"):
        tune(_small("dpo", pref, tmp_path / "o", tiny_llama, init_adapter=str(tmp_path)))
    with pytest.raises(ValueError, match="full=True"):
        tune(_small("sft", data, tmp_path / "o", tiny_llama, init_adapter=str(tmp_path), full=True))


def test_max_minutes_ends_cleanly_with_a_usable_adapter(tiny_llama: Path, tmp_path: Path) -> None:
    import peft
    from transformers import AutoModelForCausalLM

    record = tune(_small("sft", _sft_file(tmp_path), tmp_path / "o", tiny_llama, max_steps=50, max_minutes=1e-6))
    assert record["ended"] == "max_minutes" and record["metrics"]["steps"] == 1
    base = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    peft.PeftModel.from_pretrained(base, tmp_path / "o")
    assert (tmp_path / "o" / "checkpoints" / "checkpoint-1").is_dir()


def test_shared_prefix_path_equals_plain_path(tiny_llama: Path, tmp_path: Path) -> None:
    """Same loss and gradients (1e-5) from TRL's plain padding-free loss and the shared-prefix loss."""
    from treadle.tuning.run import build_trainer

    cfg = _small("sft", _sft_file(tmp_path, 8), tmp_path / "o", tiny_llama, lora_dropout=0.0)
    trainer = build_trainer(cfg, tiny_llama, tmp_path / "o")
    model = trainer.model
    torch.manual_seed(1)
    with torch.no_grad():  # non-zero B, so every LoRA matrix has a gradient
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.05)
    model.train()
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    seqs = split_packed(batch["input_ids"], batch["position_ids"], batch["labels"])
    prefix = shared_prefix_len(seqs, 1)
    assert len(seqs) == 4 and prefix >= 20  # the system turn is shared
    n_items = int((batch["labels"][:, 1:] != -100).sum())

    def loss_and_grads(min_prefix: int) -> tuple[float, dict[str, torch.Tensor]]:
        model.zero_grad()
        trainer.shared_prefix_min = min_prefix
        loss = trainer.compute_loss(model, dict(batch), num_items_in_batch=n_items)
        loss.backward()
        return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}

    plain_loss, plain_grads = loss_and_grads(0)
    shared_loss, shared_grads = loss_and_grads(16)
    assert trainer.prefix_stats["shared_batches"] == 1
    assert abs(plain_loss - shared_loss) <= 1e-5
    assert len(plain_grads) == 2 * 7 * 2
    for name, g in plain_grads.items():
        assert g.abs().max() > 0, name
        assert torch.allclose(g, shared_grads[name], atol=1e-5, rtol=0), name


def test_full_finetune_writes_a_model(tiny_llama: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    record = tune(_small("sft", _sft_file(tmp_path), tmp_path / "o", tiny_llama, full=True, max_steps=2,
                         learning_rate=1e-3))
    assert record["adapter"] == "full"
    AutoModelForCausalLM.from_pretrained(tmp_path / "o")


def test_merged_adapter_equals_peft_and_progress_bar_shows_speed(tiny_llama: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    import peft
    from transformers import AutoModelForCausalLM

    from treadle.tuning.merge import merge_adapter

    tune(_small("sft", _sft_file(tmp_path), tmp_path / "o", tiny_llama, max_steps=3, progress=True))
    err = capsys.readouterr().err
    assert "tok/s=" in err and "loss=" in err and "3/3" in err
    merged = AutoModelForCausalLM.from_pretrained(merge_adapter(tmp_path / "o", tmp_path / "m"), dtype=torch.float32)
    lora = peft.PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32),
                                          tmp_path / "o")
    ids = torch.tensor([[1, 5, 9, 13, 2, 7]])
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, lora(ids).logits, atol=1e-5)
    assert (tmp_path / "m" / "tokenizer.json").is_file()


def test_samplers_are_seeded_and_group() -> None:
    from treadle.tuning.trainers import LengthGroupedSampler, PrefixGroupedSampler

    lengths = [random.Random(i).randint(5, 500) for i in range(256)]
    s = LengthGroupedSampler(lengths, 8, seed=3)
    order = list(s)
    assert sorted(order) == list(range(256)) and order == list(LengthGroupedSampler(lengths, 8, seed=3))
    s.set_epoch(1)
    assert list(s) != order
    spread = [max(lengths[i] for i in order[a:a + 8]) - min(lengths[i] for i in order[a:a + 8])
              for a in range(0, 256, 8)]
    assert sum(spread) / len(spread) < 60  # random batches of 8 would spread ~380 tokens
    keys = ["a" if i % 3 else "b" for i in range(40)]
    order = list(PrefixGroupedSampler(keys, 4, seed=0))
    mixed = [len({keys[i] for i in order[a:a + 4]}) for a in range(0, 40, 4)]
    assert sorted(order) == list(range(40)) and sum(m > 1 for m in mixed) <= 1


def test_tuned_adapter_serves_in_treadles_engine(tiny_llama: Path, tmp_path: Path) -> None:
    """The engine (multi-LoRA, issue 13) generates what transformers does with the adapter merged."""
    pytest.importorskip("treadle.models.lora", reason="multi-LoRA serving (issue 13) is not in this branch yet")
    import peft
    from transformers import AutoModelForCausalLM

    from treadle.llm import LLM
    from treadle.models.tokenizer import Tokenizer
    from treadle.sampling_params import SamplingParams

    out = tmp_path / "o"
    tune(_small("sft", _sft_file(tmp_path), out, tiny_llama, max_steps=4))
    prompt = Tokenizer(tiny_llama).encode_chat([{"role": "system", "content": SYSTEM},
                                                {"role": "user", "content": "cancel my order please"}])
    llm = LLM(str(tiny_llama), num_kv_blocks=64, block_size=4, threads=1, lora_modules=(("tuned", str(out)),))
    got = llm.generate([prompt], SamplingParams(temperature=0, max_tokens=6, ignore_eos=True),
                       lora_name="tuned")[0].outputs[0].token_ids
    merged = peft.PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32),
                                            out).merge_and_unload().eval()
    with torch.no_grad():
        logits = merged(torch.tensor([prompt + list(got)])).logits[0]
    for i, tok in enumerate(got):
        row = logits[len(prompt) - 1 + i]
        if tok != int(row.argmax()):
            assert float(row.max() - row[tok]) < 1e-4, f"token {i} differs from the merged model's greedy choice"
            break


def test_resume_skips_a_checkpoint_cut_off_mid_save(tmp_path: Path) -> None:
    from treadle.tuning.run import last_checkpoint

    for step, complete in ((4, True), (8, True), (12, False)):
        d = tmp_path / "checkpoints" / f"checkpoint-{step}"
        d.mkdir(parents=True)
        if complete:
            (d / "trainer_state.json").write_text("{}")
    assert last_checkpoint(tmp_path).name == "checkpoint-8"
    assert last_checkpoint(tmp_path / "nothing") is None
