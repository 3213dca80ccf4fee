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

/// Serde for value types written as strings: serialized as their `Display` text and read back
/// through `FromStr`, so a document (plan file, verdict, record) is validated as it is read.
macro_rules! serde_as_string {
    ($($t:ty),+) => {$(
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <String as serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    )+};
}

serde_as_string!(Digest, Platform, Reference);
