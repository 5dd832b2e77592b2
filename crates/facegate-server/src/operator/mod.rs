//! The operator's side: the config file ([`config`]), tenants and their
//! keys ([`tenants`]), and the master key files and their rotation
//! ([`keys`]), and group backups ([`backup`]). What `facegate`
//! subcommands edit and the server reads.

pub mod backup;
pub mod config;
pub mod keys;
pub mod tenants;
