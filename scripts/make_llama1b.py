"""A Llama-3.2-1B-shaped GGUF with random Q4_K weights, for the scale checks of issue 12.

Usage: python make_llama1b.py SMOLLM2.gguf OUT.gguf

16 layers, d 2048, 32 heads, 8 KV heads (head dim 64), d_ff 8192, vocabulary 128,256, tied
embeddings, RoPE base 500,000: 1.24 B parameters, every matrix Q4_K (random codes, scales
chosen so activations stay O(1)), norms F32. The vocabulary is SmolLM2's (byte-level BPE, from
the GGUF given) padded with reserved tokens to Llama 3's size, so text encodes and decodes.
The weights are noise: this file measures loading, memory and speed, never quality.
"""
import sys

import numpy as np
from gguf import GGUFReader, GGUFWriter, GGMLQuantizationType, TokenType

src, out = sys.argv[1], sys.argv[2]
L, D, H, KV, HD, FF, V = 16, 2048, 32, 8, 64, 8192, 128256
rng = np.random.default_rng(1234)


def field(r, name):
    f = r.fields[name]
    return [bytes(f.parts[i]).decode() if f.types[-1].name == "STRING" else f.parts[i][0] for i in f.data]


r = GGUFReader(src)
tokens = field(r, "tokenizer.ggml.tokens")
types = [int(t) for t in field(r, "tokenizer.ggml.token_type")]
merges = field(r, "tokenizer.ggml.merges")
pre = field(r, "tokenizer.ggml.pre")[0]
bos = int(field(r, "tokenizer.ggml.bos_token_id")[0])
eos = int(field(r, "tokenizer.ggml.eos_token_id")[0])
template = field(r, "tokenizer.chat_template")[0] if "tokenizer.chat_template" in r.fields else None
pad = V - len(tokens)
tokens += [f"<|reserved_special_token_{i}|>" for i in range(pad)]
types += [int(TokenType.CONTROL)] * pad

w = GGUFWriter(out, "llama")
w.add_name("llama-1b-shaped random Q4_K (Tiller scale test)")
w.add_block_count(L)
w.add_context_length(8192)
w.add_embedding_length(D)
w.add_feed_forward_length(FF)
w.add_head_count(H)
w.add_head_count_kv(KV)
w.add_rope_dimension_count(HD)
w.add_rope_freq_base(500000.0)
w.add_layer_norm_rms_eps(1e-5)
w.add_vocab_size(V)
w.add_tokenizer_model("gpt2")
w.add_tokenizer_pre(pre)
w.add_token_list(tokens)
w.add_token_types(types)
w.add_token_merges(merges)
w.add_bos_token_id(bos)
w.add_eos_token_id(eos)
if template:
    w.add_chat_template(template)


def q4k(rows, cols):
    """Random Q4_K blocks for a rows x cols matrix (ggml dims [cols, rows])."""
    nb = rows * cols // 256
    b = rng.integers(0, 256, size=(nb, 144), dtype=np.uint8)
    # Codes 0..15 with per-sub-block scale 0..63 and min 0..63: w = d*sc*q - dmin*m. With
    # d = 1.5e-4 and dmin = 1.1e-3 the weights have a spread of about 0.02 (Llama's).
    b[:, 0:2] = np.frombuffer(np.float16(1.5e-4).tobytes(), dtype=np.uint8)
    b[:, 2:4] = np.frombuffer(np.float16(1.1e-3).tobytes(), dtype=np.uint8)
    return b.reshape(rows, cols // 256 * 144)


def mat(name, rows, cols):
    w.add_tensor(name, q4k(rows, cols), raw_shape=(rows, cols // 256 * 144), raw_dtype=GGMLQuantizationType.Q4_K)


ones = np.ones(D, dtype=np.float32)
mat("token_embd.weight", V, D)
w.add_tensor("output_norm.weight", ones)
for l in range(L):
    w.add_tensor(f"blk.{l}.attn_norm.weight", ones)
    mat(f"blk.{l}.attn_q.weight", H * HD, D)
    mat(f"blk.{l}.attn_k.weight", KV * HD, D)
    mat(f"blk.{l}.attn_v.weight", KV * HD, D)
    mat(f"blk.{l}.attn_output.weight", D, H * HD)
    w.add_tensor(f"blk.{l}.ffn_norm.weight", ones)
    mat(f"blk.{l}.ffn_gate.weight", FF, D)
    mat(f"blk.{l}.ffn_up.weight", FF, D)
    mat(f"blk.{l}.ffn_down.weight", D, FF)
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
print(out)
