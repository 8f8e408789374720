//! A `tokenizers::Tokenizer` built from GGUF metadata (`tokenizer.ggml.*`).
//!
//! Supported: `tokenizer.ggml.model = "gpt2"` (byte-level BPE: GPT-2, SmolLM, Llama 3, Qwen2,
//! ...), with the pre-tokenizer chosen by `tokenizer.ggml.pre` the way llama.cpp does.
//! Control tokens (token_type 3) and user-defined tokens (4) are added tokens, so text such as
//! `<|im_start|>` maps to its single id, as in HF transformers.

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

impl Tokenizer {
    pub fn from_gguf(g: &Gguf) -> Result<Self> {
        let model = g.str("tokenizer.ggml.model")?;
        if model != "gpt2" {
            return Err(Error::Unsupported(format!(
                "tokenizer.ggml.model = `{model}`: Tiller reads byte-level BPE (`gpt2`) vocabularies"
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
        let id = |k: &str| {
            g.get(k)
                .and_then(|v| v.as_u64())
                .filter(|&i| (i as usize) < tokens.len())
                .map(|i| i as u32)
        };
        let bos = id("tokenizer.ggml.bos_token_id");
        let eos = id("tokenizer.ggml.eos_token_id");
        let add_bos =
            g.get("tokenizer.ggml.add_bos_token").and_then(|v| v.as_bool()).unwrap_or(false);
        let mut stop: Vec<u32> =
            [eos, id("tokenizer.ggml.eot_token_id")].into_iter().flatten().collect();
        stop.dedup();
        Ok(Tokenizer { inner, bos, eos, add_bos, stop, warnings })
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
