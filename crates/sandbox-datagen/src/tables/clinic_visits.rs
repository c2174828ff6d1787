//! `health.clinic_visits`: person-level visits. Persons follow Shanghai's
//! age pyramid and district populations; most visit 1-5 times, a few
//! chronic patients 30 times or more; the diagnosis chapter and the cost
//! depend on age.

use std::fmt::Write as _;
use std::sync::Arc;

use arrow::array::{ArrayRef, Date32Builder, Float64Builder, Int64Builder, StringBuilder};
use rand::RngCore;

use crate::DatagenError;
use crate::calendar::days_from_civil;
use crate::pipeline::{BATCH_ROWS, Emitter};
use crate::random::{UniqueIds, Weighted, below, chance, log_normal, poisson, round2, stream};
use crate::reference::districts::{self, DISTRICT_STATS};
use crate::reference::health::{AGE_BANDS, CHAPTERS, CHECK_UP, CHRONIC_CHAPTERS, PREGNANCY, age_group};

const STREAM: &str = "health.clinic_visits";

/// Visits fall in 2023-01-01..=2024-12-31.
const FIRST_DAY: i32 = days_from_civil(2023, 1, 1);
const LAST_DAY: i32 = days_from_civil(2024, 12, 31);
/// Person ids are twelve hex digits.
const PERSON_ID_SPACE: u64 = 1 << 48;
/// Cost multiplier for children, adults and the old.
const COST_BY_AGE_GROUP: [f64; 3] = [0.7, 1.0, 1.4];

/// One person's fixed attributes.
struct Person {
    age: i64,
    sex: &'static str,
    district: usize,
    /// The main chapter of a chronic patient.
    chronic: Option<usize>,
}

/// The distributions persons and visits are drawn from.
struct Distributions {
    age_bands: Weighted,
    districts: Weighted,
    chapters_by_age_group: [Weighted; 3],
    chronic_chapters: Weighted,
}

impl Distributions {
    fn new() -> Self {
        let by_group = |g: usize| Weighted::new(CHAPTERS.iter().map(move |c| c.weight_by_age_group[g]));
        Distributions {
            age_bands: Weighted::new(AGE_BANDS.iter().map(|&(_, _, share)| share)),
            districts: Weighted::new(DISTRICT_STATS.iter().map(|d| d.population_10k)),
            chapters_by_age_group: [by_group(0), by_group(1), by_group(2)],
            chronic_chapters: Weighted::new(CHRONIC_CHAPTERS.iter().map(|&(_, w)| w)),
        }
    }

    fn person(&self, rng: &mut impl RngCore) -> Person {
        let (from, to, _) = AGE_BANDS[self.age_bands.sample(rng)];
        let age = from + below(rng, (to - from + 1) as u64) as i64;
        let female_share = if age >= 60 { 0.54 } else { 0.49 };
        let sex = if chance(rng, female_share) { "F" } else { "M" };
        let district = self.districts.sample(rng);
        let chronic_share = if age >= 60 { 0.06 } else { 0.01 };
        let chronic = chance(rng, chronic_share).then(|| CHRONIC_CHAPTERS[self.chronic_chapters.sample(rng)].0);
        Person {
            age,
            sex,
            district,
            chronic,
        }
    }

    fn visit_count(&self, rng: &mut impl RngCore, person: &Person) -> usize {
        if person.chronic.is_some() {
            return 30 + below(rng, 31) as usize;
        }
        let lambda = match person.age {
            ..=4 => 2.5,
            5..=59 => 1.2,
            _ => 2.5,
        };
        1 + poisson(rng, lambda) as usize
    }

    fn chapter(&self, rng: &mut impl RngCore, person: &Person) -> usize {
        let chapter = match person.chronic {
            Some(main) if chance(rng, 0.7) => main,
            _ => self.chapters_by_age_group[age_group(person.age)].sample(rng),
        };
        let can_be_pregnant = person.sex == "F" && (15..=49).contains(&person.age);
        if chapter == PREGNANCY && !can_be_pregnant {
            CHECK_UP
        } else {
            chapter
        }
    }
}

struct Rows {
    person_id: StringBuilder,
    visit_date: Date32Builder,
    age: Int64Builder,
    sex: StringBuilder,
    district: StringBuilder,
    diagnosis_chapter: StringBuilder,
    cost: Float64Builder,
    len: usize,
}

impl Rows {
    fn new() -> Self {
        Rows {
            person_id: StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 13),
            visit_date: Date32Builder::with_capacity(BATCH_ROWS),
            age: Int64Builder::with_capacity(BATCH_ROWS),
            sex: StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS),
            district: StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 12),
            diagnosis_chapter: StringBuilder::with_capacity(BATCH_ROWS, BATCH_ROWS * 4),
            cost: Float64Builder::with_capacity(BATCH_ROWS),
            len: 0,
        }
    }

    fn flush(&mut self, emit: &mut Emitter) -> Result<(), DatagenError> {
        if self.len == 0 {
            return Ok(());
        }
        self.len = 0;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.person_id.finish()),
            Arc::new(self.visit_date.finish()),
            Arc::new(self.age.finish()),
            Arc::new(self.sex.finish()),
            Arc::new(self.district.finish()),
            Arc::new(self.diagnosis_chapter.finish()),
            Arc::new(self.cost.finish()),
        ];
        emit.emit(columns)
    }
}

/// Emits `health.clinic_visits` for `persons` persons.
pub(crate) fn produce(seed: u64, persons: usize, emit: &mut Emitter) -> Result<(), DatagenError> {
    let mut rng = stream(seed, STREAM);
    let mut ids = UniqueIds::new(PERSON_ID_SPACE);
    let dist = Distributions::new();
    let mut rows = Rows::new();
    let mut person_id = String::with_capacity(13);
    let mut dates: Vec<i32> = Vec::new();
    let days = (LAST_DAY - FIRST_DAY + 1) as u64;
    for _ in 0..persons {
        person_id.clear();
        // Writing to a String cannot fail.
        let _ = write!(person_id, "P{:012x}", ids.draw(&mut rng));
        let person = dist.person(&mut rng);
        let visits = dist.visit_count(&mut rng, &person);
        dates.clear();
        dates.extend((0..visits).map(|_| FIRST_DAY + below(&mut rng, days) as i32));
        dates.sort_unstable();
        let district = districts::name(person.district);
        for &date in &dates {
            let chapter = dist.chapter(&mut rng, &person);
            let median = CHAPTERS[chapter].median_cost * COST_BY_AGE_GROUP[age_group(person.age)];
            let cost = round2(log_normal(&mut rng, median.ln(), 0.8).clamp(0.0, 20_000.0));
            rows.person_id.append_value(&person_id);
            rows.visit_date.append_value(date);
            rows.age.append_value(person.age);
            rows.sex.append_value(person.sex);
            rows.district.append_value(district);
            rows.diagnosis_chapter.append_value(CHAPTERS[chapter].numeral);
            rows.cost.append_value(cost);
            rows.len += 1;
            if rows.len >= BATCH_ROWS {
                rows.flush(emit)?;
            }
        }
    }
    rows.flush(emit)
}
