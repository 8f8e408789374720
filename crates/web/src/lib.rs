//! tiller-web: the page. The main thread runs the Leptos UI (`src/main.rs`,
//! `src/components/`); the engine runs in a Web Worker (`src/bin/tiller-worker/`) so the tab
//! never freezes. They talk in the typed messages of [`protocol`], serialized with serde.

pub mod protocol;
