#!/usr/bin/env python3
"""llama.cpp (llama-cpp-python) with a control vector loaded the way llama.cpp's own loader
(common/common.cpp, llama_control_vector_load_one) does it: every tensor `direction.N`
(N >= 1, 1-D F32 of n_embd) is scaled by the strength and placed at offset (N - 1) * n_embd
of one buffer, which llama_set_adapter_cvec applies to layers 1..n_layer (direction.N is
added to the output of block N).

Usage: llamacpp_cvec.py MODEL CVEC STRENGTH THREADS < cases.json
cases.json: {"cases": [{"ids": [...], "teacher_plain": [...], "teacher_steered": [...], "greedy": n}]}
Prints {"plain": [...], "steered": [...]}: per case, "top1" (argmax at each position of
ids + teacher) and "greedy" (n greedy tokens after ids)."""
import ctypes, json, sys
import numpy as np
import gguf
import llama_cpp
from llama_cpp import Llama

model, cvec, strength, threads = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
cases = json.load(sys.stdin)["cases"]
llm = Llama(model_path=model, n_ctx=1024, n_threads=threads, n_threads_batch=threads,
            logits_all=True, verbose=False)
n_embd = llm.n_embd()
n_layer = llama_cpp.llama_model_n_layer(llm.model) if hasattr(llama_cpp, "llama_model_n_layer") \
    else llama_cpp.llama_n_layer(llm.model)

# The loader: common.cpp llama_control_vector_load_one.
r = gguf.GGUFReader(cvec)
data = np.zeros(0, dtype=np.float32)
for t in r.tensors:
    if not t.name.startswith("direction."):
        continue
    idx = int(t.name.split(".")[1])
    assert idx > 0, "llama.cpp rejects direction.0"
    assert t.tensor_type == gguf.GGMLQuantizationType.F32 and t.n_elements == n_embd, t
    if data.size < n_embd * idx:
        data = np.concatenate([data, np.zeros(n_embd * idx - data.size, dtype=np.float32)])
    data[n_embd * (idx - 1): n_embd * idx] += strength * np.asarray(t.data, dtype=np.float32).reshape(-1)
data = np.ascontiguousarray(data, dtype=np.float32)


def set_cvec(on):
    ctx = llm._ctx.ctx
    if on:
        ptr = data.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        rc = llama_cpp.llama_set_adapter_cvec(ctx, ptr, data.size, n_embd, 1, n_layer)
    else:
        rc = llama_cpp.llama_set_adapter_cvec(ctx, None, 0, n_embd, 0, 0)
    assert rc == 0, f"llama_set_adapter_cvec returned {rc}"


def run(mode):
    out = []
    for c in cases:
        ids = c["ids"] + c["teacher_" + mode]
        llm.reset()
        llm.eval(ids)
        top1 = [int(np.argmax(llm.scores[i])) for i in range(len(ids))]
        llm.reset()
        llm.eval(c["ids"])
        greedy = []
        for _ in range(c["greedy"]):
            tok = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            greedy.append(tok)
            llm.eval([tok])
        out.append({"top1": top1, "greedy": greedy})
    return out


set_cvec(False)
plain = run("plain")
set_cvec(True)
steered = run("steered")
print(json.dumps({"plain": plain, "steered": steered}))
