"""Activation patching computed independently for tests/tests/ports.rs: a NumPy forward pass of
a Llama-family GGUF (weights de-quantized by the `gguf` package, float64 arithmetic), written
from the architecture (RMSNorm, RoPE in llama.cpp's normal mode, grouped-query causal attention,
SwiGLU, tied or separate head), not from Tiller's code.

Patching at (layer, pos): after block `layer`, the base run's residual row `pos` gets
x + (u.s - u.x) u, with u the unit direction at that layer and s the source run's residual at
(layer, pos) from this same forward pass ("direction"); or becomes s ("residual").

stdin: {"model": PATH, "base": [ids], "source": [ids], "answer": id, "wrong": id,
        "cells": [[layer, pos], ...], "dirs": {"LAYER": [...]}, "what": "direction"|"residual"}
stdout: {"ld_base": .., "ld_source": .., "ld": [per cell], "recovery": [per cell]}

Or attention patterns: stdin {"model": PATH, "attention": {"ids": [...], "layer": L}};
stdout {"heads": [[[weight per key] per query] per head]}.
"""
import json
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize


def scalar(r, key):
    f = r.fields[key]
    return f.parts[f.data[0]][0].item()


class Llama:
    def __init__(self, path):
        r = GGUFReader(path)
        arch = bytes(r.fields["general.architecture"].parts[-1]).decode()
        g = lambda k: scalar(r, f"{arch}.{k}")
        self.n_layer = g("block_count")
        self.n_head = g("attention.head_count")
        self.n_kv = g("attention.head_count_kv")
        self.d = g("embedding_length")
        self.eps = g("attention.layer_norm_rms_epsilon")
        self.theta = g("rope.freq_base") if f"{arch}.rope.freq_base" in r.fields else 10000.0
        self.hd = self.d // self.n_head
        self.w = {}
        for t in r.tensors:
            a = dequantize(t.data, t.tensor_type).astype(np.float64)
            shape = [int(x) for x in reversed(t.shape)]
            self.w[t.name] = a.reshape(shape)
        self.head = self.w.get("output.weight", self.w["token_embd.weight"])

    def norm(self, x, g):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + self.eps) * g

    def rope(self, x, n):
        # x: [n, heads, hd]; llama.cpp normal mode rotates pairs (2i, 2i+1).
        i = np.arange(self.hd // 2)
        freq = self.theta ** (-2.0 * i / self.hd)
        ang = np.arange(n)[:, None] * freq[None, :]
        c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        a, b = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = a * c - b * s
        out[..., 1::2] = a * s + b * c
        return out

    def forward(self, ids, hook=None, att_hook=None):
        """Last position's logits; hook(layer, x) may edit the residual rows in place and
        sees every block output."""
        n = len(ids)
        x = self.w["token_embd.weight"][ids].copy()
        mask = np.triu(np.full((n, n), -np.inf), 1)
        rep = self.n_head // self.n_kv
        for l in range(self.n_layer):
            p = f"blk.{l}."
            h = self.norm(x, self.w[p + "attn_norm.weight"])
            q = (h @ self.w[p + "attn_q.weight"].T).reshape(n, self.n_head, self.hd)
            k = (h @ self.w[p + "attn_k.weight"].T).reshape(n, self.n_kv, self.hd)
            v = (h @ self.w[p + "attn_v.weight"].T).reshape(n, self.n_kv, self.hd)
            q, k = self.rope(q, n), self.rope(k, n)
            k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
            att = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(self.hd) + mask
            att = np.exp(att - att.max(-1, keepdims=True))
            att /= att.sum(-1, keepdims=True)
            if att_hook:
                att_hook(l, att)
            o = np.einsum("hqk,khd->qhd", att, v).reshape(n, self.d)
            x = x + o @ self.w[p + "attn_output.weight"].T
            h = self.norm(x, self.w[p + "ffn_norm.weight"])
            gate = h @ self.w[p + "ffn_gate.weight"].T
            up = h @ self.w[p + "ffn_up.weight"].T
            x = x + (gate / (1 + np.exp(-gate)) * up) @ self.w[p + "ffn_down.weight"].T
            if hook:
                hook(l, x)
        return self.norm(x[-1], self.w["output_norm.weight"]) @ self.head.T


def main():
    a = json.load(sys.stdin)
    m = Llama(a["model"])
    if "attention" in a:
        want = a["attention"]
        got = {}

        def keep_att(l, att):
            if l == want["layer"]:
                got["heads"] = att.tolist()

        m.forward(want["ids"], att_hook=keep_att)
        json.dump(got, sys.stdout)
        return
    src = {}

    def keep(l, x):
        src[l] = x.copy()

    ls = m.forward(a["source"], keep)
    lb = m.forward(a["base"])
    ld = lambda z: float(z[a["answer"]] - z[a["wrong"]])
    ld_base, ld_source = ld(lb), ld(ls)
    out = []
    for layer, pos in a["cells"]:
        s = src[layer][pos]

        def patch(l, x, layer=layer, pos=pos, s=s):
            if l != layer:
                return
            if a["what"] == "residual":
                x[pos] = s
            else:
                u = np.array(a["dirs"][str(layer)], dtype=np.float64)
                u /= np.linalg.norm(u)
                x[pos] += (u @ s - u @ x[pos]) * u

        out.append(ld(m.forward(a["base"], patch)))
    rec = [(v - ld_base) / (ld_source - ld_base) for v in out]
    json.dump({"ld_base": ld_base, "ld_source": ld_source, "ld": out, "recovery": rec}, sys.stdout)


if __name__ == "__main__":
    main()
