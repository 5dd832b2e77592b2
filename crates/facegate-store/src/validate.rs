//! Pure validators for client-supplied identifiers, and UUID helpers.

use crate::error::{Result, StoreError};

/// Longest tenant (appKey) accepted; tenants come from the operator's config.
pub const MAX_TENANT_LEN: usize = 255;

/// True when `id` matches `[a-z0-9-]{1,255}` (the group id rule).
pub fn is_valid_group_id(id: &str) -> bool {
    (1..=255).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// True when `id` matches `[a-zA-Z0-9_.\-:]{1,255}` (the externalImageId rule).
pub fn is_valid_external_image_id(id: &str) -> bool {
    (1..=255).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b':'))
}

/// [`is_valid_group_id`] as a `Result` carrying [`StoreError::InvalidGroupId`].
pub fn validate_group_id(id: &str) -> Result<()> {
    if is_valid_group_id(id) {
        Ok(())
    } else {
        Err(StoreError::InvalidGroupId)
    }
}

/// [`is_valid_external_image_id`] as a `Result` carrying
/// [`StoreError::InvalidExternalImageId`].
pub fn validate_external_image_id(id: &str) -> Result<()> {
    if is_valid_external_image_id(id) {
        Ok(())
    } else {
        Err(StoreError::InvalidExternalImageId)
    }
}

pub(crate) fn validate_tenant(tenant: &str) -> Result<()> {
    if tenant.is_empty() || tenant.len() > MAX_TENANT_LEN {
        return Err(StoreError::InvalidParam(
            "tenant must be 1-255 bytes".into(),
        ));
    }
    Ok(())
}

/// Parses a canonical lower-case hyphenated UUID (`8-4-4-4-12` hex digits)
/// into its 128-bit value; anything else is `None`.
///
/// Face ids are compared as these integers in the index: their order equals
/// the order of the canonical strings.
pub fn parse_uuid(s: &str) -> Option<u128> {
    let b = s.as_bytes();
    if b.len() != 36 {
        return None;
    }
    let mut v: u128 = 0;
    for (i, &c) in b.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            if c != b'-' {
                return None;
            }
            continue;
        }
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        v = (v << 4) | u128::from(d);
    }
    Some(v)
}

/// Formats a 128-bit value as a canonical lower-case hyphenated UUID.
///
/// Written out by hand into one allocation: a search materialises up to
/// 4096 hits with two UUIDs each, and `format!` made that a visible share
/// of a search's time.
pub(crate) fn format_uuid(v: u128) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // Where each byte's two digits go, around the hyphens.
    const AT: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
    let mut out = [b'-'; 36];
    for (b, at) in v.to_be_bytes().into_iter().zip(AT) {
        out[at] = HEX[usize::from(b >> 4)];
        out[at + 1] = HEX[usize::from(b & 0xf)];
    }
    // Only ASCII was written, so this never falls back.
    String::from_utf8(out.to_vec()).unwrap_or_default()
}

/// A fresh random (version 4) UUID.
pub(crate) fn new_uuid_v4() -> Result<String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|_| StoreError::Random)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    Ok(format_uuid(u128::from_be_bytes(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_ids() {
        assert!(is_valid_group_id("a"));
        assert!(is_valid_group_id("abc-123"));
        assert!(is_valid_group_id(&"a".repeat(255)));
        assert!(!is_valid_group_id(&"a".repeat(256)));
        assert!(!is_valid_group_id(""));
        assert!(!is_valid_group_id("Abc"));
        assert!(!is_valid_group_id("a_b"));
        assert!(!is_valid_group_id("a b"));
        assert!(!is_valid_group_id("é"));
    }

    #[test]
    fn external_image_ids() {
        assert!(is_valid_external_image_id("image01.jpg"));
        assert!(is_valid_external_image_id("A-b_c.d:e"));
        assert!(!is_valid_external_image_id(""));
        assert!(!is_valid_external_image_id("a/b"));
        assert!(!is_valid_external_image_id("a b"));
        assert!(!is_valid_external_image_id(&"x".repeat(256)));
    }

    #[test]
    fn uuids_round_trip() {
        for _ in 0..100 {
            let s = new_uuid_v4().unwrap();
            assert_eq!(s.len(), 36);
            assert_eq!(&s[14..15], "4");
            assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"));
            let v = parse_uuid(&s).unwrap();
            assert_eq!(format_uuid(v), s);
        }
        assert_eq!(format_uuid(0), "00000000-0000-0000-0000-000000000000");
        assert_eq!(
            format_uuid(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210),
            "01234567-89ab-cdef-fedc-ba9876543210"
        );
        assert!(parse_uuid("9297DB50-d4f2-c6b8-ea05-edf2013089fd").is_none());
        assert!(parse_uuid("9297db50-d4f2-c6b8-ea05-edf2013089f").is_none());
        assert!(parse_uuid("9297db50xd4f2-c6b8-ea05-edf2013089fd").is_none());
        assert!(parse_uuid("9297db50-d4f2-c6b8-ea05-edf2013089fé").is_none());
    }

    #[test]
    fn uuid_order_matches_string_order() {
        let a = "00000000-0000-4000-8000-00000000000a";
        let b = "00000000-0000-4000-8000-0000000000a0";
        assert_eq!(a < b, parse_uuid(a).unwrap() < parse_uuid(b).unwrap());
    }
}
