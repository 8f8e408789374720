//! A `tokenizers::Tokenizer` built from GGUF metadata (`tokenizer.ggml.*`).
//!
//! Supported:
//! - `tokenizer.ggml.model = "gpt2"` (byte-level BPE: GPT-2, SmolLM, Llama 3, Qwen2, ...), with
//!   the pre-tokenizer chosen by `tokenizer.ggml.pre` the way llama.cpp does. Control tokens
//!   (token_type 3) and user-defined tokens (4) are added tokens, so text such as
//!   `<|im_start|>` maps to its single id, as in HF transformers.
//! - `tokenizer.ggml.model = "llama"` (SentencePiece vocabularies: Gemma, Llama 2, Mistral v0.1-3,
//!   TinyLlama): built as HF transformers builds it from the same GGUF (`GGUFTokenizerSkeleton`,
//!   `GGUFGemmaConverter`, `GGUFLlamaConverter`): a BPE with byte fallback whose merges are every
//!   split of a vocabulary entry into two entries, ranked by the entry's score (or, for Gemma,
//!   whose scores are placeholders for whitespace runs, by its position); spaces become `▁`
//!   (Gemma: a normalizer; others: a normalizer that also prepends the space prefix to each
//!   stretch of text when `tokenizer.ggml.add_space_prefix` says so, as llama.cpp does). Control tokens are special tokens.

use crate::{Error, Gguf, Result};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior};

const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub add_bos: bool,
    /// Tokens that end a generation (eos, and eot where the file names one).
    pub stop: Vec<u32>,
    /// Things the user should know (e.g. an unknown pre-tokenizer that fell back to GPT-2's).
    pub warnings: Vec<String>,
}

fn strings(g: &Gguf, key: &str) -> Result<Vec<String>> {
    let arr = g
        .req(key)?
        .as_array()
        .ok_or(Error::WrongType { key: key.into(), expected: "array of strings" })?;
    arr.iter()
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .ok_or(Error::WrongType { key: key.into(), expected: "array of strings" })
        })
        .collect()
}

/// BOS, EOS, whether BOS is added, and the tokens that stop a generation.
fn specials(g: &Gguf, n: usize) -> (Option<u32>, Option<u32>, bool, Vec<u32>) {
    let id =
        |k: &str| g.get(k).and_then(|v| v.as_u64()).filter(|&i| (i as usize) < n).map(|i| i as u32);
    let bos = id("tokenizer.ggml.bos_token_id");
    let eos = id("tokenizer.ggml.eos_token_id");
    let add_bos = g.get("tokenizer.ggml.add_bos_token").and_then(|v| v.as_bool()).unwrap_or(false);
    let mut stop: Vec<u32> =
        [eos, id("tokenizer.ggml.eot_token_id")].into_iter().flatten().collect();
    stop.dedup();
    (bos, eos, add_bos, stop)
}

impl Tokenizer {
    pub fn from_gguf(g: &Gguf) -> Result<Self> {
        let model = g.str("tokenizer.ggml.model")?;
        if model == "llama" {
            return Self::sentencepiece(g);
        }
        if model != "gpt2" {
            return Err(Error::Unsupported(format!(
                "tokenizer.ggml.model = `{model}`: Tiller reads byte-level BPE (`gpt2`) and \
                 SentencePiece (`llama`) vocabularies"
            )));
        }
        let tokens = strings(g, "tokenizer.ggml.tokens")?;
        let merges_raw = strings(g, "tokenizer.ggml.merges")?;
        let types: Vec<u64> = match g.get("tokenizer.ggml.token_type").and_then(|v| v.as_array()) {
            Some(a) => a.iter().map(|v| v.as_u64().unwrap_or(1)).collect(),
            None => vec![1; tokens.len()],
        };
        let mut vocab = tokenizers::models::bpe::Vocab::with_capacity(tokens.len());
        for (i, t) in tokens.iter().enumerate() {
            vocab.entry(t.clone()).or_insert(i as u32);
        }
        let mut merges = Vec::with_capacity(merges_raw.len());
        for (i, m) in merges_raw.iter().enumerate() {
            let (a, b) = m.split_once(' ').ok_or_else(|| {
                Error::Tokenizer(format!("merge #{i} `{m}` is not two tokens separated by a space"))
            })?;
            merges.push((a.to_string(), b.to_string()));
        }
        let pre = g.get("tokenizer.ggml.pre").and_then(|v| v.as_str()).unwrap_or("default");
        let mut warnings = Vec::new();
        let byte_level = |regex: bool| ByteLevel::new(false, true, regex);
        let split = |re: &str| -> Result<PreTokenizerWrapper> {
            Ok(Split::new(SplitPattern::Regex(re.into()), SplitDelimiterBehavior::Isolated, false)
                .map_err(|e| Error::Tokenizer(e.to_string()))?
                .into())
        };
        let (pre_tok, ignore_merges): (PreTokenizerWrapper, bool) = match pre {
            "smollm" => (
                Sequence::new(vec![Digits::new(true).into(), byte_level(true).into()]).into(),
                false,
            ),
            "llama-bpe" | "llama3" | "smaug-bpe" => {
                (Sequence::new(vec![split(LLAMA3_REGEX)?, byte_level(false).into()]).into(), true)
            }
            "qwen2" => {
                (Sequence::new(vec![split(QWEN2_REGEX)?, byte_level(false).into()]).into(), false)
            }
            "gpt2" | "default" => (byte_level(true).into(), false),
            other => {
                warnings.push(format!("unknown pre-tokenizer `{other}`: using GPT-2's; token ids may differ from the model's own"));
                (byte_level(true).into(), false)
            }
        };
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .ignore_merges(ignore_merges)
            .build()
            .map_err(|e| Error::Tokenizer(e.to_string()))?;
        let mut inner = tokenizers::Tokenizer::new(bpe);
        inner.with_pre_tokenizer(Some(pre_tok));
        inner.with_decoder(Some(ByteLevelDecoder::default()));
        let special: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(_, t)| **t == 3)
            .map(|(s, _)| AddedToken::from(s.clone(), true))
            .collect();
        let user: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(_, t)| **t == 4)
            .map(|(s, _)| AddedToken::from(s.clone(), false).normalized(false))
            .collect();
        inner.add_special_tokens(special).map_err(|e| Error::Tokenizer(e.to_string()))?;
        inner.add_tokens(user).map_err(|e| Error::Tokenizer(e.to_string()))?;
        let (bos, eos, add_bos, stop) = specials(g, tokens.len());
        Ok(Tokenizer { inner, bos, eos, add_bos, stop, warnings })
    }

    /// A SentencePiece vocabulary (`tokenizer.ggml.model = "llama"`), as HF transformers builds
    /// it from the GGUF (see the module docs).
    fn sentencepiece(g: &Gguf) -> Result<Self> {
        use tokenizers::decoders::{
            byte_fallback::ByteFallback, fuse::Fuse, sequence::Sequence as DecSeq, strip::Strip,
        };
        use tokenizers::normalizers::replace::Replace;
        use tokenizers::normalizers::{prepend::Prepend, Sequence as NormSeq};
        let raw = strings(g, "tokenizer.ggml.tokens")?;
        let n = raw.len();
        let scores: Vec<f64> = match g.get("tokenizer.ggml.scores").and_then(|v| v.as_array()) {
            Some(a) if a.len() == n => a.iter().map(|v| v.as_f64().unwrap_or(0.0)).collect(),
            _ => {
                return Err(Error::Tokenizer(
                    "a SentencePiece vocabulary needs tokenizer.ggml.scores, one per token".into(),
                ))
            }
        };
        let types: Vec<u64> = match g.get("tokenizer.ggml.token_type").and_then(|v| v.as_array()) {
            Some(a) => a.iter().map(|v| v.as_u64().unwrap_or(1)).collect(),
            None => vec![1; n],
        };
        // Gemma writes runs of spaces as spaces where SentencePiece writes `▁`; HF respells them.
        let gemma = raw.iter().any(|t| t.contains(' ') && t.trim().is_empty());
        let tokens: Vec<String> = raw
            .iter()
            .map(|t| {
                if gemma && t.contains(' ') && t.trim().is_empty() {
                    "\u{2581}".repeat(t.chars().count())
                } else {
                    t.clone()
                }
            })
            .collect();
        // Later duplicates win the id, as in a Python dict built in order.
        let mut index: std::collections::HashMap<&str, usize> = Default::default();
        for (i, t) in tokens.iter().enumerate() {
            index.insert(t.as_str(), i);
        }
        let rank = |i: usize| if gemma { -(i as f64) } else { scores[i] };
        // Every split of an entry into two entries, ranked by the entry (its score, or for
        // Gemma its position); within an entry, by the pieces' scores.
        let mut merges: Vec<(f64, usize, usize, usize)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (i, t) in tokens.iter().enumerate() {
            if !seen.insert(t.as_str()) {
                continue;
            }
            let mut local: Vec<(usize, usize)> = Vec::new();
            for (cut, _) in t.char_indices().skip(1) {
                if let (Some(&l), Some(&r)) = (index.get(&t[..cut]), index.get(&t[cut..])) {
                    local.push((l, r));
                }
            }
            local.sort_by(|a, b| {
                (scores[b.0], scores[b.1])
                    .partial_cmp(&(scores[a.0], scores[a.1]))
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
            let r = rank(index[t.as_str()]);
            merges.extend(local.into_iter().map(|(l, rr)| (r, l, rr, i)));
        }
        merges.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
        let merges: Vec<(String, String)> =
            merges.into_iter().map(|(_, l, r, _)| (tokens[l].clone(), tokens[r].clone())).collect();
        let mut vocab = tokenizers::models::bpe::Vocab::with_capacity(n);
        for (t, &i) in &index {
            vocab.insert(t.to_string(), i as u32);
        }
        let unk = g
            .get("tokenizer.ggml.unknown_token_id")
            .and_then(|v| v.as_u64())
            .and_then(|i| tokens.get(i as usize))
            .cloned();
        let mut b =
            BPE::builder().vocab_and_merges(vocab, merges).fuse_unk(true).byte_fallback(true);
        if let Some(u) = unk {
            b = b.unk_token(u);
        }
        let bpe = b.build().map_err(|e| Error::Tokenizer(e.to_string()))?;
        let mut inner = tokenizers::Tokenizer::new(bpe);
        let prefix =
            g.get("tokenizer.ggml.add_space_prefix").and_then(|v| v.as_bool()).unwrap_or(!gemma);
        let replace = |a: &str, b: &str| -> Result<Replace> {
            Replace::new(a, b).map_err(|e| Error::Tokenizer(e.to_string()))
        };
        let mut dec: Vec<tokenizers::DecoderWrapper> = Vec::new();
        if gemma {
            inner
                .with_normalizer(Some(replace(" ", "\u{2581}")?))
                .map_err(|e| Error::Tokenizer(e.to_string()))?;
            dec.push(replace("\u{2581}", " ")?.into());
            dec.push(ByteFallback::default().into());
            dec.push(Fuse::default().into());
        } else {
            // As llama.cpp (and SentencePiece) do: spaces escaped to U+2581 and, with
            // `add_space_prefix`, one prepended to every stretch of text (the first, and each
            // after a special token), even one that starts with a space.
            let mut norm: Vec<tokenizers::NormalizerWrapper> = Vec::new();
            if prefix {
                norm.push(Prepend::new("\u{2581}".into()).into());
            }
            norm.push(replace(" ", "\u{2581}")?.into());
            inner
                .with_normalizer(Some(NormSeq::new(norm)))
                .map_err(|e| Error::Tokenizer(e.to_string()))?;
            dec.push(ByteFallback::default().into());
            dec.push(Fuse::default().into());
            dec.push(replace("\u{2581}", " ")?.into());
        }
        if prefix {
            dec.push(Strip::new(' ', 1, 0).into());
        }
        inner.with_decoder(Some(DecSeq::new(dec)));
        let special: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(_, t)| **t == 3)
            .map(|(s, _)| AddedToken::from(s.clone(), true))
            .collect();
        inner.add_special_tokens(special).map_err(|e| Error::Tokenizer(e.to_string()))?;
        if !gemma {
            // User-defined pieces split the text as llama.cpp splits it (and the stretch after
            // one gets its own space prefix).
            let user: Vec<AddedToken> = tokens
                .iter()
                .zip(&types)
                .filter(|(_, t)| **t == 4)
                .map(|(s, _)| AddedToken::from(s.clone(), false).normalized(false))
                .collect();
            inner.add_tokens(user).map_err(|e| Error::Tokenizer(e.to_string()))?;
        }
        let (bos, eos, add_bos, stop) = specials(g, n);
        Ok(Tokenizer { inner, bos, eos, add_bos, stop, warnings: Vec::new() })
    }

    /// Token ids of `text`; special-token strings in it become their ids. BOS is prepended
    /// only when the GGUF asks for it (`tokenizer.ggml.add_bos_token`).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, false).map_err(|e| Error::Tokenizer(e.to_string()))?;
        let mut ids = Vec::with_capacity(enc.len() + 1);
        if self.add_bos {
            ids.extend(self.bos);
        }
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    /// Text of `ids`, special tokens included (as HF `decode` does by default).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, false).map_err(|e| Error::Tokenizer(e.to_string()))
    }
}

/// Turns a growing list of ids into text pieces without splitting a UTF-8 character:
/// the byte-level decoder yields U+FFFD for a partial character, so we hold those back.
#[derive(Default)]
pub struct StreamDecoder {
    ids: Vec<u32>,
    emitted: usize,
}

impl StreamDecoder {
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> Result<String> {
        self.ids.push(id);
        let text = tok.decode(&self.ids)?;
        if text.ends_with('\u{FFFD}') {
            return Ok(String::new());
        }
        let piece = text.get(self.emitted..).unwrap_or("").to_string();
        self.emitted = text.len();
        Ok(piece)
    }
}
