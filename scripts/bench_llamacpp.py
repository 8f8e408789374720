#!/usr/bin/env python3
"""llama.cpp (llama-cpp-python) on the same GGUF, measured like `tiller bench`:
prefill of N prompt tokens, then M greedy decode steps one token at a time; best of R.
Usage: bench_llamacpp.py MODEL N M THREADS [R]   prints {"prefill_tok_s": x, "decode_tok_s": y}"""
import json, sys, time
import numpy as np
from llama_cpp import Llama

model, n, m, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
reps = int(sys.argv[5]) if len(sys.argv) > 5 else 3
llm = Llama(model_path=model, n_ctx=max(512, n + m + 8), n_batch=512, n_threads=threads,
            n_threads_batch=threads, logits_all=False, verbose=False)
text = ("The history of the printing press begins in the fifteenth century, when movable type changed "
        "how books were made and read across Europe. ")
unit = llm.tokenize(text.encode(), add_bos=False)
ids = (unit * (n // len(unit) + 1))[:n]
best_pf, best_dec = float("inf"), float("inf")
for rep in range(reps + 1):
    llm.reset()
    llm._ctx.kv_cache_clear() if hasattr(llm._ctx, "kv_cache_clear") else None
    t = time.perf_counter()
    llm.eval(ids)
    pf = time.perf_counter() - t
    tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
    t = time.perf_counter()
    for _ in range(m):
        llm.eval([tok])
        tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
    dec = time.perf_counter() - t
    if rep > 0:
        best_pf, best_dec = min(best_pf, pf), min(best_dec, dec)
print(json.dumps({"prefill_tok_s": n / best_pf, "decode_tok_s": m / best_dec}))
