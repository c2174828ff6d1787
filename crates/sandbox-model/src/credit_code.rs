//! The unified social credit code (统一社会信用代码, GB 32100-2015).
//!
//! 18 characters: registration authority (1), entity type (1), administrative
//! division (6), organisation code (9, itself ending in a GB 11714 check
//! character), and a final check character over the first 17.

use crate::ModelError;

/// The 31 characters a credit code may use (no I, O, S, V, Z).
pub const CHARSET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
const WEIGHTS: [u32; 17] = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28];
const ORG_WEIGHTS: [u32; 8] = [3, 7, 9, 10, 5, 8, 4, 2];

fn value_of(c: u8) -> Option<u32> {
    CHARSET.iter().position(|&x| x == c).map(|p| p as u32)
}

/// The check character for the first 17 characters of a credit code.
pub fn check_character(first17: &str) -> Result<char, ModelError> {
    let bytes = first17.as_bytes();
    if bytes.len() != 17 {
        return Err(ModelError::InvalidCreditCode(format!(
            "expected 17 characters before the check character, got {}",
            first17.chars().count()
        )));
    }
    let mut sum = 0u32;
    for (i, &b) in bytes.iter().enumerate() {
        let v = value_of(b).ok_or_else(|| {
            ModelError::InvalidCreditCode(format!("character {} is not allowed in a credit code", i + 1))
        })?;
        sum += v * WEIGHTS[i];
    }
    let check = (31 - sum % 31) % 31;
    Ok(CHARSET[check as usize] as char)
}

/// The GB 11714 check character of an 8-character organisation code body.
pub fn organisation_check(body8: &str) -> Result<char, ModelError> {
    let bytes = body8.as_bytes();
    if bytes.len() != 8 {
        return Err(ModelError::InvalidCreditCode(
            "organisation code body must be 8 characters".into(),
        ));
    }
    let mut sum = 0u32;
    for (i, &b) in bytes.iter().enumerate() {
        let v = match b {
            b'0'..=b'9' => (b - b'0') as u32,
            b'A'..=b'Z' => (b - b'A') as u32 + 10,
            _ => {
                return Err(ModelError::InvalidCreditCode(
                    "organisation code must be digits or capitals".into(),
                ));
            }
        };
        sum += v * ORG_WEIGHTS[i];
    }
    Ok(match 11 - sum % 11 {
        10 => 'X',
        11 => '0',
        d => char::from(b'0' + d as u8),
    })
}

/// Validates a full 18-character credit code: character set, division code
/// shape, organisation-code check and the final check character.
pub fn validate(code: &str) -> Result<(), ModelError> {
    let bytes = code.as_bytes();
    if bytes.len() != 18 || !code.is_ascii() {
        return Err(ModelError::InvalidCreditCode(format!(
            "expected 18 ASCII characters, got {}",
            code.chars().count()
        )));
    }
    if !bytes[2..8].iter().all(u8::is_ascii_digit) {
        return Err(ModelError::InvalidCreditCode(
            "characters 3-8 must be an administrative division code".into(),
        ));
    }
    let org_check = organisation_check(&code[8..16])?;
    if bytes[16] as char != org_check {
        return Err(ModelError::InvalidCreditCode(
            "organisation code check character does not match".into(),
        ));
    }
    let expected = check_character(&code[..17])?;
    if bytes[17] as char != expected {
        return Err(ModelError::InvalidCreditCode("check character does not match".into()));
    }
    Ok(())
}

/// Builds a valid credit code from its parts: the authority and type
/// characters, a 6-digit division code and an 8-character organisation body.
pub fn compose(authority: char, entity_type: char, division: &str, org_body: &str) -> Result<String, ModelError> {
    let mut s = String::with_capacity(18);
    s.push(authority);
    s.push(entity_type);
    s.push_str(division);
    s.push_str(org_body);
    s.push(organisation_check(org_body)?);
    let check = check_character(&s)?;
    s.push(check);
    validate(&s)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composed_codes_validate() {
        let code = compose('9', '1', "310115", "MA1H7GQX").expect("compose");
        assert_eq!(code.len(), 18);
        validate(&code).expect("valid");
    }

    #[test]
    fn a_changed_character_is_detected() {
        let code = compose('9', '1', "310104", "12345678").expect("compose");
        let mut bad = code.clone().into_bytes();
        bad[10] = if bad[10] == b'5' { b'6' } else { b'5' };
        let bad = String::from_utf8(bad).expect("ascii");
        assert!(validate(&bad).is_err());
    }

    #[test]
    fn known_public_code_validates() {
        // A published code (Alibaba (China) Co., Ltd.); checks the weights.
        validate("91330100799655058B").expect("published code validates");
    }

    #[test]
    fn wrong_length_and_charset_rejected() {
        assert!(validate("913101").is_err());
        assert!(validate("91310115MA1H7GQXIT").is_err());
    }
}
