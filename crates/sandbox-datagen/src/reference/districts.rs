//! Shanghai district statistics: area, resident population and a weight for
//! where enterprises are registered.

use sandbox_model::districts::SHANGHAI_DISTRICTS;

/// Facts about one district, in the order of `SHANGHAI_DISTRICTS`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DistrictStats {
    pub name: &'static str,
    /// Land area in km² (approximate official figures).
    pub area_km2: f64,
    /// Resident population in 10,000s (approximately the 2020 census).
    pub population_10k: f64,
    /// Relative number of registered enterprises (浦东新区 largest, 崇明区 smallest).
    pub enterprise_weight: f64,
}

const fn d(name: &'static str, area_km2: f64, population_10k: f64, enterprise_weight: f64) -> DistrictStats {
    DistrictStats {
        name,
        area_km2,
        population_10k,
        enterprise_weight,
    }
}

/// One entry per district, aligned index-for-index with `SHANGHAI_DISTRICTS`.
pub(crate) const DISTRICT_STATS: [DistrictStats; 16] = [
    d("黄浦区", 20.46, 66.2, 2.2),
    d("徐汇区", 54.76, 111.3, 3.6),
    d("长宁区", 38.30, 69.3, 2.6),
    d("静安区", 36.88, 97.6, 3.7),
    d("普陀区", 54.83, 124.0, 3.1),
    d("虹口区", 23.46, 75.7, 2.0),
    d("杨浦区", 60.73, 124.2, 3.0),
    d("闵行区", 370.75, 265.3, 10.0),
    d("宝山区", 270.99, 223.5, 7.0),
    d("嘉定区", 464.20, 183.4, 9.5),
    d("浦东新区", 1210.41, 568.2, 30.0),
    d("金山区", 586.05, 82.3, 4.5),
    d("松江区", 605.64, 190.9, 8.0),
    d("青浦区", 670.14, 127.1, 6.5),
    d("奉贤区", 687.39, 114.1, 8.5),
    d("崇明区", 1185.49, 63.7, 1.5),
];

/// Division code of the district at `index` (as in `SHANGHAI_DISTRICTS`).
pub(crate) fn division_code(index: usize) -> &'static str {
    SHANGHAI_DISTRICTS.get(index).map_or("310000", |(_, code)| code)
}

/// Name of the district at `index`.
pub(crate) fn name(index: usize) -> &'static str {
    DISTRICT_STATS.get(index).map_or("", |s| s.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_with_the_model() {
        for (stats, (name, _)) in DISTRICT_STATS.iter().zip(SHANGHAI_DISTRICTS.iter()) {
            assert_eq!(stats.name, *name);
        }
    }

    #[test]
    fn pudong_largest_chongming_smallest() {
        let max = DISTRICT_STATS
            .iter()
            .max_by(|a, b| a.enterprise_weight.total_cmp(&b.enterprise_weight))
            .expect("non-empty");
        let min = DISTRICT_STATS
            .iter()
            .min_by(|a, b| a.enterprise_weight.total_cmp(&b.enterprise_weight))
            .expect("non-empty");
        assert_eq!(max.name, "浦东新区");
        assert_eq!(min.name, "崇明区");
    }
}
