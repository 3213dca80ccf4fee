//! Domain values with no I/O and no internal dependencies: digests, image references,
//! platforms, media types, manifest bytes, severities, byte sizes, airlock's finding ids and
//! the verdict-freshness rule.

pub mod cosign;
pub mod digest;
pub mod finding_id;
pub mod freshness;
pub mod manifest;
pub mod media;
pub mod platform;
pub mod reference;
pub mod severity;
pub mod size;

pub use digest::Digest;
pub use manifest::RawManifest;
pub use platform::Platform;
pub use reference::Reference;
pub use severity::Severity;
