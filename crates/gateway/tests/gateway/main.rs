//! The gateway against real upstream servers on free ports.

mod balancing;
mod discovery;
mod edge;
mod health;
mod resilience;
mod support;
mod tokens;
