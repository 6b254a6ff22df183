"""Token-level access to a DualEncoder's text tower, for gradient-guided token search.

The search needs three things the model contract leaves optional: the token
ids of strings, the input token-embedding table, and a way back from ids to
text. An encoder may provide them itself with ``token_access() ->
{"ids": fn(strings) -> LongTensor [N, L], "embedding": nn.Embedding,
"decode": fn(list[int]) -> str}``; otherwise they are found on the two
loaders DIFE ships (open_clip: ``encoder.tokenize`` + ``model.token_embedding``;
Hugging Face CLIP/SigLIP: ``encoder.tokenize`` + the text model's input
embeddings). Without them the text scanner falls back to candidates scored by
forward passes only.
"""

from __future__ import annotations

import re
from typing import Optional

_WORD = re.compile(r"^[a-z]{1,12}$")


class TokenAccess:
    def __init__(self, encoder, ids, embedding, decode):
        self.encoder, self.ids, self.embedding, self.decode = encoder, ids, embedding, decode
        self._specials = None
        self._vocab = None

    @property
    def specials(self) -> set:
        """Ids that tokenising an empty string produces (start/end/pad)."""
        if self._specials is None:
            self._specials = set(self.ids([""])[0].tolist())
        return self._specials

    def core(self, text: str) -> list:
        """The token ids of ``text`` without special tokens."""
        return [i for i in self.ids([text])[0].tolist() if i not in self.specials]

    def vocabulary(self, exclude=()) -> "object":
        """Candidate token ids: tokens that decode to one lower-case word (piece) of 1-12
        letters, minus the tokens of ``exclude`` (class names, template words)."""
        import torch

        if self._vocab is None:
            n = self.embedding.weight.shape[0]
            keep = []
            for i in range(n):
                if i in self.specials:
                    continue
                try:
                    s = self.decode([i]).strip()
                except Exception:  # noqa: BLE001 -- an id the tokenizer cannot decode
                    continue
                if _WORD.match(s):
                    keep.append(i)
            self._vocab = keep
        bad = set()
        for w in exclude:
            bad.update(self.core(w))
        return torch.tensor([i for i in self._vocab if i not in bad], dtype=torch.long)


def token_access(encoder) -> Optional[TokenAccess]:
    """A :class:`TokenAccess` for ``encoder``, or None when it exposes no token embeddings."""
    import torch

    src = encoder
    while hasattr(src, "text_encoder"):  # a branch-swap hybrid: its text side
        src = src.text_encoder
    fn = getattr(src, "token_access", None)
    if callable(fn):
        d = fn()
        return TokenAccess(src, d["ids"], d["embedding"], d["decode"])
    tok = getattr(src, "tokenize", None)
    model = getattr(src, "model", None)
    if tok is None or model is None:
        return None
    emb = getattr(model, "token_embedding", None)
    if emb is None:
        for path in ("text_model.embeddings.token_embedding", "text.transformer.embeddings.word_embeddings"):
            obj = model
            for part in path.split("."):
                obj = getattr(obj, part, None)
                if obj is None:
                    break
            if obj is not None:
                emb = obj
                break
    if emb is None and hasattr(model, "get_input_embeddings"):
        try:
            emb = model.get_input_embeddings()
        except Exception:  # noqa: BLE001
            emb = None
    if not isinstance(emb, torch.nn.Embedding):
        return None

    def ids(strings):
        out = tok(list(strings))
        if isinstance(out, dict) or hasattr(out, "keys"):
            out = out["input_ids"]
        return torch.as_tensor(out)

    tokenizer = getattr(src, "tokenizer", None)
    inner = getattr(tokenizer, "tokenizer", None)

    def decode(id_list):
        for t in (inner, tokenizer):
            if t is not None and hasattr(t, "decode"):
                return t.decode(list(id_list))
        raise ValueError("the tokenizer cannot decode")

    return TokenAccess(src, ids, emb, decode)
