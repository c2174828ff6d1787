//! Vocabulary for plausible Chinese company names:
//! 上海 + two-character brand + industry word + 有限公司.

/// Characters common in Chinese brand names.
pub(crate) const BRAND_SYLLABLES: [&str; 48] = [
    "华", "信", "达", "联", "创", "新", "恒", "瑞", "泰", "盛", "德", "源", "鑫", "宏", "嘉", "锦", "汇", "通", "博",
    "卓", "越", "东", "方", "明", "中", "科", "海", "天", "安", "和", "丰", "永", "佳", "立", "诚", "远", "辰", "星",
    "云", "睿", "凯", "展", "腾", "晟", "振", "润", "坤", "宇",
];

/// Prefix of every generated name.
pub(crate) const CITY: &str = "上海";

/// Suffix of every generated name.
pub(crate) const LEGAL_FORM: &str = "有限公司";
