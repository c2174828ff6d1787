//! The in-memory entity model: every legal entity's observable attributes
//! and its latent health, derived from one random stream so that every
//! entity-level table (register, tax, utilities, loans) describes the same
//! enterprises whichever of them are generated.

use std::collections::HashSet;

use rand::RngCore;
use sandbox_model::credit_code::{self, CHARSET};

use crate::DatagenError;
use crate::calendar::days_from_civil;
use crate::random::{Weighted, below, log_normal, normal, sigmoid, stream, unit};
use crate::reference::districts::{DISTRICT_STATS, division_code};
use crate::reference::industries::INDUSTRIES;

/// Label of the entity model's random stream.
const STREAM: &str = "model/legal_entities";

/// Earliest and latest founding dates.
const FOUNDED_FROM: i32 = days_from_civil(1990, 1, 1);
const FOUNDED_TO: i32 = days_from_civil(2024, 12, 31);

/// Intercept of the default logit, calibrated for a 5-8 % default rate.
const DEFAULT_INTERCEPT: f64 = -3.4;
/// Logit change per unit of latent health (healthier → fewer defaults).
const DEFAULT_PER_HEALTH: f64 = -1.2;
/// Logit change per unit of ln(1 + insured employees) (bigger → fewer defaults).
const DEFAULT_PER_LOG_SIZE: f64 = -0.45;
/// ln(1 + employees) of a typical entity, the centre of the size effect.
const TYPICAL_LOG_SIZE: f64 = 2.0;

/// One legal entity.
#[derive(Debug, Clone)]
pub(crate) struct Entity {
    /// Valid, unique 18-character unified social credit code.
    pub credit_code: String,
    /// Index into `SHANGHAI_DISTRICTS` / `DISTRICT_STATS`.
    pub district: usize,
    /// Index into `INDUSTRIES`.
    pub industry: usize,
    /// Registered capital, 万元, in [1, 100000].
    pub registered_capital: f64,
    /// Founding date, days since 1970-01-01.
    pub founded: i32,
    /// Employees with social insurance, in [0, 5000].
    pub insured_employees: i64,
    /// Latent financial health, standard normal; never written out.
    pub health: f64,
    /// Monthly log-change of utility usage: negative for distressed entities.
    pub usage_trend: f64,
}

impl Entity {
    /// Employee-equivalent size used to scale usage and tax (never zero).
    pub(crate) fn heads(&self) -> f64 {
        self.insured_employees as f64 + 1.0
    }

    /// Probability that a loan to this entity defaults: a logistic model on
    /// latent health and size.
    pub(crate) fn default_probability(&self) -> f64 {
        let log_size = (self.heads()).ln() - TYPICAL_LOG_SIZE;
        sigmoid(DEFAULT_INTERCEPT + DEFAULT_PER_HEALTH * self.health + DEFAULT_PER_LOG_SIZE * log_size)
    }
}

/// Derives `count` entities from `seed`.
pub(crate) fn derive(seed: u64, count: usize) -> Result<Vec<Entity>, DatagenError> {
    let mut rng = stream(seed, STREAM);
    let districts = Weighted::new(DISTRICT_STATS.iter().map(|d| d.enterprise_weight));
    let industries = Weighted::new(INDUSTRIES.iter().map(|i| i.weight));
    let mut bodies: HashSet<[u8; 8]> = HashSet::with_capacity(count);
    let mut entities = Vec::with_capacity(count);
    for _ in 0..count {
        let district = districts.sample(&mut rng);
        let industry = industries.sample(&mut rng);
        let profile = &INDUSTRIES[industry];
        let entity_type = match unit(&mut rng) {
            x if x < 0.97 => '1',
            x if x < 0.99 => '2',
            _ => '3',
        };
        let body: String = unique_body(&mut rng, &mut bodies)
            .iter()
            .map(|&b| char::from(b))
            .collect();
        let credit_code = credit_code::compose('9', entity_type, division_code(district), &body)?;

        let health = normal(&mut rng);
        let registered_capital = log_normal(&mut rng, profile.capital_mu, profile.capital_sigma).clamp(1.0, 100_000.0);
        let registered_capital = (registered_capital * 100.0).round() / 100.0;
        // More recent years are more likely: density ∝ t^1.2 over 1990..2024.
        let t = unit(&mut rng).powf(1.0 / 2.2);
        let founded = FOUNDED_FROM + (t * f64::from(FOUNDED_TO - FOUNDED_FROM + 1)) as i32;
        let log_heads = -0.5 + 0.55 * registered_capital.ln() + 0.15 * health + 0.8 * normal(&mut rng);
        let insured_employees = (log_heads.exp() - 1.0).round().clamp(0.0, 5_000.0) as i64;
        let usage_trend = usage_trend(&mut rng, health);

        entities.push(Entity {
            credit_code,
            district,
            industry,
            registered_capital,
            founded: founded.min(FOUNDED_TO),
            insured_employees,
            health,
            usage_trend,
        });
    }
    Ok(entities)
}

/// Distressed entities (negative health) lose usage month after month;
/// healthy ones grow slowly.
fn usage_trend(rng: &mut impl RngCore, health: f64) -> f64 {
    let base = if health < 0.0 { 0.015 * health } else { 0.004 * health };
    base + 0.002 * normal(rng)
}

/// Eight organisation-code characters not used by any earlier entity.
fn unique_body(rng: &mut impl RngCore, used: &mut HashSet<[u8; 8]>) -> [u8; 8] {
    loop {
        let mut body = [0u8; 8];
        for c in &mut body {
            *c = CHARSET[below(rng, CHARSET.len() as u64) as usize];
        }
        if used.insert(body) {
            return body;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_valid_unique_and_deterministic() {
        let a = derive(3, 500).expect("derive");
        let b = derive(3, 500).expect("derive");
        let codes: HashSet<&str> = a.iter().map(|e| e.credit_code.as_str()).collect();
        assert_eq!(codes.len(), 500);
        for (x, y) in a.iter().zip(&b) {
            credit_code::validate(&x.credit_code).expect("valid");
            assert_eq!(x.credit_code, y.credit_code);
            assert_eq!(x.health.to_bits(), y.health.to_bits());
        }
    }

    #[test]
    fn attributes_in_range() {
        for e in derive(4, 2_000).expect("derive") {
            assert!((1.0..=100_000.0).contains(&e.registered_capital));
            assert!((0..=5_000).contains(&e.insured_employees));
            assert!((FOUNDED_FROM..=FOUNDED_TO).contains(&e.founded));
            let p = e.default_probability();
            assert!((0.0..1.0).contains(&p));
        }
    }
}
