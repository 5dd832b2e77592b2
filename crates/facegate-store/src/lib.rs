//! Face store and search index.
