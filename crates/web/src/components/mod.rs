//! One component a file.

mod generate_panel;
mod model_bar;
mod output_panel;

pub use generate_panel::GeneratePanel;
pub use model_bar::ModelBar;
pub use output_panel::OutputPanel;
