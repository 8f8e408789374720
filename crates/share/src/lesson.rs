//! Lessons: a setup plus guided steps (read this, try that, answer this, you should see that),
//! each of which can set the view (select a layer or concept, open a panel, run something).
//!
//! A lesson is part of the [`crate::SteeringConfig`] (field `lesson`), so a lesson is a plain
//! preset file a teacher can copy and edit, and it travels in share links (wire version 4).

use crate::{Error, Result};

/// Most steps a lesson may have, and most characters in all its text (a lesson can come from an
/// untrusted link).
pub const MAX_STEPS: usize = 32;
pub const MAX_LESSON_CHARS: usize = 24 * 1024;

/// The panels a step can open (scrolled to and focused); each page panel carries
/// `id="panel-NAME"`.
pub const PANELS: &[&str] = &[
    "concepts",
    "results",
    "steer",
    "generate",
    "output",
    "read",
    "sweep",
    "conversation",
    "patch",
    "lens",
    "attention",
];

/// What a step can run when it opens: generate (baseline and steered), the strength sweep, the
/// reading view, the patching heatmap, the logit lens, the attention patterns, the
/// conversation's next turn.
pub const RUNS: &[&str] = &["generate", "sweep", "read", "patch", "lens", "attention", "continue"];

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Lesson {
    /// Shown at the top of the lesson panel.
    pub title: String,
    pub steps: Vec<Step>,
}

/// One step. Only `text` is required; empty fields are not shown.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Step {
    /// What to read (plain text; blank lines separate paragraphs).
    pub text: String,
    /// What to click or change.
    #[serde(rename = "try", skip_serializing_if = "String::is_empty")]
    pub todo: String,
    /// A question to answer before going on.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub question: String,
    /// What the learner should see (shown on request, after the question).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub expect: String,
    /// What the page does when the step opens.
    #[serde(skip_serializing_if = "Action::is_none")]
    pub action: Action,
}

/// What opening a step does to the page; every field optional.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Action {
    /// Select this concept (by name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concept: Option<String>,
    /// Select this layer (charts, scatter, reading view, sweep's reading).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<u32>,
    /// Scroll this panel into view (one of [`PANELS`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub panel: Option<String>,
    /// Run this (one of [`RUNS`]) once the model and concepts are ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
}

impl Action {
    pub fn is_none(&self) -> bool {
        *self == Action::default()
    }
}

impl Lesson {
    /// Caps, and names that exist: concepts of the setup, known panels and runs. Errors name
    /// the step (1-based), for a teacher editing the file.
    pub fn validate(&self, concepts: &[&str]) -> Result<()> {
        let bad = |i: usize, what: String| Error::Invalid(format!("lesson step {}: {what}", i + 1));
        if self.steps.is_empty() {
            return Err(Error::Invalid("a lesson needs at least one step".into()));
        }
        if self.steps.len() > MAX_STEPS {
            return Err(Error::Invalid(format!(
                "a lesson may have at most {MAX_STEPS} steps, not {}",
                self.steps.len()
            )));
        }
        let chars = self.title.len()
            + self
                .steps
                .iter()
                .map(|s| s.text.len() + s.todo.len() + s.question.len() + s.expect.len())
                .sum::<usize>();
        if chars > MAX_LESSON_CHARS {
            return Err(Error::Invalid(format!(
                "the lesson's text is {chars} characters; at most {MAX_LESSON_CHARS} are allowed"
            )));
        }
        for (i, s) in self.steps.iter().enumerate() {
            if s.text.trim().is_empty() {
                return Err(bad(i, "the step has no text".into()));
            }
            let a = &s.action;
            if let Some(c) = &a.concept {
                if !concepts.contains(&c.as_str()) {
                    return Err(bad(i, format!("concept `{c}` is not in the setup")));
                }
            }
            if let Some(l) = a.layer {
                if l as usize >= crate::config::MAX_LAYERS {
                    return Err(bad(i, format!("layer {l} is too large")));
                }
            }
            if let Some(p) = &a.panel {
                if !PANELS.contains(&p.as_str()) {
                    return Err(bad(
                        i,
                        format!("unknown panel `{p}` (one of {})", PANELS.join(", ")),
                    ));
                }
            }
            if let Some(r) = &a.run {
                if !RUNS.contains(&r.as_str()) {
                    return Err(bad(i, format!("unknown run `{r}` (one of {})", RUNS.join(", "))));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(text: &str) -> Step {
        Step { text: text.into(), ..Default::default() }
    }

    #[test]
    fn errors_name_the_step() {
        let mut l = Lesson { title: "t".into(), steps: vec![step("a"), step("b")] };
        assert!(l.validate(&["x"]).is_ok());
        l.steps[1].action.panel = Some("swep".into());
        let e = l.validate(&["x"]).unwrap_err().to_string();
        assert!(e.contains("step 2") && e.contains("swep") && e.contains("sweep"), "{e}");
        l.steps[1].action = Action { concept: Some("y".into()), ..Default::default() };
        assert!(l.validate(&["x"]).unwrap_err().to_string().contains("concept `y`"));
        l.steps[1].action = Action { run: Some("fly".into()), ..Default::default() };
        assert!(l.validate(&["x"]).unwrap_err().to_string().contains("unknown run"));
        l.steps[1] = step("  ");
        assert!(l.validate(&["x"]).unwrap_err().to_string().contains("no text"));
        l.steps.clear();
        assert!(l.validate(&["x"]).is_err());
        l.steps = vec![step("a"); MAX_STEPS + 1];
        assert!(l.validate(&["x"]).unwrap_err().to_string().contains("at most"));
    }

    #[test]
    fn json_uses_try_and_skips_empty_fields() {
        let s = Step {
            text: "Look".into(),
            todo: "Click".into(),
            action: Action { layer: Some(3), ..Default::default() },
            ..Default::default()
        };
        let j = serde_json::to_string(&s).unwrap();
        assert_eq!(j, r#"{"text":"Look","try":"Click","action":{"layer":3}}"#);
        assert_eq!(serde_json::from_str::<Step>(&j).unwrap(), s);
    }
}
