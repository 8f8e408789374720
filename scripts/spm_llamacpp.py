"""A Llama-2-style SentencePiece vocabulary and llama.cpp's token ids for texts, for
tests/tests/families.rs: the SentencePiece path Llama 2, Mistral and TinyLlama use
(`tokenizer.ggml.model = llama`, scores as merge priorities, byte fallback, a space prefix).

Usage: python spm_llamacpp.py GEMMA.gguf OUT.gguf < {"texts": [...]}
Writes OUT.gguf (metadata only: a 1-layer llama header and the vocabulary) built from Gemma 3's
262,144 SentencePiece pieces and scores, with the pieces that are runs of plain spaces renamed
(Llama vocabularies have none; Tiller treats a vocabulary with them as Gemma's) and
`add_space_prefix` on; stdout: {"ids": [[id, ...] per text], "text": [decoded ids after BOS]}
from llama.cpp (vocab only).
"""
import json
import sys

import gguf
from gguf import GGUFReader, GGUFWriter
from llama_cpp import Llama

src, out = sys.argv[1], sys.argv[2]
texts = json.load(sys.stdin)["texts"]
r = GGUFReader(src)


def arr(name):
    f = r.fields[name]
    return [f.parts[i] for i in f.data]


tokens = [bytes(p).decode() for p in arr("tokenizer.ggml.tokens")]
scores = [float(p[0]) for p in arr("tokenizer.ggml.scores")]
types = [int(p[0]) for p in arr("tokenizer.ggml.token_type")]
tokens = [f"<ws{i}>" if (" " in t and t.strip() == "") else t for i, t in enumerate(tokens)]

w = GGUFWriter(out, "llama")
w.add_block_count(1)
w.add_context_length(64)
w.add_embedding_length(64)
w.add_feed_forward_length(128)
w.add_head_count(1)
w.add_head_count_kv(1)
w.add_layer_norm_rms_eps(1e-5)
w.add_tokenizer_model("llama")
w.add_tokenizer_pre("default")
w.add_token_list(tokens)
w.add_token_scores(scores)
w.add_token_types(types)
w.add_bos_token_id(2)
w.add_eos_token_id(1)
w.add_unk_token_id(3)
w.add_pad_token_id(0)
w.add_add_bos_token(True)
w.add_add_space_prefix(True)
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()

llm = Llama(model_path=out, vocab_only=True, verbose=False)
ids = [llm.tokenize(t.encode("utf-8"), add_bos=True, special=False) for t in texts]
text = [llm.detokenize(i[1:]).decode("utf-8", errors="replace") for i in ids]
json.dump({"ids": ids, "text": text}, sys.stdout)
