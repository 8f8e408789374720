"""Summary of scripts/bench_rounds.sh's log: llama.cpp's range, the page's speeds and its
ratios per round, the 16-pair concept's time, cached and first-visit open times.
Usage: python3 scripts/bench_rounds.py rounds.log"""
import json
import statistics as st
import sys

rounds = []
for line in open(sys.argv[1]):
    kind, _, rest = line.rstrip("\n").partition(" ")
    if kind == "==":
        rounds.append({"t": rest, "llama": []})
        continue
    try:
        j = json.loads(rest)
    except ValueError:
        continue
    r = rounds[-1]
    if kind == "llama":
        r["llama"].append((j["prefill_tok_s"], j["decode_tok_s"]))
    elif kind == "page":
        r["page"] = j["page_bench"]
    elif kind == "open":
        r["open"] = [v["page_ms"] for v in j["visits"] if v["state"] == "ready"]
        r["open_concept"] = j["bench"]["concept_ms"]
rounds = [r for r in rounds if r["llama"] and "page" in r]


def span(xs, f="{:.0f}"):
    return f"{f.format(min(xs))}-{f.format(max(xs))}, median {f.format(st.median(xs))}"


lp = [p for r in rounds for p, _ in r["llama"]]
ld = [d for r in rounds for _, d in r["llama"]]
print(f"{len(rounds)} rounds, {rounds[0]['t']} to {rounds[-1]['t']}")
print(f"llama.cpp prefill {span(lp)}, decode {span(ld)}")
print(f"page prefill {span([r['page']['prefill_tok_s'] for r in rounds])}, "
      f"decode {span([r['page']['decode_tok_s'] for r in rounds])}")
rp = [r["page"]["prefill_tok_s"] / st.mean(p for p, _ in r["llama"]) for r in rounds]
rd = [r["page"]["decode_tok_s"] / st.mean(d for _, d in r["llama"]) for r in rounds]
print(f"ratio prefill {span(rp, '{:.2f}')}, decode {span(rd, '{:.2f}')}")
c = [r["page"]["concept_ms"] for r in rounds] + [r["open_concept"] for r in rounds if "open_concept" in r]
print(f"16-pair concept ms {span(c)} ({sum(x <= 1500 for x in c)} of {len(c)} <= 1500)")
cap = [r["page"]["concept_stages_ms"][0]["ms"] for r in rounds]
print(f"its capture ms {span(cap)}")
cached = [x for r in rounds for x in r.get("open", [])[1:]]
first = [r["open"][0] for r in rounds if r.get("open")]
if cached:
    print(f"cached open ms {span(cached)} ({sum(x <= 1500 for x in cached)} of {len(cached)} <= 1500); "
          f"first visit {span(first)}")
