//! sandbox-runtime
