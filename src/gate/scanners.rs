//! External scanners: run a command, parse its report (trivy, grype) into findings.

use crate::config::ScannerSpec;
use crate::records::Finding;

use super::Target;

pub enum Outcome {
    Findings {
        version: Option<String>,
        findings: Vec<Finding>,
    },
    /// The scanner has not produced results yet (Defender scans after import).
    Pending,
}

/// Run one external scanner on the target. Errors are messages for the verdict.
pub async fn run(spec: &ScannerSpec, _t: &Target<'_>) -> Result<Outcome, String> {
    Err(format!(
        "scanner `{}` ({:?}) is not supported by this build",
        spec.name, spec.format
    ))
}
