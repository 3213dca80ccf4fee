//! The ids of the findings airlock itself reports (`AIRLOCK-*`), and which of them an allow
//! entry may name.

/// A scanner that could not report (fails closed). Never allowed.
pub const SCANNER_FAILED: &str = "AIRLOCK-SCANNER-FAILED";

pub const PLATFORM_MISSING: &str = "AIRLOCK-PLATFORM-MISSING";
pub const ROOT_USER: &str = "AIRLOCK-ROOT-USER";
pub const SIZE: &str = "AIRLOCK-SIZE";
pub const LABEL_MISSING: &str = "AIRLOCK-LABEL-MISSING";
pub const IMAGE_AGE: &str = "AIRLOCK-IMAGE-AGE";
pub const FOREIGN_LAYER: &str = "AIRLOCK-FOREIGN-LAYER";
pub const CONFIG_MISMATCH: &str = "AIRLOCK-CONFIG-MISMATCH";

/// The ids of the built-in policy checks: the only `AIRLOCK-*` ids an allow entry may name
/// (an exception for one image that must run as root, say).
pub const ALLOWABLE: [&str; 7] = [
    PLATFORM_MISSING,
    ROOT_USER,
    SIZE,
    LABEL_MISSING,
    IMAGE_AGE,
    FOREIGN_LAYER,
    CONFIG_MISMATCH,
];

/// Whether an id is in airlock's own namespace (any case: `airlock-size` is a misspelling).
pub fn is_airlock(id: &str) -> bool {
    id.trim()
        .get(..8)
        .is_some_and(|p| p.eq_ignore_ascii_case("AIRLOCK-"))
}
