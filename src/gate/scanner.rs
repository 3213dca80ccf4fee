//! The gate's plug-in point: a [`Scanner`] looks at one quarantined digest and reports an
//! [`Outcome`]. Built in: the policy checks ([`Policy`]) and the external command scanners
//! ([`Command`]: trivy, grype). Other formats (`defender`) come from plug-ins registered on
//! [`Scanners`] by `commands` (src/azure implements Defender); the gate names none of them.

use std::sync::Arc;

use futures_util::future::BoxFuture;
use time::OffsetDateTime;

use super::scanners::{self, Outcome};
use super::{Target, platform_images, policy};
use crate::config::{DesiredState, ScannerFormat, ScannerSpec};
use crate::model::RawManifest;
use crate::registry::RegistryError;

/// What a scanner is asked to look at.
pub struct ScanInput<'a> {
    pub desired: &'a DesiredState,
    /// The scanner's entry (`[scanners.NAME]`); None for the built-in policy.
    pub spec: Option<&'a ScannerSpec>,
    pub target: &'a Target<'a>,
    pub top: &'a RawManifest,
    pub now: OffsetDateTime,
}

/// Why a scanner gave no outcome.
pub enum ScanError {
    /// The registry could not be read: the scan step fails (no verdict is written).
    Registry(RegistryError),
    /// The scanner could not report: it fails closed (a finding that blocks the image).
    Failed(String),
}

impl From<String> for ScanError {
    fn from(e: String) -> Self {
        ScanError::Failed(e)
    }
}

/// One kind of scanner.
pub trait Scanner: Send + Sync {
    fn scan<'a>(&'a self, input: &'a ScanInput<'a>) -> BoxFuture<'a, Result<Outcome, ScanError>>;
}

/// The built-in policy checks (`gate.policy`) on the manifests and configs.
pub struct Policy;

impl Scanner for Policy {
    fn scan<'a>(&'a self, input: &'a ScanInput<'a>) -> BoxFuture<'a, Result<Outcome, ScanError>> {
        Box::pin(async move {
            let images = platform_images(input.target, input.top)
                .await
                .map_err(ScanError::Registry)?;
            Ok(Outcome::Findings {
                version: Some(env!("CARGO_PKG_VERSION").to_string()),
                findings: policy::check(&input.desired.gate.policy, &images, input.now),
            })
        })
    }
}

/// An external scanner run as a command (`command = [...]`), its report parsed by format.
pub struct Command;

impl Scanner for Command {
    fn scan<'a>(&'a self, input: &'a ScanInput<'a>) -> BoxFuture<'a, Result<Outcome, ScanError>> {
        Box::pin(async move {
            let spec = input
                .spec
                .ok_or_else(|| "a command scanner needs its [scanners] entry".to_string())?;
            Ok(scanners::run(input.desired, spec, input.target).await?)
        })
    }
}

/// The scanners this airlock has: the built-ins, and plug-ins by format.
#[derive(Clone, Default)]
pub struct Scanners {
    plugins: Vec<(ScannerFormat, Arc<dyn Scanner>)>,
}

impl Scanners {
    /// The built-ins only.
    pub fn builtin() -> Scanners {
        Scanners::default()
    }

    /// Use `scanner` for entries with `format`.
    pub fn with(mut self, format: ScannerFormat, scanner: Arc<dyn Scanner>) -> Scanners {
        self.plugins.retain(|(f, _)| *f != format);
        self.plugins.push((format, scanner));
        self
    }

    /// The scanner for an entry: a plug-in for its format, else a command scanner for the
    /// formats that have a command.
    pub fn for_spec(&self, spec: &ScannerSpec) -> Result<&dyn Scanner, String> {
        if let Some((_, s)) = self.plugins.iter().find(|(f, _)| *f == spec.format) {
            return Ok(s.as_ref());
        }
        match spec.format {
            ScannerFormat::Trivy | ScannerFormat::Grype => Ok(&Command),
            ScannerFormat::Defender => Err(format!(
                "scanner `{}` (defender) needs airlock built with the `azure` feature",
                spec.name
            )),
        }
    }
}
