//! Liveness: how readily a face is called a spoof, and the verdict.

use serde::{Deserialize, Serialize};

/// The API's `spoofingCondition`: how readily a face is called a spoof.
/// Where each level draws the line is the liveness model's calibration
/// (facegate-vision), not part of this vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpoofCondition {
    /// Flags the fewest faces as spoofs.
    Weak,
    /// The default.
    #[default]
    Balanced,
    /// Flags the most faces as spoofs.
    Strict,
}

impl SpoofCondition {
    /// Every level, weakest first.
    pub const ALL: [SpoofCondition; 3] = [
        SpoofCondition::Weak,
        SpoofCondition::Balanced,
        SpoofCondition::Strict,
    ];

    /// The API's spelling.
    pub fn name(self) -> &'static str {
        match self {
            SpoofCondition::Weak => "weak",
            SpoofCondition::Balanced => "balanced",
            SpoofCondition::Strict => "strict",
        }
    }

    /// Parses the API's value (`weak`, `balanced`, `strict`; exact case).
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == value)
    }
}

/// Why a face cannot be judged live or not: liveness needs a face large,
/// sharp, well exposed and frontal enough.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum QualityIssue {
    /// Smaller than the models can judge.
    FaceTooSmall,
    /// Turned or tilted too far.
    Pose,
    /// Too blurred.
    Blur,
    /// Too dark or over-exposed.
    Exposure,
}

/// The liveness outcome for one face.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Liveness {
    /// Calibrated score in [0, 1] that the face is a live person (the
    /// Argos `liveness_score` is this × 100).
    pub real_probability: f32,
    /// The verdict at the requested sensitivity; always `true` when the
    /// face could not be judged (fail closed).
    pub is_spoof: bool,
    /// Set when the face could not be judged, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unjudgeable: Option<QualityIssue>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_parse_their_exact_names() {
        for c in SpoofCondition::ALL {
            assert_eq!(SpoofCondition::parse(c.name()), Some(c));
        }
        assert_eq!(SpoofCondition::parse("STRICT"), None);
        assert_eq!(SpoofCondition::default(), SpoofCondition::Balanced);
    }
}
