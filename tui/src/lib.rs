//! reckon_tui: the operator console's state, update and render, kept apart from
//! the terminal and the network so that tests drive them directly.
//!
//! ```text
//!  keys ──► terminal loop (main.rs) ──Event──► app::update ──Command──► net task
//!              ▲      │ view::render(&App)                                │
//!              │      ▼                                                   │
//!              └──────────── Event (bounded channel) ◄── gater client ◄───┘
//! ```

pub mod app;
pub mod config;
pub mod demo;
pub mod net;
pub mod view;

#[cfg(test)]
mod fixture;
#[cfg(test)]
mod render_tests;
#[cfg(test)]
mod update_tests;
