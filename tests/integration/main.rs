//! Integration tests of the sandbox, one binary (linking once is what
//! costs time on small machines). Modules by area.

mod accuracy;
mod cancel_race;
mod console;
mod crash_safety;
mod enterprise_attacks;
mod enterprise_uploads;
mod fixture;
mod governance_lifecycle;
mod hostile_sql;
mod jobs_with_code;
mod onboarding;
mod server_api;
mod server_authz;
mod server_load;
mod server_restart;
mod server_samples;
mod server_support;
mod server_uploads;
mod server_validation;
mod sql_jobs;
mod sql_queries;
mod trial_and_defaults_attacks;
mod utility_bench;
mod wasm_debugging;
mod wasm_jobs;
mod zcdp;
mod zcdp_attacks;
