//! The one generator of test configurations (`airlock.toml` text): registry entries,
//! quarantine and live in one registry, optional extra sections, then the images.
//!
//! ```ignore
//! let text = Config::new("target")
//!     .mirror(&upstream.url())                       // ghcr.io and docker.io → upstream
//!     .registry("target", &format!("endpoint = \"{}\"\nauth = \"anonymous\"", target.url()))
//!     .extra("[gate]\nscanners = [\"policy\"]")
//!     .images(&sources)
//!     .build();
//! ```

/// A configuration under construction. Text is emitted in a fixed order: registries (in the
/// order added), `[quarantine]`, `[live]`, the extra text, the images.
#[derive(Clone, Debug)]
pub struct Config {
    registries: Vec<(String, String)>,
    area: String,
    live: Vec<String>,
    extra: Option<String>,
    images: Vec<String>,
}

impl Config {
    /// Quarantine (`prefix = "quarantine"`) and live (`prefix = "live"`) both in the
    /// registry entry `area`.
    pub fn new(area: &str) -> Config {
        Config {
            registries: Vec::new(),
            area: area.to_string(),
            live: Vec::new(),
            extra: None,
            images: Vec::new(),
        }
    }

    /// `[registries.<key>]` with `body` (its `key = value` lines); keys with a dot (hosts)
    /// are quoted.
    pub fn registry(mut self, key: &str, body: &str) -> Config {
        self.registries
            .push((key.to_string(), body.trim_end().to_string()));
        self
    }

    /// An anonymous registry entry at `endpoint`.
    pub fn anonymous(self, key: &str, endpoint: &str) -> Config {
        self.registry(
            key,
            &format!("endpoint = \"{endpoint}\"\nauth = \"anonymous\""),
        )
    }

    /// The public hosts `ghcr.io` and `docker.io` as anonymous mirror entries of `upstream`.
    pub fn mirror(self, upstream: &str) -> Config {
        self.anonymous("ghcr.io", upstream)
            .anonymous("docker.io", upstream)
    }

    /// A line in `[live]` (e.g. `prune = true`).
    pub fn live(mut self, line: &str) -> Config {
        self.live.push(line.to_string());
        self
    }

    /// Text after `[live]` (`[gate]`, `[scanners.*]`, …).
    pub fn extra(mut self, text: &str) -> Config {
        self.extra = Some(text.to_string());
        self
    }

    /// One `[[images]]` entry.
    pub fn image(mut self, source: &str) -> Config {
        self.images.push(source.to_string());
        self
    }

    /// An `[[images]]` entry for each source.
    pub fn images<S: AsRef<str>>(mut self, sources: &[S]) -> Config {
        self.images
            .extend(sources.iter().map(|s| s.as_ref().to_string()));
        self
    }

    /// The configuration text.
    pub fn build(&self) -> String {
        let mut s = String::new();
        for (key, body) in &self.registries {
            let key = if key.contains('.') || key.contains(':') {
                format!("\"{key}\"")
            } else {
                key.clone()
            };
            s.push_str(&format!("[registries.{key}]\n{body}\n\n"));
        }
        let area = &self.area;
        s.push_str(&format!(
            "[quarantine]\nregistry = \"{area}\"\nprefix = \"quarantine\"\n\n[live]\nregistry = \"{area}\"\nprefix = \"live\"\n"
        ));
        for line in &self.live {
            s.push_str(line);
            s.push('\n');
        }
        s.push('\n');
        if let Some(extra) = &self.extra {
            s.push_str(extra);
            s.push('\n');
        }
        for i in &self.images {
            s.push_str(&format!("[[images]]\nsource = \"{i}\"\n\n"));
        }
        s
    }
}

#[test]
fn builds_the_sections_in_order() {
    let text = Config::new("target")
        .mirror("http://127.0.0.1:1")
        .anonymous("target", "http://127.0.0.1:2")
        .live("prune = true")
        .extra("[gate]\nscanners = [\"policy\"]")
        .image("ghcr.io/a/b:1")
        .build();
    assert_eq!(
        text,
        "[registries.\"ghcr.io\"]\nendpoint = \"http://127.0.0.1:1\"\nauth = \"anonymous\"\n\n\
         [registries.\"docker.io\"]\nendpoint = \"http://127.0.0.1:1\"\nauth = \"anonymous\"\n\n\
         [registries.target]\nendpoint = \"http://127.0.0.1:2\"\nauth = \"anonymous\"\n\n\
         [quarantine]\nregistry = \"target\"\nprefix = \"quarantine\"\n\n\
         [live]\nregistry = \"target\"\nprefix = \"live\"\nprune = true\n\n\
         [gate]\nscanners = [\"policy\"]\n\
         [[images]]\nsource = \"ghcr.io/a/b:1\"\n\n"
    );
    let parsed: toml::Value = toml::from_str(&text).unwrap();
    assert_eq!(parsed["live"]["prune"].as_bool(), Some(true));
}
