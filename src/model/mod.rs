//! Domain values with no I/O and no internal dependencies: digests, image references,
//! platforms, media types, manifest bytes, severities and byte sizes.

pub mod cosign;
pub mod digest;
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
