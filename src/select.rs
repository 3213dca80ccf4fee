//! `--image PATTERN` (repeatable), like Terraform's `-target`: which declared images a
//! `plan`, `apply` or `audit` covers. A pattern is a glob on the image key (`path:tag`):
//! `*` is any run of characters (`/` included), `?` one character, `[…]` a class. A run
//! over a subset is partial: its plan says so and never prunes (tags outside the subset are
//! not undeclared, only not looked at).

use crate::config::DesiredState;
use crate::error::Error;

/// The images chosen with `--image`.
#[derive(Debug, Clone)]
pub struct Selection {
    patterns: Vec<(String, glob::Pattern)>,
}

impl Selection {
    /// None when no pattern was given (everything is selected).
    pub fn parse(patterns: &[String]) -> Result<Option<Selection>, Error> {
        if patterns.is_empty() {
            return Ok(None);
        }
        let patterns = patterns
            .iter()
            .map(|p| {
                glob::Pattern::new(p)
                    .map(|g| (p.clone(), g))
                    .map_err(|e| Error::Usage(format!("invalid --image pattern `{p}`: {e}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Some(Selection { patterns }))
    }

    /// Every image (`--rescan` without a pattern).
    pub fn all() -> Selection {
        Selection {
            patterns: vec![("*".into(), glob::Pattern::new("*").expect("a valid glob"))],
        }
    }

    /// Whether the image key `path:tag` is selected.
    pub fn matches(&self, key: &str) -> bool {
        self.patterns.iter().any(|(_, g)| g.matches(key))
    }

    /// Keep only the selected images and turn prune off. A pattern that selects no declared
    /// image is an error (a typo would otherwise plan nothing and look converged).
    pub fn restrict(&self, desired: &mut DesiredState) -> Result<(), Error> {
        self.check("--image", desired)?;
        desired.images.retain(|i| self.matches(&i.key()));
        desired.prune = false;
        Ok(())
    }

    /// Error when a pattern of `flag` selects no image of `desired`.
    pub fn check(&self, flag: &str, desired: &DesiredState) -> Result<(), Error> {
        let unmatched: Vec<&str> = self
            .patterns
            .iter()
            .filter(|(_, g)| !desired.images.iter().any(|i| g.matches(&i.key())))
            .map(|(p, _)| p.as_str())
            .collect();
        if !unmatched.is_empty() {
            let declared: Vec<String> = desired.images.iter().map(|i| i.key()).collect();
            return Err(Error::Usage(format!(
                "{flag} {} selects no declared image (image keys are `path:tag`, e.g. {})",
                unmatched
                    .iter()
                    .map(|p| format!("`{p}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                declared
                    .iter()
                    .take(3)
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desired() -> DesiredState {
        crate::config::fixture::with_base(
            r#"prune = true
[[images]]
source = "docker.io/library/busybox:1.33.0"
[[images]]
source = "docker.io/library/alpine:3.19"
[[images]]
source = "ghcr.io/fluxcd/source-controller:v0.6.3"
"#,
        )
    }

    fn keys(d: &DesiredState) -> Vec<String> {
        d.images.iter().map(|i| i.key()).collect()
    }

    #[test]
    fn no_pattern_selects_everything() {
        assert!(Selection::parse(&[]).unwrap().is_none());
    }

    #[test]
    fn patterns_are_globs_on_the_image_key_and_turn_prune_off() {
        let s = Selection::parse(&["library/*".into(), "*:v0.6.?".into()])
            .unwrap()
            .unwrap();
        assert!(s.matches("library/busybox:1.33.0"));
        assert!(s.matches("fluxcd/source-controller:v0.6.3"));
        assert!(!s.matches("fluxcd/source-controller:v0.6.30"));
        let mut d = desired();
        s.restrict(&mut d).unwrap();
        assert_eq!(
            keys(&d),
            [
                "fluxcd/source-controller:v0.6.3",
                "library/alpine:3.19",
                "library/busybox:1.33.0"
            ]
        );
        assert!(!d.prune, "a partial plan never prunes");

        let mut d = desired();
        Selection::parse(&["library/busybox:1.33.0".into()])
            .unwrap()
            .unwrap()
            .restrict(&mut d)
            .unwrap();
        assert_eq!(keys(&d), ["library/busybox:1.33.0"]);
    }

    #[test]
    fn a_pattern_that_selects_nothing_is_an_error_naming_it() {
        let mut d = desired();
        let err = Selection::parse(&["library/*".into(), "libary/*".into()])
            .unwrap()
            .unwrap()
            .restrict(&mut d)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`libary/*` selects no declared image"),
            "{err}"
        );
        assert!(!err.contains("`library/*`"), "{err}");
        assert_eq!(keys(&d).len(), 3, "nothing changed");
    }

    #[test]
    fn an_invalid_pattern_is_a_usage_error() {
        let err = Selection::parse(&["library/[".into()]).unwrap_err();
        assert!(matches!(err, Error::Usage(_)), "{err:?}");
        assert!(err.to_string().contains("library/["), "{err}");
    }
}
