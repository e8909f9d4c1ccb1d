//! Gust's end-to-end tests: a real `gust serve` driven by real clients.

mod asynchronous;
mod cli;
mod common;
mod conformance;
mod control_plane;
mod custom;
mod node;
mod packages;
mod python;
mod sandbox;
mod scaling;
mod snapstart;
mod triggers;
mod versions;
