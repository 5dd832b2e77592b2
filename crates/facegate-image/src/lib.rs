//! Image input: decoding, limits and safe URL fetching (see the crate README).
