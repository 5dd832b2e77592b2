//! The three vendor-compatible API surfaces. Each is a set of thin axum
//! handlers plus exactly one function that maps errors onto its wire
//! format.

pub mod argos;
pub mod nhn_common;
pub mod nhn_liveness;
pub mod nhn_reco;
