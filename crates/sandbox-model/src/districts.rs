//! Shanghai's 16 districts with their administrative division codes: the
//! public key set of every `district` dimension in the shipped policies.

/// (name, division code) for each district, in division-code order.
pub const SHANGHAI_DISTRICTS: [(&str, &str); 16] = [
    ("黄浦区", "310101"),
    ("徐汇区", "310104"),
    ("长宁区", "310105"),
    ("静安区", "310106"),
    ("普陀区", "310107"),
    ("虹口区", "310109"),
    ("杨浦区", "310110"),
    ("闵行区", "310112"),
    ("宝山区", "310113"),
    ("嘉定区", "310114"),
    ("浦东新区", "310115"),
    ("金山区", "310116"),
    ("松江区", "310117"),
    ("青浦区", "310118"),
    ("奉贤区", "310120"),
    ("崇明区", "310151"),
];
