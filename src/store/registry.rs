//! The registry in the shared store.
