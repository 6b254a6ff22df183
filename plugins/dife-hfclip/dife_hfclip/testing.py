"""Tiny transformers CLIP / SigLIP models and a tiny tokenizer for tests.

Everything is built locally: the tokenizer is a byte-level BPE with no merges
over CLIP's byte alphabet, so nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path


def _byte_alphabet() -> list:
    """CLIP's printable stand-ins for the 256 byte values."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def tiny_clip_tokenizer(merges=()):
    """A CLIPTokenizer over a 514-token byte vocabulary (optionally with merges)."""
    from transformers import CLIPTokenizer

    chars = _byte_alphabet()
    vocab = {}
    for c in chars:
        vocab[c] = len(vocab)
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    for t in ("<|startoftext|>", "<|endoftext|>"):
        vocab[t] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[f"{a} {b}" for a, b in merges])


def _text_cfg(tok, **extra) -> dict:
    cfg = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
               num_attention_heads=2, max_position_embeddings=16)
    cfg.update(extra)
    return cfg


def _vision_cfg() -> dict:
    return dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                image_size=32, patch_size=8)


def tiny_clip_model(*, seed: int = 0):
    """(CLIPModel, tokenizer) with seeded random weights."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    tok = tiny_clip_tokenizer()
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    bos = tok.convert_tokens_to_ids("<|startoftext|>")
    cfg = CLIPConfig(text_config=_text_cfg(tok, eos_token_id=eos, bos_token_id=bos, pad_token_id=eos),
                     vision_config=_vision_cfg(), projection_dim=16)
    torch.manual_seed(seed)
    return CLIPModel(cfg).eval(), tok


def tiny_siglip_model(*, seed: int = 0):
    """(SiglipModel, tokenizer) with seeded random weights."""
    import torch
    from transformers import SiglipConfig, SiglipModel

    tok = tiny_clip_tokenizer()
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    cfg = SiglipConfig(text_config=_text_cfg(tok, eos_token_id=eos, pad_token_id=eos, bos_token_id=eos),
                       vision_config=_vision_cfg())
    torch.manual_seed(seed)
    return SiglipModel(cfg).eval(), tok


def save_folder(model, tok, folder, *, image_processor: bool = True, pickle: bool = False):
    """``save_pretrained`` layout: config, weights (safetensors or pytorch_model.bin), tokenizer, preprocessor."""
    import json

    import torch

    folder = Path(folder)
    model.save_pretrained(str(folder))
    tok.save_pretrained(str(folder))
    if pickle:
        (folder / "model.safetensors").unlink()
        torch.save({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "pytorch_model.bin")
    if image_processor:
        size = model.config.vision_config.image_size
        if model.config.model_type == "siglip":
            pp = {"image_processor_type": "SiglipImageProcessor", "do_resize": True,
                  "size": {"height": size, "width": size},
                  "resample": 2, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
                  "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}
        else:
            pp = {"image_processor_type": "CLIPImageProcessor", "do_resize": True, "size": {"shortest_edge": size},
                  "do_center_crop": True, "crop_size": {"height": size, "width": size}, "resample": 3,
                  "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
                  "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711]}
        (folder / "preprocessor_config.json").write_text(json.dumps(pp))
    return folder
