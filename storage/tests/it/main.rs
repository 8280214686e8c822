//! Integration tests of cortex-storage: one binary, one module per area.

mod core;
mod groups;
mod idmp;
mod maintenance;
mod model;
mod model_core;
mod policy;
mod recovery;
mod schedule;
mod streams;
mod tasks;
mod util;
