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
    /// None: the model has no template (a pretrained model), and rendering says so.
    source: Option<String>,
    bos: String,
    eos: String,
}

/// ChatML, used when a GGUF carries no template of its own but its vocabulary has ChatML's
/// tokens.
pub const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

impl ChatTemplate {
    pub fn new(source: impl Into<String>, bos: impl Into<String>, eos: impl Into<String>) -> Self {
        ChatTemplate { source: Some(source.into()), bos: bos.into(), eos: eos.into() }
    }

    /// Is there a template to render?
    pub fn available(&self) -> bool {
        self.source.is_some()
    }

    /// The template stored in the GGUF; ChatML when there is none but the vocabulary has
    /// `<|im_start|>`; otherwise none.
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
        let chatml = g
            .get("tokenizer.ggml.tokens")
            .and_then(|v| v.as_array())
            .is_some_and(|t| t.iter().any(|v| v.as_str() == Some("<|im_start|>")));
        let src = g
            .get("tokenizer.chat_template")
            .and_then(|v| v.as_str())
            .or(chatml.then_some(CHATML))
            .map(str::to_string);
        ChatTemplate {
            source: src,
            bos: tok("tokenizer.ggml.bos_token_id"),
            eos: tok("tokenizer.ggml.eos_token_id"),
        }
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
        let Some(source) = &self.source else {
            return Err(Error::Template(
                "this model has no chat template (a pretrained model): use a raw prompt".into(),
            ));
        };
        env.add_template("chat", source).map_err(|e| Error::Template(e.to_string()))?;
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
