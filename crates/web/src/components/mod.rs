//! One component a file.

mod bench;
mod causal;
mod concept_results;
mod concepts_panel;
mod conversation;
mod generate_panel;
pub mod lesson;
mod model_bar;
mod output_panel;
mod reading_view;
pub mod share_bar;
mod steering_panel;
mod sweep_view;
mod term;

pub use bench::BenchPanel;
pub use causal::{AttentionView, LensView, PatchView};
pub use concept_results::ConceptResults;
pub use concepts_panel::ConceptsPanel;
pub use conversation::ConversationView;
pub use generate_panel::GeneratePanel;
pub use lesson::LessonPanel;
pub use model_bar::ModelBar;
pub use output_panel::OutputPanel;
pub use reading_view::ReadingView;
pub use share_bar::ShareBar;
pub use steering_panel::SteeringPanel;
pub use sweep_view::SweepView;
pub use term::Term;
