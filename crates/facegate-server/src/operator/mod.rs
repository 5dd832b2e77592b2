//! The operator's side: the config file ([`config`]), tenants and their
//! keys ([`tenants`]), and the master key files and their rotation
//! ([`keys`]), and putting a changed tenant list in force while serving
//! ([`reload`]), and group backups ([`backup`]). What `facegate`
//! subcommands edit and the server reads.

pub mod backup;
pub mod config;
pub mod keys;
pub mod reload;
pub mod tenants;
