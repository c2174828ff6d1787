//! GB/T 4754-2017 industry sections "A".."T" with the parameters that shape
//! an enterprise of that industry: how common it is, how big, how much
//! energy and water it uses and how much tax it pays.

/// The economic profile of one industry section.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Industry {
    /// Section letter, "A".."T".
    pub section: &'static str,
    /// Relative number of enterprises in Shanghai.
    pub weight: f64,
    /// Mean of ln(registered capital in 万元).
    pub capital_mu: f64,
    /// Standard deviation of ln(registered capital).
    pub capital_sigma: f64,
    /// Electricity per employee-equivalent per month, kWh.
    pub kwh_per_head: f64,
    /// Water per employee-equivalent per month, m³.
    pub water_per_head: f64,
    /// Share of enterprises with a gas connection.
    pub gas_share: f64,
    /// Gas per employee-equivalent per month for connected enterprises, m³.
    pub gas_per_head: f64,
    /// Annual tax per employee-equivalent, 万元.
    pub tax_per_head: f64,
    /// Typical share of VAT in the total tax paid.
    pub vat_share: f64,
    /// Words that follow the brand in a company name.
    pub name_words: &'static [&'static str],
}

#[allow(clippy::too_many_arguments)]
const fn ind(
    section: &'static str,
    weight: f64,
    capital_mu: f64,
    capital_sigma: f64,
    kwh_per_head: f64,
    water_per_head: f64,
    gas_share: f64,
    gas_per_head: f64,
    tax_per_head: f64,
    vat_share: f64,
    name_words: &'static [&'static str],
) -> Industry {
    Industry {
        section,
        weight,
        capital_mu,
        capital_sigma,
        kwh_per_head,
        water_per_head,
        gas_share,
        gas_per_head,
        tax_per_head,
        vat_share,
        name_words,
    }
}

/// The manufacturing section, which gets a Spring-Festival dip in usage.
pub(crate) const MANUFACTURING: &str = "C";

/// All 20 sections in letter order.
pub(crate) const INDUSTRIES: [Industry; 20] = [
    ind(
        "A",
        0.4,
        4.8,
        1.2,
        600.0,
        40.0,
        0.20,
        15.0,
        1.0,
        0.30,
        &["农业科技", "生态农业", "园艺"],
    ),
    ind(
        "B",
        0.05,
        6.5,
        1.2,
        3000.0,
        30.0,
        0.30,
        60.0,
        4.0,
        0.50,
        &["矿业", "矿产品开发"],
    ),
    ind(
        "C",
        8.0,
        5.8,
        1.3,
        2200.0,
        15.0,
        0.45,
        80.0,
        4.0,
        0.55,
        &["机械制造", "电子科技", "精密仪器", "新材料", "生物医药", "汽车零部件"],
    ),
    ind(
        "D",
        0.2,
        7.0,
        1.3,
        4000.0,
        25.0,
        0.60,
        200.0,
        8.0,
        0.50,
        &["能源", "电力工程", "燃气"],
    ),
    ind(
        "E",
        5.0,
        6.2,
        1.2,
        350.0,
        6.0,
        0.10,
        8.0,
        3.0,
        0.45,
        &["建设工程", "建筑装饰工程", "市政工程"],
    ),
    ind(
        "F",
        30.0,
        4.6,
        1.2,
        300.0,
        3.0,
        0.10,
        10.0,
        3.0,
        0.60,
        &["贸易", "商贸", "实业", "国际贸易", "电子商务", "食品销售"],
    ),
    ind(
        "G",
        3.0,
        5.2,
        1.2,
        700.0,
        4.0,
        0.15,
        10.0,
        2.5,
        0.45,
        &["物流", "国际货运代理", "运输", "仓储"],
    ),
    ind(
        "H",
        3.0,
        4.2,
        1.0,
        900.0,
        25.0,
        0.90,
        60.0,
        1.5,
        0.50,
        &["餐饮管理", "酒店管理"],
    ),
    ind(
        "I",
        8.0,
        5.0,
        1.2,
        450.0,
        2.5,
        0.08,
        5.0,
        5.0,
        0.40,
        &["信息技术", "网络科技", "软件", "数据科技"],
    ),
    ind(
        "J",
        2.0,
        7.5,
        1.4,
        200.0,
        2.0,
        0.05,
        5.0,
        15.0,
        0.35,
        &["投资管理", "资产管理", "融资租赁"],
    ),
    ind(
        "K",
        2.0,
        7.0,
        1.3,
        250.0,
        3.0,
        0.08,
        5.0,
        12.0,
        0.35,
        &["房地产开发", "物业管理", "置业"],
    ),
    ind(
        "L",
        16.0,
        4.6,
        1.2,
        180.0,
        2.0,
        0.05,
        5.0,
        3.0,
        0.45,
        &["企业管理咨询", "商务咨询", "广告", "人力资源"],
    ),
    ind(
        "M",
        12.0,
        4.8,
        1.2,
        400.0,
        3.0,
        0.10,
        8.0,
        3.5,
        0.45,
        &["科技", "检测技术", "工程设计", "生物科技"],
    ),
    ind(
        "N",
        1.0,
        5.5,
        1.2,
        500.0,
        8.0,
        0.10,
        8.0,
        2.0,
        0.45,
        &["环保科技", "园林绿化"],
    ),
    ind(
        "O",
        0.5,
        3.9,
        1.0,
        350.0,
        5.0,
        0.20,
        10.0,
        1.2,
        0.50,
        &["家政服务", "汽车维修"],
    ),
    ind(
        "P",
        1.2,
        4.3,
        1.0,
        220.0,
        4.0,
        0.10,
        6.0,
        1.5,
        0.40,
        &["教育科技", "培训"],
    ),
    ind(
        "Q",
        0.6,
        5.0,
        1.2,
        600.0,
        10.0,
        0.40,
        20.0,
        2.0,
        0.40,
        &["医疗管理", "健康管理"],
    ),
    ind(
        "R",
        2.0,
        4.5,
        1.2,
        350.0,
        3.0,
        0.10,
        6.0,
        2.0,
        0.45,
        &["文化传播", "影视", "体育发展"],
    ),
    ind("S", 0.3, 4.5, 1.0, 200.0, 3.0, 0.05, 5.0, 1.0, 0.40, &["社会服务"]),
    ind("T", 0.02, 4.0, 1.0, 150.0, 2.0, 0.05, 5.0, 1.0, 0.40, &["国际交流服务"]),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_a_to_t() {
        for (i, industry) in INDUSTRIES.iter().enumerate() {
            let expected = char::from(b'A' + i as u8).to_string();
            assert_eq!(industry.section, expected);
            assert!(!industry.name_words.is_empty());
        }
    }
}
