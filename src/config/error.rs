//! Configuration errors that point into the file: `path:line:col: message`, the offending
//! line with a caret, and what would be valid.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem in a configuration file.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub message: String,
    pub help: Option<String>,
    /// The source line the error points at, and the caret's width.
    snippet: Option<(String, usize)>,
}

impl ConfigError {
    /// An error at a byte span of `source`.
    pub fn at(
        file: &Path,
        source: &str,
        span: Option<Range<usize>>,
        message: impl Into<String>,
        help: Option<String>,
    ) -> ConfigError {
        let (line, col, snippet) = match span {
            Some(span) => {
                let start = span.start.min(source.len());
                let before = &source[..start];
                let line = before.matches('\n').count() + 1;
                let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
                let col = source[line_start..start].chars().count() + 1;
                let line_end = source[line_start..]
                    .find('\n')
                    .map(|i| line_start + i)
                    .unwrap_or(source.len());
                let text = source[line_start..line_end]
                    .trim_end_matches('\r')
                    .to_string();
                let width = source[start..span.end.min(line_end).max(start)]
                    .chars()
                    .count()
                    .max(1);
                (line, col, Some((text, width)))
            }
            None => (1, 1, None),
        };
        ConfigError {
            file: file.to_path_buf(),
            line,
            col,
            message: message.into(),
            help,
            snippet,
        }
    }

    /// An error about the file as a whole (it cannot be read, say).
    pub fn file(file: &Path, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            line: 0,
            col: 0,
            message: message.into(),
            help: None,
            snippet: None,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            return write!(f, "{}: {}", self.file.display(), self.message);
        }
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.col,
            self.message
        )?;
        if let Some((text, width)) = &self.snippet {
            let n = self.line.to_string();
            let pad = " ".repeat(n.len());
            write!(
                f,
                "\n{pad} |\n{n} | {text}\n{pad} | {}{}",
                " ".repeat(self.col - 1),
                "^".repeat(*width)
            )?;
        }
        if let Some(h) = &self.help {
            write!(f, "\n  = help: {h}")?;
        }
        Ok(())
    }
}

/// All problems found in one file (at least one).
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            writeln!(f, "error: {e}")?;
        }
        let n = self.0.len();
        write!(
            f,
            "{} configuration error{} found; nothing was read from any registry.",
            n,
            if n == 1 { "" } else { "s" }
        )
    }
}

impl std::error::Error for ConfigErrors {}
