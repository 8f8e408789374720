"""Every position's logits from llama.cpp (llama-cpp-python) for token-id sequences, for
tests/tests/families.rs: llama.cpp is the independent implementation of each architecture.

Usage: python llamacpp_logits.py MODEL.gguf < {"cases": [[id, ...], ...]}
stdout: {"logits": [[[float x vocab] per position] per case]}

The KV cache is f32 (llama.cpp's default is f16, which would round every key and value) and
flash attention is off, so on f32 weights only the order of sums and ggml's own GELU differ.
"""
import json
import sys

import numpy as np
from llama_cpp import Llama

cases = json.load(sys.stdin)["cases"]
llm = Llama(model_path=sys.argv[1], n_ctx=256, n_threads=2, n_threads_batch=2, logits_all=True,
            type_k=0, type_v=0, flash_attn=False, verbose=False)
out = []
for ids in cases:
    llm.reset()
    llm.eval(ids)
    out.append(np.asarray(llm.scores[: len(ids)], dtype=np.float64).tolist())
json.dump({"logits": out}, sys.stdout)
