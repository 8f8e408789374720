//! Chat templates: the GGUF's `tokenizer.chat_template` (Jinja, as written for HF
//! transformers) rendered with minijinja plus its Python-compatibility methods.

use crate::{Error, Gguf, Result};

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn user(content: impl Into<String>) -> Self {
        ChatMessage { role: "user".into(), content: content.into() }
    }
}

#[derive(Debug, Clone)]
pub struct ChatTemplate {
    source: String,
    bos: String,
    eos: String,
}

/// ChatML, used when a GGUF carries no template of its own.
pub const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

impl ChatTemplate {
    pub fn new(source: impl Into<String>, bos: impl Into<String>, eos: impl Into<String>) -> Self {
        ChatTemplate { source: source.into(), bos: bos.into(), eos: eos.into() }
    }

    /// The template stored in the GGUF, or ChatML when there is none.
    pub fn from_gguf(g: &Gguf) -> Self {
        let tok = |k: &str| -> String {
            let id = g.get(k).and_then(|v| v.as_u64());
            let toks = g.get("tokenizer.ggml.tokens").and_then(|v| v.as_array());
            match (id, toks) {
                (Some(i), Some(t)) => {
                    t.get(i as usize).and_then(|v| v.as_str()).unwrap_or("").to_string()
                }
                _ => String::new(),
            }
        };
        let src = g.get("tokenizer.chat_template").and_then(|v| v.as_str()).unwrap_or(CHATML);
        ChatTemplate::new(
            src,
            tok("tokenizer.ggml.bos_token_id"),
            tok("tokenizer.ggml.eos_token_id"),
        )
    }

    /// Render `messages`, appending the assistant generation prompt when asked.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let mut env = minijinja::Environment::new();
        minijinja_contrib::add_to_environment(&mut env);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
            },
        );
        env.add_template("chat", &self.source).map_err(|e| Error::Template(e.to_string()))?;
        let tmpl = env.get_template("chat").map_err(|e| Error::Template(e.to_string()))?;
        tmpl.render(minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos,
            eos_token => self.eos,
        })
        .map_err(|e| Error::Template(e.to_string()))
    }
}
