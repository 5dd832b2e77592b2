//! The operator's side: the config file ([`config`]), tenants and their
//! keys ([`tenants`]), and the master key files and their rotation
//! ([`keys`]). What `facegate` subcommands edit and the server reads.

pub mod config;
pub mod keys;
pub mod tenants;
