//! facegate's shared test harness (never shipped; see README.md).

pub mod paths;
pub mod pg;
pub mod rng;
#[cfg(feature = "server")]
pub mod server;
pub mod stats;
#[cfg(feature = "browser")]
pub mod webdriver;
