//! sandbox-governance
