//! Base64 image payloads (`image.bytes`).

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

use crate::ImageError;

const ENGINE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// Decodes standard-alphabet Base64 image data.
///
/// Padding is optional, ASCII whitespace (including newlines) anywhere is
/// ignored, and a leading `data:<media type>;base64,` prefix is stripped.
/// If the decoded size would exceed `max_bytes` this returns
/// [`ImageError::TooLarge`] from the encoded length alone, without decoding
/// or allocating.
pub fn decode_base64(input: &str, max_bytes: usize) -> Result<Vec<u8>, ImageError> {
    let too_large = ImageError::TooLarge { max_bytes };
    let max_encoded = max_bytes.div_ceil(3).saturating_mul(4);
    // Even generously line-wrapped Base64 is well under twice its payload;
    // refuse anything longer in O(1) before scanning it.
    if input.len() > max_encoded.saturating_mul(2).saturating_add(1024) {
        return Err(too_large);
    }
    let data = strip_data_url(input)?;

    let mut significant = 0usize;
    let mut padding = 0usize;
    for b in data.bytes().filter(|b| !b.is_ascii_whitespace()) {
        significant += 1;
        padding = if b == b'=' { padding + 1 } else { 0 };
    }
    let symbols = significant - padding;
    let decoded_len = symbols / 4 * 3
        + match symbols % 4 {
            0 => 0,
            2 => 1,
            3 => 2,
            _ => return Err(ImageError::InvalidBase64("invalid length".into())),
        };
    if decoded_len > max_bytes {
        return Err(too_large);
    }

    let compact: Vec<u8> = data.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    ENGINE
        .decode(compact)
        .map_err(|e| ImageError::InvalidBase64(e.to_string()))
}

/// Strips a `data:...;base64,` prefix, refusing data URLs that are not Base64.
fn strip_data_url(input: &str) -> Result<&str, ImageError> {
    let trimmed = input.trim_start();
    let has_scheme = trimmed
        .get(..5)
        .is_some_and(|s| s.eq_ignore_ascii_case("data:"));
    if !has_scheme {
        return Ok(input);
    }
    let comma = trimmed
        .find(',')
        .ok_or_else(|| ImageError::InvalidBase64("data URL without a comma".into()))?;
    let header = &trimmed[5..comma];
    let is_base64 = header
        .rsplit(';')
        .next()
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("base64"));
    if !is_base64 {
        return Err(ImageError::InvalidBase64("data URL is not ;base64".into()));
    }
    Ok(&trimmed[comma + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_arithmetic() {
        // "hello world" in every accepted spelling.
        for s in [
            "aGVsbG8gd29ybGQ=",
            "aGVsbG8gd29ybGQ",
            "aGVs\nbG8g\r\nd29y bGQ=",
            "data:image/png;base64,aGVsbG8gd29ybGQ",
            "DATA:image/jpeg;charset=x;BASE64,aGVsbG8gd29ybGQ=",
        ] {
            assert_eq!(decode_base64(s, 100).unwrap(), b"hello world", "{s}");
        }
        assert_eq!(decode_base64("aGVsbG8gd29ybGQ", 11).unwrap().len(), 11);
        assert!(matches!(
            decode_base64("aGVsbG8gd29ybGQ", 10),
            Err(ImageError::TooLarge { max_bytes: 10 })
        ));
        assert!(decode_base64("", 10).unwrap().is_empty());
    }

    #[test]
    fn invalid_input() {
        for s in [
            "a",
            "aGVsbG8*d29ybGQ=",
            "aGVsbG8-d29ybGQ=",
            "data:image/png,aGVsbG8=",
            "data:image/png;base64",
            "aGVs=bG8=",
        ] {
            assert!(
                matches!(decode_base64(s, 100), Err(ImageError::InvalidBase64(_))),
                "{s}"
            );
        }
    }
}
