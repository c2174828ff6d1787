//! One generator per table. Each turns the shared models and its own random
//! stream into batches and hands them to an [`Emitter`](crate::pipeline::Emitter).

pub(crate) mod clinic_visits;
pub(crate) mod districts;
pub(crate) mod legal_entities;
pub(crate) mod loans;
pub(crate) mod tax_payments;
pub(crate) mod utility_usage;
