//! Static reference data the generators draw from: district statistics,
//! industry profiles, ICD-10 chapters and company-name vocabulary.

pub(crate) mod districts;
pub(crate) mod health;
pub(crate) mod industries;
pub(crate) mod names;
