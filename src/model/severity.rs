//! Finding severities, ordered from least to most severe.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Unknown,
    Low,
    Medium,
    High,
    Critical,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid severity `{0}`: expected one of low, medium, high, critical")]
pub struct SeverityError(pub String);

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "unknown",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// Lenient parse for scanner reports: surrounding whitespace and case do not matter
    /// (`"CRITICAL "`, `critical`); NEGLIGIBLE/INFO are low, anything unrecognised unknown.
    pub fn from_report(s: &str) -> Severity {
        match s.trim().to_ascii_lowercase().as_str() {
            "critical" => Severity::Critical,
            "high" => Severity::High,
            "medium" | "moderate" => Severity::Medium,
            "low" | "negligible" | "info" | "informational" => Severity::Low,
            _ => Severity::Unknown,
        }
    }
}

impl FromStr for Severity {
    type Err = SeverityError;
    /// Strict parse for configuration.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "low" => Ok(Severity::Low),
            "medium" => Ok(Severity::Medium),
            "high" => Ok(Severity::High),
            "critical" => Ok(Severity::Critical),
            _ => Err(SeverityError(s.to_string())),
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_severities_are_trimmed_and_case_insensitive() {
        for s in [
            "CRITICAL",
            "critical",
            "CRITICAL ",
            " Critical",
            "\tcritical\n",
            "cRiTiCaL",
        ] {
            assert_eq!(Severity::from_report(s), Severity::Critical, "{s:?}");
        }
        assert_eq!(Severity::from_report(" high "), Severity::High);
        assert_eq!(Severity::from_report("Moderate"), Severity::Medium);
        assert_eq!(Severity::from_report("NEGLIGIBLE "), Severity::Low);
        for s in ["", " ", "CRIT", "critical!", "c r i t i c a l"] {
            assert_eq!(Severity::from_report(s), Severity::Unknown, "{s:?}");
        }
        // Configuration stays strict.
        assert!("Critical".parse::<Severity>().is_err());
        assert!("critical ".parse::<Severity>().is_err());
    }
}
