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

/// The byte offsets where the lines of a source start: locating an offset is a binary
/// search, so reporting many errors in a large file stays linear.
#[derive(Debug, Clone)]
pub struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(source: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(source.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    /// The 1-based line holding byte `offset`.
    pub fn line(&self, offset: usize) -> usize {
        self.starts.partition_point(|&s| s <= offset)
    }

    /// The 1-based line and column (in characters) of byte `offset` of `source`.
    pub fn line_col(&self, source: &str, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(source.len());
        while !source.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.line(offset);
        let start = self.starts[line - 1];
        (line, source[start..offset].chars().count() + 1)
    }

    /// The byte range of the line holding `offset` (without its newline).
    fn line_range(&self, source: &str, offset: usize) -> (usize, usize) {
        let line = self.line(offset);
        let start = self.starts[line - 1];
        let end = self
            .starts
            .get(line)
            .map(|next| next - 1)
            .unwrap_or(source.len());
        (start, end)
    }
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
        ConfigError::at_indexed(file, source, &LineIndex::new(source), span, message, help)
    }

    /// [`ConfigError::at`] with the source's line index already built.
    pub fn at_indexed(
        file: &Path,
        source: &str,
        lines: &LineIndex,
        span: Option<Range<usize>>,
        message: impl Into<String>,
        help: Option<String>,
    ) -> ConfigError {
        let (line, col, snippet) = match span {
            Some(span) => {
                let mut start = span.start.min(source.len());
                while !source.is_char_boundary(start) {
                    start -= 1;
                }
                let line = lines.line(start);
                let (line_start, line_end) = lines.line_range(source, start);
                let col = source[line_start..start].chars().count() + 1;
                let text = source[line_start..line_end]
                    .trim_end_matches('\r')
                    .to_string();
                let mut end = span.end.min(line_end).max(start);
                while !source.is_char_boundary(end) {
                    end -= 1;
                }
                let width = source[start..end].chars().count().max(1);
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

    /// Replace `secret` with stars of the same width in the message and the quoted source
    /// line (columns and caret stay right), for an error about a value holding credentials.
    pub fn mask(&mut self, secret: &str) {
        if secret.is_empty() {
            return;
        }
        let stars = "*".repeat(secret.chars().count());
        self.message = self.message.replace(secret, &stars);
        if let Some((text, _)) = &mut self.snippet {
            *text = text.replace(secret, &stars);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_index_locates_offsets() {
        let src = "ab\ncd\n\nef";
        let idx = LineIndex::new(src);
        let at = |o: usize| {
            let e = ConfigError::at_indexed(Path::new("f"), src, &idx, Some(o..o + 1), "m", None);
            (e.line, e.col)
        };
        assert_eq!(at(0), (1, 1));
        assert_eq!(at(1), (1, 2));
        assert_eq!(at(2), (1, 3), "the newline belongs to its line");
        assert_eq!(at(3), (2, 1));
        assert_eq!(at(6), (3, 1));
        assert_eq!(at(7), (4, 1));
        assert_eq!(at(9), (4, 3), "end of source");
        assert_eq!(at(100), (4, 3), "clamped");
        // Same answers as a scan from the start.
        for o in 0..src.len() {
            let e = ConfigError::at(Path::new("f"), src, Some(o..o + 1), "m", None);
            assert_eq!((e.line, e.col), at(o), "offset {o}");
        }
    }
}
